"""Causal-LM building blocks: prompt/answer tokens, answer-only labels, padding, the answer NLL,
adapters carried between runs, and the `offline:smollm2` GGUF conversion cache."""

from __future__ import annotations

import os

import pytest
import torch

from recplat.errors import ConfigError
from recplat.models.causal_lm import (
    IGNORE_INDEX,
    CausalLMSettings,
    LoraSettings,
    PromptFormat,
    add_lora,
    answer_token_nll,
    init_adapter_from,
    pad_training_batch,
)
from tests.models.causal_lms import smollm2_dir, smollm2_tokenizer, tiny_llama

SYSTEM = "You are a helpful recommendation assistant."
PROMPT = "Given the following purchase history of a user:[Soap||Brush]. Candidates: [Comb||Gel]."
ANSWER = "Comb||Gel"


def test_labels_are_masked_exactly_on_the_prompt_tokens():
    tokenizer = smollm2_tokenizer()
    fmt = PromptFormat(system=SYSTEM)
    prompt_ids = fmt.prompt_ids(tokenizer, PROMPT)
    ids, labels = fmt.training_example(tokenizer, PROMPT, ANSWER, max_length=1024)
    n = len(prompt_ids)
    assert ids[:n] == prompt_ids  # what generation is fed is what training saw
    assert labels[:n] == [IGNORE_INDEX] * n
    assert labels[n:] == ids[n:] and IGNORE_INDEX not in labels[n:]
    assert ids[-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode(ids[n:]) == ANSWER + "<|im_end|>"
    text = tokenizer.decode(ids[:n])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")


def test_plain_format_and_truncation_keep_the_answer():
    tokenizer = smollm2_tokenizer()
    fmt = PromptFormat(chat_template=False)
    prompt_ids = fmt.prompt_ids(tokenizer, PROMPT)
    assert tokenizer.decode(prompt_ids) == PROMPT  # no template, SmolLM2 adds no BOS
    answer = fmt.answer_ids(tokenizer, ANSWER)
    ids, labels = fmt.training_example(tokenizer, PROMPT, ANSWER, max_length=len(answer) + 5)
    assert len(ids) == len(answer) + 5
    assert ids == prompt_ids[-5:] + answer  # the prompt lost its start, the answer is whole
    assert labels == [IGNORE_INDEX] * 5 + answer


def test_training_batch_is_right_padded_with_ignored_labels():
    batch = pad_training_batch([([5, 6, 7], [IGNORE_INDEX, 6, 7]), ([8], [8])], pad_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_answer_nll_is_the_hf_loss_times_the_answer_tokens():
    tokenizer, model = smollm2_tokenizer(), tiny_llama()
    fmt = PromptFormat(system=SYSTEM)
    batch = pad_training_batch([fmt.training_example(tokenizer, PROMPT, ANSWER, 256),
                                fmt.training_example(tokenizer, "Short prompt.", "Gel", 256)],
                               tokenizer.pad_token_id)
    with torch.no_grad():
        nll, count = answer_token_nll(model, batch)
        hf_mean = model(**batch).loss
    answer_tokens = len(fmt.answer_ids(tokenizer, ANSWER)) + len(fmt.answer_ids(tokenizer, "Gel"))
    assert int(count) == answer_tokens
    torch.testing.assert_close(nll / count, hf_mean, rtol=1e-5, atol=1e-6)


def test_lora_targets_all_seven_projections_and_init_from_round_trips(tmp_path):
    settings = LoraSettings(rank=4, alpha=8)
    first = add_lora(tiny_llama(seed=0), settings)
    assert set(first.peft_config["default"].target_modules) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with torch.no_grad():
        for name, p in first.named_parameters():
            if "lora_B" in name:
                p.normal_()  # peft starts B at zero: make the saved adapter non-trivial
    first.save_pretrained(tmp_path / "adapter")

    second = add_lora(tiny_llama(seed=0), settings)
    init_adapter_from(second, tmp_path / "adapter")
    ids = torch.tensor([[5, 6, 7, 8]])
    first.eval(), second.eval()  # LoRA dropout off
    with torch.no_grad():
        torch.testing.assert_close(second(input_ids=ids).logits, first(input_ids=ids).logits)
    assert all(p.requires_grad for n, p in second.named_parameters() if "lora_" in n)  # it trains on

    with pytest.raises(ConfigError, match=r"r 4 vs 8"):
        init_adapter_from(add_lora(tiny_llama(), LoraSettings(rank=8)), tmp_path / "adapter")
    with pytest.raises(ConfigError, match="target_modules"):
        init_adapter_from(add_lora(tiny_llama(), LoraSettings(rank=4, target_modules=["q_proj", "v_proj"])),
                          tmp_path / "adapter")
    with pytest.raises(ConfigError, match="not a saved adapter"):
        init_adapter_from(second, tmp_path)


def test_settings_reject_unknown_keys_and_tiny_lengths():
    with pytest.raises(ValueError, match="max_length"):
        CausalLMSettings(max_length=2)
    with pytest.raises(ValueError, match="rnk"):
        LoraSettings(rnk=3)


@pytest.mark.slow
def test_offline_smollm2_converts_once_and_reloads_with_identical_logits(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from recplat.models.gguf_cache import CACHE_ENV, converted_gguf_dir, package_file
    from recplat.models.offline import OFFLINE_GGUF_MODELS, resolve_model_name

    torch.set_num_threads(1)
    key, module, distribution, filename = OFFLINE_GGUF_MODELS["offline:smollm2"]
    gguf_path, version = package_file(module, distribution, filename)
    ids = torch.tensor([smollm2_tokenizer()("Recommend a movie:")["input_ids"]])
    # the reference is transformers' own GGUF reader: the model the conversion loads (kept as it
    # runs; dequantising the file twice cost ~26 s more)
    loaded = []
    gguf_load = AutoModelForCausalLM.from_pretrained

    def keep(*args, **kwargs):
        loaded.append(gguf_load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with monkeypatch.context() as patch:
        patch.setattr(AutoModelForCausalLM, "from_pretrained", keep)
        path = resolve_model_name("offline:smollm2")
    (gguf_model,) = loaded
    assert gguf_model.config.to_dict().get("quantization_config")  # read from the GGUF file
    with torch.no_grad():
        reference = gguf_model(input_ids=ids).logits
    del gguf_model, loaded
    assert path == str(tmp_path / "cache" / f"{key}-{distribution}-{version}")
    written = os.stat(os.path.join(path, "model.safetensors")).st_mtime_ns
    assert converted_gguf_dir(key, module, distribution, filename) == tmp_path / "cache" / os.path.basename(path)
    assert os.stat(os.path.join(path, "model.safetensors")).st_mtime_ns == written  # not converted again
    assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]  # no partial folder left behind
    with torch.no_grad():
        reloaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)(input_ids=ids).logits
    assert torch.equal(reloaded, reference)
    assert smollm2_dir() != path  # the session's model came from the default cache, untouched
