"""Benchmark: `recplat prepare` vs a single-process columnar implementation of the same stages
(benchmarks/columnar_prepare.py: polars + numpy, the yardstick; needs `pip install polars`).

Synthetic Amazon-2018-format corpora (5 domains, ratings CSV + meta JSON) of the requested sizes
are written once under --workdir; each pipeline then runs in its own process while a sampler adds
up the proportional memory (PSS) of that process and all its children (Ray's raylet, GCS and workers
included) every 0.5 s. After both ran, their outputs are compared (items, sequences, examples with
candidates must be equal). Results are printed with the ratio recplat / yardstick and the load
average, and with --write put into docs/benchmarks.md between the markers of the "prep_throughput"
section. `--with-pandas` also runs the slow pandas reference of the tests (tests/data/reference.py).

recplat runs as a user runs it: `recplat prepare --config CFG --out OUT` in a fresh process
("cli": the command chooses itself whether to start Ray, docs/data-plane.md "Execution": a 10k
input runs without Ray, 1M and 10M start a local Ray). `--only ray` instead calls `prepare()`
on a Ray started first with --num-cpus and --object-store-gib, whatever the size.

    python benchmarks/prep_throughput.py --sizes 10000 1000000 10000000 --write
    python benchmarks/prep_throughput.py --sizes 200000 --only cli   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ["Books", "Movies", "Music", "Games", "Toys"]
MEAN_INTERACTIONS = 20


def corpus_config(n_interactions: int) -> dict:
    users = max(1, n_interactions // MEAN_INTERACTIONS)
    return {
        "kind": "synthetic",
        "domains": DOMAINS,
        "users": users,
        "items_per_domain": max(200, users // 25),
        "topics": 16,
        "mean_interactions": float(MEAN_INTERACTIONS),
        "seed": 0,
        "users_per_task": 50_000,
    }


def prepare_config(corpus_dir: Path, partitions: int | None) -> dict:
    """LLM-Rec-style preparation (the `spiao` preset's rules): mixed 5-core, sequences ordered by
    (timestamp, item, rating) with repeats kept, leave-one-out prefixes, stored candidates."""
    return {
        "name": "bench",
        "seed": 42,
        "sources": [{"kind": "amazon2018", "path": str(corpus_dir), "domains": DOMAINS, "ratings": "csv"}],
        "kcore": {"user": 5, "item": 5, "scope": "mixed"},
        "sequences": {"scope": "mixed", "tie_order": ["item", "rating"]},
        "split": {"method": "leave_one_out", "max_history": 10},
        "candidates": {"count": 100, "train_negatives": 10},
        **({"num_partitions": partitions} if partitions else {}),
    }


def write_corpus(workdir: Path, n: int) -> Path:
    from recplat.data.config import SyntheticSource
    from recplat.data.synth import write_amazon2018

    corpus = workdir / f"corpus_{n}"
    done = corpus / "DONE.json"
    if not done.exists():
        t0 = time.time()
        info = write_amazon2018(corpus, SyntheticSource(**corpus_config(n)))
        info["seconds"] = round(time.time() - t0, 1)
        done.write_text(json.dumps(info))
        print(f"wrote corpus {corpus} ({info['interactions']:,} interactions) in {info['seconds']}s", flush=True)
    return corpus


# --- the measured runs (each in a child process: `python prep_throughput.py --run KIND CFG OUT`) ---
def run_ray(cfg_path: str, out: str, num_cpus: int, object_store_gib: float) -> None:
    import ray

    from recplat.config import load_config
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare

    cfg = load_config(PrepareConfig, cfg_path, [])
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(address="local", num_cpus=num_cpus, object_store_memory=int(object_store_gib * 2**30), include_dashboard=False,
             log_to_driver=False)
    prepare(cfg, out, overwrite=True, show_progress=False)


def run_reference(cfg_path: str, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.data.reference import reference_prepare

    from recplat.config import load_config
    from recplat.data.config import PrepareConfig

    cfg = load_config(PrepareConfig, cfg_path, [])
    tables = reference_prepare(cfg)
    Path(out).mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    for name, table in tables.items():
        if hasattr(table, "num_rows"):
            path = Path(out) / f"{name}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)


def run_columnar(cfg_path: str, out: str) -> None:
    import yaml

    from columnar_prepare import prepare as columnar

    columnar(yaml.safe_load(Path(cfg_path).read_text()), Path(out))


def cli_command(cfg_path: Path, out: Path) -> list[str]:
    """`recplat prepare` as a user types it (the console script is `python -m recplat.cli`)."""
    return [sys.executable, "-m", "recplat.cli", "prepare", "--config", str(cfg_path), "--out", str(out), "--overwrite"]


def measure(cmd: list[str], log: Path) -> dict:
    """Wall time and peak memory of `cmd` and all its descendants, sampled every 0.5 s.

    The memory figure is the summed PSS (proportional set size): every process's private pages
    plus its share of pages mapped by several processes. Summed RSS, also recorded, counts Ray's
    shared-memory object store once per process that maps it (raylet, driver, every worker) and
    so overstates a Ray pipeline's footprint several times over. Its output goes to `log`.
    """
    load_before = os.getloadavg()[0]
    t0 = time.time()
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    peak = peak_rss = 0
    stop = threading.Event()

    def sample():
        nonlocal peak, peak_rss
        while not stop.is_set():
            total = total_rss = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    info = p.memory_full_info()
                    total += info.pss
                    total_rss += info.rss
                except psutil.Error:
                    pass
            peak, peak_rss = max(peak, total), max(peak_rss, total_rss)
            stop.wait(0.5)  # reading every process's smaps costs CPU: twice a second is enough

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = proc.wait()
    stop.set()
    thread.join()
    return {"rc": rc, "seconds": round(time.time() - t0, 1), "peak_pss_gib": round(peak / 2**30, 2),
            "peak_rss_sum_gib": round(peak_rss / 2**30, 2), "load": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"}


def update_doc(rows: list[dict]) -> None:
    from doc_section import machine_description, write_doc_section

    lines = [
        f"Machine: {machine_description()}; measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| interactions | pipeline | wall time (s) | peak PSS, process tree (GiB) | time vs columnar | same output | load (1 min, start -> end) |",
        "|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = f"{r['seconds'] / r['columnar_seconds']:.1f}×" if r.get("columnar_seconds") and r["kind"] != "columnar" else ""
        lines.append(f"| {r['n']:,} | {KIND_NAMES[r['kind']]} | {r['seconds']} | {r['peak_pss_gib']} | {ratio} | "
                     f"{r.get('same_output', '')} | {r['load']} |")
    write_doc_section("prep_throughput", "Data plane: `recplat prepare` throughput (benchmarks/prep_throughput.py)", lines)


KIND_NAMES = {"columnar": "columnar yardstick (polars, 1 process)", "cli": "`recplat prepare` (fresh process)",
              "ray": "recplat prepare() on a fresh Ray", "reference": "pandas reference (tests)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_prep")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--partitions", type=int, default=None, help="num_partitions (default: recplat's own choice)")
    ap.add_argument("--object-store-gib", type=float, default=2.0)
    ap.add_argument("--only", choices=["cli", "ray", "columnar", "reference"], help="run one pipeline (default: columnar, cli)")
    ap.add_argument("--with-pandas", action="store_true", help="also run the pandas reference of the tests (slow)")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--run", nargs=3, metavar=("KIND", "CFG", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        kind, cfg, out = args.run
        runs = {"ray": lambda: run_ray(cfg, out, args.num_cpus, args.object_store_gib),
                "columnar": lambda: run_columnar(cfg, out), "reference": lambda: run_reference(cfg, out)}
        runs[kind]()
        return 0

    import yaml

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        corpus = write_corpus(args.workdir, n)
        cfg_path = args.workdir / f"prepare_{n}.yaml"
        cfg_path.write_text(yaml.safe_dump(prepare_config(corpus, args.partitions)))
        kinds = [args.only] if args.only else ["columnar", "cli"] + (["reference"] if args.with_pandas else [])
        columnar_seconds = None
        for kind in kinds:
            out = args.workdir / f"out_{kind}_{n}"
            cmd = cli_command(cfg_path, out) if kind == "cli" else [
                sys.executable, __file__, "--num-cpus", str(args.num_cpus), "--object-store-gib",
                str(args.object_store_gib), "--run", kind, str(cfg_path), str(out)]
            log = args.workdir / f"out_{kind}_{n}.log"
            result = measure(cmd, log)
            if result["rc"] != 0:
                print(f"{kind} at {n:,} failed (exit {result['rc']}): see {log}", file=sys.stderr)
                return 1
            if kind == "columnar":
                columnar_seconds = result["seconds"]
            row = {"n": n, "kind": kind, **result, "columnar_seconds": columnar_seconds}
            if kind in ("cli", "ray") and columnar_seconds:
                from columnar_prepare import compare

                problems = compare(out, args.workdir / f"out_columnar_{n}")
                row["same_output"] = "yes" if not problems else "NO: " + "; ".join(problems)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.write:
        update_doc(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
