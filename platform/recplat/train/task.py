"""Task: the four things a recipe tells the training spine. Everything else (devices, DDP or
DeepSpeed, optimizer, schedule, accumulation, checkpoints, restarts) is the spine's job.

A Task is pickled into every Ray Train worker, so it must be a module-level class whose fields are
plain data (paths, ints, small numpy arrays), not open files, models or Ray objects. Build heavy
things in `build_model`, which runs once inside each worker.

Full fine-tuning or LoRA is the model builder's choice: the spine optimizes exactly the parameters
with `requires_grad=True`, and checkpoints exactly those (plus buffers) as safetensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Task:
    """Subclass and implement `build_model` and `training_step`; override the others as needed."""

    def build_model(self) -> nn.Module:
        """The model, on the CPU. Called on every rank after seeding with `TrainConfig.seed`, so
        every rank builds the same initial weights (DDP and DeepSpeed also broadcast rank 0's)."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar loss of one micro-batch. Call `model(...)` itself: it is the DDP wrapper or
        the DeepSpeed engine, and only its forward synchronises gradients. `batch` is `collate`'s
        output, already on the worker's device."""
        raise NotImplementedError

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics on a fixed subset, e.g. {"val_loss": 0.31, "ndcg@10": 0.12}.

        Called on every rank at the same steps, with the unwrapped module in eval mode under
        `torch.no_grad()`; rank 0's answer is broadcast, so early stopping and checkpoint ranking
        agree across ranks. Collectives only as every rank makes them: to split the examples
        across ranks and add up, see train/sharded_validation.py. The module is on the training
        device: take it from `next(model.parameters()).device`.
        """
        return {}

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """A Ray Data numpy batch (column -> array) to tensors; the spine moves them to the device.

        Copies: Ray Data hands out read-only views of its blocks, which torch must not alias."""
        return {key: torch.tensor(value) for key, value in batch.items()}
