"""Causal-LM fine-tuning on instruction examples (prompt, answer): the loss is over the answer
tokens only (MoLoRec Eq. 1/3, LLaRA's collate). One path for every generative recipe: MoLoRec's
two LoRA stages, CPRec's continual pre-training and LLaRA's fine-tuning differ only in

- the data and its order: `instruction_dataset` keeps the rows in the order given, and the
  training spine reads them in that order (`TrainConfig.shuffle_buffer: 0`), e.g. CPRec's
  domain-specific rows before the mixed ones;
- the LR schedule: `TrainConfig.schedule`, any schedule registered in train/schedules.py;
- the start weights: `FinetuneSettings.init_from`, a saved peft adapter (another run's export).

It runs on the Ray Train spine (train/launch.py): DDP or DeepSpeed ZeRO-2, LoRA or full weights.

    from recplat.recipes.answer_task import AnswerTask, FinetuneSettings, finetune
    task = AnswerTask(CausalLMSettings(name="offline:smollm2"), FinetuneSettings(method="lora"),
                      valid_prompts=[...], valid_answers=[...])
    result, exported = finetune(task, TrainConfig(max_steps=100, eval_every=20, metric="val_loss"),
                                instruction_dataset(prompts, answers), out_dir / "adapter")
    # exported: a peft adapter folder (LoRA) or a HF model folder (full), for
    # eval/generative.py (`adapter=`) or another run's `init_from`

Validation (`val_loss`: mean NLL per answer token) is split across the workers and summed
(train/sharded_validation.py), so every example is scored once per validation, not once per rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import model_validator

from recplat.config import StrictModel
from recplat.errors import ConfigError
from recplat.models.causal_lm import CausalLMSettings, LoraSettings
from recplat.train.task import Task


class FinetuneSettings(StrictModel):
    method: Literal["lora", "full"] = "lora"  # full: every weight trains
    lora: LoraSettings = LoraSettings()
    init_from: str | None = None  # a saved peft adapter folder the LoRA starts from (LoRA only)

    @model_validator(mode="after")
    def _init_from_needs_lora(self) -> "FinetuneSettings":
        if self.init_from is not None and self.method != "lora":
            raise ValueError("init_from: an adapter starts a LoRA run; with method: full set model.name "
                             "to the full model's folder instead")
        return self


def instruction_dataset(prompts: Sequence[str], answers: Sequence[str]):
    """A Ray Dataset of {prompt, answer} rows in the given order."""
    import pyarrow as pa
    import ray.data

    if len(prompts) != len(answers):
        raise ConfigError(f"instruction data: {len(prompts)} prompts but {len(answers)} answers")
    return ray.data.from_arrow(pa.table({"prompt": pa.array(prompts, pa.string()),
                                         "answer": pa.array(answers, pa.string())}))


class AnswerTask(Task):
    """Answer-only causal-LM loss on (prompt, answer) rows; `val_loss` on the validation pairs."""

    def __init__(self, model: CausalLMSettings, finetune: FinetuneSettings,
                 valid_prompts: Sequence[str] = (), valid_answers: Sequence[str] = (), eval_batch_size: int = 8):  # fmt: skip
        if len(valid_prompts) != len(valid_answers):
            raise ConfigError(f"validation data: {len(valid_prompts)} prompts but {len(valid_answers)} answers")
        self.model_settings, self.finetune = model, finetune
        self.valid_prompts, self.valid_answers = list(valid_prompts), list(valid_answers)
        self.eval_batch_size = eval_batch_size
        self.tokenizer = None  # built with the model, inside the worker

    def build_model(self) -> torch.nn.Module:
        from recplat.models.causal_lm import add_lora, init_adapter_from, load_causal_lm

        model, self.tokenizer = load_causal_lm(self.model_settings)
        if self.finetune.method == "lora":
            model = add_lora(model, self.finetune.lora)
            if self.finetune.init_from is not None:
                init_adapter_from(model, self.finetune.init_from)
        return model

    def tokenize(self, prompts: Sequence[str], answers: Sequence[str]) -> dict[str, torch.Tensor]:
        from recplat.models.causal_lm import pad_training_batch

        fmt, max_length = self.model_settings.prompt_format(), self.model_settings.max_length
        examples = [fmt.training_example(self.tokenizer, str(p), str(a), max_length) for p, a in zip(prompts, answers)]
        return pad_training_batch(examples, self.tokenizer.pad_token_id)

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return self.tokenize(batch["prompt"], batch["answer"])

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean NLL of the answer tokens of the micro-batch (labels are -100 on prompts and pads)."""
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        from recplat.models.causal_lm import answer_token_nll
        from recplat.train.sharded_validation import sum_across_ranks, validation_shard

        if not self.valid_prompts:
            return {}
        device = next(model.parameters()).device
        rows = validation_shard(len(self.valid_prompts))
        nll, tokens = 0.0, 0
        for start in range(0, len(rows), self.eval_batch_size):
            chunk = rows[start : start + self.eval_batch_size]
            batch = self.tokenize([self.valid_prompts[i] for i in chunk], [self.valid_answers[i] for i in chunk])
            part_nll, part_tokens = answer_token_nll(model, {k: v.to(device) for k, v in batch.items()})
            nll, tokens = nll + float(part_nll), tokens + int(part_tokens)
        totals = sum_across_ranks({"nll": nll, "tokens": tokens}, device)
        return {"val_loss": totals["nll"] / max(totals["tokens"], 1.0)}


def export_trained(task: AnswerTask, checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """A spine checkpoint of `task` as a folder plain transformers/peft load: the adapter
    (adapter_config.json + adapter_model.safetensors) for LoRA, the whole model and its tokenizer
    for full fine-tuning. Written under a temporary name and renamed into place."""
    from recplat.storage import atomic_dir
    from recplat.train.checkpoint import WEIGHTS_FILE, load_weights

    model = task.build_model()
    load_weights(model, Path(checkpoint_dir) / WEIGHTS_FILE)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        if task.finetune.method == "full":
            task.tokenizer.save_pretrained(str(tmp))
    return Path(out_dir)


def finetune(task: AnswerTask, train, data, export_to: str | Path, best: bool = True):
    """Train `task` on `data` (instruction_dataset) under TrainConfig `train`, then export the best
    checkpoint by `train.metric` (or the latest: `best=False`) to `export_to`.
    Returns (TrainResult, the exported folder)."""
    from recplat.train.launch import fit

    result = fit(task, train, data)
    checkpoint = result.best_checkpoint if best else result.checkpoint
    with checkpoint.as_directory() as directory:
        exported = export_trained(task, directory, export_to)
    return result, exported
