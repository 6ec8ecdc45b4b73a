"""The two ways a worker optimizes: DDP (`ray.train.torch.prepare_model`) or DeepSpeed ZeRO-2.

Both expose the same small surface to the loop:
    model          what Task.training_step calls (the DDP wrapper / the DeepSpeed engine)
    module         the plain nn.Module (validation, weight export)
    train_micro_batch(task, batch, boundary) -> loss   forward, backward, and at an accumulation
                   boundary the clipped optimizer step and the LR-scheduler step
    prepare_batch(batch), lr(), autocast(), save(directory, rank), restore(directory)
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from recplat.errors import RecplatError
from recplat.train.checkpoint import (
    DEEPSPEED_DIR,
    OPTIMIZER_FILE,
    WEIGHTS_FILE,
    load_optimizer,
    load_weights,
    load_weights_only,
    save_optimizer,
    save_weights,
)
from recplat.train.config import TrainConfig
from recplat.train.deepspeed_config import build_deepspeed_config
from recplat.train.schedules import schedule_for

_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DS_TAG = "state"  # one DeepSpeed tag per checkpoint directory: each directory holds one step


def make_strategy(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    if cfg.strategy == "deepspeed":
        return DeepSpeedStrategy(model, cfg, total_steps)
    return DdpStrategy(model, cfg, total_steps)


def _trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise RecplatError("the model has no trainable parameters (requires_grad is False everywhere)")
    return params


def param_groups(module: torch.nn.Module, lr: float, overrides: dict[str, float]) -> list[dict]:
    """Optimizer parameter groups: one per `overrides` key that names some trainable parameter
    (first matching key wins), then the rest at `lr`. Every override must match something; that
    anything trains at all is `_trainable`'s check."""
    groups: dict[str, list] = {key: [] for key in overrides}
    rest = []
    for name, p in module.named_parameters():
        if p.requires_grad:
            key = next((k for k in overrides if k in name), None)
            (groups[key] if key is not None else rest).append(p)
    unused = [k for k, ps in groups.items() if not ps]
    if unused:
        raise RecplatError(f"lr_overrides: no trainable parameter name contains {', '.join(map(repr, unused))}")
    out = [{"params": ps, "lr": overrides[k], "name": k} for k, ps in groups.items()]
    if rest:
        out.append({"params": rest, "lr": lr, "name": "default"})
    return out


def _move(batch: dict, device: torch.device, float_dtype: torch.dtype | None = None) -> dict:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if float_dtype is not None and value.is_floating_point():
                value = value.to(float_dtype)
        out[key] = value
    return out


class DdpStrategy:
    """torch DDP via Ray; AdamW/Adam + LambdaLR; bf16/fp16 through autocast (fp16 with a scaler)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
        import ray.train.torch

        self.cfg = cfg
        self.device = ray.train.torch.get_device()
        self.model = ray.train.torch.prepare_model(model)  # DDP when world size > 1
        self.module = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        self.params = _trainable(self.module)
        optimizer_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_cls(
            param_groups(self.module, cfg.lr, cfg.lr_overrides),
            lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999), eps=1e-8,
        )
        lr_lambda = schedule_for(cfg, total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None

    def prepare_batch(self, batch: dict) -> dict:
        return _move(batch, self.device)

    def autocast(self):
        dtype = _HALF.get(self.cfg.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def train_micro_batch(self, task, batch: dict, boundary: bool) -> float:
        # Between boundaries, skip DDP's all-reduce: gradients accumulate locally (forward and
        # backward both inside no_sync, as DDP requires).
        sync = contextlib.nullcontext()
        if isinstance(self.model, DistributedDataParallel) and not boundary:
            sync = self.model.no_sync()
        with sync:
            with self.autocast():
                loss = task.training_step(self.model, batch)
            scaled = loss / self.cfg.grad_accum
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        if boundary:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if self.cfg.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[-1])

    def save(self, directory: Path, rank: int) -> None:
        # Replicas are identical after every step: rank 0 writes weights and optimizer state.
        if rank == 0:
            save_weights(self.module, directory / WEIGHTS_FILE)
            save_optimizer(directory / OPTIMIZER_FILE, self.optimizer, self.scheduler, self.scaler)

    def restore(self, directory: Path) -> None:
        load_weights(self.module, directory / WEIGHTS_FILE)
        load_optimizer(directory / OPTIMIZER_FILE, self.optimizer, self.scheduler, self.scaler)


class DeepSpeedStrategy:
    """DeepSpeed ZeRO stage 2 built from TrainConfig (train/deepspeed_config.py), initialised
    inside the worker on the process group Ray Train already set up (gloo on CPU, NCCL on GPU)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
        import deepspeed  # after the loop set DS_ACCELERATOR (train/loop.py)

        self.cfg = cfg
        lr_lambda = schedule_for(cfg, total_steps)
        # DeepSpeed steps this scheduler itself, at accumulation boundaries only.
        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            model_parameters=_trainable(model),
            config=build_deepspeed_config(cfg),
            lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda),
        )
        self.module = self.model.module
        self.device = self.model.device
        self._half = _HALF.get(cfg.precision)
        # DeepSpeed's TorchCheckpointEngine reads with torch.load(weights_only=False): a crafted
        # checkpoint would run code on every worker. Saves stay DeepSpeed's; loads are weights-only.
        self.model.checkpoint_engine = WeightsOnlyLoads(self.model.checkpoint_engine)

    def prepare_batch(self, batch: dict) -> dict:
        # DeepSpeed casts the module to bf16/fp16; floating inputs must match it.
        return _move(batch, self.device, self._half)

    def autocast(self):
        # For validation only: the module's weights are half precision, the validation inputs
        # the Task builds are usually float32.
        if self._half is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._half)

    def train_micro_batch(self, task, batch: dict, boundary: bool) -> float:
        loss = task.training_step(self.model, batch)
        self.model.backward(loss)  # scales by 1/grad_accum itself
        self.model.step()  # every micro-batch; DeepSpeed steps the optimizer at boundaries
        if boundary != self.model.was_step_applied() and self.cfg.precision != "fp16":
            # fp16 may skip a step on overflow; otherwise both must count micro-batches alike.
            raise RecplatError("DeepSpeed's accumulation boundary disagrees with the loop's")
        return float(loss.detach())

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, directory: Path, rank: int) -> None:
        # Every rank writes its own ZeRO shard (optimizer partition); rank 0 also writes the model
        # states and the safetensors weights. Ray Train merges the ranks' directories.
        self.model.save_checkpoint(str(directory / DEEPSPEED_DIR), tag=_DS_TAG, exclude_frozen_parameters=True)
        if rank == 0:
            save_weights(self.module, directory / WEIGHTS_FILE)

    def restore(self, directory: Path) -> None:
        # DeepSpeed restores module, ZeRO optimizer partitions and LR scheduler. Frozen weights
        # were excluded on save (LoRA), hence not strict; load_weights then checks the trainables.
        path, _ = self.model.load_checkpoint(
            str(directory / DEEPSPEED_DIR),
            tag=_DS_TAG,
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise RecplatError(f"{directory}: no DeepSpeed checkpoint under {DEEPSPEED_DIR}/{_DS_TAG}")
        load_weights(self.module, directory / WEIGHTS_FILE)


def deepspeed_checkpoint_classes() -> list:
    """The non-container objects DeepSpeed (0.19) puts in a ZeRO-1/2 checkpoint: the loss scaler,
    the stage enum, and the fp32 fragment addresses. Plain state, rebuilt without calling code."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


class WeightsOnlyLoads:
    """A DeepSpeed checkpoint engine whose `load` is weights-only; everything else (save, commit,
    makedirs ...) is the wrapped engine's."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def load(self, path: str, map_location=None):
        return load_weights_only(path, map_location, deepspeed_checkpoint_classes())
