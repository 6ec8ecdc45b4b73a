"""Learning-rate schedules as LR multipliers for `torch.optim.lr_scheduler.LambdaLR`.

Each schedule is a small picklable class (not a closure): it ships to Ray workers, and
`LambdaLR.state_dict()` saves its fields, so a resumed run continues the same curve. The formulas
are the Hugging Face ones (`get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`):
warmup rises linearly from 0 at step 0 to 1 at `warmup_steps`.

CPRec's Warmup-Stable-Annealing (`wsa`, Eq. 2-3) and its no-annealing ablation (`warmup_stable`)
take their phase ends (W, S) from `TrainConfig.phase_ends` and their floor eta_l from
`TrainConfig.min_lr`; `schedule_for(cfg, total_steps)` builds any registered schedule from a
TrainConfig. A run that branches from another run's checkpoint (`TrainConfig.branch_from`: CPRec's
annealing variants from one stable phase) goes on along its own schedule: `switch_schedule`.
Adding a schedule: a class with `__call__(step) -> multiplier` here, registered in `SCHEDULES`, its
name in `TrainConfig.schedule`.
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


@dataclass
class WsaSchedule:
    """CPRec Eq. 2-3, Warmup-Stable-Annealing, as a multiplier of eta_h (the base lr):

        WSA(s) = eta_l + (s/W)(eta_h - eta_l)     s <= W
               = eta_h                            W < s <= S
               = eta_l + f(s)(eta_h - eta_l)      S < s <= A,   f(s) = (1 + cos(pi (s-S)/(A-S))) / 2
               = eta_l                            s > A (held, as transformers does)

    Step convention: `s` is the 1-based number of the optimizer update. LambdaLR asks for the
    multiplier with `step` = updates already done, i.e. for update s = step + 1, so update s runs at
    WSA(s): updates 1..S (warm-up + stable) see the domain-specific rows and updates S+1..A (the
    annealing branch, s > S) the mixed rows, switching data and schedule on the same update.
    transformers' `get_wsd_schedule(W, stable=S-W, decay=A-S, min_lr_ratio=eta_l/eta_h)` gives the same
    values at every s (its branches use `<` where Eq. 2-3 use `<=`, but the curve is continuous at W,
    S and A, so both sides of each boundary agree) except with no annealing (S = A), where at s = A
    Eq. 2-3 is still stable (eta_h) and transformers already returns the floor. W = 0 starts at eta_h.
    """

    warmup_end: int  # W
    stable_end: int  # S
    anneal_end: int  # A
    floor: float = 0.0  # eta_l / eta_h

    def __post_init__(self):
        if not 0 <= self.warmup_end <= self.stable_end <= self.anneal_end:
            raise ValueError(f"WSA phase ends must satisfy 0 <= W <= S <= A, got W={self.warmup_end}, "
                             f"S={self.stable_end}, A={self.anneal_end}")
        if not 0 <= self.floor <= 1:
            raise ValueError(f"WSA floor eta_l/eta_h must be in [0, 1], got {self.floor}")

    def __call__(self, step: int) -> float:
        s, low = step + 1, self.floor
        if s <= self.warmup_end:
            return low + (s / self.warmup_end) * (1.0 - low)
        if s <= self.stable_end:
            return 1.0
        if s <= self.anneal_end:
            f = 0.5 * (1.0 + math.cos(math.pi * (s - self.stable_end) / (self.anneal_end - self.stable_end)))
            return low + f * (1.0 - low)
        return low


SCHEDULES = {"constant": ConstantSchedule, "linear": LinearSchedule, "cosine": CosineSchedule,
             "wsa": WsaSchedule, "warmup_stable": WsaSchedule}
PHASED = ("wsa", "warmup_stable")  # schedules whose phases come from TrainConfig.phase_ends


def build_lr_lambda(name: str, total_steps: int, warmup_ratio: float = 0.0):
    """The LR multiplier for schedule `name` over `total_steps` optimizer steps."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; known: {sorted(SCHEDULES)}") from None
    if name in PHASED:
        raise ValueError(f"schedule {name!r} needs its phase ends: use wsa_schedule or schedule_for")
    return cls(warmup_steps=warmup_steps_for(total_steps, warmup_ratio), total_steps=total_steps)


def wsa_schedule(name: str, total_steps: int, phase_ends: tuple[int, int] | None, floor: float,
                 warmup_ratio: float = 0.0) -> WsaSchedule:  # fmt: skip
    """`wsa` or `warmup_stable` over `total_steps` = A. phase_ends = (W, S); without them
    W = ceil(warmup_ratio * A) and S = W (linear warm-up from eta_l, then cosine to eta_l: LLaRA's
    schedule). `warmup_stable` (CPRec Fig. 4 DS+Mix(S)) keeps eta_h from W to the end: S = A."""
    warmup, stable = phase_ends if phase_ends is not None else (warmup_steps_for(total_steps, warmup_ratio),) * 2
    if name == "warmup_stable":
        stable = total_steps
    if stable > total_steps:
        raise ValueError(f"phase_ends: the stable phase ends at step {stable}, after the run's {total_steps} steps")
    return WsaSchedule(warmup_end=warmup, stable_end=stable, anneal_end=total_steps, floor=floor)


def schedule_for(cfg, total_steps: int):
    """The LR multiplier of TrainConfig `cfg` over `total_steps` optimizer steps."""
    if cfg.schedule in PHASED:
        return wsa_schedule(cfg.schedule, total_steps, cfg.phase_ends, cfg.min_lr / cfg.lr, cfg.warmup_ratio)
    return build_lr_lambda(cfg.schedule, total_steps, cfg.warmup_ratio)


def switch_schedule(scheduler, lr_lambda) -> None:
    """Make a restored LambdaLR go on along `lr_lambda` from the step it was saved at.

    `LambdaLR.load_state_dict` writes the saved schedule object's fields back into the new one
    (a WsaSchedule would get the old run's anneal_end), and the optimizer's groups come back at the
    old run's next learning rate. A branch (train/loop.py) replaces both: the multipliers from here
    on are `lr_lambda`'s, and so is the learning rate of the next update."""
    groups = scheduler.optimizer.param_groups
    scheduler.lr_lambdas = [lr_lambda] * len(groups)
    for group, base in zip(groups, scheduler.base_lrs):
        group["lr"] = base * lr_lambda(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
