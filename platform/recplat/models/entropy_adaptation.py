"""MoLoRec's entropy-guided adaptive mixture (spec §3.6, Eq. 9-10): learn only the per-module
mixture logits λ on UNLABELED prompts by minimising the entropy of the mixed model's predictions.

    H(p) = - Σ_c p_c log p_c                                          (Eq. 9, full vocabulary)
    λ* = argmin_λ (1/|X_u|) Σ_{x ∈ X_u} H(f(x; Φ_0, Θ_g, Θ_s, w(λ)))  (Eq. 10)

For an LLM, H(x) is the mean entropy of the next-token distributions of the first k tokens of every
title the mixed model generates greedily for prompt x (the first tokens of a title decide the rest).

As in the authors' `src/train_weights.py`: prompts are used one at a time in one pass (no epochs);
λ is updated while the pass goes on, so later prompts are decoded by the partly adapted mixture;
every time `batch_tokens` token distributions are collected, loss = their mean entropy /
`grad_accum` is back-propagated and Adam steps every `grad_accum` such losses; the model is in eval
mode (LoRA dropout off). Differences, on purpose:
- title boundaries are found in the decoded text (`separator`), not by a tokenizer-specific id;
- greedy decoding runs without grad (KV cache), then ONE teacher-forced forward over prompt +
  continuation recomputes exactly the kept positions' logits with grad (`logits_to_keep`), so the
  gradient is the full one (the authors' loop keeps grad only inside the first-k decoding steps);
- a prompt's distributions are never split across two updates (an update may hold a few more
  than `batch_tokens`).
The learning rate is the caller's choice: pick it on validation prompts, never on test labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from recplat.errors import ConfigError
from recplat.models.lora_mixture import LoraMixture


@dataclass(frozen=True)
class EntropySettings:
    lr: float = 1.0  # the authors' warm grid .5-5, cold .01-.09; choose on validation
    first_tokens: int = 3  # k (5 on Beauty: longer titles)
    batch_tokens: int = 60  # token distributions per loss ("batch size 60")
    grad_accum: int = 4
    max_new_tokens: int = 400
    separator: str = "||"

    def __post_init__(self):
        for key in ("first_tokens", "batch_tokens", "grad_accum", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"mixture.{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError(f"mixture.lr must be > 0, got {self.lr}")


def first_title_tokens(token_ids: Sequence[int], decode: Callable[[list[int]], str], separator: str,
                       k: int) -> list[int]:  # fmt: skip
    """Indices of the generated tokens that are among the first `k` tokens of their title.

    Token j belongs to title t = the number of separators in the decoded text up to and including
    it, if it adds title text after the last separator; tokens that only close a title or carry the
    separator or whitespace belong to none.
    """
    kept, seen = [], {}
    for j in range(len(token_ids)):
        text = decode(list(token_ids[: j + 1]))
        title = text.count(separator)
        if not text.rsplit(separator, 1)[-1].strip():
            continue
        if seen.get(title, 0) < k:
            kept.append(j)
        seen[title] = seen.get(title, 0) + 1
    return kept


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Eq. 9 per row, over the full vocabulary, in fp32."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


@torch.no_grad()
def greedy_continuation(model, prompt_ids: Sequence[int], max_new_tokens: int, eos_token_id: int | None) -> list[int]:
    """The greedy (argmax) continuation of one prompt, without the EOS and what follows it."""
    ids = torch.tensor([list(prompt_ids)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                         pad_token_id=eos_token_id if eos_token_id is not None else 0)  # fmt: skip
    generated = out[0, ids.shape[1]:].tolist()
    return generated[: generated.index(eos_token_id)] if eos_token_id in generated else generated


def title_entropies(model, prompt_ids: Sequence[int], generated: Sequence[int], positions: list[int]) -> torch.Tensor:
    """Entropy of the distributions that produced `generated[j]`, j in `positions` (one forward)."""
    ids = torch.tensor([list(prompt_ids) + list(generated)])
    keep = torch.tensor([len(prompt_ids) + j - 1 for j in positions])  # logits at i predict token i+1
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=keep).logits[0]
    return token_entropy(logits)


def _kept_positions(model, tokenizer, prompt_ids, settings: EntropySettings) -> tuple[list[int], list[int]]:
    generated = greedy_continuation(model, prompt_ids, settings.max_new_tokens, tokenizer.eos_token_id)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    return generated, first_title_tokens(generated, decode, settings.separator, settings.first_tokens)


@torch.no_grad()
def mean_title_entropy(mixture: LoraMixture, tokenizer, prompts: Sequence[Sequence[int]],
                       settings: EntropySettings) -> float:  # fmt: skip
    """The Eq. 10 objective at the current λ: mean entropy over every kept token of `prompts`."""
    model = mixture.model.base_model.model.eval()
    values = []
    for prompt_ids in prompts:
        generated, positions = _kept_positions(model, tokenizer, prompt_ids, settings)
        if positions:
            values.append(title_entropies(model, prompt_ids, generated, positions))
    return float(torch.cat(values).mean()) if values else float("nan")


def adapt_mixture_by_entropy(mixture: LoraMixture, tokenizer, prompts: Sequence[Sequence[int]],
                             settings: EntropySettings) -> dict:  # fmt: skip
    """One pass of Eq. 10 over `prompts` (token ids of the rendered, unlabeled prompts); λ is
    updated in place. Returns the per-update mean entropies, the counts and the mean w (Fig. 4)."""
    model = mixture.model.base_model.model.eval()
    optimizer = torch.optim.Adam(mixture.parameters(), lr=settings.lr)
    optimizer.zero_grad(set_to_none=True)
    pending: list[torch.Tensor] = []
    losses, tokens, unapplied, steps = [], 0, 0, 0  # unapplied: backwards since the last step
    for prompt_ids in prompts:
        generated, positions = _kept_positions(model, tokenizer, prompt_ids, settings)
        if not positions:
            continue
        pending.append(title_entropies(model, prompt_ids, generated, positions))
        tokens += len(positions)
        if sum(len(e) for e in pending) >= settings.batch_tokens:
            losses.append(_backward(pending, settings.grad_accum))
            pending, unapplied = [], unapplied + 1
            if unapplied == settings.grad_accum:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                unapplied, steps = 0, steps + 1
    if pending:  # the last, smaller group still counts
        losses.append(_backward(pending, settings.grad_accum))
        unapplied += 1
    if unapplied:
        optimizer.step()
        steps += 1
    optimizer.zero_grad(set_to_none=True)
    return {"entropy_per_update": losses, "prompts": len(prompts), "tokens": tokens,
            "optimizer_steps": steps, "mean_weights": mixture.mean_weights()}  # fmt: skip


def _backward(pending: list[torch.Tensor], grad_accum: int) -> float:
    entropy = torch.cat(pending).mean()
    (entropy / grad_accum).backward()
    return float(entropy.detach())
