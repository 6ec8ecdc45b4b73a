"""Checkpoint files of the training spine, and the state a resume needs, without any Ray in it.

One checkpoint directory (Ray Train merges what every rank reported into it):

    trainer_state.json        step, epoch, position in the epoch, early-stopping state, history
    model.safetensors         trainable parameters + persistent buffers (LoRA: the adapters only)
    optimizer.pt              ddp: optimizer, LR scheduler, grad scaler (read with weights_only=True)
    deepspeed/                deepspeed: DeepSpeed's own layout, one ZeRO shard per rank
    rng/rank<r>.json          python + numpy RNG state of rank r
    rng/rank<r>.safetensors   torch (and CUDA) RNG state of rank r

Nothing here unpickles arbitrary objects: weights are safetensors, RNG state is JSON + tensors,
and `optimizer.pt` and DeepSpeed's `.pt` files are only ever read with `torch.load(...,
weights_only=True)` (`load_weights_only`; DeepSpeed's own loader would use weights_only=False).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from recplat.errors import RecplatError

STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
DEEPSPEED_DIR = "deepspeed"
RNG_DIR = "rng"


@dataclass
class TrainerState:
    """Where the loop is; saved with every checkpoint so a restart continues exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next micro-batch comes from
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed (skipped on resume)
    best: float | None = None  # best validation metric so far
    best_step: int | None = None
    bad_validations: int = 0  # validations since the last improvement
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)  # every validation, with "step"
    train_log: list[dict[str, float]] = field(default_factory=list)  # loss / lr / samples/s every log_every steps
    config: dict[str, Any] = field(default_factory=dict)  # resume_config(): a resume must train under the same
    total_steps: int = 0  # the run's length (a branch checks its learning rates against this run's)
    branched_from: dict[str, Any] | None = None  # {"path", "step"}: the checkpoint a branch started from

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        return cls(**json.loads(text))


def write_state(directory: str | Path, state: TrainerState) -> None:
    Path(directory, STATE_FILE).write_text(state.to_json() + "\n", encoding="utf-8")


def read_state(directory: str | Path) -> TrainerState:
    path = Path(directory, STATE_FILE)
    if not path.is_file():
        raise RecplatError(f"{directory}: not a recplat checkpoint (no {STATE_FILE})")
    return TrainerState.from_json(path.read_text(encoding="utf-8"))


# --- the training config a checkpoint was written under ----------------------------------------

# TrainConfig keys that place or watch a run but do not change what it computes: a resume may change them.
NOT_RESUME_KEYS = ("name", "storage_path", "max_failures", "fail_at_step", "num_to_keep", "log_every",
                   "checkpoint_every", "cpus_per_worker")


def resume_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a TrainConfig dump that a checkpoint must have been trained under to be resumed."""
    return {k: v for k, v in sorted(config.items()) if k not in NOT_RESUME_KEYS}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: saved -> current` for every key whose value differs (missing keys show as None)."""
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]


def check_resumable(checkpoint: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume `checkpoint` (written under `saved`) with a different config. Checkpoints
    from before configs were recorded carry none and are not checked."""
    differences = config_differences(saved, current) if saved else []
    if differences:
        raise RecplatError(
            f"{checkpoint}: written under a different training config ({'; '.join(differences)}); resuming would "
            "train on under the old one. Rerun with the same settings, or start a new run (another --out / run name)"
        )


# TrainConfig keys a branch (TrainConfig.branch_from) may set otherwise than the run it branches from:
# how long it runs and how its schedule goes on after the branch point
BRANCH_KEYS = ("max_steps", "epochs", "schedule", "warmup_ratio", "min_lr", "phase_ends", "branch_from")


def check_branchable(checkpoint: str, state: TrainerState, current: dict[str, Any], total_steps: int) -> None:
    """Refuse to branch from `checkpoint` (its `state`) into a run of `total_steps` under TrainConfig
    dump `current` unless the branch would have trained the checkpoint's updates exactly as it did:
    the same config but for BRANCH_KEYS, and the same learning rate at each of its `state.step`
    updates. Then the branch ends where an uninterrupted run under `current` would (tests/train)."""
    from recplat.errors import ConfigError
    from recplat.train.config import TrainConfig
    from recplat.train.schedules import schedule_for

    where = f"branch_from: {checkpoint}"
    if not state.config or not state.total_steps:
        raise ConfigError(f"{where}: written before recplat recorded a checkpoint's config and length; "
                          "it cannot be checked, so it cannot be branched from")
    differences = config_differences({k: v for k, v in state.config.items() if k not in BRANCH_KEYS},
                                      {k: v for k, v in resume_config(current).items() if k not in BRANCH_KEYS})
    if differences:
        raise ConfigError(f"{where}: trained under a different config ({'; '.join(differences)}); a branch may "
                          f"change only {', '.join(BRANCH_KEYS[:-1])}")
    if state.step >= total_steps:
        raise ConfigError(f"{where}: it is at step {state.step}, not before this run's last step ({total_steps})")
    saved = TrainConfig.model_validate(state.config)
    before, after = schedule_for(saved, state.total_steps), schedule_for(TrainConfig.model_validate(current), total_steps)
    for step in range(state.step):
        old, new = saved.lr * before(step), saved.lr * after(step)
        if not math.isclose(old, new, rel_tol=1e-12, abs_tol=1e-15):
            raise ConfigError(f"{where}: update {step + 1} ran at learning rate {old:.6g} there and would run at "
                              f"{new:.6g} here; a branch must train the checkpoint's {state.step} updates alike")


# --- weights ---------------------------------------------------------------------------------


def trainable_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that train (all of them in full fine-tuning, the adapters with LoRA) and the
    persistent buffers; frozen base weights are left out, they come from the model builder."""
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in module.named_buffers()}
    out = {}
    for name, tensor in module.state_dict().items():
        if name in trainable or name in buffers:
            # A private contiguous CPU copy: safetensors refuses views that share storage. Tied
            # weights appear once (named_parameters lists a shared parameter under one name).
            out[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return out


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    save_file(trainable_state_dict(module), str(path))


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load a `save_weights` file; every trainable parameter must be in it, nothing else may be."""
    tensors = load_file(str(path))
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    missing_trainable = sorted(set(missing) & trainable)
    if missing_trainable or unexpected:
        raise RecplatError(
            f"{path}: weights do not fit the model: missing trainable {missing_trainable[:5]}, "
            f"unexpected {sorted(unexpected)[:5]} (was it saved from a different model builder?)"
        )


# --- optimizer, scheduler, scaler (ddp strategy) ---------------------------------------------


def save_optimizer(path: str | Path, optimizer, scheduler=None, scaler=None) -> None:
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        str(path),
    )


def load_optimizer(path: str | Path, optimizer, scheduler=None, scaler=None) -> None:
    # weights_only=True: tensors, numbers, strings and containers only, never arbitrary pickles.
    saved = torch.load(str(path), map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])


def load_weights_only(path: str | Path, map_location=None, allowed_classes: list | tuple = ()):
    """torch.load that never runs code from the file: tensors, numbers, strings, containers, and
    the few named `allowed_classes` (rebuilt from their state, not by calling what the file names).
    A checkpoint naming anything else fails with pickle.UnpicklingError."""
    with torch.serialization.safe_globals(list(allowed_classes)):
        return torch.load(str(path), map_location=map_location, weights_only=True)


# --- RNG state, per rank ---------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_rng(directory: str | Path, rank: int) -> None:
    """Python, numpy and torch RNG state of this process as rng/rank<r>.{json,safetensors}."""
    folder = Path(directory, RNG_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(py_state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    (folder / f"rank{rank}.json").write_text(json.dumps(plain), encoding="utf-8")
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(folder / f"rank{rank}.safetensors"))


def load_rng(directory: str | Path, rank: int) -> bool:
    """Restore this rank's RNG state; False when the checkpoint has none for `rank` (the world
    size changed), in which case the caller seeds afresh."""
    folder = Path(directory, RNG_DIR)
    plain_path, tensor_path = folder / f"rank{rank}.json", folder / f"rank{rank}.safetensors"
    if not (plain_path.is_file() and tensor_path.is_file()):
        return False
    plain: dict[str, Any] = json.loads(plain_path.read_text(encoding="utf-8"))
    version, py_state, gauss = plain["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = load_file(str(tensor_path))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    return True
