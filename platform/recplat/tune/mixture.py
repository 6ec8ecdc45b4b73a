"""Evaluation-only trials: MoLoRec's mixture (Eq. 6) chosen on validation, one of two searches.

A search with `trials: mixture` (jobs/molorec/fig4_coefficients.yaml) is over exactly one of

- `recipe.mixture.fixed`: the mixture w_g Θ_g ⊕ w_s Θ_s (w_s = 1 − w_g) at each (w_g, w_s), every
  module alike (the non-adaptive MoLoRec); its trials and best command run `coefficients: fixed`;
- `recipe.mixture.lr`: the learning rate of the entropy-guided adaptation (Eq. 9-10): each trial
  resets λ to `mixture.init`, adapts it on the first `tta_prompts` held-out validation prompts,
  unlabeled, and scores the adapted mixture on their labels: one step of the recipe's own lr
  selection (`molorec.entropy_mixture`) per trial; trials and best command run `coefficients:
  entropy` with `lr_grid: []` (the lr as is; the run then adapts on test prompts, unlabeled);

scored on the run's held-out validation prompts (the selection `molorec.run` makes:
`eval.valid_size` seeded prompts, never test). Nothing but λ is trained per trial:

- the driver trains Θ_s once per variant, before any trial starts: the variant's own run with
  `recipe.stage=specific_only` (the very adapter a `mixture` run trains: same rows, same seed) into
  `<sweep>/adapters/<variant>/`, kept there (a resumed sweep does not train it again); Θ_g is the
  finished run `recipe.general_from` names;
- each trial process loads the base model with both adapters once (a MixtureContext, cached in this
  module) and Tune reuses the trial actors (`reuse_actors`), so the next trials only set the weights
  and generate: no reload per trial. Generation runs in the trial's process through the loaded
  mixture (`molorec.evaluate_adapter` would export the adapter and load a model per call).

Each trial writes `trials/<id>/validation.json` (w, the lr and adaptation report of an lr trial, the
metrics, its answers, the process and how many contexts that process has loaded) and reports the
objective as its final result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recplat.tune.space import trial_overrides
from recplat.tune.trial import FINAL_KEY, SweepContext, trial_dir

ADAPTERS_DIR = "adapters"  # <sweep>/adapters/<variant>/: the specific_only run that made Θ_s
FIXED_KEY = "recipe.mixture.fixed"  # a w_g search: the space's (w_g, w_s) pairs
LR_KEY = "recipe.mixture.lr"  # an entropy-adaptation lr search
SEARCHED = {FIXED_KEY: ["recipe.mixture.coefficients=fixed"],  # what each search's trials run with
            LR_KEY: ["recipe.mixture.coefficients=entropy", "recipe.mixture.lr_grid=[]"]}
_CACHE: dict[tuple, Any] = {}  # one (MixtureContext, validation rows) per trial process
_LOADS = 0  # contexts this process has loaded (validation.json shows it)


def adapters_dir(out: str | Path, variant: str | None) -> Path:
    from recplat.runs import run_subdir

    return Path(out) / ADAPTERS_DIR / run_subdir(variant)


def check_pairs(values: list[Any]) -> None:
    """Every value a (w_g, w_s) pair of non-negative weights summing to 1 (ValueError names it)."""
    for value in values:
        pair = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(pair) != 2 or any(not isinstance(w, (int, float)) or w < 0 for w in pair) or abs(sum(pair) - 1) > 1e-6:
            raise ValueError(f"{value!r}: give [w_g, w_s] with w_g, w_s >= 0 and w_g + w_s = 1")


def train_specific_adapters(plan) -> None:
    """Θ_s of every variant the space can pick, trained once on the driver (see the module docstring)."""
    from recplat.run import execute_run

    for run in plan.runs:
        target = adapters_dir(plan.out, run.variant)
        if (target / "summary.json").is_file():
            print(f"[tune] Θ_s of {run.variant or plan.spec.name}: reusing {target}", flush=True)
            continue
        print(f"[tune] training Θ_s of {run.variant or plan.spec.name} once, in {target}", flush=True)
        execute_run(plan.spec.recipe, run.config.model_copy(update={"stage": "specific_only", "out": str(target)}))


def _context(cfg, specific: Path):
    """The loaded mixture and the held-out validation rows, cached for this process."""
    global _LOADS
    import torch

    from recplat.data.dataset import PreparedDataset
    from recplat.recipes.molorec import MixtureContext, load_split, seeded_rows

    general = Path(cfg.general_from.summary("general_from").model_extra.get("adapter")
                   or Path(cfg.general_from.run_dir) / "adapter")  # fmt: skip
    key = (str(general), str(specific), cfg.model.model_dump_json(), cfg.data.model_dump_json(),
           cfg.eval.valid_size, cfg.eval.seed, cfg.mixture.merge)  # fmt: skip
    if key not in _CACHE:
        _CACHE.clear()  # one model in memory per trial process
        valid = load_split(PreparedDataset.open(cfg.data.dataset), "valid", cfg.data.domains)
        held_out = valid.take(seeded_rows(valid.num_rows, None, cfg.eval.seed)[: cfg.eval.valid_size])  # as molorec.run
        ctx = MixtureContext(cfg, general, specific / "adapter")
        if torch.cuda.is_available():  # the trial's GPU (resources: {GPU: 1}); the mixture's λ with it
            ctx.mixture.model.cuda()
            ctx.mixture.cuda()
        _CACHE[key] = (ctx, held_out)
        _LOADS += 1
    return _CACHE[key]


def adapt_on_validation(ctx, rows, cfg) -> dict:
    """λ from `mixture.init`, adapted by entropy (Eq. 10) at `mixture.lr` on the first `tta_prompts`
    of `rows`, unlabeled: what `molorec.entropy_mixture` does for each lr of its grid. (`cfg` is
    this trial's: a cached context may hold another trial's lr.)"""
    from recplat.recipes.molorec import adapt_by_entropy

    return adapt_by_entropy(ctx, rows, cfg.mixture, cfg.mixture.lr)


def score_weights(ctx, rows, weights: tuple[float, float] | None):
    """Greedy answers of the loaded mixture to `rows` at (w_g, w_s) (None: at its current λ),
    scored as the recipe scores them."""
    from recplat.eval.generative import generate_greedy, generative_results
    from recplat.recipes.molorec import strings

    cfg = ctx.cfg
    if weights is not None:
        ctx.mixture.set_weights(weights)
    model = ctx.mixture.model.base_model.model.eval()
    ids = ctx.prompt_ids(rows)
    texts: list[str] = []
    for start in range(0, len(ids), cfg.eval.batch_size):
        texts += generate_greedy(model, ctx.tokenizer, ids[start : start + cfg.eval.batch_size], cfg.eval.max_new_tokens)[0]
    results = generative_results(rows, texts, strings(rows, "target_title"), rows.column("candidate_titles").to_pylist(),
                                 cfg.eval.metrics)  # fmt: skip
    return results, texts


def mixture_trial(config: dict[str, Any], sweep: SweepContext) -> None:
    """The Tune trainable of a `trials: mixture` search: one (w_g, w_s), or one entropy lr, scored
    on validation."""
    from ray import tune

    from recplat.run import plan_job
    from recplat.storage import write_json_atomic

    trial_id = tune.get_context().get_trial_id()
    variant, overrides = trial_overrides(config)
    cfg = plan_job(sweep.job, sweep.profile, variant, sweep.out, [*sweep.overrides, *overrides],
                   sweep.catalog).runs[0].config  # fmt: skip
    ctx, rows = _context(cfg, adapters_dir(sweep.out, variant))
    adaptive = cfg.mixture.coefficients == "entropy"  # an lr search (SEARCHED)
    adapted = {"lr": cfg.mixture.lr, "adaptation": adapt_on_validation(ctx, rows, cfg)} if adaptive else {}
    results, texts = score_weights(ctx, rows, None if adaptive else tuple(cfg.mixture.fixed))
    w_g, w_s = ctx.mixture.mean_weights() if adaptive else cfg.mixture.fixed
    metrics = {k: float(v) for k, v in results.overall.items() if isinstance(v, (int, float))}
    record = {"w_g": w_g, "w_s": w_s, **adapted, "validation": metrics, "prompts": rows.num_rows,
              "outputs": texts, "pid": os.getpid(), "context_loads": _LOADS}  # fmt: skip
    out = trial_dir(sweep.out, trial_id)
    write_json_atomic(out / "validation.json", record)
    lr = f"lr={cfg.mixture.lr} -> " if adaptive else ""
    print(f"[tune] trial {trial_id}: {lr}w_g={w_g:.4g} {sweep.metric}={metrics[sweep.metric]:.4f} "
          f"(process {record['pid']}, {_LOADS} load(s))", flush=True)
    tune.report({sweep.metric: metrics[sweep.metric], FINAL_KEY: True, "trial_dir": str(out), "w_g": w_g})
