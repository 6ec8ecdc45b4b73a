"""X-Cross's multiple-choice scorer (spec §2.2, §2.6): one question = a user's history paired with
each of C candidate titles; an encoder reads every pair, the first-token state is pooled and scored.

    p = GELU(W_p h[CLS] + b_p)          (Eq. 7, DeBERTa's ContextPooler)
    phi(u, i) = w_s^T p + b_s           (Eq. 8)
    P(i | u) = softmax over the C choices of phi; loss = cross-entropy at the positive (Eq. 1)

This is HF `DebertaV2ForMultipleChoice`'s head (dropout -> pooler -> dropout -> Linear(d, 1)) over any
encoder: a plain or LoRA-wrapped HF model (`.last_hidden_state` is taken) or `XCrossEncoder`
(models/layer_integration.py), which returns the integrated hidden states directly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "head.safetensors"


class MultipleChoiceHead(nn.Module):
    """Eq. 7-8: ContextPooler (dense d x d + GELU on the first token) and the linear scorer."""

    def __init__(self, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.scorer = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[N, T, d] token states -> [N] scores."""
        pooled = nn.functional.gelu(self.pooler(self.dropout(hidden[:, 0])))
        return self.scorer(self.dropout(pooled)).squeeze(-1)

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(directory) / HEAD_FILE
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(path))
        return path

    def load(self, directory: str | Path) -> "MultipleChoiceHead":
        from safetensors.torch import load_file

        self.load_state_dict(load_file(str(Path(directory) / HEAD_FILE)))
        return self


class MultipleChoiceModel(nn.Module):
    """Scores [B, C, T] token ids (B questions of C choices) as [B, C] logits."""

    def __init__(self, encoder: nn.Module, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.head = MultipleChoiceHead(hidden_size, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        questions, choices, length = input_ids.shape
        flat = {"input_ids": input_ids.reshape(-1, length), "attention_mask": attention_mask.reshape(-1, length)}
        if token_type_ids is not None:
            flat["token_type_ids"] = token_type_ids.reshape(-1, length)
        hidden = self.encoder(**flat)
        hidden = getattr(hidden, "last_hidden_state", hidden)
        return self.head(hidden).view(questions, choices)
