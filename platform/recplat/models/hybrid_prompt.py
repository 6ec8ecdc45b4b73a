"""LLaRA's hybrid prompt (spec §4.1, Eq. 1): e_i = Concat(LLM-tokens(t_i), Proj(SAS_θ(i))).

The `llara` rendering (data/render.py) writes every history title followed by ` [HistoryEmb]` and
every candidate title followed by ` [CansEmb]`, and stores the items in prompt order
(`history_items`, `candidate_items`). Here

- the placeholder tokens `[HistoryEmb]`, `[CansEmb]` and `[PH]` join the tokenizer (one token each);
  their embedding rows start at the mean of the existing rows (deterministic, so every process that
  rebuilds the model gets the same rows) and stay frozen like the rest of the base embeddings;
- `ItemProjector` is LLaRA's 2-layer MLP (model/mlp_projector.py): sasrec_dim -> hidden -> hidden, GELU;
- `HybridPromptLM.input_embeddings` overwrites the input embedding at each `[HistoryEmb]` /
  `[CansEmb]` position with the projected frozen SASRec embedding of that item (LLaRA's `wrap_emb`);
- the text-only variant of the curriculum (§4.1) is the same prompt with every marker token
  swapped for `[PH]`, an ordinary embedding (`to_text_only`).

    model = HybridPromptLM(lm, item_embeddings, placeholder_ids(tokenizer))   # lm: causal LM (+ LoRA)
    out = model(input_ids=..., attention_mask=..., labels=..., history_items=H, candidate_items=C)
    new_tokens = model.generate(input_ids, attention_mask, H, C, max_new_tokens=64)

Marker k of a row takes item k of its list, counted from the END: a prompt cut at its start (too
long for max_length) loses its earliest history markers, and the remaining ones still meet their
items. Item lists are [B, L] int64, 0 = padding at the end (item indices start at 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from recplat.errors import DataError

HISTORY_TOKEN, CANDIDATE_TOKEN, TEXT_ONLY_TOKEN = "[HistoryEmb]", "[CansEmb]", "[PH]"
PLACEHOLDER_TOKENS = (HISTORY_TOKEN, CANDIDATE_TOKEN, TEXT_ONLY_TOKEN)


def add_placeholder_tokens(model, tokenizer) -> dict[str, int]:
    """Add the three placeholder tokens (when missing) and grow the model's embeddings to match;
    new input (and untied output) rows are the mean of the existing rows. Returns {token: id}."""
    missing = [t for t in PLACEHOLDER_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())
                          if m is not None}.values():  # one layer when tied
                layer.weight[old:] = layer.weight[:old].mean(0)
    return placeholder_ids(tokenizer)


def placeholder_ids(tokenizer) -> dict[str, int]:
    vocab = tokenizer.get_vocab()
    missing = [t for t in PLACEHOLDER_TOKENS if t not in vocab]
    if missing:
        raise DataError(f"the tokenizer has no {missing} token(s): call add_placeholder_tokens first")
    return {t: vocab[t] for t in PLACEHOLDER_TOKENS}


class ItemProjector(nn.Sequential):
    """LLaRA's MLP projector: Linear(sasrec_dim, hidden) -> GELU -> Linear(hidden, hidden)."""

    def __init__(self, sasrec_dim: int, hidden: int):
        super().__init__(nn.Linear(sasrec_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def to_text_only(input_ids: torch.Tensor, ids: dict[str, int]) -> torch.Tensor:
    """The text-only prompt: every `[HistoryEmb]`/`[CansEmb]` token replaced by `[PH]`."""
    markers = (input_ids == ids[HISTORY_TOKEN]) | (input_ids == ids[CANDIDATE_TOKEN])
    return torch.where(markers, torch.full_like(input_ids, ids[TEXT_ONLY_TOKEN]), input_ids)


def marker_items(input_ids: torch.Tensor, marker_id: int, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(rows, positions, item ids) of every `marker_id` token: a row's k-th marker from the end
    takes the k-th real item from the end of its list."""
    is_marker = input_ids == marker_id
    markers = is_marker.sum(1)
    real = (items > 0).sum(1)
    short = (markers > real).nonzero()
    if len(short):
        row = int(short[0])
        raise DataError(f"hybrid prompt: row {row} has {int(markers[row])} {marker_id!r} marker tokens "
                        f"but {int(real[row])} items")
    rows, positions = is_marker.nonzero(as_tuple=True)
    rank = is_marker.long().cumsum(1)[rows, positions] - 1  # 0-based order of the marker in its row
    return rows, positions, items[rows, real[rows] - markers[rows] + rank]


class HybridPromptLM(nn.Module):
    """A causal LM whose placeholder positions read projected, frozen SASRec item embeddings.

    Trainable: the LM's own trainable parameters (LoRA) and the projector. The SASRec table is a
    buffer (frozen, saved with the trainable weights so a checkpoint is self-contained)."""

    def __init__(self, lm: nn.Module, item_embeddings: torch.Tensor, ids: dict[str, int]):
        super().__init__()
        self.lm = lm
        self.ids = dict(ids)
        hidden = lm.get_input_embeddings().weight.shape[1]
        self.projector = ItemProjector(item_embeddings.shape[1], hidden)
        self.register_buffer("item_embeddings", item_embeddings.detach().float().clone())

    def input_embeddings(self, input_ids: torch.Tensor, history_items: torch.Tensor | None = None,
                         candidate_items: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The base embeddings of `input_ids`, with every marker position overwritten by its
        projected item (no items given: the plain embeddings, e.g. a text-only batch)."""
        base = self.lm.get_input_embeddings()(input_ids)
        if history_items is None and candidate_items is None:
            return base
        out = base.clone()
        for token, items in ((HISTORY_TOKEN, history_items), (CANDIDATE_TOKEN, candidate_items)):
            if items is None:
                continue
            rows, positions, item_ids = marker_items(input_ids, self.ids[token], items)
            if len(rows):
                out[rows, positions] = self.projector(self.item_embeddings[item_ids]).to(base.dtype)
        return out

    def projector_anchor(self) -> torch.Tensor:
        """0 × (sum of the projector's weights): added to a text-only batch's loss so DDP and ZeRO
        see every trainable parameter take part (its gradient is exactly zero)."""
        return 0.0 * sum(p.sum() for p in self.projector.parameters())

    def forward(self, input_ids, attention_mask=None, labels=None, history_items=None, candidate_items=None,
                text_only: bool = False):  # fmt: skip
        """The LM's output on the hybrid prompt; `text_only`: on the `[PH]` prompt instead, the
        projector joining with a zero-weighted term (`projector_anchor`)."""
        if text_only:
            out = self.lm(input_ids=to_text_only(input_ids, self.ids), attention_mask=attention_mask, labels=labels)
            if labels is not None:
                out.loss = out.loss + self.projector_anchor()
            return out
        embeds = self.input_embeddings(input_ids, history_items, candidate_items)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, history_items=None, candidate_items=None, **kwargs) -> torch.Tensor:
        """Prompt + new tokens, like `model.generate` (eval/generative.py's `generate_greedy`
        slices the prompt off); placeholders are never generated."""
        embeds = self.input_embeddings(input_ids, history_items, candidate_items)
        new = self.lm.generate(inputs_embeds=embeds, attention_mask=attention_mask,
                               suppress_tokens=list(self.ids.values()), **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


@dataclass(frozen=True)
class Curriculum:
    """LLaRA's curriculum prompt tuning (spec §4.1): at optimizer step τ of T a micro-batch takes
    the hybrid prompt with probability p = τ/T, else the text-only one. Computed in the training
    loop from the step count (LLaRA's code counts inside data-loader workers, which restart every
    epoch); the draw is seeded by (seed, τ, micro-batch within the step), so a resumed run draws
    exactly what the uninterrupted one did. `hybrid`: always hybrid; `text_only`: never."""

    total_steps: int
    seed: int = 0
    kind: Literal["linear", "hybrid", "text_only"] = "linear"

    def probability(self, step: int) -> float:
        return {"linear": step / max(self.total_steps, 1), "hybrid": 1.0, "text_only": 0.0}[self.kind]

    def is_hybrid(self, step: int, micro: int = 0) -> bool:
        return bool(np.random.default_rng([self.seed, step, micro]).random() < self.probability(step))


def template_for(seed: int, step: int, micro: int, count: int) -> int:
    """Which of LLaRA's `count` prompt templates micro-batch `micro` of optimizer step τ is written
    in (spec §4.1: one template drawn per batch). Seeded by (seed, τ, micro) in a stream apart from
    the curriculum's, so a resumed run draws what the uninterrupted one did. LLaRA's code draws at
    evaluation too; we evaluate on the first template only, so every run scores the same prompts."""
    return 0 if count <= 1 else int(np.random.default_rng([seed, step, micro, 1]).integers(count))
