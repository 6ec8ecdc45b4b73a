"""One Tune trial: a Ray Train V2 driver (ray 2.60's Tune-over-Train pattern).

The trial function resolves the job exactly as `recplat run JOB --profile P --variant V key=value
...` would (so the best trial's printed command reproduces it), points the run's output at
`<sweep out>/trials/<trial id>/`, and runs the recipe. Every TorchTrainer the recipe builds gets a
report callback (train.launch.run_callbacks) that forwards each *validation* report to Tune, so
ASHA sees every validation; at the end the trial reports once more with the best checkpoint's
validation objective and its test metrics, which the sweep's table reads.

A restarted trial (a retried error, or `recplat tune --resume` after the driver died) has the same
trial id, hence the same output folder and the same Ray Train run (`trials/<id>/checkpoints/...`):
Ray Train restores that run's checkpoint manager and the loop resumes from its latest checkpoint.
A restarted trial whose run had already finished (its summary.json, written last, is there: the
driver died after the run ended but before Tune saved the trial as done) is not run again: it
reports the run's validations and final result from that summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recplat.errors import RecplatError
from recplat.tune.space import TIME_ATTR, override_text, trial_overrides, trunk_key

TRIALS_DIR = "trials"  # <sweep out>/trials/<trial id>/: the trial's run directory (summary.json, test/)
TEST_PREFIX = "test/"  # the final result's test metrics: test/recall@1, ...
FINAL_KEY = "final"  # set on the trial's last result (after the test evaluation)
LAST_CHECKPOINT = "last_checkpoint"  # the final result's path of the run's latest checkpoint (a trunk's)
BRANCH_FROM = "recipe.train.branch_from"  # the override that starts a trial from its trunk's checkpoint


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the driver (shipped once with tune.with_parameters)."""

    job: str
    profile: str
    out: str  # the sweep folder, absolute: data/, trials/
    overrides: tuple[str, ...]  # the command line's, applied before each trial's own
    metric: str
    catalog: Any  # recplat.catalog.Catalog
    folder: str = TRIALS_DIR  # the trials' run directories: <out>/<folder>/<trial id> (trunks: tune/branch.py)
    # a branching search's second stage: trunk key (space.trunk_key) -> the trunk's last checkpoint
    branches: dict[str, str] | None = None
    branch_keys: tuple[str, ...] = ()


def validation_report_callback(metric: str):
    """Tune's TuneReportCallback, forwarding only the reports that carry `metric`.

    The loop reports train metrics every step and the validation metrics every `eval_every` steps;
    Tune refuses a result without the objective (its strict metric check), and ASHA only acts on
    results that carry it."""
    from ray.tune.integration.ray_train import TuneReportCallback

    class ValidationReportCallback(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metric in metrics[0]:
                super().after_report(run_context, metrics, checkpoint)

    return ValidationReportCallback()


def trial_dir(out: str | Path, trial_id: str, folder: str = TRIALS_DIR) -> Path:
    return Path(out) / folder / trial_id


def run_trial(config: dict[str, Any], sweep: SweepContext) -> None:
    """The Tune trainable: one catalog run with this trial's hyperparameters."""
    from ray import tune

    from recplat.run import execute_run, plan_job
    from recplat.runs import SUMMARY_FILE, RunSummary
    from recplat.train.launch import run_callbacks

    trial_id = tune.get_context().get_trial_id()
    variant, overrides = trial_overrides(config)
    if sweep.branches is not None:  # the trunk's checkpoint; not a parameter: the best command runs in one go
        overrides.append(override_text(BRANCH_FROM, sweep.branches[trunk_key(config, sweep.branch_keys)]))
    plan = plan_job(sweep.job, sweep.profile, variant, sweep.out, [*sweep.overrides, *overrides], sweep.catalog)
    run = plan.runs[0]
    cfg = run.config.model_copy(update={"out": str(trial_dir(sweep.out, trial_id, sweep.folder))})
    if not (run.data_dir / "manifest.json").is_file():
        raise RecplatError(f"trial {trial_id}: no prepared dataset in {run.data_dir} (the driver prepares it)")
    print(f"[tune] trial {trial_id}: {' '.join(([f'variant={variant}'] if variant else []) + overrides)}",
          flush=True)
    if (Path(cfg.out) / SUMMARY_FILE).is_file():
        print(f"[tune] trial {trial_id}: its run finished before the driver stopped; reporting {cfg.out}", flush=True)
        summary = RunSummary.read(cfg.out)
        train = summary.train or {}
        start = (train.get("branched_from") or {}).get("step", 0)  # a branch's history starts with its trunk's
        for record in train.get("history", []):  # the curve, as the loop reported it
            if sweep.metric in record and record["step"] > start:
                tune.report(record)
    else:
        with run_callbacks(validation_report_callback(sweep.metric)):
            summary = execute_run(plan.spec.recipe, cfg)
    tune.report(final_result(summary, sweep.metric, cfg.out))


def final_result(summary, metric: str, out: str) -> dict[str, Any]:
    """The trial's last result: the best checkpoint's validation objective and test metrics."""
    best = summary.best_validation or {}
    if metric not in best:
        raise RecplatError(f"the run reported no validation {metric!r} with its best checkpoint "
                           f"(it reported {sorted(best) or 'none'}); is the objective one of its validation metrics?")
    result: dict[str, Any] = {metric: best[metric], FINAL_KEY: True, "trial_dir": out,
                              "best_checkpoint": summary.best_checkpoint}
    if summary.train and TIME_ATTR in summary.train:
        result[TIME_ATTR] = summary.train[TIME_ATTR]
    if summary.train and summary.train.get(LAST_CHECKPOINT):
        result[LAST_CHECKPOINT] = summary.train[LAST_CHECKPOINT]
    for name, value in (summary.overall or {}).items():
        if isinstance(value, (int, float)):
            result[TEST_PREFIX + name] = value
    return result
