"""The per-worker training loop that TorchTrainer runs: setup -> resume -> train -> validate ->
early stop -> report + checkpoint. Readable top to bottom in `train_loop`; helpers below it.

Determinism (what makes a restarted run end with the same weights as an uninterrupted one):
- the launcher splits the Ray Dataset with `preserve_order=True`, which makes Ray Data's
  streaming split hand the same rows to the same rank in the same order every epoch;
- the optional local shuffle is seeded with (seed, epoch, rank);
- a checkpoint records the epoch and how many micro-batches of it were consumed, and a resumed
  worker skips exactly those; checkpoints fall on optimizer-step boundaries only;
- model, optimizer, LR scheduler and every rank's RNG state are restored.
A branch (`TrainConfig.branch_from`) starts the same way from another run's checkpoint and then
follows its own schedule: it ends with the weights of an uninterrupted run under its config.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from recplat.errors import RecplatError
from recplat.peak_memory import peak_memory_gib
from recplat.train.checkpoint import (TrainerState, load_rng, read_state, resume_config, save_rng,
                                     seed_everything, write_state)
from recplat.train.config import TrainConfig
from recplat.train.schedules import schedule_for, switch_schedule

logger = logging.getLogger("recplat.train")

# DeepSpeed on CPU needs its CPU accelerator, and compiles one op (shm_comm, ~60 s) the first
# time: keep the build in a cache shared by runs (docs/stack.md); `make install` builds it.
DEFAULT_TORCH_EXTENSIONS_DIR = "~/.cache/recplat/torch_extensions"


def torch_extensions_dir() -> str:
    """The op cache of this Python environment: DEFAULT_TORCH_EXTENSIONS_DIR/<hash of sys.prefix>.
    Torch keeps a built op under its name alone and rebuilds it when the compiler flags change,
    and the flags name the environment's torch and deepspeed folders: two environments sharing one
    folder (a second venv, a fresh clone's) rebuilt it (1-4 min) each time they took turns."""
    import hashlib

    key = hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:12]
    return os.path.join(os.path.expanduser(DEFAULT_TORCH_EXTENSIONS_DIR), key)


class InjectedFailure(RuntimeError):
    """Raised by `TrainConfig.fail_at_step` to drill restarts; never in a real run."""


def train_loop(loop_config: dict[str, Any]) -> dict[str, Any]:
    import ray.train

    task = loop_config["task"]
    cfg = TrainConfig.model_validate(loop_config["config"])
    total_steps: int = loop_config["total_steps"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    _configure_worker(cfg, rank)

    # Same seed on every rank before building the model: identical initial weights.
    seed_everything(cfg.seed)
    from recplat.train.strategies import make_strategy

    strategy = make_strategy(task.build_model(), cfg, total_steps)
    state = _resume(strategy, cfg, rank, total_steps)
    state.config = resume_config(loop_config["config"])  # saved with every checkpoint (launch checks it)
    state.total_steps = total_steps
    resumed_from = state.step if ray.train.get_checkpoint() is not None else None
    fault = FaultInjector(cfg, rank)
    shard = ray.train.get_dataset_shard("train")
    samples_per_step = cfg.micro_batch_size * cfg.grad_accum * world_size

    strategy.model.train()
    window_loss, window_batches, window_start, window_steps = 0.0, 0, time.perf_counter(), 0
    micro = 0
    started, paused_total, first_step = time.perf_counter(), 0.0, state.step
    finished = state.step >= total_steps or state.stopped_early  # restarted after the end
    batches = _micro_batches(shard, task, cfg, state, rank)
    while not finished:
        batch = next(batches)
        boundary = (micro + 1) % cfg.grad_accum == 0
        window_loss += strategy.train_micro_batch(task, strategy.prepare_batch(batch), boundary)
        window_batches += 1
        micro = 0 if boundary else micro + 1
        if not boundary:
            continue
        state.step += 1
        window_steps += 1
        fault.maybe_fail(state.step)
        train_metrics = {"step": state.step, "epoch": state.epoch, "lr": strategy.lr(),
                         "train_loss": window_loss / window_batches}
        if state.step % cfg.log_every == 0:
            elapsed = time.perf_counter() - window_start
            throughput = window_steps * samples_per_step / max(elapsed, 1e-9)
            state.train_log.append({"step": state.step, "train_loss": train_metrics["train_loss"],
                                    "lr": train_metrics["lr"], "samples_per_s": throughput, **peak_memory_gib()})
            if rank == 0:
                logger.info("step %d/%d  loss %.4f  lr %.3g  %.1f samples/s", state.step, total_steps,
                            train_metrics["train_loss"], train_metrics["lr"], throughput)
            window_loss, window_batches, window_start, window_steps = 0.0, 0, time.perf_counter(), 0

        paused = time.perf_counter()  # validation and checkpoints do not count against samples/s
        finished = state.step >= total_steps
        validated = cfg.eval_every is not None and (state.step % cfg.eval_every == 0 or finished)
        val_metrics = _validate_and_track(task, strategy, cfg, state, rank) if validated else {}
        finished = finished or state.stopped_early
        interval = cfg.checkpoint_interval
        if finished or (interval is not None and state.step % interval == 0):
            _save_and_report(strategy, state, {**train_metrics, **val_metrics}, rank)
        elif validated:
            ray.train.report({**train_metrics, **val_metrics})
        window_start += time.perf_counter() - paused
        paused_total += time.perf_counter() - paused

    if rank == 0 and state.stopped_early:
        logger.info("early stop at step %d: no better %s in %d validations (best %.6g at step %s)",
                    state.step, cfg.metric, cfg.patience, state.best, state.best_step)
    return {"step": state.step, "total_steps": total_steps, "epoch": state.epoch, "resumed_from": resumed_from,
            "stopped_early": state.stopped_early, "best": state.best, "best_step": state.best_step,
            "branched_from": state.branched_from, "history": state.history, "train_log": state.train_log,
            "cost": _cost(time.perf_counter() - started - paused_total, (state.step - first_step) * samples_per_step)}


def _cost(seconds: float, samples: int) -> dict[str, float]:
    """This attempt's training time without validation and checkpoints, the samples it trained on,
    and this worker's peak memory (a restarted run counts from its restart)."""
    return {"seconds": round(seconds, 3), "samples": samples, **peak_memory_gib()}


# --- setup -----------------------------------------------------------------------------------


_RAY_TRAIN_REPORT_LOGGERS = ("ray.train.v2._internal.execution.storage", "ray.train.v2._internal.execution.context")


def use_cpu_deepspeed() -> None:
    """DeepSpeed's CPU accelerator and this environment's op cache, where not set already: before
    anything imports deepspeed (processes started later, Ray workers among them, inherit them)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", torch_extensions_dir())


def build_cpu_deepspeed_op() -> None:
    """Compile DeepSpeed's CPU communication op into the shared cache now rather than in the first
    CPU ZeRO-2 run (1 min on two idle cores, ~4 beside other work). `make install` runs it:
    python -c "from recplat.train.loop import build_cpu_deepspeed_op; build_cpu_deepspeed_op()"."""
    use_cpu_deepspeed()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


def _configure_worker(cfg: TrainConfig, rank: int) -> None:
    if cfg.strategy == "deepspeed" and not cfg.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", torch_extensions_dir())
    # Ray Train logs "Checkpoint successfully created at ..." and "Reporting training result ..." at
    # INFO for every report; our own line per validation says the same, and theirs reach the driver
    # late (after a run's last line). Their warnings and errors still show.
    for name in _RAY_TRAIN_REPORT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if rank == 0 and not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[recplat.train] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _resume(strategy, cfg: TrainConfig, rank: int, total_steps: int) -> TrainerState:
    """The run's own latest checkpoint (a restart), else `branch_from`'s (a branch: that run's
    weights, optimizer, position in the data, RNG and history, then this run's schedule), else a
    fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    branch = checkpoint is None and cfg.branch_from is not None
    if branch:
        checkpoint = ray.train.Checkpoint(cfg.branch_from)
    if checkpoint is None:
        seed_everything(cfg.seed + rank)  # per-rank streams (dropout, sampling) from here on
        return TrainerState()
    with checkpoint.as_directory() as directory:
        directory = Path(directory)
        state = read_state(directory)
        strategy.restore(directory)
        if not load_rng(directory, rank):  # the world size changed: fresh, still seeded, streams
            seed_everything(cfg.seed + rank + 7919 * state.step)
    if branch:
        switch_schedule(strategy.scheduler, schedule_for(cfg, total_steps))
        state.branched_from = {"path": cfg.branch_from, "step": state.step}
    if rank == 0:
        logger.info("%s %s at step %d (epoch %d, batch %d)", "branched from" if branch else "resumed from",
                    checkpoint.path, state.step, state.epoch, state.batch_in_epoch)
    return state


class FaultInjector:
    """`fail_at_step=k`: every rank raises right after optimizer step k, on the first attempt only.

    "First attempt" is a marker file in the run's directory (local storage only), checked by every
    rank before training starts and written by rank 0 as it fails; a restart finds it and trains
    on. Checking for a restored checkpoint instead would fail forever when k comes before the
    first checkpoint.
    """

    def __init__(self, cfg: TrainConfig, rank: int):
        self.step, self.rank = cfg.fail_at_step, rank
        self.marker = Path(cfg.storage_path, cfg.name, f".recplat_failed_at_step_{cfg.fail_at_step}")
        self.armed = self.step is not None and not self.marker.exists()

    def maybe_fail(self, step: int) -> None:
        if self.armed and step == self.step:
            if self.rank == 0:
                self.marker.parent.mkdir(parents=True, exist_ok=True)
                self.marker.touch()
            raise InjectedFailure(f"fail_at_step={step}: injected failure on rank {self.rank} (first attempt only)")


# --- data ------------------------------------------------------------------------------------


def _micro_batches(shard, task, cfg: TrainConfig, state: TrainerState, rank: int) -> Iterator[dict]:
    """Collated micro-batches forever, epoch after epoch, keeping `state.epoch/batch_in_epoch`
    current; a resumed state skips the micro-batches its epoch already consumed."""
    skip = state.batch_in_epoch
    while True:
        shuffle = cfg.shuffle_buffer > 0
        iterator = shard.iter_batches(
            batch_size=cfg.micro_batch_size,
            batch_format="numpy",
            drop_last=True,  # equal batch counts on every rank: DDP collectives stay in step
            local_shuffle_buffer_size=cfg.shuffle_buffer if shuffle else None,
            local_shuffle_seed=(cfg.seed * 1_000_003 + state.epoch * 1009 + rank) if shuffle else None,
        )
        yielded = False
        for index, batch in enumerate(iterator):
            if index < skip:
                continue
            yielded = True
            state.batch_in_epoch = index + 1
            yield task.collate(_writable(batch))
        if not yielded and skip == 0:
            raise RecplatError(f"rank {rank}: its data shard has no full micro-batch of {cfg.micro_batch_size} rows")
        skip = 0
        state.epoch += 1
        state.batch_in_epoch = 0


def _writable(batch: dict) -> dict:
    """Ray Data hands out numpy views of Arrow memory, which are read-only; `torch.as_tensor` on
    one warns (UserWarning "The given NumPy array is not writable") in every worker. A micro-batch
    is a few KB: copy the read-only columns once, here, where the batch is made."""
    import numpy as np

    return {key: np.array(value) if isinstance(value, np.ndarray) and not value.flags.writeable else value
            for key, value in batch.items()}


# --- validation, early stopping, checkpoints -------------------------------------------------


def _validate_and_track(task, strategy, cfg: TrainConfig, state: TrainerState, rank: int) -> dict[str, float]:
    import torch
    import torch.distributed as dist

    module = strategy.module
    module.eval()
    try:
        with torch.no_grad(), strategy.autocast():
            metrics = {key: float(value) for key, value in task.validate(module).items()}
    finally:
        strategy.model.train()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [metrics]
        dist.broadcast_object_list(shared, src=0)  # every rank acts on rank 0's numbers
        metrics = shared[0]

    if cfg.metric is not None:
        if cfg.metric not in metrics:
            raise RecplatError(f"metric {cfg.metric!r} is not among Task.validate()'s keys {sorted(metrics)}")
        value = metrics[cfg.metric]
        better = state.best is None or (value < state.best if cfg.mode == "min" else value > state.best)
        if better:
            state.best, state.best_step, state.bad_validations = value, state.step, 0
        else:
            state.bad_validations += 1
            if cfg.patience is not None and state.bad_validations >= cfg.patience:
                state.stopped_early = True
    state.history.append({"step": state.step, **metrics})
    if rank == 0:
        shown = "  ".join(f"{k} {v:.6g}" for k, v in metrics.items())
        logger.info("validation at step %d: %s", state.step, shown)
    return metrics


def _save_and_report(strategy, state: TrainerState, metrics: dict[str, float], rank: int) -> None:
    """Every rank writes its part into its own directory and reports it; Ray Train merges the
    parts into one checkpoint directory in storage_path and keeps the best `num_to_keep`."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="recplat-ckpt-") as tmp:
        directory = Path(tmp)
        strategy.save(directory, rank)
        save_rng(directory, rank)
        if rank == 0:
            write_state(directory, state)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"checkpoint_step{state.step:07d}",
        )
