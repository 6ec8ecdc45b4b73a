"""MoLoRec's entropy-guided mixture (spec §3.6) on a TINY randomly initialised Llama ("architecture
only") with the real SmolLM2 tokenizer (its vocabulary, its '||' pieces).

The two adapters are built so the direction is known: on `lm_head` (rank = hidden size, A = I) the
specific adapter adds +0.8 W_head (sharper logits, as a confident in-domain adapter), the general
one -0.8 W_head (flatter); both also carry small random q/v adapters. A positive rescaling of the
logits keeps every argmax, so greedy outputs stay fixed and lower entropy means more w_s there.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from recplat.errors import ConfigError
from recplat.models.entropy_adaptation import (
    EntropySettings,
    adapt_mixture_by_entropy,
    first_title_tokens,
    mean_title_entropy,
    token_entropy,
)
from recplat.models.lora_mixture import LoraMixture, load_adapter_pair
from tests.models.causal_lms import smollm2_tokenizer

HIDDEN = 32


@pytest.fixture(scope="module")
def tokenizer():
    return smollm2_tokenizer()


def tiny_llama(vocab_size: int, eos: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3,
                         eos_token_id=eos)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def save_head_scaling_adapter(directory, tokenizer, head_gain: float, seed: int):
    model = tiny_llama(len(tokenizer), tokenizer.eos_token_id)
    cfg = LoraConfig(r=HIDDEN, lora_alpha=HIDDEN, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False)
    model = get_peft_model(model, cfg)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and name.endswith("lm_head"):
                module.lora_A["default"].weight.copy_(torch.eye(HIDDEN))
                module.lora_B["default"].weight.copy_(head_gain * module.get_base_layer().weight)
            elif hasattr(module, "lora_A"):
                module.lora_A["default"].weight.normal_(0, 0.05)
                module.lora_B["default"].weight.normal_(0, 0.05)
    model.save_pretrained(str(directory), save_embedding_layers=False)  # the adapter only
    return directory


@pytest.fixture
def mixture(tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("entropy_adapters")
    general = save_head_scaling_adapter(root / "general", tokenizer, head_gain=-0.8, seed=1)
    specific = save_head_scaling_adapter(root / "specific", tokenizer, head_gain=0.8, seed=2)
    return LoraMixture(load_adapter_pair(tiny_llama(len(tokenizer), tokenizer.eos_token_id), general, specific))


def test_first_title_tokens_on_real_smollm2_pieces(tokenizer):
    ids = tokenizer("Lipstick Red Matte||Blue Shampoo 200ml||Face cream")["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert pieces[6] == "||" and pieces[16] == "||"  # what the rule below relies on
    assert first_title_tokens(ids, tokenizer.decode, "||", 3) == [0, 1, 2, 7, 8, 9, 17, 18]
    assert first_title_tokens(ids, tokenizer.decode, "||", 1) == [0, 7, 17]
    spaced = tokenizer("Lipstick Red || Blue Shampoo")["input_ids"]  # a space before the title
    kept = [tokenizer.decode([spaced[j]]) for j in first_title_tokens(spaced, tokenizer.decode, "||", 2)]
    assert kept == ["L", "ip", " Blue", " Sh"]


def test_token_entropy_is_shannon_entropy_over_the_vocabulary():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, -1.0]])
    p = torch.softmax(logits[2], 0)
    expected = torch.tensor([torch.log(torch.tensor(4.0)), 0.0, -(p * p.log()).sum()])
    torch.testing.assert_close(token_entropy(logits), expected, atol=1e-5, rtol=1e-5)


def test_one_pass_lowers_the_entropy_and_changes_only_lambda(mixture, tokenizer):
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, len(tokenizer), (6,), generator=gen).tolist() for _ in range(12)]
    settings = EntropySettings(lr=0.5, first_tokens=3, batch_tokens=6, grad_accum=2, max_new_tokens=6)
    frozen = {k: v.clone() for k, v in mixture.model.state_dict().items()}
    lambdas = {k: v.detach().clone() for k, v in mixture.logits.items()}
    before = mean_title_entropy(mixture, tokenizer, prompts, settings)

    report = adapt_mixture_by_entropy(mixture, tokenizer, prompts, settings)

    after = mean_title_entropy(mixture, tokenizer, prompts, settings)
    assert after < before - 0.3, (before, after)
    assert report["entropy_per_update"][-1] < report["entropy_per_update"][0]
    assert report["prompts"] == 12 and report["tokens"] >= 12 and report["optimizer_steps"] >= 2
    head = mixture.module_weights()["base_model.model.lm_head"]
    assert head[1] > 0.8, head  # the sharpening adapter won the head
    assert report["mean_weights"] == pytest.approx(mixture.mean_weights())
    # only λ changed: every weight of the model (base and both adapters) is bit-identical
    for key, value in mixture.model.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert any(not torch.equal(mixture.logits[k], lambdas[k]) for k in lambdas)
    assert all(p.grad is None for p in mixture.parameters())  # no stale gradient left behind


def test_a_last_partial_group_of_gradients_is_applied(mixture, tokenizer):
    """3 prompts of 3 kept tokens, groups of >= 4, accumulation 2: one backward inside the pass,
    one for the leftover prompt, and the step that applies both."""
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, len(tokenizer), (6,), generator=gen).tolist() for _ in range(3)]
    settings = EntropySettings(lr=0.5, first_tokens=3, batch_tokens=4, grad_accum=2, max_new_tokens=3)
    lambdas = {k: v.detach().clone() for k, v in mixture.logits.items()}
    report = adapt_mixture_by_entropy(mixture, tokenizer, prompts, settings)
    assert report["tokens"] == 9 and len(report["entropy_per_update"]) == 2
    assert report["optimizer_steps"] == 1
    assert all(not torch.equal(mixture.logits[k], lambdas[k]) for k in lambdas)


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="mixture.first_tokens"):
        EntropySettings(first_tokens=0)
    with pytest.raises(ConfigError, match="mixture.lr"):
        EntropySettings(lr=0.0)
