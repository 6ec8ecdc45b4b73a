"""Score a trained checkpoint in a Ray task (a GPU one when the job has GPUs): the one helper every
recipe's test evaluation uses.

A checkpoint is a `ray.train.Checkpoint`, a local directory, or a storage URI (`s3://`, `gs://`):
its files are read through `Checkpoint.as_directory()`, which hands out a local directory as it is
and downloads a remote one to a temporary folder, so evaluation works on cluster storage too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def as_checkpoint(checkpoint):
    from ray.train import Checkpoint

    return checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(str(checkpoint))


def load_checkpoint_weights(model, checkpoint) -> None:
    """Load the weights file of a recplat checkpoint (train/checkpoint.py) into `model`."""
    from recplat.train.checkpoint import WEIGHTS_FILE, load_weights

    with as_checkpoint(checkpoint).as_directory() as directory:
        load_weights(model, Path(directory) / WEIGHTS_FILE)


def parameter_counts(model) -> dict[str, int]:
    """{"trainable", "total"}: LLM-Rec Fig. 7 plots Recall against the trainable parameters."""
    from recplat.adapters import count_parameters

    trainable, total = count_parameters(model)
    return {"trainable": trainable, "total": total}


def scoring_cpus(train) -> float:
    """CPUs for scoring a run's checkpoint: on GPUs one (the GPU does the work); on CPUs those
    its training workers held (free again once training ended), at most one node's worth, since
    a task runs on one node."""
    import ray

    if train.use_gpu:
        return 1
    nodes = [node["Resources"].get("CPU", 1) for node in ray.nodes() if node.get("Alive")]
    return max(1, min(train.num_workers * train.cpus_per_worker, max(nodes, default=1)))


def _score(task, checkpoint, score: Callable, use_gpu: bool, prepare: Callable | None,
           threads: int = 1) -> tuple[Any, dict]:  # fmt: skip
    import torch

    torch.set_num_threads(threads)  # a reused Ray worker keeps the thread count of its last task
    model = task.build_model()
    if checkpoint is not None:
        load_checkpoint_weights(model, checkpoint)
    model.eval()
    if prepare is not None:
        prepare(model)
    if use_gpu and torch.cuda.is_available():
        model.cuda()
    return score(task, model), parameter_counts(model)


def score_checkpoint(task, checkpoint, score: Callable, use_gpu: bool = False, num_cpus: float = 1,
                     prepare: Callable | None = None) -> tuple[Any, dict]:  # fmt: skip
    """`score(task, model)` for `task.build_model()` with the checkpoint's weights (None: as built),
    in a Ray task; returns (that result, parameter_counts). `score` gets the task copy that built
    the model (build_model may set state on it, e.g. tokenized titles). `prepare(model)` runs after
    loading, on the CPU (e.g. exporting an adapter). Torch uses `num_cpus` threads in the task
    (`scoring_cpus` says how many a run's test may take)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # placement_group=None: inside a Tune trial this task would otherwise be placed in the trial's
    # placement group (Tune captures child tasks), which holds only the trial driver's own CPU
    remote = ray.remote(num_cpus=num_cpus, num_gpus=1 if use_gpu else 0,
                        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))(_score)
    return ray.get(remote.remote(task, checkpoint, score, use_gpu, prepare, max(1, int(num_cpus))))
