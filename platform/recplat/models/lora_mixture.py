"""MoLoRec's mixture of a domain-general and a domain-specific LoRA, in weight space (spec §3.5).

The authors' code (`src/mlora3/mytuners.py`) keeps both adapters in every LoRA module ℓ and one
logit vector λ_ℓ ∈ R² per module (initialised [.5, .5]); with w_ℓ = softmax(λ_ℓ / T):

    ΔW_ℓ = Σ_k w_ℓk · (α_k / r_k) · B_k A_k                  (MoLoRec Eq. 6, the PRODUCT merge)

This is not peft's `add_weighted_adapter(combination_type="linear")`, which mixes A and B
separately and so adds the cross terms w_g w_s (B_g A_s + B_s A_g). That reading of the paper's
Eq. 7-8 (A_mix = Σ w_k A_k, B_mix = Σ w_k B_k, the FACTOR merge) is kept as an ablation
(`merge_lora_factors`, `export_factor_adapter`).

`LoraMixture` makes the product merge differentiable in λ with plain peft: both adapters are loaded
into one `PeftModel` and active together, and a forward hook multiplies each adapter's `lora_B`
output in module ℓ by w_ℓk (peft's LoRA forward adds `lora_B(lora_A(x)) * scaling` per adapter).
λ stays fp32 (the authors cast it to bf16). Everything but λ is frozen.

Export: Σ_k w_k s_k B_k A_k is one LoRA of rank r_g + r_s with A = [A_g; A_s] and
B = [w_g s_g B_g, w_s s_s B_s] and scaling 1 (the exact `cat` form); `export_cat_adapter` writes it
as an ordinary peft adapter that `PeftModel.from_pretrained` loads into the bare base model.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file
from torch import nn

from recplat.errors import ConfigError

GENERAL, SPECIFIC = "general", "specific"
ADAPTERS = (GENERAL, SPECIFIC)


def load_adapter_pair(base: nn.Module, general_dir: str | Path, specific_dir: str | Path) -> PeftModel:
    """The frozen base model with the general and the specific adapter loaded side by side."""
    for directory in (general_dir, specific_dir):
        if not (Path(directory) / "adapter_config.json").is_file():
            raise ConfigError(f"{directory}: no adapter_config.json (not a saved adapter)")
    model = PeftModel.from_pretrained(base, str(general_dir), adapter_name=GENERAL)
    model.load_adapter(str(specific_dir), adapter_name=SPECIFIC)
    return model


def _linear_layers(model: PeftModel, adapters: tuple[str, ...]) -> dict[str, LoraLayer]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        raise ConfigError("the model has no LoRA modules; load both adapters first (load_adapter_pair)")
    for name, layer in layers.items():
        missing = [a for a in adapters if a not in layer.lora_A]
        if missing:
            raise ConfigError(f"LoRA module {name} lacks adapter(s) {missing}: both adapters must target the same modules")
        if not isinstance(layer.get_base_layer(), nn.Linear) or any(a in layer.lora_variant for a in adapters):
            raise ConfigError(f"LoRA module {name}: only plain LoRA on nn.Linear is mixed (no DoRA, no conv/embedding)")
    return layers


class LoraMixture(nn.Module):
    """The per-module mixture Σ_k w_ℓk s_k B_k A_k over `adapters` of `model` (MoLoRec Eq. 6).

    Only `logits` (one fp32 vector of len(adapters) per LoRA module) require grad. The mixture acts
    on `model` in place (hooks); `remove()` detaches it. Call `model.base_model.model` (the plain
    transformers model with the LoRA modules inside) for forward passes and `generate`.
    """

    def __init__(self, model: PeftModel, adapters: tuple[str, ...] = ADAPTERS,
                 init: tuple[float, ...] = (0.5, 0.5), temperature: float = 1.0):  # fmt: skip
        super().__init__()
        if len(init) != len(adapters):
            raise ConfigError(f"mixture.init needs {len(adapters)} values (one per adapter), got {list(init)}")
        if temperature <= 0:
            raise ConfigError(f"mixture temperature must be > 0, got {temperature}")
        object.__setattr__(self, "model", model)  # not a submodule: its weights are not ours
        self.adapters, self.temperature = tuple(adapters), float(temperature)
        self.layers = _linear_layers(model, self.adapters)
        model.base_model.set_adapter(list(self.adapters), inference_mode=True)
        for p in model.parameters():
            p.requires_grad_(False)
        self.logits = nn.ParameterDict(
            {_key(name): nn.Parameter(torch.tensor(init, dtype=torch.float32)) for name in self.layers}
        )
        self._hooks = [
            layer.lora_B[adapter].register_forward_hook(self._scaler(name, k))
            for name, layer in self.layers.items()
            for k, adapter in enumerate(self.adapters)
        ]

    def _scaler(self, name: str, k: int):
        key = _key(name)

        def scale_lora_output(module, inputs, output):
            return output * self.weights_of(key)[k].to(output.dtype)

        return scale_lora_output

    def weights_of(self, key: str) -> torch.Tensor:
        return torch.softmax(self.logits[key] / self.temperature, dim=0)

    def module_weights(self) -> dict[str, torch.Tensor]:
        """w_ℓ for every LoRA module name ℓ (detached, fp32)."""
        return {name: self.weights_of(_key(name)).detach() for name in self.layers}

    def mean_weights(self) -> list[float]:
        """w averaged over LoRA modules (MoLoRec Fig. 4)."""
        return torch.stack(list(self.module_weights().values())).mean(0).tolist()

    @torch.no_grad()
    def set_weights(self, weights: tuple[float, ...]) -> None:
        """Every module to the same w (the validation grid); zeros give λ = -inf, i.e. w exactly 0."""
        w = torch.tensor(weights, dtype=torch.float32)
        if w.shape != (len(self.adapters),) or (w < 0).any() or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-6):
            raise ConfigError(f"mixture weights must be {len(self.adapters)} non-negative numbers summing to 1, got {list(weights)}")
        for p in self.logits.values():
            p.copy_(torch.log(w) * self.temperature)

    @torch.no_grad()
    def reset(self, init: tuple[float, ...]) -> None:
        """Every module's λ back to `init` (a fresh start for another adaptation)."""
        for p in self.logits.values():
            p.copy_(torch.tensor(init, dtype=torch.float32))

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


def _key(module_name: str) -> str:
    return module_name.replace(".", "__")  # ParameterDict keys may not contain dots


def _factors(mixture: LoraMixture, name: str) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    layer = mixture.layers[name]
    a = [layer.lora_A[k].weight.detach().float() for k in mixture.adapters]
    b = [layer.lora_B[k].weight.detach().float() for k in mixture.adapters]
    return a, b, [float(layer.scaling[k]) for k in mixture.adapters]


def merge_lora_products(mixture: LoraMixture) -> dict[str, torch.Tensor]:
    """ΔW_ℓ = Σ_k w_ℓk s_k B_k A_k per module (MoLoRec Eq. 6, the authors' product merge), fp32."""
    out = {}
    for name, w in mixture.module_weights().items():
        a, b, s = _factors(mixture, name)
        out[name] = sum(w[k] * s[k] * (b[k] @ a[k]) for k in range(len(a)))
    return out


def cat_factors(mixture: LoraMixture) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(A, B) per module with B @ A = the product merge: A = [A_g; A_s], B = [w_g s_g B_g, w_s s_s B_s]."""
    out = {}
    for name, w in mixture.module_weights().items():
        a, b, s = _factors(mixture, name)
        out[name] = (torch.cat(a, 0), torch.cat([w[k] * s[k] * b[k] for k in range(len(b))], 1))
    return out


def merge_lora_factors(mixture: LoraMixture) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The ablation: A = Σ_k w_ℓk A_k, B = Σ_k w_ℓk s_k B_k (MoLoRec Eq. 7-8 read on the factors [D]).

    B @ A carries the cross terms w_g w_s (B_g A_s + B_s A_g); needs equal ranks.
    """
    out = {}
    for name, w in mixture.module_weights().items():
        a, b, s = _factors(mixture, name)
        if len({t.shape for t in a}) != 1:
            raise ConfigError(f"factor merge needs equal LoRA ranks; module {name} has {[t.shape[0] for t in a]}")
        out[name] = (sum(w[k] * a[k] for k in range(len(a))), sum(w[k] * s[k] * b[k] for k in range(len(b))))
    return out


def export_cat_adapter(mixture: LoraMixture, directory: str | Path) -> Path:
    """Write the product merge as one plain peft adapter (rank r_g + r_s, scaling 1)."""
    return _write_adapter(mixture, cat_factors(mixture), directory)


def export_factor_adapter(mixture: LoraMixture, directory: str | Path) -> Path:
    """Write the factor merge (ablation) as one plain peft adapter (rank r, scaling 1)."""
    return _write_adapter(mixture, merge_lora_factors(mixture), directory)


def _write_adapter(mixture: LoraMixture, factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
                   directory: str | Path) -> Path:  # fmt: skip
    ranks = {a.shape[0] for a, _ in factors.values()}
    if len(ranks) != 1:
        raise ConfigError(f"adapters with per-module ranks (rank_pattern) are not exported; ranks {sorted(ranks)}")
    rank = ranks.pop()
    source = mixture.model.peft_config[mixture.adapters[0]]
    if source.rank_pattern or source.alpha_pattern:
        raise ConfigError("adapters with rank_pattern/alpha_pattern are not exported")
    # lora_alpha = r and no rsLoRA: peft's scaling α/r is 1, the w_k s_k already sit in B
    config = LoraConfig(**{
        **{f.name: getattr(source, f.name) for f in dataclasses.fields(LoraConfig) if f.init},
        "r": rank, "lora_alpha": rank, "use_rslora": False, "lora_dropout": 0.0, "inference_mode": True,
    })  # fmt: skip
    dtype = next(iter(mixture.layers.values())).lora_A[mixture.adapters[0]].weight.dtype
    tensors = {}
    for name, (a, b) in factors.items():
        tensors[f"{name}.lora_A.weight"] = a.to(dtype).contiguous()
        tensors[f"{name}.lora_B.weight"] = b.to(dtype).contiguous()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(directory))
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory
