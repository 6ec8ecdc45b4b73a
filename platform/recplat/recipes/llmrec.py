"""LLM-Rec (spec §1): one text encoder embeds users and items; score = inner product.

    recplat run llmrec/table4_bert --profile smoke        # a catalog entry
    recplat train llmrec --config my.yaml [key=value ...] # a bare config (keys: `Config` below)

Setup: the backbone (`model.name`: BERT / OPT / FLAN-T5 encoder, any HF id or local folder;
`offline:minilm` ships with the project) with LoRA or full fine-tuning (`finetune.method`); every
item title tokenized once (`TitleTokens`, §1.4). Train: Eq. 6 cross-entropy over the positive and the S stored same-domain
negatives, on Ray Train (DDP or DeepSpeed ZeRO-2), validating every `train.eval_every` steps on a
fixed validation subset with early stopping (§1.8). Test: the best checkpoint ranks each test
target among its stored candidates through the item-tower cache (§1.7); metrics overall, per
target domain and per Same/Mix/Diff segment (Fig. 5). `mode: evaluate` skips training and tests
the best checkpoint of `init_from` (Figs. 5 and 6).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from recplat.config import StrictModel
from recplat.data.dataset import PreparedDataset
from recplat.models.losses import candidate_cross_entropy
from recplat.recipes.ranking_task import RankingArrays, RankingData, RankingEvalConfig, RankingTask, train_and_evaluate
from recplat.recipes.settings import BackboneSettings, LoraSettings
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig


class ModelSettings(BackboneSettings):
    family: Literal["encoder", "decoder", "encoder_decoder"] | None = None  # None: from the HF config
    max_title_tokens: int = Field(40, ge=1)  # spec §1.4
    max_history: int = Field(10, ge=1)  # spec §1.4: the 10 most recent items
    # The paper: Eq. 3-4 pool the [CLS] / EOS state ("token"), Eq. 5 scores h_u . h_v ("dot").
    # Not the paper's: "mean" pooling, and "cosine" scores of unit vectors whose loss logits are
    # divided by `temperature` (ranking is the same for any temperature). Together they are how a
    # sentence-transformers encoder such as the offline MiniLM was pretrained (mean pooling, scale
    # 20 = temperature 0.05); its raw [CLS] dot products are ~35 units large, and its normalised
    # [CLS] ranks like chance. The README's demo section has the measurements.
    pooling: Literal["token", "mean"] = "token"
    score: Literal["dot", "cosine"] = "dot"
    temperature: float = Field(1.0, gt=0)


class Finetune(LoraSettings):
    method: Literal["full", "lora"] = "lora"  # full = every parameter trains (the paper's FPFT)
    alpha: float = Field(16, gt=0)  # LLM-Rec's code (LoraSettings: 32)
    dropout: float = Field(0.1, ge=0, lt=1)  # LLM-Rec's code (LoraSettings: 0)

    @model_validator(mode="after")
    def _lora_keys_need_lora(self) -> "Finetune":
        lora_keys = sorted(self.model_fields_set - {"method"})
        if self.method == "full" and lora_keys:
            raise ValueError(f"{', '.join(lora_keys)}: LoRA settings, set with method: full (use method: lora)")
        return self


class Config(StrictModel):
    data: RankingData
    model: ModelSettings = ModelSettings()
    finetune: Finetune = Finetune()
    mode: Literal["train", "evaluate"] = "train"  # evaluate: no training, test init_from's best checkpoint
    init_from: RunRef | None = None  # the run whose best checkpoint `mode: evaluate` tests
    eval: RankingEvalConfig = RankingEvalConfig()
    train: TrainConfig = TrainConfig(lr=5e-5, weight_decay=0.001, warmup_ratio=0.001, micro_batch_size=8,
                                     eval_every=100, metric="recall@1", mode="max", patience=10)
    out: str = "runs/llmrec"

    @model_validator(mode="after")
    def _evaluate_needs_a_run(self) -> "Config":
        if self.mode == "evaluate" and self.init_from is None:
            raise ValueError("mode: evaluate needs init_from (the run whose best checkpoint is tested)")
        if self.mode == "train" and self.init_from is not None:
            raise ValueError("init_from: only with mode: evaluate (warm-starting a training run is not built)")
        return self


class LlmRecTask(RankingTask):
    """The Task the training spine runs: plain data here, the model is built inside each worker."""

    def __init__(self, cfg: Config, titles: np.ndarray, num_items: int, valid: RankingArrays | None):
        super().__init__(num_items, valid, cfg.eval.metrics, cfg.eval.batch_size)
        self.cfg = cfg
        self.titles = titles
        self.tokens = None  # TitleTokens, built with the model

    def build_model(self) -> torch.nn.Module:
        from recplat.adapters import apply_lora
        from recplat.models.offline import resolve_model_name
        from recplat.models.text_encoder import DualEncoder, TitleTokens, load_backbone

        model = self.cfg.model
        backbone, tokenizer, family = load_backbone(resolve_model_name(model.name), model.family)
        ft = self.cfg.finetune
        if ft.method == "lora":
            backbone = apply_lora(backbone, ft.peft_config(backbone))
        self.tokens = TitleTokens.from_titles(tokenizer, list(self.titles), family, model.max_title_tokens,
                                              model.max_history)
        return DualEncoder(backbone, family, model.score, model.temperature, model.pooling)

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Tokens for the user (history) and the 1 + S candidates (positive first) of each row."""
        candidates = np.concatenate([batch["target"][:, None], batch["negatives"]], axis=1)
        user_ids, user_mask = self.tokens.user_batch(torch.as_tensor(batch["history"]))
        item_ids, item_mask = self.tokens.item_batch(torch.as_tensor(candidates))
        return {"user_ids": user_ids, "user_mask": user_mask, "item_ids": item_ids, "item_mask": item_mask,
                "negatives": torch.as_tensor(batch["negatives"])}

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 6: logits of [positive, S negatives] (item tower recomputed every step, §1.6)."""
        logits = model(batch["user_ids"], batch["user_mask"], batch["item_ids"], batch["item_mask"])
        return candidate_cross_entropy(self.masked_logits(logits, batch["negatives"]))

    def encode_users(self, model, history: torch.Tensor) -> torch.Tensor:
        ids, mask = self.tokens.user_batch(history.cpu())
        device = history.device
        return model.encode(ids.to(device), mask.to(device))

    def encode_items(self, model, item_idx: torch.Tensor) -> torch.Tensor:
        ids, mask = self.tokens.item_batch(item_idx.cpu())
        device = item_idx.device
        return model.encode(ids.to(device), mask.to(device))


def run(cfg: Config) -> RunSummary:
    def make_task(prepared: PreparedDataset, valid: RankingArrays | None) -> LlmRecTask:
        return LlmRecTask(cfg, prepared.titles, prepared.num_items, valid)

    # evaluate mode: another run's best checkpoint (its items are encoded from their titles, so a
    # checkpoint transfers to a dataset with other items: LLM-Rec Fig. 6's zero-shot domains)
    checkpoint = cfg.init_from.summary("init_from").best_checkpoint if cfg.mode == "evaluate" else None
    return train_and_evaluate("llmrec", make_task, cfg.data, cfg.eval, cfg.train, cfg.out, cfg.model.max_history,
                              checkpoint=checkpoint)

