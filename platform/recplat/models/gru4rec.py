"""GRU4Rec (Hidasi et al., ICLR 2016), an ID-based baseline of LLM-Rec (spec §1.9).

Embedding -> dropout -> GRU -> linear back to the embedding size; the user vector is the GRU
output at the last real item; score = h_u . e_v with the input item embeddings (RecBole's
formulation, trained here with the same candidate cross-entropy as LLM-Rec instead of the
session-parallel BPR/TOP1 losses of the original).

Padding convention (same as `SASRec`): history [B, L] int64, items 1..num_items, 0 = padding on the
left or on the right. A GRU is not padding-invariant by itself (a pad step still changes the
state), so real items are packed (`pack_padded_sequence`) and the GRU never sees a pad: left and
right padding give the same vector. An all-padding row gives the output of one pad step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def left_align(history: torch.Tensor) -> torch.Tensor:
    """Move each row's real items (non-zero) to the front, keeping their order: right padding."""
    order = torch.sort(history.eq(0).int(), dim=1, stable=True).indices
    return history.gather(1, order)


class GRU4Rec(nn.Module):
    """Defaults: embedding 64, hidden 64, 1 GRU layer, dropout 0.2."""

    def __init__(self, num_items: int, hidden: int = 64, embedding_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.2):  # fmt: skip
        super().__init__()
        self.num_items = num_items
        self.item_emb = nn.Embedding(num_items + 1, embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_size, hidden, num_layers=num_layers, batch_first=True, bias=False)
        self.dense = nn.Linear(hidden, embedding_size)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L] histories -> [B, d] user vectors (output at the last real item)."""
        history = left_align(history)
        lengths = history.ne(0).sum(dim=1).clamp(min=1).cpu()
        x = self.emb_dropout(self.item_emb(history))
        _, h_n = self.gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        return self.dense(h_n[-1])  # last layer's state after each row's last real step

    def item_embeddings(self, item_idx: torch.Tensor) -> torch.Tensor:
        return self.item_emb(item_idx)

    def score(self, user_vec: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """[B, d] users, [B, C] candidate indices -> [B, C] inner products."""
        return torch.einsum("bd,bcd->bc", user_vec, self.item_embeddings(item_idx))
