"""The DeepSpeed ZeRO stage-2 config for a TrainConfig: a pure function, unit-tested key by key.

Choices, and why:
- The optimizer is DeepSpeed's config optimizer with `torch_adam: true`: DeepSpeed then builds
  `torch.optim.Adam`/`AdamW` and never compiles FusedAdam/CPUAdam (no build on CPU machines; it also
  keeps optimizer-offload legal, which rejects client optimizers unless DeepSpeed's own).
- `Adam` sets `adam_w_mode: false` explicitly: DeepSpeed otherwise turns "Adam" into AdamW, and
  the ddp strategy's `torch.optim.Adam` would then not match.
- The learning rate schedule is not in this dict: the loop hands DeepSpeed the same LambdaLR the
  ddp strategy uses (train/schedules.py), so both strategies follow one curve.
- `train_batch_size` is left for DeepSpeed to derive (micro batch x accumulation x world size).
"""

from __future__ import annotations

from typing import Any

from recplat.train.config import TrainConfig


def build_deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """DeepSpeed config dict (ZeRO-2) for `cfg`; the caller passes it to `deepspeed.initialize`."""
    zero: dict[str, Any] = {
        "stage": 2,
        "contiguous_gradients": True,
        "overlap_comm": cfg.use_gpu,  # overlap needs CUDA streams; on CPU it only adds copies
        "reduce_scatter": True,
        "allgather_partitions": True,
    }
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": cfg.use_gpu}

    optimizer_params: dict[str, Any] = {
        "torch_adam": True,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
    }
    if cfg.optimizer == "adam":
        optimizer_params["adam_w_mode"] = False

    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.clip_norm if cfg.clip_norm is not None else 0.0,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW" if cfg.optimizer == "adamw" else "Adam", "params": optimizer_params},
        "bf16": {"enabled": cfg.precision == "bf16"},
        "fp16": {"enabled": cfg.precision == "fp16", "initial_scale_power": 16, "loss_scale_window": 1000},
        "steps_per_print": 10**9,  # the loop logs; keep DeepSpeed's own step lines out
        "wall_clock_breakdown": False,
    }
