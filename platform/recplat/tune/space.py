"""A catalog profile's `tune:` section: named searches over the profile's own dotted keys, typed.

    tune:
      lora_rank:                                    # recplat tune JOB --profile smoke --search lora_rank
        metric: recall@1          # a validation metric the training loop reports (never a test metric)
        mode: max
        space:
          variant: {grid: [minilm-r2, minilm-r4]}   # variants of the profile's sweep/grid
          recipe.train.lr: {loguniform: [1.0e-5, 1.0e-3]}
          recipe.finetune.dropout: {uniform: [0.0, 0.2]}
          recipe.model.max_history: {choice: [5, 10]}
        num_samples: 2            # random draws per grid point (grid axes multiply, as in Tune)
        scheduler: {type: asha, grace_period: 5}    # stops on the `step` the training loop reports
        max_concurrent_trials: 2
        resources: {CPU: 1}       # each trial's driver; its Ray Train workers ask for `resources:` on top

Keys are the profile's override keys (`recipe.*`, `resources.*`) or `variant`. `data.*` keys are
refused: the data are prepared once, on the driver, before any trial starts (a search over data
belongs in a `grid`/`sweep` whose variants carry their own data). A trial's overrides are applied
after its variant's, exactly as `recplat run JOB --variant V key=value ...` applies them, so the
best trial's command line reproduces it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from recplat.config import StrictModel

VARIANT_KEY = "variant"  # a space key choosing among the profile's sweep/grid variants
TIME_ATTR = "step"  # the optimizer step train/loop.py reports with every result: ASHA's clock
SPACE_SECTIONS = ("recipe", "resources")
_TEST_METRIC = re.compile(r"^(test|overall)([./_:@\s-]|$)", re.IGNORECASE)


def objective_problem(metric: str) -> str | None:
    """Why `metric` may not be a search objective, or None. Choosing hyperparameters on the test
    split leaks it into the model (MoLoRec's code picks its LR by test scores: docs/papers.md §3.6)."""
    if _TEST_METRIC.match(metric.strip()):
        bare = _TEST_METRIC.sub("", metric.strip())
        return (f"{metric!r} is a test metric; a search selects on the validation split only (use the "
                f"validation metric{f' {bare!r}' if bare else ''}; the table shows the best checkpoint's test "
                "metrics)")
    return None


class Param(StrictModel):
    """One dimension of the search space: exactly one of grid, choice, uniform, loguniform."""

    grid: list[Any] | None = None  # every value, in every combination with the other grid keys
    choice: list[Any] | None = None  # one value drawn per trial
    uniform: tuple[float, float] | None = None  # [low, high)
    loguniform: tuple[float, float] | None = None  # [low, high), drawn uniformly in log space

    @model_validator(mode="after")
    def _exactly_one(self) -> "Param":
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of grid, choice, uniform, loguniform"
                             + (f" (got {', '.join(given)})" if given else ""))
        kind = given[0]
        if kind in ("grid", "choice") and not getattr(self, kind):
            raise ValueError(f"{kind}: needs at least one value")
        if kind in ("uniform", "loguniform"):
            low, high = getattr(self, kind)
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise ValueError(f"{kind}: needs [low, high] with low < high, got [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: needs low > 0, got {low}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None)

    @property
    def values(self) -> list[Any]:
        """The values a check tries: every grid/choice value, or the two ends of a range."""
        return list(getattr(self, self.kind))

    def to_tune(self):
        """The Tune search-space object (ray.tune.grid_search, choice, uniform, loguniform)."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.grid))
        if self.kind == "choice":
            return tune.choice(list(self.choice))
        if self.kind == "uniform":
            return tune.uniform(*self.uniform)
        return tune.loguniform(*self.loguniform)


class Fifo(StrictModel):
    """Every trial runs to its end (what a search whose gains arrive late needs: CPRec's annealing)."""

    type: Literal["fifo"] = "fifo"


class Asha(StrictModel):
    """Asynchronous successive halving on the reported optimizer `step` (ray.tune.schedulers.ASHA)."""

    type: Literal["asha"]
    grace_period: int = Field(1, ge=1)  # steps before a trial may be stopped
    reduction_factor: float = Field(2.0, gt=1)  # 1/reduction_factor of the trials go on at each rung
    max_t: int | None = Field(None, ge=1)  # the last rung's bound; None: the recipe's train.max_steps
    brackets: int = Field(1, ge=1)

    def build(self, max_t: int):
        """The scheduler; Tune hands it the search's metric and mode (TuneConfig)."""
        from ray.tune.schedulers import ASHAScheduler

        if self.grace_period > max_t:
            raise ValueError(f"grace_period: {self.grace_period} is past the last step ({max_t})")
        # stop_last_trials=False: a trial reaching max_t (its last validation) must still test its best
        # checkpoint and report; ASHA would otherwise stop it right after that validation
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=max_t, grace_period=self.grace_period,
                             reduction_factor=self.reduction_factor, brackets=self.brackets, stop_last_trials=False)


Scheduler = Annotated[Union[Fifo, Asha], Field(discriminator="type")]


class Branch(StrictModel):
    """Trials that differ only in `keys` share their first updates: each group's common start (the
    trunk) is trained once, and its trials branch from the trunk's last checkpoint (tune/branch.py).

        branch:
          keys: [recipe.cpt.anneal_end]       # space keys that change only the updates after the trunk
          trunk: {recipe.cpt.anneal_end: 6}   # the trunk run's values of them (CPRec: A = S, no annealing)

    The trunk must end where its branches part: the training spine refuses a branch that would have
    trained the trunk's updates otherwise (train/checkpoint.py check_branchable)."""

    keys: list[str] = Field(min_length=1)
    trunk: dict[str, Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _trunk_has_every_key(self) -> "Branch":
        if set(self.trunk) != set(self.keys):
            raise ValueError(f"trunk: give the trunk run's value of each of keys ({', '.join(self.keys)}), "
                             f"got {', '.join(self.trunk) or 'none'}")
        return self


class TuneSearch(StrictModel):
    """One named search of a profile (see the module docstring)."""

    description: str | None = None
    metric: str = Field(min_length=1)  # a key of the training loop's validation report
    mode: Literal["min", "max"]
    space: dict[str, Param] = Field(min_length=1)
    num_samples: int = Field(1, ge=1)
    scheduler: Scheduler = Fifo()
    max_concurrent_trials: int | None = Field(None, ge=1)  # None: as many as the resources allow
    resources: dict[str, float] = {"CPU": 1.0}  # each trial's driver (its Train workers come on top)
    seed: int = 0  # of the random draws: the same search draws the same trials
    # train: each trial a training run (trial.py); mixture: evaluation-only trials over MoLoRec's
    # merge coefficients or its entropy adaptation's lr, the adapters trained once and loaded once
    # per trial process (mixture.py)
    trials: Literal["train", "mixture"] = "train"
    branch: Branch | None = None  # trials that share a trunk branch from it (CPRec's annealing variants)

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, metric: str) -> str:
        problem = objective_problem(metric)
        if problem:
            raise ValueError(problem)
        return metric

    @field_validator("space")
    @classmethod
    def _space_keys(cls, space: dict[str, Param]) -> dict[str, Param]:
        for key in space:
            section = key.split(".")[0]
            if key == VARIANT_KEY:
                continue
            if section == "data":
                raise ValueError(f"{key}: the data are prepared once, before the trials; search data in a "
                                 "grid/sweep whose variants carry their own data (then `variant` here)")
            if section not in SPACE_SECTIONS or "." not in key:
                raise ValueError(f"{key}: keys are `variant` or start with {' or '.join(f'{s}.' for s in SPACE_SECTIONS)}"
                                 " (e.g. recipe.train.lr)")
        return space

    @model_validator(mode="after")
    def _branch_keys(self) -> "TuneSearch":
        if self.branch is None:
            return self
        if self.trials != "train":
            raise ValueError("branch: only training trials branch from a trunk run")
        unknown = [k for k in self.branch.keys if k not in self.space or k == VARIANT_KEY]
        if unknown:
            raise ValueError(f"branch.keys: {', '.join(unknown)}: not a key of space (nor variant)")
        drawn = [k for k, p in self.space.items() if k not in self.branch.keys and p.kind != "grid"]
        if drawn:
            raise ValueError(f"space.{drawn[0]}: with branch, the trunk's keys are grids (each trial must find "
                             f"its trunk), not {self.space[drawn[0]].kind}")
        return self

    @field_validator("resources")
    @classmethod
    def _resources(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, amount in resources.items():
            if amount < 0:
                raise ValueError(f"{name}: must be >= 0, got {amount}")
        return resources

    def check_variants(self, names: list[str]) -> None:
        """`variant` values must be variants of the profile (its sweep or grid)."""
        param = self.space.get(VARIANT_KEY)
        if param is None:
            if names:
                raise ValueError(f"space: this profile has a sweep/grid: add {VARIANT_KEY}: {{grid: [...]}} with "
                                 f"one or more of {', '.join(names)}")
            return
        if param.kind not in ("grid", "choice"):
            raise ValueError(f"space.{VARIANT_KEY}: variants are names: use grid or choice, not {param.kind}")
        unknown = [v for v in param.values if v not in names]
        if unknown:
            raise ValueError(f"space.{VARIANT_KEY}: {', '.join(map(str, unknown))}: not a variant of this profile "
                             f"({', '.join(names) or 'it has no sweep or grid'})")

    def param_space(self) -> dict[str, Any]:
        """Tune's param_space: one flat entry per dotted key (the trial's `config`)."""
        return {key: param.to_tune() for key, param in self.space.items()}

    def build_scheduler(self, max_t: int | None):
        """Tune's scheduler: FIFO, or ASHA on TIME_ATTR up to `max_t` (its own, else the recipe's)."""
        from ray.tune.schedulers import FIFOScheduler

        if isinstance(self.scheduler, Fifo):
            return FIFOScheduler()
        last = self.scheduler.max_t or max_t
        if last is None:
            raise ValueError("max_t: ASHA needs the last step: set it, or recipe.train.max_steps")
        return self.scheduler.build(last)


def grid_search(variants: list[str], metric: str, mode: str) -> TuneSearch:
    """The search `recplat tune` runs on a profile without a `tune:` section: its sweep/grid as a
    Tune grid, one trial per variant, ranked on the recipe's own validation metric."""
    return TuneSearch(description="the profile's sweep/grid, one trial per variant", metric=metric, mode=mode,
                      space={VARIANT_KEY: Param(grid=list(variants))})


def override_text(key: str, value: Any) -> str:
    """`key=value` that recplat.config.parse_override reads back as exactly `value` (YAML: floats
    keep every digit and a '.': PyYAML would read `1e-05` back as a string)."""
    import yaml

    if hasattr(value, "item"):  # a numpy scalar drawn by Tune
        value = value.item()
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return f"{key}={text.removesuffix(chr(10)).removesuffix('...').strip()}"


def trial_overrides(config: dict[str, Any]) -> tuple[str | None, list[str]]:
    """A trial's Tune config -> (its variant, its `key=value` overrides in the space's order)."""
    return config.get(VARIANT_KEY), [override_text(k, v) for k, v in config.items() if k != VARIANT_KEY]


def plain_values(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's Tune config with Python values (Tune draws numpy scalars)."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in config.items()}


def trunk_key(config: dict[str, Any], branch_keys) -> str:
    """What names a trial's trunk (tune/branch.py): its values of every key but the branch keys."""
    import json

    return json.dumps({k: v for k, v in plain_values(config).items() if k not in branch_keys}, sort_keys=True)
