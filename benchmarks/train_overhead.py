"""Benchmark: training samples/s through recplat's Ray Train spine (1 worker) vs a plain PyTorch loop.

The same LLM-Rec step both ways: the MiniLM DualEncoder with LoRA (r=16) that `LlmRecTask`
builds, Eq. 6 cross-entropy over the positive + 10 stored negatives, `LlmRecTask.collate`,
AdamW with LLM-Rec's settings (lr 5e-5, weight decay 0.001, warmup ratio 0.001, linear
schedule, clip 1.0), micro-batch 8, fp32, CPU, on the train examples of a prepared synthetic
dataset (the `synthetic` preset, written once under --workdir).

- ray: `recplat.train.launch.fit` with `TrainConfig(num_workers=1, cpus_per_worker=THREADS)`,
  data = `training_dataset(...)` (the recipe's Ray Dataset, streamed to the worker by Ray Data),
  no validation, one checkpoint after the last step;
- plain: one process, `torch.set_num_threads(THREADS)`, the same task, model, optimizer and
  schedule as a bare loop over the same rows as numpy arrays, in stored order.

What is timed: steady-state steps only, the same way on both sides. The task's `training_step`
is wrapped to stamp the wall clock and its process's CPU time on entry; step i lasts from its
entry to the entry of step i + 1, so it covers forward, backward, optimizer step and fetching +
collating the next batch. Steps --log-every + 1 .. --steps - 1 are timed: Ray start-up, worker
start, model build, the first steps (Ray Data start-up, warm-up) and the final checkpoint are not.

Two ways to run the pair (--mode):
- lockstep (default): the Ray run and the plain loop (a subprocess) run at the same time but take
  turns step by step, passing a baton (files in --workdir) at step entry, so both see the same
  share of a machine whose other load changes from minute to minute. Waiting for the baton is not
  timed. Background work of either side (Ray Data prefetching, Ray Train's polling) can overlap
  the other side's turn: on an otherwise idle machine `sequential` is the stricter measure;
- sequential: the runs one after another, alternating (plain, ray, ray, plain, ...).

Thread counts matter: a Ray worker gets OMP_NUM_THREADS = its CPUs (1 with the spine's default
cpus_per_worker=1), so both sides run with --threads torch threads, as checked inside the worker.
Reported: samples/s (wall) and CPU ms per sample of the training process, per run and as medians
over --rounds; overhead = 1 - ray samples/s / plain samples/s.

    python benchmarks/train_overhead.py --steps 16 --log-every 4 --rounds 2 --write
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from synthetic_dataset import ensure_dataset, prepare_command

import numpy as np

from recplat.recipes.llmrec import LlmRecTask

ROOT = Path(__file__).resolve().parents[1]
DATASET_OVERRIDES = ["render.families=[]"]
BATON_TIMEOUT_S = 1800


class Baton:
    """Turn-taking between two processes through files: `go_<side>` hands the turn to <side>;
    `done_<side>` says <side> reached its last step (the other then stops waiting for turns)."""

    def __init__(self, directory: str, side: str):
        self.dir, self.side = Path(directory), side
        self.other = "plain" if side == "ray" else "ray"
        self.held = False

    @staticmethod
    def reset(directory: Path, first: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("*"):
            path.unlink()
        (directory / f"go_{first}").touch()

    def take_turn(self, last: bool) -> None:
        if self.held:
            self.held = False
            (self.dir / f"go_{self.other}").touch()
        mine, other_done = self.dir / f"go_{self.side}", self.dir / f"done_{self.other}"
        deadline = time.monotonic() + BATON_TIMEOUT_S
        while not mine.exists() and not other_done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.side}: no turn from {self.other} in {BATON_TIMEOUT_S} s")
            time.sleep(0.002)
        if mine.exists():
            mine.unlink()
            self.held = True
        if last:
            self.finish()

    def finish(self) -> None:
        (self.dir / f"done_{self.side}").touch()
        if self.held:
            self.held = False
            (self.dir / f"go_{self.other}").touch()


class StepClockTask(LlmRecTask):
    """LlmRecTask whose training_step records each step's (wall, CPU) span, taking turns with a
    Baton first when given one; at the last step the spans go to `clock_path` as JSON."""

    def __init__(self, *args, clock_path: str, steps: int, baton: Baton | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock_path, self.steps, self.baton = clock_path, steps, baton
        self.spans, self.started, self.calls = [], None, 0

    def training_step(self, model, batch):
        import torch

        now = (time.perf_counter(), time.process_time())
        if self.started is not None:
            self.spans.append((now[0] - self.started[0], now[1] - self.started[1]))
        self.calls += 1
        if self.baton is not None:
            self.baton.take_turn(last=self.calls == self.steps)
        if self.calls == self.steps:
            Path(self.clock_path).write_text(json.dumps({
                "spans": self.spans, "torch_threads": torch.get_num_threads(),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}))
        self.started = (time.perf_counter(), time.process_time())
        return super().training_step(model, batch)


def llmrec_config(dataset: Path):
    from recplat.recipes.llmrec import Config
    from recplat.recipes.ranking_task import RankingData

    return Config(data=RankingData(dataset=str(dataset)))


def train_config(cfg, args, name: str):
    """LLM-Rec's train section (Config defaults) for a short, validation-free, 1-worker run."""
    return cfg.train.model_copy(update={
        "num_workers": 1, "cpus_per_worker": float(args.threads), "max_steps": args.steps,
        "log_every": args.log_every, "eval_every": None, "metric": None, "patience": None,
        "storage_path": str(args.workdir / "ray_runs"), "name": name,
    })


def steady_figures(clock_path: Path, args, micro_batch_size: int) -> dict:
    """Samples/s and CPU ms/sample over steps log_every + 1 .. steps - 1."""
    clock = json.loads(clock_path.read_text())
    spans = clock["spans"][args.log_every :]
    samples = len(spans) * micro_batch_size
    return {"samples_per_s": samples / sum(w for w, _ in spans),
            "cpu_ms_per_sample": 1000 * sum(c for _, c in spans) / samples,
            "torch_threads": clock["torch_threads"], "OMP_NUM_THREADS": clock["OMP_NUM_THREADS"],
            "step_s": [w for w, _ in spans]}


# --- the two sides -----------------------------------------------------------------------------
def run_ray(cfg, args, prepared, round_index: int, baton: Baton | None) -> dict:
    from recplat.recipes.ranking_task import training_dataset
    from recplat.train.launch import fit

    clock = args.workdir / f"clock_ray_{round_index}.json"
    clock.unlink(missing_ok=True)
    task = StepClockTask(cfg, prepared.titles, prepared.num_items, None, clock_path=str(clock), steps=args.steps,
                         baton=baton)
    train = train_config(cfg, args, f"round{round_index}")
    # a run directory left from an earlier invocation would make Ray Train resume from its checkpoint
    shutil.rmtree(Path(train.storage_path, train.name), ignore_errors=True)
    data = training_dataset(prepared, cfg.data.train_scope, cfg.data.train_domains, cfg.model.max_history,
                            cfg.data.negatives)
    result = fit(task, train, data)
    first_loss = result.summary["train_log"][0]["train_loss"]  # mean loss of the first log_every steps
    return {"kind": "ray", **steady_figures(clock, args, train.micro_batch_size), "first_loss": first_loss}


def plain_arrays(prepared, cfg) -> dict[str, np.ndarray]:
    """The rows the spine trains on (`training_dataset`'s transform), as numpy, in stored order."""
    from recplat.recipes.ranking_task import RankingArrays, filter_examples

    table = filter_examples(prepared.examples("train"), cfg.data.train_scope, cfg.data.train_domains)
    arrays = RankingArrays.from_table(table, cfg.model.max_history, cfg.data.negatives)
    return {"history": arrays.history, "target": arrays.target, "negatives": arrays.candidates}


def run_plain(cfg, args, prepared, round_index: int, baton: Baton | None) -> dict:
    import torch

    from recplat.train.checkpoint import seed_everything
    from recplat.train.schedules import build_lr_lambda

    torch.set_num_threads(args.threads)
    arrays = plain_arrays(prepared, cfg)
    clock = args.workdir / f"clock_plain_{round_index}.json"
    clock.unlink(missing_ok=True)
    train = train_config(cfg, args, "plain")
    task = StepClockTask(cfg, prepared.titles, prepared.num_items, None, clock_path=str(clock), steps=args.steps,
                         baton=baton)
    seed_everything(train.seed)  # as the spine: seed, build, then rank 0's stream
    model = task.build_model()
    seed_everything(train.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.999), eps=1e-8)
    schedule = build_lr_lambda(train.schedule, train.max_steps, train.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    bs, n = train.micro_batch_size, len(arrays["target"])
    first_losses = []
    for step in range(train.max_steps):
        start = step * bs % (n - n % bs)  # drop_last, epoch after epoch
        batch = task.collate({key: value[start : start + bs] for key, value in arrays.items()})
        loss = task.training_step(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train.clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step < train.log_every:
            first_losses.append(float(loss.detach()))
    return {"kind": "plain", **steady_figures(clock, args, bs), "first_loss": sum(first_losses) / len(first_losses)}


def plain_side_main(args) -> int:
    """The plain loop as the lockstep subprocess: result JSON to workdir/plain_<round>.json."""
    from recplat.data.dataset import PreparedDataset

    baton = Baton(str(args.workdir / "baton"), "plain")
    try:
        prepared = PreparedDataset.open(args.workdir / "dataset")
        result = run_plain(llmrec_config(prepared.path), args, prepared, args.plain_side, baton)
        (args.workdir / f"plain_{args.plain_side}.json").write_text(json.dumps(result))
    finally:
        baton.finish()  # never leave the Ray side waiting for a turn
    return 0


def run_lockstep(cfg, args, prepared, round_index: int) -> list[dict]:
    result_path = args.workdir / f"plain_{round_index}.json"
    result_path.unlink(missing_ok=True)
    Baton.reset(args.workdir / "baton", first="plain")
    cmd = [sys.executable, __file__, "--plain-side", str(round_index), "--steps", str(args.steps),
           "--log-every", str(args.log_every), "--threads", str(args.threads), "--workdir", str(args.workdir)]
    plain = subprocess.Popen(cmd, cwd=ROOT)
    try:
        ray_result = run_ray(cfg, args, prepared, round_index, Baton(str(args.workdir / "baton"), "ray"))
    except BaseException:
        (args.workdir / "baton" / "done_ray").touch()
        plain.kill()
        raise
    if plain.wait() != 0:
        raise RuntimeError(f"the plain side of round {round_index} failed (exit {plain.returncode})")
    return [json.loads(result_path.read_text()), ray_result]


# --- report ------------------------------------------------------------------------------------
def summarize(runs: list[dict]) -> dict:
    def med(kind, key):
        return statistics.median(r[key] for r in runs if r["kind"] == kind)

    out = {kind: {key: med(kind, key) for key in ("samples_per_s", "cpu_ms_per_sample")} for kind in ("plain", "ray")}
    out["overhead"] = 1 - out["ray"]["samples_per_s"] / out["plain"]["samples_per_s"]
    out["cpu_overhead"] = out["ray"]["cpu_ms_per_sample"] / out["plain"]["cpu_ms_per_sample"] - 1
    # lockstep: step i of the plain loop and step i of the Ray run ran back to back
    ratios = [1 - p / r for i in sorted({r["round"] for r in runs})
              for p, r in zip(*(next(x["step_s"] for x in runs if x["round"] == i and x["kind"] == kind)
                                for kind in ("plain", "ray")))]
    out["paired_overhead"] = statistics.median(ratios)
    return out


def table_lines(runs: list[dict], s: dict) -> list[str]:
    lines = ["| round | path | torch threads | samples/s | CPU ms/sample | mean loss, steps 1..log_every |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['round'] + 1} | {r['kind']} | {r['torch_threads']} | {r['samples_per_s']:.2f} | "
                     f"{r['cpu_ms_per_sample']:.0f} | {r['first_loss']:.4f} |")
    p, q = s["plain"], s["ray"]
    lines += ["", "| path (median over rounds) | samples/s | CPU ms/sample | overhead, samples/s "
              "| overhead, CPU/sample |",
              "|---|---:|---:|---:|---:|",
              f"| plain PyTorch loop | {p['samples_per_s']:.2f} | {p['cpu_ms_per_sample']:.0f} | – | – |",
              f"| Ray Train spine, 1 worker | {q['samples_per_s']:.2f} | {q['cpu_ms_per_sample']:.0f} | "
              f"**{100 * s['overhead']:.1f}%** | {100 * s['cpu_overhead']:.1f}% |",
              "", f"Median over all timed steps of the per-step overhead 1 − plain step time / ray step time "
              f"(step i of both runs: back to back in lockstep mode): {100 * s['paired_overhead']:.1f}%."]
    return lines


def update_doc(runs, s, args, loads, command: str) -> None:
    from doc_section import machine_description, shared_machine_note, write_doc_section

    mode = ("lockstep: both runs at once, taking turns step by step" if args.mode == "lockstep"
            else "sequential: one run after the other, alternating")
    dataset_command = shlex.join(prepare_command(Path("runs/bench_train/dataset"), DATASET_OVERRIDES))
    lines = [
        f"Machine: {machine_description()}, no GPU; {args.threads} torch threads on both sides; measured "
        f"{time.strftime('%Y-%m-%d')}; load average during the runs {min(loads)}–{max(loads)}.",
        f"Command: `{command}` (dataset: `{dataset_command}`).",
        "",
        *table_lines(runs, s),
        "",
        f"LLM-Rec MiniLM LoRA step (micro-batch 8 users x (1 + 10) candidates, fp32), {args.steps} steps per run, "
        f"steps {args.log_every + 1}..{args.steps - 1} timed by a clock inside `training_step` (same code on both "
        f"sides); mode {mode}. Overhead = 1 − ray/plain samples/s (target ≤ 10%; negative: the Ray run was "
        f"faster); CPU/sample counts the training process only, and rises with the machine's load (threads "
        f"spin at barriers while their partners wait for a core). Same rows in the same order on both sides: "
        f"the first steps' losses agree.",
    ]
    lines += shared_machine_note(loads, "absolute rates are pessimistic and move with the load; compare the "
                                 "paths within a round.")
    write_doc_section("train_overhead", "Training: Ray Train spine (1 worker) vs plain PyTorch "
                      "(benchmarks/train_overhead.py)", lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps per run")
    ap.add_argument("--log-every", type=int, default=4,
                    help="the spine's log window; the first this many steps are not timed")
    ap.add_argument("--rounds", type=int, default=2, help="pairs of runs (plain + ray)")
    ap.add_argument("--mode", choices=["lockstep", "sequential"], default="lockstep")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads on both sides")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_train")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--plain-side", type=int, default=None, help=argparse.SUPPRESS)  # lockstep subprocess
    args = ap.parse_args()
    if args.steps - args.log_every < 2:
        ap.error("--steps must exceed --log-every by at least 2 (timed: steps log_every+1 .. steps-1)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.workdir = args.workdir.absolute()  # Ray workers run in another directory
    if args.plain_side is not None:
        return plain_side_main(args)

    from recplat.data.dataset import PreparedDataset
    from recplat.runtime import init_ray

    args.workdir.mkdir(parents=True, exist_ok=True)
    prepared = PreparedDataset.open(ensure_dataset(args.workdir, DATASET_OVERRIDES))
    cfg = llmrec_config(prepared.path)
    init_ray()
    runs, loads = [], [round(os.getloadavg()[0], 1)]
    for i in range(args.rounds):
        if args.mode == "lockstep":
            pair = run_lockstep(cfg, args, prepared, i)
        else:
            order = ("plain", "ray") if i % 2 == 0 else ("ray", "plain")
            pair = [run_plain(cfg, args, prepared, i, None) if kind == "plain"
                    else run_ray(cfg, args, prepared, i, None) for kind in order]
        loads.append(round(os.getloadavg()[0], 1))
        for r in pair:
            runs.append({**r, "round": i})
            print(f"round {i + 1} {r['kind']}: {r['samples_per_s']:.2f} samples/s, {r['cpu_ms_per_sample']:.0f} CPU "
                  f"ms/sample, torch threads {r['torch_threads']} (OMP_NUM_THREADS={r['OMP_NUM_THREADS']}); "
                  f"load {loads[-1]}", flush=True)
    s = summarize(runs)
    print("\n".join(["", *table_lines(runs, s), ""]))
    print(f"target: overhead <= 10%; measured {100 * s['overhead']:.1f}% (samples/s), "
          f"{100 * s['cpu_overhead']:.1f}% (CPU per sample), {100 * s['paired_overhead']:.1f}% (median per step)")
    if args.write:
        command = "python benchmarks/train_overhead.py " + " ".join(a for a in sys.argv[1:] if a != "--write")
        update_doc(runs, s, args, loads, command.strip() + " --write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
