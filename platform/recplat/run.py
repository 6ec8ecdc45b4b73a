"""`recplat run NAME`: one catalog job end to end: prepare its data, run its recipe (every variant of
a sweep in turn, or one with --variant), write run.json.

    recplat run llmrec/table4_sasrec --profile smoke [--variant V] [--out DIR] [key=value ...]
    ray job submit ... -- recplat run llmrec/table4_bert --profile paper   # same, on a cluster

The run directory (default runs/<job>-<profile>[-<variant>], see ResolvedRun.run_name):

    data/              the prepared dataset, reused while its prepare config is unchanged
    <variant>/ | run/  the recipe's output: summary.json, test/{ranks.parquet, metrics.json}, checkpoints/
    <variant>/data/    the dataset of a variant whose data differ from the profile's
    run.json           job, profile, variants with their configs and summaries, the paper's numbers
    report/            `recplat report` (report/paper.py)

A job's `recipe:` section is the recipe's own `Config` (recipes/<recipe>.py) minus what this
module fills in: `data.dataset`, `out`, the resources (num_workers, use_gpu, cpus_per_worker,
strategy -> `train`), and the run directories of `init_from` / `eval.compare_with` jobs, which are
looked up next to this run (`<out>/../<their run name>`, the same profile).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from recplat.catalog import Catalog, JobSpec, ResolvedRun, set_dotted
from recplat.config import validate
from recplat.errors import ConfigError

RUN_FILE = "run.json"
RESOURCE_KEYS = ("num_workers", "use_gpu", "cpus_per_worker", "strategy")  # -> TrainConfig
FILLED_KEYS = ("data.dataset", "out", "arch", *(f"train.{k}" for k in RESOURCE_KEYS))
RUN_REFS = ("init_from", "eval.compare_with", "xcross.experts")  # {job, variant} (or a list) -> run_dir


def default_out(spec: JobSpec, profile: str, variant: str | None) -> Path:
    return Path("runs") / ResolvedRun(spec.name, profile, variant, None, {}, None).run_name


def run_subdir(variant: str | None) -> str:
    return variant or "run"


def recipe_config(spec: JobSpec, run: ResolvedRun, dataset: str | Path, out: str | Path, runs_root: str | Path,
                  catalog: Catalog | None = None):  # fmt: skip
    """The recipe's typed Config for one resolved run; errors name the job file and the key."""
    from recplat.recipes import recipe_module

    where = f"{spec.path} (profile {run.profile}" + (f", variant {run.variant}" if run.variant else "") + ")"
    module = recipe_module(spec.recipe)
    recipe = run.recipe
    for key in FILLED_KEYS:
        if _get(recipe, key) is not None:
            raise ConfigError(f"{where}: recipe.{key}: set by `recplat run`, not in the job file"
                              + (" (use resources)" if key.startswith("train.") else ""))
    fills: dict[str, Any] = {"data.dataset": str(Path(dataset).absolute()), "out": str(Path(out).absolute())}
    if spec.recipe in ("sasrec", "gru4rec"):
        fills["arch"] = spec.recipe
    if "train" in module.Config.model_fields:
        res = run.resources
        if res.use_gpu and res.gpus_per_worker != 1:
            raise ConfigError(f"{where}: resources.gpus_per_worker: each Ray Train worker uses one GPU, got "
                              f"{res.gpus_per_worker}")
        fills.update({f"train.{k}": getattr(res, k) for k in RESOURCE_KEYS})
    for key, ref in _run_refs(recipe):
        if ref.get("job") and not ref.get("run_dir"):
            fills[f"{key}.run_dir"] = str(find_run(ref["job"], ref.get("variant"), run.profile, runs_root,
                                                   catalog or Catalog(), f"{where}: recipe.{key}"))
    return validate(module.Config, set_dotted(recipe, fills), source=f"{where}: recipe")


def _run_refs(recipe: dict) -> list[tuple[str, dict]]:
    """(dotted key, reference) for every run reference of a recipe config; a list under a
    RUN_REFS key gives one per element (`xcross.experts.0`, ...)."""
    refs = []
    for key in RUN_REFS:
        value = _get(recipe, key)
        if isinstance(value, dict):
            refs.append((key, value))
        elif isinstance(value, list):
            refs += [(f"{key}.{i}", v) for i, v in enumerate(value) if isinstance(v, dict)]
    return refs


def validate_job(spec: JobSpec, profile: str, variant: str | None = None, overrides: list[str] = (),
                 catalog: Catalog | None = None) -> list:  # fmt: skip
    """Every run's recipe Config (one per variant), built with placeholder paths: what `recplat
    submit` and the catalog test check before anything runs."""
    names = [variant] if variant is not None else [v.name for v in spec.profile(profile).variants()] or [None]
    out = default_out(spec, profile, variant)
    return [recipe_config(spec, spec.resolve(profile, v, list(overrides)), out / "data", out / run_subdir(v),
                          out.parent, catalog) for v in names]  # fmt: skip


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


def check_inputs(cfg, where: str, profile: str) -> None:
    """The runs a config reads (init_from, eval.compare_with, xcross.experts) must have finished,
    before anything starts. One error names every missing run and the commands that make them."""
    missing, commands = [], []
    for key, ref in _run_refs(cfg.model_dump()):
        if ref.get("run_dir") and not (Path(ref["run_dir"]) / "summary.json").is_file():
            missing.append(f"recipe.{key}: no finished run of {ref['job'] or 'it'} in {ref['run_dir']}")
            if ref.get("job"):
                commands.append(f"recplat run {ref['job']} --profile {profile}")
    if missing:
        raise ConfigError(f"{where}: " + "; ".join(missing)
                          + (f"; run {', '.join(f'`{c}`' for c in dict.fromkeys(commands))} first (same --out folder)"
                             if commands else ""))


def prepare_data(cfg, directory: Path) -> Path:
    """The prepared dataset in `directory`, reused when its manifest's config equals `cfg`."""
    from recplat.data.pipeline import prepare

    manifest = directory / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text())["config"] == cfg.model_dump(mode="json"):
        print(f"[run] reusing the prepared dataset in {directory}", flush=True)
        return directory
    prepare(cfg, directory, overwrite=True, show_progress=True)
    return directory


def run_job(name: str, profile: str = "paper", variant: str | None = None, out: str | Path | None = None,
            overrides: list[str] = (), address: str | None = None, catalog: Catalog | None = None) -> dict:  # fmt: skip
    """Run a catalog job (every variant of its sweep unless `variant`) and return run.json's content."""
    from recplat.recipes import recipe_module
    from recplat.runtime import init_ray
    from recplat.storage import write_json_atomic

    catalog = catalog or Catalog()
    spec = catalog.get(name)
    spec.require_ready()
    prof = spec.profile(profile)
    names = [variant] if variant is not None else [v.name for v in prof.variants()] or [None]
    out = Path(out) if out is not None else default_out(spec, profile, variant)
    base_data = spec.resolve(profile, overrides=list(overrides)).data
    # everything is validated (and the runs it reads found) before anything starts
    planned = []
    for v in names:
        run = spec.resolve(profile, v, list(overrides))
        data_dir = out / "data" if run.data == base_data else out / run_subdir(v) / "data"
        cfg = recipe_config(spec, run, data_dir, out / run_subdir(v), out.parent, catalog)
        where = f"{spec.path} (profile {profile}" + (f", variant {v}" if v else "") + ")"
        check_inputs(cfg, where, profile)
        planned.append((v, run, data_dir, cfg))

    init_ray(address, quiet=False)
    record = {
        "job": spec.name, "file": spec.path, "paper": spec.paper, "ref": spec.ref, "row": spec.row,
        "recipe": spec.recipe, "profile": profile, "overrides": list(overrides),
        "variants": [v for v in names if v is not None], "complete": False, "runs": {},
        "paper_numbers": [n.model_dump() for n in spec.paper_numbers], "claims": list(spec.claims),
    }  # fmt: skip
    started = time.time()
    for i, (v, run, data_dir, cfg) in enumerate(planned, 1):
        label = f"{spec.name} ({profile}" + (f", variant {v}, {i}/{len(planned)}" if v else "") + ")"
        print(f"[run] {label}: preparing the data in {data_dir}", flush=True)
        prepare_data(run.data, data_dir)
        print(f"[run] {label}: running the {spec.recipe} recipe into {cfg.out}", flush=True)
        summary = recipe_module(spec.recipe).run(cfg)
        record["runs"][run_subdir(v)] = {"variant": v, "dir": run_subdir(v), "dataset": str(data_dir),
                                         "config": cfg.model_dump(mode="json"), "summary": summary}
        record["seconds"] = round(time.time() - started, 1)
        record["complete"] = i == len(planned)
        write_json_atomic(out / RUN_FILE, record)  # after every variant: a partial sweep shows
    print(f"[run] done: {out / RUN_FILE} (`recplat report {spec.name} --profile {profile} --out {out}`)", flush=True)
    return record


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def main(args) -> int:
    run_job(args.name, args.profile, args.variant, args.out, args.overrides, address=args.address)
    return 0
