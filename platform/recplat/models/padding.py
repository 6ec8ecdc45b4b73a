"""Padding helpers shared by the text encoder and the ID-based sequential models.

Convention everywhere in `recplat.models`: an attention mask (or `history != 0`) is 1 on real
tokens/items and 0 on padding, and padding sits at ONE end of a row — the left or the right. The
helpers below find positions from the mask itself, so they are correct for either side (and do
not need to be told which one was used).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PADDING_SIDES = ("left", "right")


def first_real_index(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask -> [B] index of the first 1 in each row (0 for an all-padding row)."""
    return mask.ne(0).int().argmax(dim=1)  # argmax returns the first maximal index


def last_real_index(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask -> [B] index of the last 1 in each row (L-1 for an all-padding row).

    Right padding: `mask.sum(-1) - 1` (LLM-Rec's code); left padding: `L - 1`. Both are the index
    of the last 1, which is what this computes, whatever the side.
    """
    length = mask.shape[1]
    return length - 1 - mask.ne(0).int().flip(dims=[1]).argmax(dim=1)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] mask -> [B, L] position ids counted over real tokens only: 0, 1, 2, ... from the first
    real token, whichever side the padding is on (padding positions get 0; they are masked)."""
    return (mask.ne(0).long().cumsum(dim=1) - 1).clamp(min=0)


def pad_sequences(
    seqs: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged id lists -> (input_ids [B, T], attention_mask [B, T]) int64, T = longest row (>= 1)."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    width = max((len(s) for s in seqs), default=0) or 1
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if not seq:
            continue
        cols = slice(0, len(seq)) if padding_side == "right" else slice(width - len(seq), width)
        ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask
