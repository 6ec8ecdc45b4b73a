"""`recplat run NAME`: one catalog job end to end, in four steps each callable alone:

    plan = plan_job(name, profile, variant, out, overrides)   # every run's typed Config, inputs checked
    prepare_run(plan.runs[i])                                  # its dataset, reused while unchanged
    summary = execute_run(plan.spec.recipe, plan.runs[i].config)   # one recipe run -> RunSummary
    record_run(plan, record, plan.runs[i], summary)            # run.json after every run

    recplat run llmrec/table4_sasrec --profile smoke [--variant V] [--out DIR] [key=value ...]
    ray job submit ... -- recplat run llmrec/table4_bert --profile paper   # same, on a cluster

The run folder's layout is recplat/runs.py's. A job's `recipe:` section is the recipe's own `Config`
(recipes/<recipe>.py) minus what this module fills in: `data.dataset`, `out`, the keys the recipe's
name fixes (recipes.RECIPES), the resources (Resources.train_settings -> the TrainConfig field), and
the `run_dir` of every RunRef field naming a `job` (looked up next to this run: `<out>/../<its run
name>`, the same profile).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from recplat.catalog import Catalog, JobSpec, ResolvedRun
from recplat.config import get_dotted, set_dotted, validate
from recplat.errors import ConfigError
from recplat.runs import RUN_FILE, RunSummary, prepared_dataset, run_refs, run_subdir
from recplat.runs import default_out as _default_out

__all__ = ["RUN_FILE", "run_subdir", "default_out", "plan_job", "prepare_run", "execute_run", "record_run",
           "run_job", "recipe_config", "validate_job"]  # fmt: skip


def default_out(spec: JobSpec, profile: str, variant: str | None) -> Path:
    return _default_out(spec.name, profile, variant)


def _where(spec: JobSpec, profile: str, variant: str | None) -> str:
    return f"{spec.path} (profile {profile}" + (f", variant {variant}" if variant else "") + ")"


def _train_field(config_type: type[BaseModel]) -> str | None:
    """The Config field holding the recipe's TrainConfig (None for a recipe that does not train)."""
    from recplat.train.config import TrainConfig

    return next((name for name, f in config_type.model_fields.items() if f.annotation is TrainConfig), None)


def recipe_config(spec: JobSpec, run: ResolvedRun, dataset: str | Path, out: str | Path, runs_root: str | Path,
                  catalog: Catalog | None = None):  # fmt: skip
    """The recipe's typed Config for one resolved run; errors name the job file and the key."""
    from recplat.catalog import TRAIN_KEYS
    from recplat.recipes import recipe, recipe_module

    where = _where(spec, run.profile, run.variant)
    entry = recipe(spec.recipe)
    config_type = recipe_module(spec.recipe).Config
    train = _train_field(config_type)
    fills = {"data.dataset": str(Path(dataset).absolute()), "out": str(Path(out).absolute()), **entry.fixed}
    if train is not None:
        try:
            fills.update({f"{train}.{k}": v for k, v in run.resources.train_settings().items()})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    for key in [*fills, *(f"{train}.{k}" for k in TRAIN_KEYS if train)]:
        if get_dotted(run.recipe, key) is not None:
            raise ConfigError(f"{where}: recipe.{key}: set by `recplat run`, not in the job file"
                              + (" (use resources)" if train and key.startswith(f"{train}.") else ""))
    cfg = validate(config_type, set_dotted(run.recipe, fills), source=f"{where}: recipe")
    for key, ref in run_refs(cfg):
        if ref.job and not ref.run_dir:
            ref.run_dir = str(find_run(ref.job, ref.variant, run.profile, runs_root, catalog or Catalog(),
                                       f"{where}: recipe.{key}"))
    return cfg


def find_run(job: str, variant: str | None, profile: str, runs_root: str | Path, catalog: Catalog,
             where: str) -> Path:  # fmt: skip
    """Where a finished run of `job` lives next to this one: its own run directory, or, for a sweep
    variant, the directory of the whole sweep. The first candidate when none is there yet."""
    spec = catalog.get(job)
    try:
        spec.resolve(profile, variant)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    root = Path(runs_root)
    candidates = [root / default_out(spec, profile, variant).name / run_subdir(variant)]
    if variant is not None:
        candidates.append(root / default_out(spec, profile, None).name / run_subdir(variant))
    for path in candidates:
        if (path / "summary.json").is_file():
            return path.absolute()
    return candidates[0].absolute()


def check_inputs(cfg: BaseModel, where: str, profile: str) -> None:
    """The runs a config reads (its RunRef fields) must have finished, before anything starts. One
    error names every missing run and the commands that make them."""
    missing, commands = [], []
    for key, ref in run_refs(cfg):
        if ref.run_dir and not ref.finished:
            missing.append(f"recipe.{key}: no finished run of {ref.job or 'it'} in {ref.run_dir}")
            if ref.job:
                commands.append(f"recplat run {ref.job} --profile {profile}")
    if missing:
        raise ConfigError(f"{where}: " + "; ".join(missing)
                          + (f"; run {', '.join(f'`{c}`' for c in dict.fromkeys(commands))} first (same --out folder)"
                             if commands else ""))


# --- the four steps ------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run of a job: its resolved settings, the dataset folder and the recipe's Config."""

    variant: str | None
    resolved: ResolvedRun
    data_dir: Path
    config: BaseModel  # the recipe's Config, run references filled in

    @property
    def subdir(self) -> str:
        return run_subdir(self.variant)


@dataclass(frozen=True)
class JobPlan:
    spec: JobSpec
    profile: str
    out: Path
    overrides: tuple[str, ...]
    runs: list[PlannedRun]


def plan_job(name: str, profile: str = "paper", variant: str | None = None, out: str | Path | None = None,
             overrides: list[str] = (), catalog: Catalog | None = None, check: bool = True) -> JobPlan:  # fmt: skip
    """Every run of a job (each variant of its sweep, or `variant`), validated; with `check`, the
    runs they read must have finished. Nothing is written."""
    catalog = catalog or Catalog()
    spec = catalog.get(name)
    spec.require_ready()
    names = [variant] if variant is not None else [v.name for v in spec.profile(profile).variants()] or [None]
    out = Path(out).expanduser() if out is not None else default_out(spec, profile, variant)  # ~: the head's home
    base_data = spec.resolve(profile, overrides=list(overrides)).data
    runs = []
    for v in names:
        resolved = spec.resolve(profile, v, list(overrides))
        data_dir = out / "data" if resolved.data == base_data else out / run_subdir(v) / "data"
        cfg = recipe_config(spec, resolved, data_dir, out / run_subdir(v), out.parent, catalog)
        if check:
            check_inputs(cfg, _where(spec, profile, v), profile)
        runs.append(PlannedRun(v, resolved, data_dir, cfg))
    return JobPlan(spec, profile, out, tuple(overrides), runs)


def validate_job(spec: JobSpec, profile: str, variant: str | None = None, overrides: list[str] = (),
                 catalog: Catalog | None = None) -> list:  # fmt: skip
    """Every run's recipe Config (one per variant), with the default paths: what `recplat submit`
    and the catalog test check before anything runs."""
    return [r.config for r in plan_job(spec.name, profile, variant, None, overrides, catalog, check=False).runs]


def prepare_run(run: PlannedRun) -> Path:
    """The run's prepared dataset (reused while its prepare config is unchanged)."""
    return prepared_dataset(run.resolved.data, run.data_dir)


def execute_run(recipe: str, config: BaseModel) -> RunSummary:
    """One recipe run from its typed Config (its dataset prepared, a Ray runtime up): what a Tune
    trial calls with a config whose hyperparameters it has set."""
    from recplat.recipes import recipe_module

    return RunSummary.coerce(recipe_module(recipe).run(config))


def new_record(plan: JobPlan) -> dict:
    """run.json's content before any run finished."""
    spec = plan.spec
    return {
        "job": spec.name, "file": spec.path, "paper": spec.paper, "ref": spec.ref, "row": spec.row,
        "recipe": spec.recipe, "profile": plan.profile, "overrides": list(plan.overrides),
        "variants": [r.variant for r in plan.runs if r.variant is not None], "complete": False, "runs": {},
        "paper_numbers": [n.model_dump() for n in spec.paper_numbers], "claims": list(spec.claims),
    }  # fmt: skip


def record_run(plan: JobPlan, record: dict, run: PlannedRun, summary: RunSummary, seconds: float) -> None:
    """Add one finished run to `record` and write run.json (after every run: a partial sweep shows)."""
    from recplat.storage import write_json_atomic

    record["runs"][run.subdir] = {"variant": run.variant, "dir": run.subdir, "dataset": str(run.data_dir),
                                  "config": run.config.model_dump(mode="json"), "summary": summary.to_json()}
    record["seconds"] = round(seconds, 1)
    record["complete"] = len(record["runs"]) == len(plan.runs)
    write_json_atomic(plan.out / RUN_FILE, record)


def run_job(name: str, profile: str = "paper", variant: str | None = None, out: str | Path | None = None,
            overrides: list[str] = (), address: str | None = None, catalog: Catalog | None = None,
            mlflow: bool = False) -> dict:  # fmt: skip
    """Run a catalog job (every variant of its sweep unless `variant`) and return run.json's content;
    `mlflow`: log each finished run to MLflow (recplat/tracking.py)."""
    from recplat.runtime import init_ray

    plan = plan_job(name, profile, variant, out, overrides, catalog)  # everything checked before Ray starts
    if mlflow:
        from recplat.tracking import require_mlflow

        require_mlflow()
    from recplat.preflight import check_run

    check_run(plan.out, [r.data_dir for r in plan.runs], [r.config.model_dump() for r in plan.runs],
              where=f"{plan.spec.path} (profile {profile}): recipe")
    init_ray(address, quiet=False)
    record = new_record(plan)
    started = time.time()
    for i, run in enumerate(plan.runs, 1):
        label = f"{plan.spec.name} ({profile}" + (f", variant {run.variant}, {i}/{len(plan.runs)}" if run.variant else "") + ")"
        print(f"[run] {label}: preparing the data in {run.data_dir}", flush=True)
        prepare_run(run)
        print(f"[run] {label}: running the {plan.spec.recipe} recipe into {run.config.out}", flush=True)
        summary = execute_run(plan.spec.recipe, run.config)
        record_run(plan, record, run, summary, time.time() - started)
        if mlflow:
            from recplat.tracking import log_run, tracking_uri

            uri, experiment = tracking_uri(plan.out), f"{plan.spec.name} ({profile})"
            try:
                run_id = log_run(uri, experiment, run.subdir, run.config.model_dump(mode="json"), summary.to_json())
                print(f"[run] {label}: logged to MLflow {uri}, experiment {experiment!r}, run {run_id}", flush=True)
            except Exception as exc:  # noqa: BLE001 (the run is in run.json: an unreachable tracking server must not stop the job)
                reason = (str(exc).strip().splitlines() or [""])[0]
                print(f"[run] {label}: MLflow logging to {uri} failed ({type(exc).__name__}: {reason}); the run is in "
                      f"{plan.out / RUN_FILE}", file=sys.stderr, flush=True)
    print(f"[run] done: {plan.out / RUN_FILE} (`recplat report {plan.spec.name} --profile {profile} --out {plan.out}`)",
          flush=True)
    return record


def main(args) -> int:
    run_job(args.name, args.profile, args.variant, args.out, args.overrides, address=args.address, mlflow=args.mlflow)
    return 0
