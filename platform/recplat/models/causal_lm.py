"""Causal LMs with their LM head: loading, prompts, answer-only labels, LoRA.

The building blocks every generative recipe shares (MoLoRec spec §3.1 Eq. 1/3, LLaRA/CPRec §4.1):

    from recplat.models.causal_lm import CausalLMSettings, LoraSettings, add_lora, load_causal_lm
    settings = CausalLMSettings(name="offline:smollm2", system="You are a helpful recommendation assistant.")
    model, tokenizer = load_causal_lm(settings)           # float32 on the CPU, tokenizer padded left
    model = add_lora(model, LoraSettings(rank=16, alpha=32))   # q,k,v,o,gate,up,down on llama/qwen2
    fmt = settings.prompt_format()
    ids, labels = fmt.training_example(tokenizer, "Given ...", "Title A||Title B", settings.max_length)
    batch = pad_training_batch([(ids, labels)], tokenizer.pad_token_id)   # right-padded, labels -100
    prompt = fmt.prompt_ids(tokenizer, "Given ...")       # what generation is fed (eval/generative.py)

`name` is a HF id, a local folder, or an `offline:` name (models/offline.py; `offline:smollm2` is
the SmolLM2-135M-Instruct GGUF shipped in a package, converted once into a cache).

Prompt and answer are tokenized separately and concatenated, so the prompt tokens a model is
trained on are exactly those it is later prompted with, and the answer-only loss masks exactly
the prompt (labels -100). The answer ends with the tokenizer's EOS (`<|im_end|>` for chat models
like SmolLM2/Qwen2-Instruct, `</s>` for Llama-2), so greedy generation learns where to stop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import Field

from recplat.config import StrictModel
from recplat.errors import ConfigError
from recplat.models.padding import pad_sequences

IGNORE_INDEX = -100  # labels that the LM loss skips (torch cross_entropy's ignore_index)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LoraSettings(StrictModel):
    """LoRA on the attention and MLP projections (MoLoRec §3.4: r 16, α 32, dropout .05;
    LLaRA §4.1: r 8, α 32, dropout .1, the same 7 projections)."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    # None: q,k,v,o,gate,up,down on llama/qwen2/mistral (recplat.adapters' extended targets)
    target_modules: list[str] | None = None


class PromptFormat(StrictModel):
    """How a prompt string becomes token ids: the chat template (a user turn, optional system
    turn, then the assistant header) or the plain text with the tokenizer's special tokens."""

    system: str | None = None  # system message (chat template only)
    chat_template: bool | None = None  # None: use it when the tokenizer has one

    def uses_chat(self, tokenizer) -> bool:
        has = bool(getattr(tokenizer, "chat_template", None))
        if self.chat_template and not has:
            raise ConfigError(f"model.chat_template: the tokenizer of {tokenizer.name_or_path!r} has no chat template")
        return has if self.chat_template is None else self.chat_template

    def prompt_ids(self, tokenizer, prompt: str) -> list[int]:
        """The tokens of `prompt` up to where the answer starts (the assistant header in chat)."""
        if not self.uses_chat(tokenizer):
            return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        messages = [{"role": "system", "content": self.system}] if self.system is not None else []
        messages.append({"role": "user", "content": prompt})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def answer_ids(tokenizer, answer: str) -> list[int]:
        """The answer's tokens followed by EOS (the end of the assistant turn in chat templates)."""
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"the tokenizer of {tokenizer.name_or_path!r} has no eos_token: answers could not end")
        return [*tokenizer(answer, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]

    def training_example(self, tokenizer, prompt: str, answer: str, max_length: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of prompt + answer; labels are IGNORE_INDEX on every prompt token
        (Eq. 1 of MoLoRec: the loss is over the answer y given the instruction x).

        Too long: the prompt loses tokens from its start (the question at its end is kept), the
        answer only when it alone exceeds max_length - 1."""
        prompt_ids, answer_ids = self.prompt_ids(tokenizer, prompt), self.answer_ids(tokenizer, answer)
        answer_ids = answer_ids[: max_length - 1]
        room = max_length - len(answer_ids)
        if len(prompt_ids) > room:
            prompt_ids = prompt_ids[len(prompt_ids) - room :]
        return [*prompt_ids, *answer_ids], [IGNORE_INDEX] * len(prompt_ids) + answer_ids


class CausalLMSettings(StrictModel):
    """Which causal LM, in which precision, and how its prompts are built."""

    name: str = "offline:smollm2"  # HF id, local folder, or an offline: name (models/offline.py)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # float32 on CPUs
    system: str | None = None  # system message of the chat template
    chat_template: bool | None = None  # None: use the tokenizer's when it has one
    max_length: int = Field(1024, ge=8)  # prompt + answer tokens (MoLoRec cutoff_len 1200)

    def prompt_format(self) -> PromptFormat:
        return PromptFormat(system=self.system, chat_template=self.chat_template)


def load_tokenizer(path: str):
    """The tokenizer, padded on the left (batched generation), with a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"the tokenizer of {path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token  # labels come from lengths, never from pad ids
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(settings: CausalLMSettings | str, adapter: str | Path | None = None):
    """(model, tokenizer) on the CPU in eval mode; `adapter`, a saved peft adapter folder, is merged
    into the weights (inference). The model's generation config pads with the tokenizer's pad."""
    from transformers import AutoModelForCausalLM

    from recplat.models.offline import resolve_model_name

    settings = CausalLMSettings(name=settings) if isinstance(settings, str) else settings
    path = resolve_model_name(settings.name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[settings.dtype])
    tokenizer = load_tokenizer(path)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        from recplat.adapters import load_adapter

        model = load_adapter(model, adapter).merge_and_unload()
    return model.eval(), tokenizer


def add_lora(model, lora: LoraSettings):
    """Wrap `model` with fresh trainable LoRA adapters; every base weight is frozen."""
    from recplat.adapters import apply_lora, lora_config

    targets = lora.target_modules
    if targets is None:
        from recplat.adapters import default_target_modules

        targets = default_target_modules(model, extra_targets=True)
    return apply_lora(model, lora_config(model, lora.rank, lora.alpha, lora.dropout, targets))


def init_adapter_from(model, directory: str | Path) -> None:
    """Load the adapter weights saved in `directory` (a peft folder) into the LoRA of `model`
    (a PeftModel from `add_lora`), which keeps training from there (CPRec: the CPT LoRA starts
    the fine-tuning LoRA). Rank and target modules must match, else a ConfigError names both."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / "adapter_config.json", directory / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ConfigError(f"init_from: {directory} is not a saved adapter (needs adapter_config.json "
                          "and adapter_model.safetensors)")
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    ours = model.peft_config["default"]
    mismatch = [f"{key} {saved.get(key)!r} vs {mine!r}" for key, mine in
                (("r", ours.r), ("target_modules", sorted(ours.target_modules)))
                if (sorted(saved.get(key) or []) if key == "target_modules" else saved.get(key)) != mine]
    if mismatch:
        raise ConfigError(f"init_from: the adapter in {directory} does not fit this run's LoRA "
                          f"(saved vs configured): {'; '.join(mismatch)}")
    result = set_peft_model_state_dict(model, load_file(str(weights_path)))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(f"init_from: {directory}: missing LoRA weights {missing[:3]}, unexpected "
                          f"{list(result.unexpected_keys)[:3]} (saved from another architecture?)")


def pad_training_batch(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """(input_ids, labels) pairs -> right-padded input_ids, attention_mask and labels (-100 on pads)."""
    input_ids, attention_mask = pad_sequences([ids for ids, _ in examples], pad_id, "right")
    labels, _ = pad_sequences([lab for _, lab in examples], IGNORE_INDEX, "right")
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def answer_token_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed negative log-likelihood of the answer tokens, their count) of a padded batch:
    the pieces of a mean that stays exact when examples are split across workers."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]  # token t is predicted from positions < t
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(),
                                            ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, (labels != IGNORE_INDEX).sum()
