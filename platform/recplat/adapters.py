"""LoRA adapters through peft: config with per-architecture targets, wrap, count, save, load.

LLM-Rec's code passes no `target_modules`, i.e. peft's per-architecture defaults (spec §1.8); the
defaults below are those, plus an optional wider set (`extra_targets=True`).

MoLoRec's merge of domain adapters (a weighted sum of per-module PRODUCTS sum_k w_k B_k A_k, not
peft's `add_weighted_adapter(combination_type="linear")`) lives in `recplat.models.lora_mixture`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from recplat.errors import ConfigError

# peft 0.21.2 reads `model.is_gradient_checkpointing` whenever it wraps a model, which transformers
# 5.23 deprecated in favour of `is_activation_checkpointing` (same value): one FutureWarning per
# wrap, in every worker, that no user of ours can act on. Only that message is filtered.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

# model_type -> (default targets, optional extra targets)
LORA_TARGETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bert": (("query", "value"), ("key", "dense")),
    "roberta": (("query", "value"), ("key", "dense")),
    "deberta-v2": (("query_proj", "value_proj"), ("key_proj", "dense")),
    "opt": (("q_proj", "v_proj"), ("k_proj", "out_proj", "fc1", "fc2")),
    "t5": (("q", "v"), ("k", "o", "wi", "wo", "wi_0", "wi_1")),
    "mt5": (("q", "v"), ("k", "o", "wi_0", "wi_1", "wo")),
    "llama": (("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")),
    "qwen2": (("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")),
    "qwen3": (("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")),
    "mistral": (("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")),
}


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise ConfigError(f"{type(model).__name__} has no config.model_type; pass target_modules=")
    return model_type


def default_target_modules(model: nn.Module, extra_targets: bool = False) -> list[str]:
    """LoRA target module names for this architecture (ours, else peft's own default)."""
    model_type = _model_type(model)
    if model_type in LORA_TARGETS:
        base, extra = LORA_TARGETS[model_type]
        return [*base, *extra] if extra_targets else list(base)
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_defaults

    if model_type in peft_defaults and not extra_targets:
        return list(peft_defaults[model_type])
    raise ConfigError(
        f"no default LoRA target modules for model_type={model_type!r}"
        f"{' with extra_targets' if extra_targets else ''}; set target_modules "
        f"(known types: {sorted(LORA_TARGETS)})"
    )


def lora_config(model: nn.Module, rank: int, alpha: float, dropout: float,
                target_modules: list[str] | None = None, extra_targets: bool = False) -> LoraConfig:  # fmt: skip
    """A `LoraConfig(r, lora_alpha, lora_dropout, bias="none")` (LLM-Rec's code) for `model`.

    `target_modules=None` picks the architecture's defaults (`default_target_modules`);
    `extra_targets=True` adds the optional ones (BERT key/dense, Llama/Qwen MLP, ...).
    """
    if rank < 1:
        raise ConfigError(f"lora.rank must be >= 1, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"lora.dropout must be in [0, 1), got {dropout}")
    targets = list(target_modules) if target_modules else default_target_modules(model, extra_targets)
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=targets)


def apply_lora(model: nn.Module, cfg: LoraConfig) -> PeftModel:
    """Wrap `model`: every base weight frozen, only the LoRA A/B matrices trainable."""
    return get_peft_model(model, cfg)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def save_adapter(model: PeftModel, directory: str | Path) -> Path:
    """Write only the adapter (`adapter_config.json` + `adapter_model.safetensors`) to `directory`."""
    directory = Path(directory)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory


def load_adapter(model: nn.Module, directory: str | Path, trainable: bool = False) -> PeftModel:
    """Wrap the base `model` with the adapter saved in `directory` (frozen unless `trainable`)."""
    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise ConfigError(f"{directory}: no adapter_config.json (not a saved adapter)")
    return PeftModel.from_pretrained(model, str(directory), is_trainable=trainable)
