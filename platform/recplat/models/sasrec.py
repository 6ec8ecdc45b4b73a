"""SASRec (Kang & McAuley, ICDM 2018), an ID-based baseline of LLM-Rec (spec §1.9).

Item embedding (scaled by sqrt(d)) + learned positional embedding -> dropout -> blocks of
[LayerNorm -> causal self-attention -> residual, LayerNorm -> point-wise FFN -> residual] -> final
LayerNorm, as in the authors' code. Score = h_u . e_v with the input item embeddings (tied).

Padding convention (shared with `GRU4Rec`): a history is a [B, L] int64 tensor of item indices,
1..num_items, padded with 0 on the LEFT or on the RIGHT (one side per row). Positions are counted
over real items from the oldest (0, 1, 2, ...), padding is masked out as an attention key and its
outputs are zeroed, so the two sides give the same user vector, and the output at position i
depends on items 0..i only (a prefix gets the same vector alone as inside a longer history). The
user vector is the output at the last real position. Deviation from the authors' code, which
leaves pads as attention keys and counts positions over the padded width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recplat.models.padding import last_real_index, positions_from_mask


class _CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key_value = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, query_in: torch.Tensor, key_in: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = query_in.shape
        q = self.query(query_in)
        k, v = self.key_value(key_in).chunk(2, dim=-1)
        q, k, v = (t.view(b, length, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(attn.transpose(1, 2).reshape(b, length, d))


class _Block(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.attn = _CausalSelfAttention(hidden, heads, dropout)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.ReLU(), nn.Linear(hidden, hidden), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)  # authors' code: normalised query, raw keys/values, residual on the query
        x = q + self.attn(q, x, allowed)
        x = self.ffn_norm(x)
        x = x + self.ffn(x)
        return x * real


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases (RecBole's choice); PyTorch's N(0, 1) embeddings make the
    first logits ~d and the first steps wasted."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])


class SASRec(nn.Module):
    """Self-attentive sequential recommender; defaults: hidden 64, 2 blocks, 1 head, max length 50."""

    def __init__(self, num_items: int, hidden: int = 64, num_blocks: int = 2, num_heads: int = 1,
                 dropout: float = 0.2, max_len: int = 50):  # fmt: skip
        super().__init__()
        self.num_items = num_items
        self.max_len = max_len
        self.item_emb = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(hidden, num_heads, dropout) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.apply(_init_weights)

    def encode_sequence(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L] histories -> [B, L, d]: position i's output summarises the real items up to i
        (all of them can be trained at once, one next-item target per position)."""
        if history.shape[1] > self.max_len:
            raise ValueError(f"history length {history.shape[1]} exceeds max_len={self.max_len}")
        mask = history.ne(0)
        real = mask.unsqueeze(-1).to(self.item_emb.weight.dtype)
        x = self.item_emb(history) * math.sqrt(self.item_emb.embedding_dim)
        x = self.emb_dropout(x + self.pos_emb(positions_from_mask(mask))) * real
        length = history.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=history.device).tril()
        # a query sees earlier real items and itself; a pad query sees only itself (no empty rows)
        allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool, device=history.device)
        for block in self.blocks:
            x = block(x, allowed, real)
        return self.final_norm(x)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L] histories -> [B, d] user vectors: the output at the last real position."""
        out = self.encode_sequence(history)
        index = last_real_index(history.ne(0))
        return out[torch.arange(out.shape[0], device=out.device), index]

    def item_embeddings(self, item_idx: torch.Tensor) -> torch.Tensor:
        return self.item_emb(item_idx)

    def score(self, user_vec: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """[B, d] users, [B, C] candidate indices -> [B, C] inner products."""
        return torch.einsum("bd,bcd->bc", user_vec, self.item_embeddings(item_idx))
