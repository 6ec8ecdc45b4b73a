"""The `recplat` command line.

    recplat prepare --config jobs/data/spiao.yaml [--out DIR] [key=value ...]
    recplat run llmrec/table4_sasrec --profile smoke [--variant V] [--out DIR] [key=value ...]
    recplat report llmrec/table4_sasrec --profile smoke [--out DIR]
    recplat data download amazon2018 --domains Office_Products Prime_Pantry --to data/raw
"""

from __future__ import annotations

import argparse
import sys

from recplat.errors import RecplatError
from recplat.recipes import RECIPES  # plain data: cheap to import


LOCAL_PROFILE = "smoke"
PROFILE_HELP = (
    "smoke (default: bundled or synthetic data, an offline model, CPU workers; runs here in minutes) or "
    "paper (the paper's data, models and GPUs: needs the raw data, so pass it explicitly, usually on a "
    "cluster via `recplat submit`)"
)
MLFLOW_HELP = "log to MLflow (MLFLOW_TRACKING_URI if set, else a file store in <out>/mlruns; pip install 'recplat[mlflow]'):"


def _add_prepare(sub) -> None:
    from recplat.config import DEFAULT_PRESET, preset_names

    p = sub.add_parser(
        "prepare",
        help="turn raw multi-domain dumps into a prepared dataset directory (Ray tasks)",
        description="Run the preprocessing pipeline (titles, dedupe, k-core, sequences, splits, "
        "candidates, render, stats) as one Ray task per user bucket and write one dataset directory "
        "atomically. A small input (files of at most 32 MiB holding at most 100,000 interactions) runs "
        "in this process without starting Ray, which would take longer than the work; --address, "
        "RAY_ADDRESS or --num-cpus always use Ray.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--config", "-c",
        help="a prepare YAML; the keys it leaves out take the defaults listed (with their meaning) in "
        "platform/recplat/data/defaults/prepare.yaml; relative paths in it are relative to the file's folder",
    )
    src.add_argument(
        "--preset",
        help="a packaged config: " + ", ".join(preset_names()) + f" (default: {DEFAULT_PRESET}, MovieLens-100K "
        "from the installed recbole package, offline); its relative paths are relative to the working directory",
    )
    p.add_argument("--out", "-o", required=True, help="the dataset directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    p.add_argument("--strict", action="store_true", help="the first malformed input line is an error")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray, or none for a "
                   "small input)")
    p.add_argument("--num-cpus", type=int, help="logical CPUs for a local Ray (starts one whatever the input size)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. kcore.user=3")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args) -> int:
    from recplat.config import DEFAULT_PRESET, load_config, preset_file
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare
    from recplat.runtime import init_ray

    overrides = list(args.overrides) + (["strict=true"] if args.strict else [])
    path = args.config or preset_file(args.preset or DEFAULT_PRESET)
    # a config file's relative paths are relative to its folder; a preset's to the working directory
    cfg = load_config(PrepareConfig, path, overrides, relative_to_file=args.config is not None)
    from recplat.preflight import check_output_dir

    check_output_dir(args.out, overwrite=args.overwrite)  # before Ray starts: one line, exit 2
    if args.address or args.num_cpus:  # Ray was asked for here
        init_ray(args.address, num_cpus=args.num_cpus)
    # else prepare() joins RAY_ADDRESS, or starts a local Ray only if the input is large enough to repay it
    prepare(cfg, args.out, overwrite=args.overwrite, show_progress=True)
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="raw data: download the official dumps")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser(
        "download",
        help="download official dumps (resumable, size/checksum verified)",
        description="Download a source's official files for the given domains into a directory. "
        "Interrupted downloads resume; sizes and published checksums are verified.",
    )
    from recplat.data.download import SOURCES  # plain data, standard library only: cheap to import

    d.add_argument("source", choices=list(SOURCES))
    d.add_argument(
        "--domains", nargs="+", default=[],
        help="the publisher's names: Amazon categories (Prime_Pantry ...) or MovieLens variants (ml-1m ...)",
    )
    d.add_argument("--to", required=True, dest="dest", help="target directory")
    d.add_argument(
        "--base-url", help="a mirror (or test server) replacing the publisher's host; the path layout is kept"
    )
    d.add_argument(
        "--ratings", choices=["csv", "reviews"], help="amazon2018: ratings CSV (default) or 5-core reviews"
    )
    d.set_defaults(func=_run_download)


def _run_download(args) -> int:
    from recplat.data.download import download

    try:
        paths = download(args.source, args.domains, args.dest, base_url=args.base_url, ratings=args.ratings)
    except KeyboardInterrupt:
        # unlike `prepare`, a download keeps its partial file on purpose
        print("recplat: interrupted; partial downloads are kept as *.part: re-run to resume", file=sys.stderr)
        return 130
    for path in paths:
        print(path)
    return 0


def _add_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="the job catalog: one entry per paper table/figure (jobs/<paper>/*.yaml)")
    jobs_sub = p.add_subparsers(dest="jobs_command", required=True)
    ls = jobs_sub.add_parser(
        "list", help="a table of jobs: name, paper, table/figure, status, runs",
        description="One line per catalog job: NAME, PAPER, TABLE/FIGURE (the table or figure it "
        "reproduces, and its row), STATUS (ready, or planned: not yet passed a smoke run) and RUNS (how "
        "many runs its paper profile makes: the variants of its sweep, 1 without one).",
    )
    ls.add_argument("--paper", help="only this paper: llmrec, xcross, molorec, cprec")
    ls.add_argument("--status", choices=["ready", "planned"], help="only ready or only planned jobs")
    ls.set_defaults(func=_run_jobs_list)
    show = jobs_sub.add_parser("show", help="a job's header comment (its commands) and its resolved spec")
    show.add_argument("name", help="e.g. llmrec/table4_bert")
    show.add_argument("--profile", help="only this profile, with its data resolved (default: all)")
    show.set_defaults(func=_run_jobs_show)


def _run_jobs_list(args) -> int:
    from recplat.catalog import Catalog

    specs = Catalog().list(paper=args.paper, status=args.status)
    rows = [("NAME", "PAPER", "TABLE/FIGURE", "STATUS", "RUNS")]
    for s in specs:
        runs = len(s.profiles["paper"].variants()) or 1
        rows.append((s.name, s.paper, s.ref + (f" ({s.row})" if s.row else ""), s.status, str(runs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    ready = sum(s.ready for s in specs)
    print(f"\n{len(specs)} jobs, {ready} ready, {len(specs) - ready} planned (not yet passed a smoke run)")
    return 0


def _run_jobs_show(args) -> int:
    from recplat.catalog import Catalog
    from recplat.config import dump_yaml

    spec = Catalog().get(args.name)
    if args.profile:
        spec.profile(args.profile)  # a clear error for an unknown profile
    data = spec.model_dump(mode="json")
    for name, profile in spec.profiles.items():
        if args.profile and name != args.profile:
            del data["profiles"][name]
            continue
        data["profiles"][name]["data"] = spec.resolve(name).data.model_dump(mode="json")
        data["profiles"][name]["variants"] = [v.name for v in profile.variants()]
        data["profiles"][name].pop("grid", None)
    print("\n".join(f"# {line}".rstrip() for line in spec.header.splitlines()))
    print(f"# file: {spec.path}  (data below: the resolved prepare config of each profile)")
    print(dump_yaml(data), end="")
    return 0


def _add_submit(sub) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a catalog job to a Ray cluster (JobSubmissionClient); entrypoint `recplat run`",
        description="Upload this checkout (without .git, .venv, data, checkpoints, outputs) and run "
        "`recplat run NAME --profile P` as a Ray job. Prints the job id; --wait streams its logs and "
        "exits with its status. Token-auth clusters need RAY_AUTH_MODE=token and the cluster's token.",
    )
    p.add_argument("name", help="a catalog job, e.g. llmrec/table4_bert (`recplat jobs list`)")
    p.add_argument("--address", help="the job server, e.g. http://127.0.0.1:8265 (default: RAY_ADDRESS)")
    p.add_argument("--profile", default="paper",
                   help="paper (default here: a cluster is where the paper's settings run) or smoke")
    p.add_argument("--variant", help="one variant of the profile's sweep (default: all of them)")
    p.add_argument("--wait", action="store_true", help="stream the logs and exit with the job's status")
    p.add_argument("--timeout", type=float, help="with --wait: give up waiting after this many seconds")
    p.add_argument("--pip", action="store_true", help="install pyproject's pinned requirements in the job's env")
    p.add_argument("--dry-run", action="store_true", help="print the entrypoint and runtime_env, submit nothing")
    p.add_argument("--mlflow", action="store_true", help=MLFLOW_HELP + " the job's `recplat run --mlflow` (set "
                   "MLFLOW_TRACKING_URI in the job's env_vars for a tracking server)")
    p.add_argument("--storage-root", default="~/recplat-runs",
                   help="folder on the head node for the run's data, checkpoints and run.json (default: ~/recplat-runs)")
    p.add_argument("--allow-plain-http", action="store_true",
                   help="send the auth token over http:// to a non-loopback host (trusted networks only)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="run overrides, e.g. recipe.train.lr=1e-4")
    p.set_defaults(func=_run_submit)


def _run_submit(args) -> int:
    import os

    from recplat.catalog import Catalog
    from recplat.config import dump_yaml
    from recplat.submit import build_runtime_env, follow_job, job_failure_message, new_submission_id
    from recplat.submit import normalise_address, submit_entrypoint

    spec = Catalog().get(args.name)
    spec.require_ready()
    spec.resolve(args.profile, args.variant, args.overrides)  # bad overrides fail here, not on the cluster
    from recplat.run import validate_job

    validate_job(spec, args.profile, args.variant, args.overrides)  # and a bad recipe section
    from recplat.submit import PLAIN_HTTP_OPT_IN, describe_upload, job_entrypoint

    entrypoint, run_dir = job_entrypoint(spec.name, args.profile, args.variant, list(args.overrides), args.storage_root,
                                         mlflow=args.mlflow)
    runtime_env = build_runtime_env(pip=args.pip)
    print(f"recplat: {describe_upload(runtime_env)}", file=sys.stderr)
    if args.dry_run:
        print(f"entrypoint: {entrypoint}")
        print(dump_yaml({"runtime_env": runtime_env}), end="")
        return 0
    if args.allow_plain_http:
        os.environ[PLAIN_HTTP_OPT_IN] = "1"
    address = normalise_address(args.address)
    label = spec.name.replace("/", "-") + f"-{args.profile}" + (f"-{args.variant}" if args.variant else "")
    job_id = submit_entrypoint(
        entrypoint, address, runtime_env=runtime_env, submission_id=new_submission_id(label),
        metadata={"recplat_job": spec.name, "profile": args.profile, "variant": args.variant or ""},
    )  # fmt: skip
    print(job_id)
    print(f"  results: {run_dir} on the head node (fetch: ray rsync-down cluster/aws.yaml {run_dir}/ runs/)",
          file=sys.stderr)
    if not args.wait:
        print(f"  logs:   ray job logs {job_id} --address {address} --follow", file=sys.stderr)
        print(f"  status: ray job status {job_id} --address {address}", file=sys.stderr)
        return 0
    try:
        status = follow_job(address, job_id, timeout=args.timeout)
    except KeyboardInterrupt:
        print(f"recplat: stopped following; job {job_id} keeps running (ray job stop {job_id} --address "
              f"{address})", file=sys.stderr)
        return 130
    if status != "SUCCEEDED":
        print(f"recplat: {job_failure_message(address, job_id, status)}", file=sys.stderr)
        return 1
    print(f"recplat: job {job_id} succeeded", file=sys.stderr)
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train and evaluate one recipe from a config file (Ray Train)",
        description="Run one recipe (setup -> Ray Train -> best checkpoint -> test metrics) from a YAML "
        "with the recipe's keys (see recplat/recipes/<recipe>.py `Config`), plus key=value overrides.",
    )
    p.add_argument("recipe", choices=list(RECIPES), help="the recipe: " + ", ".join(RECIPES))
    p.add_argument("--config", "-c", help="the recipe's YAML config")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.max_steps=100 lora.rank=32")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from recplat.config import load_config
    from recplat.recipes import recipe, recipe_module
    from recplat.runtime import init_ray

    module = recipe_module(args.recipe)
    # the keys the recipe's name fixes (sasrec: arch=sasrec) win over the file and the overrides
    fixed = [f"{key}={value}" for key, value in recipe(args.recipe).fixed.items()]
    cfg = load_config(module.Config, args.config, list(args.overrides) + fixed)
    from recplat.preflight import check_models

    check_models(cfg.model_dump(), where=f"{args.config or args.recipe}: recipe")  # before Ray starts
    init_ray(args.address, quiet=False)
    module.run(cfg)
    return 0


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a catalog job: prepare its data, run its recipe (every sweep variant), write run.json",
        description="Run one catalog job in this process, on a local Ray or the cluster at RAY_ADDRESS "
        "(so `ray job submit -- recplat run NAME` works): prepare the profile's data into <out>/data "
        "(reused while unchanged), run the recipe into <out>/<variant or run>, write <out>/run.json.",
    )
    p.add_argument("name", help="a catalog job, e.g. llmrec/table4_bert (`recplat jobs list`)")
    p.add_argument("--profile", default=LOCAL_PROFILE, help=PROFILE_HELP)
    p.add_argument("--variant", help="one variant of the profile's sweep (default: all of them, in turn)")
    p.add_argument("--out", help="the run directory (default: runs/<job>-<profile>[-<variant>])")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--mlflow", action="store_true", help=MLFLOW_HELP + " each finished run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. recipe.train.max_steps=5 data.kcore.user=3")
    p.set_defaults(func=lambda args: __import__("recplat.run", fromlist=["main"]).main(args))


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="run a profile's search as concurrent, resumable Ray Tune trials (docs/tuning.md)",
        description="Run a catalog profile's `tune:` search (or its grid/sweep: --search grid) as a Ray Tune "
        "experiment: the data prepared once here, each trial a Ray Train run of the recipe, FIFO or ASHA, as "
        "many at once as the resources and max_concurrent_trials allow. Writes <out>/sweep.json and "
        "<out>/report/ (one row per trial, the best trial's `recplat run` line, plots).",
    )
    p.add_argument("name", help="a catalog job with a tune: section or a sweep, e.g. llmrec/fig7_lora_rank")
    p.add_argument("--profile", default=LOCAL_PROFILE, help=f"smoke or paper (default: {LOCAL_PROFILE})")
    p.add_argument("--search", help="the profile's search to run (default: its only one; `grid`: its sweep/grid)")
    p.add_argument("--out", help="the sweep folder (default: runs/<job>-<profile>-tune-<search>)")
    p.add_argument("--storage", help="keep Tune's experiment at this URI (s3://..., gs://...) instead of <out>/tune")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out (finished trials are kept)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--mlflow", action="store_true", help=MLFLOW_HELP + " each trial, at every result")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every trial, e.g. resources.num_workers=1")
    p.set_defaults(func=lambda args: __import__("recplat.tune.experiment", fromlist=["main"]).main(args))


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="our numbers beside the paper's for a finished `recplat run` (Markdown table + PNG plots)",
        description="Read <out>/run.json and the runs' test metrics; write <out>/report/ (README.md with "
        "ours, the paper's and the difference; bars for tables, curves for sweeps) and print the table.",
    )
    p.add_argument("name", help="a catalog job, e.g. llmrec/table4_bert")
    p.add_argument("--profile", default=LOCAL_PROFILE, help=f"the profile given to `recplat run` (default: {LOCAL_PROFILE})")
    p.add_argument("--variant", help="the variant given to `recplat run` (locates its default --out)")
    p.add_argument("--out", help="the run directory (default: runs/<job>-<profile>[-<variant>])")
    p.set_defaults(func=_run_report)


def _run_report(args) -> int:
    from pathlib import Path

    from recplat.catalog import Catalog
    from recplat.report.paper import write_report
    from recplat.runs import default_out

    spec = Catalog().get(args.name)
    spec.profile(args.profile)  # a clear error for an unknown profile
    out = Path(args.out) if args.out else default_out(spec.name, args.profile, args.variant)
    from recplat.tune.results import is_sweep, show_sweep

    if is_sweep(out):  # a `recplat tune` folder: its table, best command and plots
        return show_sweep(out)
    folder, table = write_report(out)
    print(table)
    print(f"\nreport: {folder}/README.md")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the embedded default: prepare MovieLens-100K, train LLM-Rec (LoRA) and SASRec, compare",
        description="Offline, on local Ray: prepare MovieLens-100K from the installed recbole package (or "
        "the synthetic multi-domain corpus), train LLM-Rec with LoRA on the offline MiniLM encoder and "
        "SASRec on 2 Ray Train workers, evaluate both on the same stored candidates, write a report.",
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--synthetic", action="store_true", help="use the seeded synthetic multi-domain corpus")
    from recplat.demo import DEFAULT_STEPS

    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"LLM-Rec optimizer steps (default {DEFAULT_STEPS}; SASRec: 4x)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers per model (default 2)")
    p.add_argument("--fresh", action="store_true", help="re-prepare the dataset even if it exists")
    p.set_defaults(func=lambda args: __import__("recplat.demo", fromlist=["main"]).main(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recplat",
        description="recplat: reproduce and sweep LLM-based multi-domain recommenders on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_data(sub)
    _add_jobs(sub)
    _add_submit(sub)
    _add_train(sub)
    _add_demo(sub)
    _add_run(sub)
    _add_tune(sub)
    _add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also follow the options: `recplat run NAME --profile smoke a.b=1`
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return args.func(args)
    except RecplatError as exc:
        print(f"recplat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recplat: interrupted; nothing partial was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
