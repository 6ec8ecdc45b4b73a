"""Benchmark: wall time of a 4-variant smoke grid, sequential `recplat run` vs concurrent `recplat tune`.

The grid: LLM-Rec Fig. 7's smoke profile (offline MiniLM + LoRA, synthetic data), its two rank
variants x two learning rates = 4 training runs of --steps steps each, validated every --steps/2.

- sequential: `recplat run llmrec/fig7_lora_rank --profile smoke recipe.train.lr=LR` once per
  learning rate (each runs both rank variants, one after the other, in one process with its local Ray);
- tune: `recplat tune` on a copy of the job whose `tune:` search is that grid (variant x lr), FIFO,
  --concurrent trials at a time, each trial's driver 0.5 CPU + its Ray Train worker's 1 CPU.

Both sides are whole commands in fresh processes, timed end to end: Ray start-up, data preparation
(once per `recplat run` folder, once for the sweep), model loading, training, validation, testing.
The machine's load average is recorded before and after; on a shared machine the figure says little.

    python benchmarks/tune_vs_sequential.py --steps 6 --write
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from doc_section import machine_description, shared_machine_note, write_doc_section

ROOT = Path(__file__).resolve().parents[1]
JOB = "llmrec/fig7_lora_rank"
LRS = (1.0e-4, 1.0e-3)


def tiny(steps: int) -> list[str]:
    return ["resources.num_workers=1", "data.sources.0.users=120", f"recipe.train.max_steps={steps}",
            f"recipe.train.eval_every={max(1, steps // 2)}", "recipe.eval.batch_size=32"]  # fmt: skip


def jobs_with_grid(root: Path, concurrent: int) -> Path:
    """A jobs/ folder holding the job with the 4-trial grid as its smoke profile's only search."""
    data = yaml.safe_load((ROOT / "jobs" / f"{JOB}.yaml").read_text())
    data["profiles"]["smoke"]["tune"] = {"grid4": {
        "metric": "recall@1", "mode": "max", "max_concurrent_trials": concurrent, "resources": {"CPU": 0.5},
        "space": {"variant": {"grid": ["minilm-r2", "minilm-r4"]}, "recipe.train.lr": {"grid": list(LRS)}}}}
    folder = root / "jobs" / JOB.split("/")[0]
    folder.mkdir(parents=True)
    (folder / f"{JOB.split('/')[1]}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "jobs"


def timed(args: list[str], env: dict[str, str], log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "recplat.cli", *args], env=env, cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed ({done.returncode}); see {log}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="training steps per run")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at a time (tune)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tune_bench_"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "platform"),
           "RECPLAT_JOBS_DIR": str(jobs_with_grid(work, args.concurrent))}  # fmt: skip
    loads = [round(os.getloadavg()[0], 1)]
    sequential = sum(timed(["run", JOB, "--profile", "smoke", "--out", str(work / f"run-lr{lr}"), *tiny(args.steps),
                            f"recipe.train.lr={lr}"], env, work / f"run-lr{lr}.log") for lr in LRS)  # fmt: skip
    loads.append(round(os.getloadavg()[0], 1))
    tuned = timed(["tune", JOB, "--profile", "smoke", "--out", str(work / "sweep"), *tiny(args.steps)], env,
                  work / "tune.log")  # fmt: skip
    loads.append(round(os.getloadavg()[0], 1))
    lines = [
        f"Machine: {machine_description()}; load average (1 min) before / between / after: "
        f"{' / '.join(map(str, loads))}.",
        "",
        f"4 smoke trainings of {JOB} (2 rank variants x lr {', '.join(map(str, LRS))}; {args.steps} steps, "
        f"1 Ray Train worker each), whole commands timed end to end:",
        "",
        "| how | wall time (s) |",
        "|---|---|",
        f"| sequential: 2 x `recplat run` (2 variants each, one after the other) | {sequential:.0f} |",
        f"| `recplat tune`, {args.concurrent} trials at a time | {tuned:.0f} |",
        "",
        f"Speed-up: {sequential / tuned:.2f}x. Command: `python benchmarks/tune_vs_sequential.py --steps {args.steps}"
        f" --concurrent {args.concurrent} --write`.",
        *shared_machine_note(loads, "rerun on a quiet machine before reading much into the ratio."),
    ]  # fmt: skip
    print("\n".join(lines))
    if args.write:
        write_doc_section("tune_vs_sequential", "Sweeps: sequential `recplat run` vs `recplat tune` "
                          "(benchmarks/tune_vs_sequential.py)", lines)  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
