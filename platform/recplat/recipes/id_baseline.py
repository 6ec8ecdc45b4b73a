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
from recplat.train.config import TrainConfig


class Config(StrictModel):
    data: RankingData
    arch: Literal["sasrec", "gru4rec"] = "sasrec"
    hidden: int = Field(64, ge=1)
    num_blocks: int = Field(2, ge=1)  # SASRec
    num_heads: int = Field(1, ge=1)  # SASRec
    num_layers: int = Field(1, ge=1)  # GRU4Rec
    dropout: float = Field(0.2, ge=0, lt=1)
    eval: RankingEvalConfig = RankingEvalConfig()
    train: TrainConfig = TrainConfig(lr=1e-3, micro_batch_size=64, eval_every=200, metric="recall@10", mode="max",
                                     patience=5)
    out: str = "runs/id_baseline"


class IdBaselineTask(RankingTask):
    def __init__(self, cfg: Config, num_items: int, valid: RankingArrays):
        super().__init__(num_items, valid, cfg.eval.metrics, cfg.eval.batch_size)
        self.cfg = cfg

    def build_model(self) -> torch.nn.Module:
        cfg = self.cfg
        if cfg.arch == "sasrec":
            from recplat.models.sasrec import SASRec

            return SASRec(self.num_items, hidden=cfg.hidden, num_blocks=cfg.num_blocks, num_heads=cfg.num_heads,
                          dropout=cfg.dropout, max_len=cfg.data.max_history)
        from recplat.models.gru4rec import GRU4Rec

        return GRU4Rec(self.num_items, hidden=cfg.hidden, embedding_size=cfg.hidden, num_layers=cfg.num_layers,
                       dropout=cfg.dropout)

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        candidates = np.concatenate([batch["target"][:, None], batch["negatives"]], axis=1)
        return {"history": torch.as_tensor(batch["history"]), "candidates": torch.as_tensor(candidates),
                "negatives": torch.as_tensor(batch["negatives"])}

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        user = model(batch["history"])
        inner = model.module if hasattr(model, "module") else model  # DDP / DeepSpeed wrappers
        logits = torch.einsum("bd,bcd->bc", user, inner.item_embeddings(batch["candidates"]))
        return candidate_cross_entropy(self.masked_logits(logits, batch["negatives"]))

    def encode_users(self, model, history: torch.Tensor) -> torch.Tensor:
        return model(history)

    def encode_items(self, model, item_idx: torch.Tensor) -> torch.Tensor:
        return model.item_embeddings(item_idx)


def run(cfg: Config) -> dict:
    def make_task(prepared: PreparedDataset, valid: RankingArrays) -> IdBaselineTask:
        return IdBaselineTask(cfg, prepared.num_items, valid)

    return train_and_evaluate(cfg.arch, make_task, cfg.data, cfg.eval, cfg.train, cfg.out)
