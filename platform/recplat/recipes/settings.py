"""Config sections several recipes share: the backbone and its LoRA adapters.

Each recipe keeps its paper's defaults explicit where they differ (LLM-Rec's code: alpha 16,
dropout 0.1; X-Cross: alpha 32, dropout 0): a recipe's section subclasses these and restates the
defaults it changes.
"""

from __future__ import annotations

from pydantic import Field

from recplat.config import StrictModel


class BackboneSettings(StrictModel):
    name: str = "offline:minilm"  # HF id, local folder, or offline:minilm (ships with the project)


class LoraSettings(StrictModel):
    """LoRA on the backbone's attention projections: W + (alpha / rank) B A (Hu et al., Eq. 3)."""

    rank: int = Field(16, ge=1)  # LLM-Rec code default 16 (Table 5: 32); X-Cross spec §2.4: 16
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | None = None  # None: the architecture's query/value projections (adapters.py)

    def peft_config(self, model):
        """The peft LoraConfig of these settings for `model` (recplat.adapters.lora_config)."""
        from recplat.adapters import lora_config

        return lora_config(model, self.rank, self.alpha, self.dropout, self.target_modules)
