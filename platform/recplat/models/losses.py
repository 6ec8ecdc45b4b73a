"""The training loss shared by LLM-Rec and the ID-based baselines (SASRec, GRU4Rec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def candidate_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """LLM-Rec Eq. 6: softmax cross-entropy over [positive, S negatives], mean over the batch.

    `logits` is [B, 1 + S] with the POSITIVE AT INDEX 0. The paper writes a sum over the batch; its
    code (and this) takes the mean, which only rescales the learning rate.

    Why index 0 is as good as the code's random position: the loss is
    -s_pos + log(sum_c exp(s_c)); the sum does not depend on the order of the candidates, so
    permuting the columns (and the target index with them) gives the same value and the same
    gradients — provided each candidate is scored on its own (dot product h_u . h_v here), as in
    every model of this package. Position only matters where ties are broken by index, i.e. at
    evaluation time, which is why evaluation candidates are shuffled data, not this function's job.
    """
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be [B, 1 + S] with S >= 1, got {tuple(logits.shape)}")
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
