"""ID-based baselines (spec §1.9): SASRec and GRU4Rec on the same prepared examples, stored
candidates, metrics and training spine as LLM-Rec, so their numbers are comparable.

    recplat train sasrec --config my.yaml       (or gru4rec; keys: `Config` below)

Training uses the same loss as LLM-Rec (cross-entropy over the positive and the S stored
negatives); users are the model's vector at the last history position, items its embedding table.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from recplat.config import StrictModel
from recplat.data.dataset import PreparedDataset
from recplat.models.losses import candidate_cross_entropy
from recplat.recipes.ranking_task import RankingArrays, RankingData, RankingEvalConfig, RankingTask, train_and_evaluate
from recplat.runs import RunSummary
from recplat.train.config import TrainConfig


class IdModel(StrictModel):
    hidden_size: int = Field(64, ge=1)
    num_layers: int | None = Field(None, ge=1)  # SASRec blocks / GRU4Rec layers; None: 2 / 1
    num_heads: int = Field(1, ge=1)  # SASRec only
    dropout: float = Field(0.2, ge=0, lt=1)
    max_history: int = Field(10, ge=1)  # the most recent items fed to the model (SASRec: its max length)


class Config(StrictModel):
    data: RankingData
    arch: Literal["sasrec", "gru4rec"] = "sasrec"
    model: IdModel = IdModel()
    eval: RankingEvalConfig = RankingEvalConfig()
    train: TrainConfig = TrainConfig(lr=1e-3, micro_batch_size=64, eval_every=200, metric="recall@10", mode="max",
                                     patience=5)
    out: str = "runs/id_baseline"


class IdBaselineTask(RankingTask):
    def __init__(self, cfg: Config, num_items: int, valid: RankingArrays):
        super().__init__(num_items, valid, cfg.eval.metrics, cfg.eval.batch_size)
        self.cfg = cfg

    def build_model(self) -> torch.nn.Module:
        m = self.cfg.model
        if self.cfg.arch == "sasrec":
            from recplat.models.sasrec import SASRec

            return SASRec(self.num_items, hidden=m.hidden_size, num_blocks=m.num_layers or 2, num_heads=m.num_heads,
                          dropout=m.dropout, max_len=m.max_history)
        from recplat.models.gru4rec import GRU4Rec

        return GRU4Rec(self.num_items, hidden=m.hidden_size, embedding_size=m.hidden_size,
                       num_layers=m.num_layers or 1, dropout=m.dropout)

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        candidates = np.concatenate([batch["target"][:, None], batch["negatives"]], axis=1)
        return {"history": torch.as_tensor(batch["history"]), "candidates": torch.as_tensor(candidates),
                "negatives": torch.as_tensor(batch["negatives"])}

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        user = model(batch["history"])
        inner = model.module if hasattr(model, "module") else model  # DDP / DeepSpeed wrappers
        logits = inner.score(user, batch["candidates"])
        return candidate_cross_entropy(self.masked_logits(logits, batch["negatives"]))

    def encode_users(self, model, history: torch.Tensor) -> torch.Tensor:
        return model(history)

    def encode_items(self, model, item_idx: torch.Tensor) -> torch.Tensor:
        return model.item_embeddings(item_idx)


def run(cfg: Config) -> RunSummary:
    def make_task(prepared: PreparedDataset, valid: RankingArrays) -> IdBaselineTask:
        return IdBaselineTask(cfg, prepared.num_items, valid)

    return train_and_evaluate(cfg.arch, make_task, cfg.data, cfg.eval, cfg.train, cfg.out, cfg.model.max_history)
