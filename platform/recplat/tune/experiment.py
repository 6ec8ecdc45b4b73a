"""`recplat tune JOB`: a catalog profile's search as a Ray Tune experiment of concurrent trials.

    recplat tune llmrec/fig7_lora_rank --profile smoke [--search lora_rank] [--out DIR] [key=value ...]
    recplat tune llmrec/fig7_lora_rank --profile smoke --resume      # after the driver died
    ray job submit ... -- recplat tune llmrec/fig7_lora_rank --profile paper --storage s3://bucket/sweeps

The sweep folder (default runs/<job>-<profile>-tune-<search>):

    data/ (<variant>/data/)   the prepared data: prepared once, here, before any trial starts
    tune/                     Tune's experiment (state, one folder per trial with its results);
                              with --storage it lives at <storage>/<sweep folder name> instead
    trials/<trial id>/        each trial's run directory: summary.json, test/, checkpoints/
    tune-trunks/, trunks/     a branching search's trunks (their experiment, their run directories):
                              trained first, every trial starts from its trunk's checkpoint (branch.py)
    sweep.json                the table (one row per trial), the best trial, its `recplat run` line
    report/                   sweep.md and the plots (results.py)

Trials run as the cluster's resources allow (bounded by the search's max_concurrent_trials); each
asks Tune for its search's `resources` and its Ray Train workers for the profile's `resources:`.
On an autoscaling cluster the pending trials' resource requests are what makes the autoscaler add
nodes (cluster/README.md). `--resume` restores the experiment (Tuner.restore, resume_errored):
finished trials keep their results, errored and interrupted ones restart and resume their own
Ray Train run from its last checkpoint (trial.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from recplat.errors import ConfigError
from recplat.tune.space import VARIANT_KEY, TuneSearch, grid_search, override_text
from recplat.tune.trial import SweepContext, run_trial

EXPERIMENT_NAME = "tune"  # the experiment folder under the sweep folder (local storage)
DEFAULT_SEARCH = "grid"  # the name of the implied search over a profile's sweep/grid
TRUNKS_SUFFIX = "-trunks"  # a branching search's first experiment: tune-trunks/ (tune/branch.py)


@dataclass(frozen=True)
class SweepPlan:
    spec: object  # recplat.catalog.JobSpec
    profile: str
    search_name: str
    search: TuneSearch
    out: Path  # absolute
    overrides: tuple[str, ...]
    runs: list  # recplat.run.PlannedRun, one per variant the space can pick (data to prepare)
    max_t: int | None  # the recipe's train.max_steps: ASHA's last step unless the search sets one
    storage: str | None  # a storage URI for the experiment (None: the sweep folder)
    catalog: object  # recplat.catalog.Catalog: the trials resolve the job from the same one

    @property
    def where(self) -> str:
        return f"{self.spec.path}: profiles.{self.profile}.tune.{self.search_name}"

    def experiment_location(self, trunks: bool = False) -> tuple[str, str]:
        """(storage path, name) of the sweep's Tune experiment, or of its trunks' (tune/branch.py)."""
        suffix = TRUNKS_SUFFIX if trunks else ""
        if self.storage is None:
            return str(self.out), EXPERIMENT_NAME + suffix
        return self.storage.rstrip("/"), self.out.name + suffix

    @property
    def experiment_path(self) -> str:
        return "/".join(self.experiment_location())

    @property
    def trunk_path(self) -> str:
        return "/".join(self.experiment_location(trunks=True))


def pick_search(spec, profile: str, name: str | None) -> tuple[str, TuneSearch | None]:
    """The profile's search called `name` (or its only one). A profile's sweep/grid is also the
    search `grid` (its default without a `tune:` section): returned as None, built in plan_sweep
    once the recipe's own validation metric is known."""
    prof = spec.profile(profile)
    searches = dict(prof.tune)
    if name is None and len(searches) > 1:
        raise ConfigError(f"{spec.path}: profile {profile} has several searches: pick one with --search "
                          f"({', '.join(searches)})")
    if name is None and searches:
        return next(iter(searches.items()))
    if name in searches:
        return name, searches[name]
    if name in (None, DEFAULT_SEARCH) and prof.variants():
        return DEFAULT_SEARCH, None
    if name is None:
        raise ConfigError(f"{spec.path}: profile {profile} has no tune: section and no sweep/grid: nothing to search")
    known = [*searches, *([DEFAULT_SEARCH] if prof.variants() else [])]
    raise ConfigError(f"{spec.path}: profile {profile} has no search {name!r}; choose one of {', '.join(known) or '(none)'}")


def plan_sweep(name: str, profile: str, search_name: str | None = None, out: str | Path | None = None,
               overrides: list[str] = (), storage: str | None = None, catalog=None) -> SweepPlan:  # fmt: skip
    """Everything validated before Ray starts: the search, every value of its space applied to the
    job (errors name the search key and the value), the objective among the validation metrics."""
    from recplat.catalog import Catalog
    from recplat.run import plan_job
    from recplat.runs import run_name

    catalog = catalog or Catalog()
    spec = catalog.get(name)
    spec.require_ready()
    search_name, search = pick_search(spec, profile, search_name)
    out = Path(out or f"runs/{run_name(name, profile)}-tune-{search_name}").expanduser().absolute()
    base = plan_job(name, profile, None, out, list(overrides), catalog, check=False).runs[0].config
    train = getattr(base, "train", None)
    if search is None:
        if train is None or train.metric is None:
            raise ConfigError(f"{spec.path}: profile {profile}: the recipe reports no validation metric to rank on")
        search = grid_search([v.name for v in spec.profile(profile).variants()], train.metric, train.mode)
    plan = SweepPlan(spec, profile, search_name, search, out, tuple(overrides), [], None, storage, catalog)
    try:
        search.check_variants([v.name for v in spec.profile(profile).variants()])
    except ValueError as exc:
        raise ConfigError(f"{plan.where}.{exc}") from None
    if search.trials == "mixture":
        overrides = _mixture_overrides(plan, overrides)
        plan = SweepPlan(spec, profile, search_name, search, out, tuple(overrides), [], None, storage, catalog)
    variants = search.space[VARIANT_KEY].values if VARIANT_KEY in search.space else [None]
    runs = [_plan_one(plan, catalog, v, []) for v in variants]
    for key, param in search.space.items():
        for value in param.values if key != VARIANT_KEY else []:
            for v in variants:
                _plan_one(plan, catalog, v, [override_text(key, value)], f"space.{key}: {value!r}")
    _check_metric(plan, runs)
    if search.branch is not None:
        _check_branch(plan, train)
    max_t = train.max_steps if train is not None else None
    if search.scheduler.type == "asha":
        if train is None or train.eval_every is None:
            raise ConfigError(f"{plan.where}.scheduler: ASHA acts on validations during training; the recipe "
                              "validates only at the end (set recipe.train.eval_every)")
        try:
            search.build_scheduler(max_t)
        except ValueError as exc:
            raise ConfigError(f"{plan.where}.scheduler.{exc}") from None
    return SweepPlan(spec, profile, search_name, search, out, tuple(overrides), runs, max_t, storage, catalog)


def _mixture_overrides(plan: SweepPlan, overrides) -> list[str]:
    """A `trials: mixture` search: MoLoRec only, FIFO, its space over one of mixture.SEARCHED (w_g,
    w_s) pairs at recipe.mixture.fixed, or the entropy adaptation's recipe.mixture.lr; its trials
    (and the best command) run with that search's coefficients (mixture.SEARCHED)."""
    from recplat.tune.mixture import FIXED_KEY, SEARCHED, check_pairs

    search = plan.search
    if plan.spec.recipe != "molorec":
        raise ConfigError(f"{plan.where}.trials: mixture scores MoLoRec's adapter mixture; this job's recipe is "
                          f"{plan.spec.recipe}")
    if search.scheduler.type != "fifo":
        raise ConfigError(f"{plan.where}.scheduler: evaluation-only trials report once; use fifo")
    searched = [k for k in search.space if k in SEARCHED]
    extra = [k for k in search.space if k != VARIANT_KEY and k not in SEARCHED]
    if len(searched) != 1 or extra:
        raise ConfigError(f"{plan.where}.space: a mixture search is over one of {' or '.join(SEARCHED)} (and variant)"
                          + (f", not {', '.join(extra)}" if extra else ", not both" if searched else ""))
    param = search.space[searched[0]]
    if searched[0] == FIXED_KEY:
        try:
            check_pairs(param.values if param.kind in ("grid", "choice") else [param.kind])
        except ValueError as exc:
            raise ConfigError(f"{plan.where}.space.{FIXED_KEY}: {exc}") from None
    return [*overrides, *(o for o in SEARCHED[searched[0]] if o not in overrides)]


def _plan_one(plan: SweepPlan, catalog, variant: str | None, extra: list[str], label: str = ""):
    from recplat.run import plan_job

    try:
        return plan_job(plan.spec.name, plan.profile, variant, plan.out, [*plan.overrides, *extra], catalog,
                        check=not extra).runs[0]  # fmt: skip
    except ConfigError as exc:
        raise ConfigError(f"{plan.where}" + (f".{label}" if label else "") + f": {exc}") from None


def _check_branch(plan: SweepPlan, train) -> None:
    """A branching search: the recipe trains (recipe.train), and every trunk plans."""
    from recplat.train.config import TrainConfig
    from recplat.tune.branch import trunk_overrides

    if not isinstance(train, TrainConfig):
        raise ConfigError(f"{plan.where}.branch: the recipe has no train section to branch (recipe.train.branch_from)")
    extra = trunk_overrides(plan.search)
    for key, value in plan.search.branch.trunk.items():
        _plan_one(plan, plan.catalog, None, extra, f"branch.trunk.{key}: {value!r}")


def _check_metric(plan: SweepPlan, runs: list) -> None:
    """The objective must be a key the training loop reports at every validation."""
    metric = plan.search.metric
    for run in runs:
        cfg = run.config
        reported = list(getattr(getattr(cfg, "eval", None), "metrics", None) or [])
        train = getattr(cfg, "train", None)
        reported += [train.metric] if train is not None and train.metric else []
        if metric not in reported:
            raise ConfigError(f"{plan.where}.metric: {metric!r} is not a validation metric of this run "
                              f"(it validates {', '.join(dict.fromkeys(reported)) or 'nothing'})")


def build_tuner(plan: SweepPlan, resume: bool, branches: dict[str, str] | None = None, mlflow: bool = False):
    """A new Tuner, or the restored one (`resume`; run_sweep has checked that a new one replaces
    nothing: check_experiment). `branches`: a branching search's trunks (tune/branch.py), which
    every trial starts from."""
    from ray import tune

    from recplat.tune.mixture import mixture_trial

    branch_keys = tuple(plan.search.branch.keys) if plan.search.branch else ()
    context = SweepContext(plan.spec.name, plan.profile, str(plan.out), plan.overrides, plan.search.metric,
                           plan.catalog, branches=branches, branch_keys=branch_keys)
    mixture = plan.search.trials == "mixture"
    trial = mixture_trial if mixture else run_trial
    trainable = tune.with_resources(tune.with_parameters(trial, sweep=context), dict(plan.search.resources))
    # reuse_actors: a mixture trial's process keeps its loaded model for the next trial
    return experiment_tuner(plan, trainable, plan.search.param_space(), resume, reuse_actors=mixture, mlflow=mlflow)


def experiment_tuner(plan: SweepPlan, trainable, param_space: dict, resume: bool, trunks: bool = False,
                     reuse_actors: bool = False, mlflow: bool = False):  # fmt: skip
    """The Tuner of the sweep's experiment (or of its trunks'): restored when `resume` finds it.
    `mlflow`: every trial logged to MLflow as it reports (recplat/tracking.py)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    storage, name = plan.experiment_location(trunks)
    if resume and tune.Tuner.can_restore(f"{storage}/{name}"):
        return tune.Tuner.restore(f"{storage}/{name}", trainable, resume_errored=True)
    search = plan.search
    tune_config = tune.TuneConfig(
        metric=search.metric, mode=search.mode, num_samples=1 if trunks else search.num_samples,
        # the generator bounds concurrency itself: Tune ignores max_concurrent_trials next to one
        search_alg=BasicVariantGenerator(random_state=search.seed, max_concurrent=search.max_concurrent_trials or 0),
        scheduler=FIFOScheduler() if trunks else search.build_scheduler(plan.max_t),
        reuse_actors=reuse_actors,
    )  # fmt: skip
    callbacks = []
    if mlflow:
        from recplat.tracking import tracking_uri, trial_logger

        experiment = f"{plan.spec.name} ({plan.profile}, search {plan.search_name}{', trunks' if trunks else ''})"
        callbacks.append(trial_logger(tracking_uri(plan.out), experiment))
    run_config = tune.RunConfig(name=name, storage_path=storage, verbose=1, callbacks=callbacks)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def check_experiment(plan: SweepPlan, resume: bool) -> None:
    """--resume needs a saved experiment (a branching search's trunks come first); a new sweep must
    not land on one (nothing is replaced)."""
    from ray import tune

    paths = ([plan.trunk_path] if plan.search.branch else []) + [plan.experiment_path]
    saved = [path for path in paths if tune.Tuner.can_restore(path)]
    if resume and not saved:
        raise ConfigError(f"{paths[0]}: no sweep to resume there (run it without --resume first)")
    if not resume and saved:
        raise ConfigError(f"{saved[0]}: a sweep is already there: continue it with --resume, or pass another --out")


def run_sweep(plan: SweepPlan, resume: bool = False, address: str | None = None, mlflow: bool = False):
    """Prepare the data once, run (or resume) the experiment, write the table and the plots;
    `mlflow`: log every trial to MLflow."""
    from recplat.run import prepare_run
    from recplat.runtime import init_ray
    from recplat.tune.branch import run_trunks
    from recplat.tune.mixture import train_specific_adapters
    from recplat.tune.results import sweep_table, write_sweep

    check_experiment(plan, resume)  # before Ray starts and the data are prepared
    if mlflow:
        from recplat.tracking import require_mlflow

        require_mlflow()
    init_ray(address, quiet=False)
    for data_dir in dict.fromkeys(r.data_dir for r in plan.runs):
        print(f"[tune] preparing the data in {data_dir}", flush=True)
        prepare_run(next(r for r in plan.runs if r.data_dir == data_dir))
    if plan.search.trials == "mixture":
        train_specific_adapters(plan)
    trunks = None
    if plan.search.branch is not None:
        trunks = run_trunks(plan, resume, mlflow)
        if trunks is None:
            return None
    branches = {key: trunk["checkpoint"] for key, trunk in (trunks or {}).items()} or None
    tuner = build_tuner(plan, resume, branches, mlflow)
    grid = tuner.fit()
    if interrupted(plan, plan.experiment_path, plan.search.num_samples * grid_points(plan.search.space)):
        return None
    table = sweep_table(grid, plan, list((trunks or {}).values()))
    write_sweep(table, plan)
    return table


def grid_points(space: dict) -> int:
    return math.prod(len(p.grid) for p in space.values() if p.kind == "grid")


def interrupted(plan: SweepPlan, path: str, expected: int) -> bool:
    """True (and says how to go on) when the experiment at `path` has trials not yet finished (nor
    failed), counting those not yet created: Tune caught Ctrl-C (or SIGTERM), saved it and returned.
    After an interrupt Tune marks its live trials terminated in memory but saves them as pending."""
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(path).trials
    unfinished = sum(t.status not in ("TERMINATED", "ERROR") for t in trials) + max(0, expected - len(trials))
    if unfinished:
        print(f"[tune] interrupted with {unfinished} trial(s) unfinished; continue with `{resume_command(plan)}`",
              flush=True)
    return unfinished > 0


def resume_command(plan: SweepPlan) -> str:
    import shlex

    args = ["recplat", "tune", plan.spec.name, "--profile", plan.profile, "--search", plan.search_name,
            "--out", str(plan.out)] + (["--storage", plan.storage] if plan.storage else [])
    return shlex.join(args + list(plan.overrides) + ["--resume"])


def main(args) -> int:
    plan = plan_sweep(args.name, args.profile, args.search, args.out, args.overrides, storage=args.storage)
    return 0 if run_sweep(plan, resume=args.resume, address=args.address, mlflow=args.mlflow) is not None else 130
