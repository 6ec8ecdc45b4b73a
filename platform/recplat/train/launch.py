"""Launch a Task on Ray Train: TrainConfig -> ScalingConfig, RunConfig, TorchTrainer -> fit.

    from recplat.train import Task, TrainConfig, fit
    result = fit(MyTask(...), TrainConfig(strategy="deepspeed", eval_every=50, metric="val_loss"),
                 train_data=ray.data.read_parquet(".../train"))
    result.best_checkpoint.path   # directory with model.safetensors, trainer_state.json, ...

The builders are public so Tune (the Train V2 driver pattern: a trial function that builds and
fits a TorchTrainer) can reuse them.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from recplat.errors import ConfigError, RecplatError
from recplat.train.config import TrainConfig
from recplat.train.loop import train_loop
from recplat.train.task import Task

# Ray Train callbacks added to every run started in the block of `run_callbacks` (a Tune trial's
# report callback, recplat/tune/trial.py): recipes call `fit` without knowing they run in a trial.
_RUN_CALLBACKS: contextvars.ContextVar[tuple] = contextvars.ContextVar("recplat_run_callbacks", default=())


@contextlib.contextmanager
def run_callbacks(*callbacks):
    """Every `fit` (every TorchTrainer built by build_run_config) in the block gets `callbacks`."""
    token = _RUN_CALLBACKS.set(_RUN_CALLBACKS.get() + tuple(callbacks))
    try:
        yield
    finally:
        _RUN_CALLBACKS.reset(token)


@dataclass
class TrainResult:
    """What a finished run left behind (paths are in the run's storage)."""

    path: str  # the run directory: storage_path/name
    metrics: dict[str, Any] | None  # metrics reported with the latest checkpoint
    checkpoint: Any  # ray.train.Checkpoint: the latest
    best_checkpoint: Any  # ray.train.Checkpoint ranked best by TrainConfig.metric (else the latest)
    best_metrics: dict[str, Any] | None
    summary: dict[str, Any] = field(default_factory=dict)  # rank 0's loop summary: step, history, ...


def checkpoint_uri(checkpoint) -> str:
    """A checkpoint's location as one string that `ray.train.Checkpoint(...)` reads back: the local path, or
    `<scheme>://<path>` on remote storage (Checkpoint.path alone has the scheme stripped)."""
    scheme = checkpoint.filesystem.type_name
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


def is_remote(path: str) -> bool:
    return "://" in path


def resolve_storage_path(cfg: TrainConfig) -> TrainConfig:
    """Ray needs an absolute local path (or a URI): resolve it on the driver, once."""
    if is_remote(cfg.storage_path):
        if cfg.fail_at_step is not None:
            raise ConfigError("fail_at_step: fault injection needs a local storage_path (it writes a marker file)")
        return cfg
    return cfg.model_copy(update={"storage_path": os.path.abspath(os.path.expanduser(cfg.storage_path))})


def plan_total_steps(cfg: TrainConfig, num_rows: int | None) -> int:
    """Optimizer steps of the run: `max_steps` when set, else `epochs` over the data.

    Ray Train splits the data into `num_workers` equal shards (the remainder rows are dropped), each
    read in micro-batches with drop_last, and accumulation continues across epoch ends."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    if num_rows is None:
        raise ConfigError("max_steps: needed when the number of training rows is unknown")
    per_rank = num_rows // cfg.num_workers
    micro_per_epoch = per_rank // cfg.micro_batch_size
    steps = cfg.epochs * micro_per_epoch // cfg.grad_accum
    if steps < 1:
        raise ConfigError(
            f"micro_batch_size: {num_rows} rows over {cfg.num_workers} workers give "
            f"{micro_per_epoch} micro-batches of {cfg.micro_batch_size} per epoch, not one optimizer step "
            f"(grad_accum {cfg.grad_accum}, epochs {cfg.epochs})"
        )
    return steps


def build_scaling_config(cfg: TrainConfig):
    from ray.train import ScalingConfig

    resources: dict[str, float] = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1
    return ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources)


def build_run_config(cfg: TrainConfig):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    checkpoint_config = CheckpointConfig(
        num_to_keep=cfg.num_to_keep,
        checkpoint_score_attribute=cfg.metric,
        checkpoint_score_order=cfg.mode,
    )
    return RunConfig(
        name=cfg.name,
        storage_path=cfg.storage_path,
        failure_config=FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=checkpoint_config,
        callbacks=list(_RUN_CALLBACKS.get()),
    )


def build_data_config():
    """Shard with `preserve_order`: the streaming split then ignores locality and deals the same
    rows to the same rank in the same order every epoch, which a bit-exact resume needs."""
    import copy

    from ray.data import DataContext
    from ray.train import DataConfig

    options = copy.deepcopy(DataContext.get_current().execution_options)
    options.preserve_order = True
    return DataConfig(execution_options=options)


def build_trainer(task: Task, cfg: TrainConfig, train_data):
    """A TorchTrainer running `train_loop` on `train_data` (a ray.data.Dataset)."""
    from ray.train.torch import TorchTrainer

    cfg = resolve_storage_path(cfg)
    check_earlier_checkpoints(cfg)  # before any worker starts: a changed config is refused, not resumed
    num_rows = None if cfg.max_steps is not None else train_data.count()
    total_steps = plan_total_steps(cfg, num_rows)
    if cfg.branch_from is not None:
        check_branch(cfg, total_steps)
    loop_config = {"task": task, "config": cfg.model_dump(), "total_steps": total_steps}
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=build_scaling_config(cfg),
        run_config=build_run_config(cfg),
        datasets={"train": train_data},
        dataset_config=build_data_config(),
    )


def check_earlier_checkpoints(cfg: TrainConfig) -> None:
    """Ray Train resumes a run from the checkpoints already in `storage_path/name` (a rerun after a
    failure, a killed driver). Every one of them must have been written under this config."""
    import json

    import pyarrow.fs as pafs

    from recplat.train.checkpoint import STATE_FILE, check_resumable, resume_config

    filesystem, root = pafs.FileSystem.from_uri(cfg.storage_path if is_remote(cfg.storage_path) else
                                                os.path.abspath(cfg.storage_path))
    run_dir = f"{root.rstrip('/')}/{cfg.name}"
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except (OSError, ValueError):
        return
    current = resume_config(cfg.model_dump(mode="json"))
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
            continue
        try:
            with filesystem.open_input_stream(f"{entry.path}/{STATE_FILE}") as stream:
                saved = json.loads(stream.read().decode("utf-8")).get("config") or {}
        except (OSError, ValueError):
            continue  # not a complete recplat checkpoint: Ray will not pick it either
        check_resumable(entry.path, saved, current)


def check_branch(cfg: TrainConfig, total_steps: int) -> None:
    """`branch_from` must be a recplat checkpoint this run can branch from (checkpoint.check_branchable)."""
    import pyarrow.fs as pafs

    from recplat.train.checkpoint import STATE_FILE, TrainerState, check_branchable

    path = cfg.branch_from if is_remote(cfg.branch_from) else os.path.abspath(os.path.expanduser(cfg.branch_from))
    try:
        filesystem, root = pafs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(f"{root.rstrip('/')}/{STATE_FILE}") as stream:
            state = TrainerState.from_json(stream.read().decode("utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"branch_from: {cfg.branch_from}: not a readable recplat checkpoint ({STATE_FILE}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    check_branchable(cfg.branch_from, state, cfg.model_dump(mode="json"), total_steps)


def fit(task: Task, cfg: TrainConfig, train_data) -> TrainResult:
    """Train `task` on `train_data` under `cfg`; a failed run raises RecplatError naming the
    failing ranks and their errors (after `max_failures` restarts)."""
    from ray.train import TrainingFailedError

    from recplat.runtime import init_ray

    init_ray()
    trainer = build_trainer(task, cfg, train_data)
    try:
        with _sigint_handler_kept():
            result = trainer.fit()
    except TrainingFailedError as exc:
        raise RecplatError(describe_failure(cfg, exc)) from exc
    best = None
    if cfg.metric is not None and result.best_checkpoints:
        best = result.get_best_checkpoint(metric=cfg.metric, mode=cfg.mode)
    best_metrics = None
    for checkpoint, metrics in result.best_checkpoints or []:
        if best is not None and checkpoint.path == best.path:
            best_metrics = metrics
    if best is None:
        best, best_metrics = result.checkpoint, result.metrics
    return TrainResult(
        path=result.path,
        metrics=result.metrics,
        checkpoint=result.checkpoint,
        best_checkpoint=best,
        best_metrics=best_metrics,
        # the latest checkpoint's path as well: a sweep branches runs from it (tune/branch.py)
        summary={**(result.return_value or {}),
                 "last_checkpoint": checkpoint_uri(result.checkpoint) if result.checkpoint else None},
    )


@contextlib.contextmanager
def _sigint_handler_kept():
    """Give the process back its own Ctrl-C handler when the run ends.

    TorchTrainer.fit installs a SIGINT handler (Ctrl-C aborts the run) that holds the run's
    controller, and leaves it installed: the finished controller, and the Ray Data split actors it
    owns, would live on until the next run (three idle processes, ~0.6 CPU-s a minute each, and
    ~0.4 GiB). Restoring the handler releases them as soon as the run ends."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Ray Train installs no handler outside the main thread (a Tune trial)
        return
    handler = signal.getsignal(signal.SIGINT)  # None: a handler not set from Python, left as it is
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def describe_failure(cfg: TrainConfig, exc: Exception) -> str:
    """One readable paragraph from Ray's TrainingFailedError: which ranks failed, with what."""
    head = f"training run {cfg.name!r} failed"
    if cfg.max_failures:
        head += f" (after up to {cfg.max_failures} restart(s))"
    failures = getattr(exc, "worker_failures", None)
    if failures:
        lines = []
        for rank, error in sorted(failures.items()):
            cause = getattr(error, "_base_exc", None) or error  # Ray wraps the worker's exception
            text = str(cause).strip().splitlines()
            lines.append(f"rank {rank}: {type(cause).__name__}: {text[-1] if text else ''}")
        return head + ":\n  " + "\n  ".join(lines)
    cause = getattr(exc, "controller_failure", None) or exc
    text = str(cause).strip().splitlines()
    return f"{head}: {type(cause).__name__}: {text[-1] if text else ''}"
