"""TrainConfig: every knob of the training spine, typed, with defaults that run offline on a CPU.

A recipe embeds this section in its job config (`train:`) and passes it to `recplat.train.fit`.
Cross-field rules are checked here so that a bad combination fails on the driver with the key's
name, not minutes later inside a Ray worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recplat.config import StrictModel


class TrainConfig(StrictModel):
    # --- how it runs ---------------------------------------------------------------------------
    strategy: Literal["ddp", "deepspeed"] = "ddp"  # deepspeed = ZeRO stage 2
    num_workers: int = Field(2, ge=1)  # Ray Train workers (one process each)
    use_gpu: bool = False  # one GPU per worker when true
    cpus_per_worker: float = Field(1.0, gt=0)

    # --- optimisation --------------------------------------------------------------------------
    micro_batch_size: int = Field(8, ge=1)  # rows per worker per forward pass
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    optimizer: Literal["adamw", "adam"] = "adamw"  # adam = L2 penalty in the gradient (torch Adam)
    lr: float = Field(1e-3, gt=0)
    # per-parameter learning rates: a trainable parameter whose name contains a key trains at that
    # key's lr (the first matching key, in order); the rest at `lr`. The schedule scales all alike.
    # E.g. X-Cross's zero-initialised integrator next to the pooler/scorer it copies: {integrator: 1e-4}
    lr_overrides: dict[str, float] = {}
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["linear", "cosine", "constant", "wsa", "warmup_stable"] = "linear"  # see train/schedules.py
    warmup_ratio: float = Field(0.0, ge=0, lt=1)  # warmup steps = ceil(ratio * total steps)
    # wsa / warmup_stable (CPRec Eq. 2-3): min_lr is the floor eta_l (lr is eta_h); phase_ends the last
    # steps (W, S) of warm-up and stable (A = total steps); None: W = ceil(warmup_ratio * total), S = W
    min_lr: float = Field(0.0, ge=0)
    phase_ends: tuple[int, int] | None = None
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; when set, `epochs` is ignored
    epochs: int = Field(1, ge=1)
    clip_norm: float | None = Field(1.0, gt=0)  # global gradient-norm clip; None = off
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp16 needs GPUs (no CPU support)
    offload_optimizer: bool = False  # DeepSpeed only: optimizer state on the CPU
    shuffle_buffer: int = Field(0, ge=0)  # rows of seeded local shuffle per worker; 0 = data order

    # --- validation, early stopping, checkpoints ----------------------------------------------
    eval_every: int | None = Field(None, ge=1)  # optimizer steps between validations
    metric: str | None = None  # key of Task.validate()'s dict that ranks checkpoints
    mode: Literal["min", "max"] = "min"  # whether a lower or a higher `metric` is better
    patience: int | None = Field(None, ge=1)  # validations without improvement before stopping
    checkpoint_every: int | None = Field(None, ge=1)  # steps; None = at every validation
    num_to_keep: int | None = Field(2, ge=1)  # best by `metric` (the latest is kept as well)
    log_every: int = Field(10, ge=1)  # steps between loss / lr / samples-per-second lines

    # --- where and how it survives ------------------------------------------------------------
    storage_path: str = "runs/train"  # local directory or s3:// / gs:// URI
    name: str = "train"  # run directory under storage_path
    max_failures: int = Field(0, ge=-1)  # worker-group restarts (from the last checkpoint)
    seed: int = 0
    fail_at_step: int | None = Field(None, ge=1)  # tests only: raise once after this step
    # start from another run's checkpoint (a directory or URI) instead of step 0, then go on along this
    # run's own schedule (CPRec's annealing variants branch from one stable-phase run). That run must
    # have trained under this config except for the schedule's keys (checkpoint.BRANCH_KEYS), at the
    # same learning rate for every update up to its checkpoint (launch.py checks both)
    branch_from: str | None = None

    @model_validator(mode="after")
    def _check_combinations(self) -> "TrainConfig":
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("precision: fp16 is not supported on CPU workers; use bf16 or fp32")
        if self.offload_optimizer and self.strategy != "deepspeed":
            raise ValueError("offload_optimizer: only the deepspeed strategy can offload the optimizer")
        if self.lr_overrides and self.strategy == "deepspeed":
            raise ValueError("lr_overrides: only with the ddp strategy (the deepspeed one has one learning rate)")
        for key, lr in self.lr_overrides.items():
            if not key or lr <= 0:
                raise ValueError(f"lr_overrides: {key!r}: {lr}: needs a non-empty name part and a positive lr")
        if self.metric is not None and self.eval_every is None:
            raise ValueError("metric: set eval_every as well, or no validation ever produces it")
        if self.patience is not None and self.metric is None:
            raise ValueError("patience: early stopping needs a metric (and eval_every)")
        if self.checkpoint_every is not None and self.metric is not None:
            # A checkpoint is ranked by the metric it is reported with, so it must be fresh.
            if self.checkpoint_every % self.eval_every:
                raise ValueError(
                    f"checkpoint_every: must be a multiple of eval_every ({self.eval_every}) so every "
                    f"checkpoint carries a fresh {self.metric!r}, got {self.checkpoint_every}"
                )
        if self.min_lr >= self.lr:
            raise ValueError(f"min_lr: the floor must be below lr ({self.lr}), got {self.min_lr}")
        if self.phase_ends is not None and not 0 <= self.phase_ends[0] <= self.phase_ends[1]:
            raise ValueError(f"phase_ends: (W, S) with 0 <= W <= S, got {list(self.phase_ends)}")
        if (self.min_lr or self.phase_ends is not None) and self.schedule not in ("wsa", "warmup_stable"):
            raise ValueError(f"min_lr, phase_ends: only the wsa and warmup_stable schedules use them, "
                             f"not {self.schedule}")
        if self.fail_at_step is not None and self.max_steps is not None and self.fail_at_step >= self.max_steps:
            raise ValueError(f"fail_at_step: must be below max_steps ({self.max_steps})")
        return self

    @property
    def checkpoint_interval(self) -> int | None:
        """Steps between checkpoints: `checkpoint_every`, else every validation (None = end only)."""
        return self.checkpoint_every or self.eval_every
