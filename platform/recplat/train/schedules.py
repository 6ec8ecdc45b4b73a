"""Learning-rate schedules as LR multipliers for `torch.optim.lr_scheduler.LambdaLR`.

Each schedule is a small picklable class (not a closure): it ships to Ray workers, and
`LambdaLR.state_dict()` saves its fields, so a resumed run continues the same curve. The formulas
are the Hugging Face ones (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`):
warmup rises linearly from 0 at step 0 to 1 at `warmup_steps`.

Adding a schedule (CPRec's WSA, warmup-stable-anneal, comes next): write a class with
`__call__(step) -> multiplier` here, register it in `SCHEDULES`, and add its name to
`TrainConfig.schedule`. Extra phase lengths belong in its own fields, derived from `total_steps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """Warmup length in optimizer steps: ceil(ratio * total), as in transformers' TrainingArguments."""
    return math.ceil(total_steps * warmup_ratio)


@dataclass
class ConstantSchedule:
    """Linear warmup, then the base learning rate."""

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        return 1.0


@dataclass
class LinearSchedule:
    """Linear warmup, then linear decay to 0 at `total_steps`."""

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))


@dataclass
class CosineSchedule:
    """Linear warmup, then half a cosine from 1 to 0 at `total_steps`."""

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


SCHEDULES = {"constant": ConstantSchedule, "linear": LinearSchedule, "cosine": CosineSchedule}


def build_lr_lambda(name: str, total_steps: int, warmup_ratio: float = 0.0):
    """The LR multiplier for schedule `name` over `total_steps` optimizer steps."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; known: {sorted(SCHEDULES)}") from None
    return cls(warmup_steps=warmup_steps_for(total_steps, warmup_ratio), total_steps=total_steps)
