"""Validation split across the training workers and reduced, instead of repeated on every rank.

`Task.validate` runs on every rank at the same step (train/loop.py), so a task may split its
validation examples with `validation_shard` and add up per-rank sums with `sum_across_ranks`:
every rank then returns the same numbers, computed once over all examples.

    def validate(self, model):
        rows = validation_shard(len(self.valid))           # this rank's rows: rank, rank + W, ...
        nll, tokens = ...sums over self.valid[rows]...
        totals = sum_across_ranks({"nll": nll, "tokens": tokens}, device)
        return {"val_loss": totals["nll"] / totals["tokens"]}

A ranking task also shares out the item encoding: each rank fills its items' rows of a zero
cache and `sum_tensor_across_ranks` adds the caches up (recipes/ranking_task.py).

Outside a process group (a single process, a test) these are the identity.
"""

from __future__ import annotations

import numpy as np
import torch


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def world_size() -> int:
    """Ranks in the process group (1 outside one)."""
    return _world()[1]


def validation_shard(num_rows: int) -> np.ndarray:
    """The row indices this rank validates: every world_size-th row from its rank (balanced to one row)."""
    rank, world = _world()
    return np.arange(rank, num_rows, world)


def sum_across_ranks(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Each value summed over all ranks (float64). `device` must suit the process group's backend
    (the GPU under NCCL, the CPU under gloo): pass the model's device."""
    import torch.distributed as dist

    if _world()[1] == 1:
        return {key: float(value) for key, value in values.items()}
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.tolist()))


def sum_tensor_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed elementwise over all ranks (in place; on the device the backend needs)."""
    import torch.distributed as dist

    if _world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
