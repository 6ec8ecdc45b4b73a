"""X-Cross integrator (spec §2.5–2.7): block-by-block stepping, Eq. 4–6, ablations, gradients, parameter count.

Architecture-only backbones: tiny randomly initialised DeBERTa-v3-like / BERT / RoBERTa models built
from configs, plus the real MiniLM (BERT) shipped in a package. No downloads.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel, DebertaV2Config, DebertaV2Model, RobertaConfig, RobertaModel

from recplat.adapters import apply_lora, count_parameters, lora_config
from recplat.errors import ConfigError
from recplat.models.layer_integration import EncoderStack, LayerIntegrator, XCrossEncoder
from recplat.models.offline import resolve_model_name
from tests.models.backbones import tiny_opt

ATOL = 1e-5


def tiny_deberta(seed: int = 0, conv_kernel_size: int = 0, layers: int = 4, hidden: int = 32) -> DebertaV2Model:
    """DeBERTa-v3-shaped: relative attention (c2p+p2c, log buckets, LayerNorm'd rel embeddings),
    no absolute positions, no token types; `conv_kernel_size=3` adds DeBERTa-v2's conv after block 0."""
    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=128, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, relative_attention=True, position_buckets=16, max_relative_positions=-1,
        norm_rel_ebd="layer_norm", pos_att_type=["p2c", "c2p"], share_att_key=True, position_biased_input=False,
        type_vocab_size=0, conv_kernel_size=conv_kernel_size,
    )  # fmt: skip
    return DebertaV2Model(config).eval()


def tiny_bert(seed: int = 0, layers: int = 3) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=64)
    return BertModel(config).eval()


def tiny_roberta(seed: int = 0) -> RobertaModel:
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return RobertaModel(config).eval()


@lru_cache(maxsize=1)
def _minilm():
    return AutoModel.from_pretrained(resolve_model_name("offline:minilm")).eval()


def minilm() -> BertModel:
    return copy.deepcopy(_minilm())


def with_lora(model, seed: int = 1):
    """Rank-4 LoRA on the default targets with NONZERO B (peft inits B = 0), so LoRA changes the output."""
    peft_model = apply_lora(model, lora_config(model, rank=4, alpha=8, dropout=0.0))
    torch.manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    return peft_model


def batch(vocab: int = 128, seed: int = 0):
    """Three sequences of 12, 8 and 4 real tokens (right padding with id 0), as an encoder sees them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 8:], mask[2, 4:] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask


def stepwise(model, ids, mask) -> torch.Tensor:
    stack = EncoderStack(model)
    hidden, state = stack.embed(ids, mask)
    for index in range(stack.num_layers):
        hidden = stack.layer(index, hidden, state)
    return hidden


# ---------------------------------------------------------------- EncoderStack == the model's own forward

BACKBONES = {
    "deberta_v3": lambda: tiny_deberta(),
    "deberta_v2_conv": lambda: tiny_deberta(conv_kernel_size=3),
    "bert": lambda: tiny_bert(),
    "roberta": lambda: tiny_roberta(),
    "minilm": minilm,
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_stepping_block_by_block_equals_the_model_forward(name):
    model = BACKBONES[name]()
    ids, mask = batch(vocab=min(128, model.config.vocab_size))
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(stepwise(model, ids, mask), expected, atol=ATOL)


@pytest.mark.parametrize("name", ["deberta_v3", "minilm"])
def test_stepping_a_peft_model_keeps_its_lora_active(name):
    model = with_lora(BACKBONES[name]()).eval()
    ids, mask = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        with model.disable_adapter():
            without_lora = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert not torch.allclose(expected, without_lora, atol=1e-3)  # LoRA matters here
        assert torch.allclose(stepwise(model, ids, mask), expected, atol=ATOL)


@pytest.mark.parametrize("name", ["deberta_v2_conv", "bert"])
def test_stepping_in_train_mode_draws_the_same_dropout_as_the_model(name):
    model = BACKBONES[name]().train()
    ids, mask = batch()
    torch.manual_seed(7)
    expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(7)
    assert torch.allclose(stepwise(model, ids, mask), expected, atol=ATOL)
    torch.manual_seed(8)
    assert not torch.allclose(stepwise(model, ids, mask), expected, atol=1e-3)  # dropout is on


# ---------------------------------------------------------------- Eq. 5 and Eq. 6 by hand


def test_refine_equals_an_explicit_loop_over_domains_for_n3():
    n, d, alpha, beta = 3, 4, 0.7, 0.3
    torch.manual_seed(0)
    integrator = LayerIntegrator(n, d, num_layers=2, integrate_layers=1, alpha=alpha, beta=beta)
    W = torch.randn(2 * n * (n - 1), n * d)
    integrator.coefficients["1"].weight.data.copy_(W)
    states = [torch.randn(2, 5, d) for _ in range(n)]  # [B, T, d] per domain
    refined = integrator.refine(1, states)
    z = torch.cat(states, dim=-1) @ W.T  # Eq. 4, per token
    for m in range(n):
        expected = states[m].clone()
        for k, j in enumerate(j for j in range(n) if j != m):
            s_mj = z[..., m * 2 * (n - 1) + k]  # layout: s_{m,·} then γ_{m,·} for each m
            gamma_mj = z[..., m * 2 * (n - 1) + (n - 1) + k]
            expected += alpha * s_mj[..., None] * states[j] + beta * gamma_mj[..., None] * (states[m] - states[j])
        assert torch.allclose(refined[m], expected, atol=1e-5)
    assert integrator.refine(0, states) == states  # layer 0 is not integrated: identity


def test_combine_is_the_weighted_sum_of_eq6():
    integrator = LayerIntegrator(3, 4, num_layers=2, integrate_layers=1, alpha=1.0, beta=1.0)
    assert integrator.domain_weights.tolist() == pytest.approx([1 / 3] * 3)
    integrator.domain_weights.data.copy_(torch.tensor([0.5, -1.0, 2.0]))
    states = [torch.randn(2, 5, 4) for _ in range(3)]
    expected = 0.5 * states[0] - 1.0 * states[1] + 2.0 * states[2]
    assert torch.allclose(integrator.combine(states), expected, atol=1e-6)


# ---------------------------------------------------------------- the integrated forward


def _randomise(integrator: LayerIntegrator, std: float = 0.05, seed: int = 3):
    torch.manual_seed(seed)
    for linear in integrator.coefficients.values():
        torch.nn.init.normal_(linear.weight, std=std)


@pytest.mark.parametrize(
    "make", [lambda s: tiny_deberta(seed=s), lambda s: with_lora(minilm(), seed=s)], ids=["deberta_v3", "minilm_lora"]
)
def test_without_alpha_and_beta_the_sources_run_independently(make):
    """-Layers (α=β=0): per-source final states = each model alone, whatever W is; h_final = Σ w_m h_m."""
    sources = [make(1), make(2)]
    ids, mask = batch()
    with torch.no_grad():
        alone = [source(input_ids=ids, attention_mask=mask).last_hidden_state for source in sources]
        xcross = XCrossEncoder(sources, integrate_layers=3, alpha=0.0, beta=0.0).eval()
        _randomise(xcross.integrator)
        h_final, finals = xcross(ids, mask, return_sources=True)
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)
    for got, expected in zip(finals, alone):
        assert torch.allclose(got, expected, atol=ATOL)
    assert torch.allclose(h_final, 0.5 * alone[0] + 0.5 * alone[1], atol=ATOL)


def test_refined_states_feed_the_next_block():
    """Integrating the top 2 of 4 blocks = step each source to block 2, refine, block 3, refine."""
    sources = [tiny_deberta(seed=1), tiny_deberta(seed=2)]
    ids, mask = batch()
    xcross = XCrossEncoder(sources, integrate_layers=2, alpha=0.5, beta=0.5).eval()
    _randomise(xcross.integrator, std=0.2)
    with torch.no_grad():
        _, finals = xcross(ids, mask, return_sources=True)
        stacks = [EncoderStack(s) for s in sources]
        embedded = [st.embed(ids, mask) for st in stacks]
        hidden = [h for h, _ in embedded]
        for index in range(3):
            hidden = [st.layer(index, h, state) for st, h, (_, state) in zip(stacks, hidden, embedded)]
        hidden = xcross.integrator.refine(2, hidden)
        hidden = [st.layer(3, h, state) for st, h, (_, state) in zip(stacks, hidden, embedded)]
        expected = xcross.integrator.refine(3, hidden)
        alone = sources[0](input_ids=ids, attention_mask=mask).last_hidden_state
    for got, want in zip(finals, expected):
        assert torch.allclose(got, want, atol=ATOL)
    assert not torch.allclose(finals[0], alone, atol=1e-3)


def test_gradients_reach_only_the_integrator():
    sources = [with_lora(tiny_deberta(seed=1)), with_lora(tiny_deberta(seed=2))]
    xcross = XCrossEncoder(sources, integrate_layers=2, alpha=0.5, beta=0.5).train()
    ids, mask = batch()
    h_final = xcross(ids, mask)
    (h_final * torch.randn_like(h_final)).sum().backward()
    assert sorted(xcross.integrator.coefficients) == ["2", "3"]  # blocks 0 and 1 have no W
    for name, param in xcross.sources.named_parameters():
        assert not param.requires_grad and param.grad is None, name
    for name, param in xcross.integrator.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name  # nonzero from W = 0


def test_ablations_drop_exactly_their_coefficients():
    """β=0 ("-Interactions"): the γ rows of W do nothing; α=0 ("-Experts"): the s rows do nothing."""
    n, d = 2, 8
    states = [torch.randn(2, 3, d) for _ in range(n)]
    s_rows, gamma_rows = [0, 2], [1, 3]  # n=2: z = (s_12, γ_12, s_21, γ_21)

    def refine(alpha, beta, rows, seed):
        integrator = LayerIntegrator(n, d, num_layers=1, integrate_layers=1, alpha=alpha, beta=beta)
        torch.manual_seed(0)
        weight = torch.randn(2 * n * (n - 1), n * d)
        weight[rows] = torch.randn(len(rows), n * d, generator=torch.Generator().manual_seed(seed))
        integrator.coefficients["0"].weight.data.copy_(weight)
        return torch.stack(integrator.refine(0, states))

    assert torch.equal(refine(0.5, 0.0, gamma_rows, 1), refine(0.5, 0.0, gamma_rows, 2))
    assert torch.equal(refine(0.0, 0.5, s_rows, 1), refine(0.0, 0.5, s_rows, 2))
    assert not torch.allclose(refine(0.5, 0.5, gamma_rows, 1), refine(0.5, 0.5, gamma_rows, 2))
    assert not torch.allclose(refine(0.5, 0.5, s_rows, 1), refine(0.5, 0.5, s_rows, 2))


# ---------------------------------------------------------------- parameter count (spec §2.7)


def test_parameter_count_matches_the_paper():
    integrator = LayerIntegrator(2, 768, num_layers=12, integrate_layers=9, alpha=0.5, beta=0.5)
    assert integrator.integrated == list(range(3, 12))  # the top 9 blocks, l = 4..12
    per_layer = {key: linear.weight.numel() for key, linear in integrator.coefficients.items()}
    assert set(per_layer.values()) == {2 * 2 * (2 - 1) * 2 * 768} == {6_144}
    assert sum(p.numel() for p in integrator.parameters()) == 9 * 6_144 + 2  # + w_1, w_2


def test_x_cross_is_a_quarter_of_one_lora_matrix_per_layer():
    """Footnote 3: 9 x 6,144 = 55,296 vs 9 layers of one rank-16 LoRA pair on a 768x768 matrix = 221,184."""
    torch.manual_seed(0)
    config = DebertaV2Config(vocab_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                             intermediate_size=8, max_position_embeddings=16, relative_attention=True,
                             position_buckets=8, position_biased_input=False, type_vocab_size=0)  # fmt: skip
    cfg = lora_config(DebertaV2Model(config), rank=16, alpha=32, dropout=0.0, target_modules=["query_proj"])
    cfg.layers_to_transform = list(range(3, 12))
    lora_trainable, _ = count_parameters(apply_lora(DebertaV2Model(config), cfg))
    w_total = 9 * LayerIntegrator(2, 768, 12, 9, 0.5, 0.5).coefficients["3"].weight.numel()
    assert (w_total, lora_trainable) == (55_296, 221_184)
    assert w_total / lora_trainable == 0.25


# ---------------------------------------------------------------- errors for people


@pytest.mark.parametrize("integrate_layers", [0, 5, -1])
def test_integrate_layers_outside_1_to_num_layers_is_a_config_error(integrate_layers):
    with pytest.raises(ConfigError, match=r"integrate_layers must be in 1\.\.4.*got"):
        XCrossEncoder([tiny_deberta(1), tiny_deberta(2)], integrate_layers=integrate_layers, alpha=1.0, beta=1.0)


@pytest.mark.parametrize(
    "second",
    [lambda: tiny_deberta(2, layers=3), lambda: tiny_deberta(2, hidden=64), lambda: tiny_bert(2, layers=4)],
    ids=["layers", "hidden", "architecture"],
)
def test_mismatched_sources_are_a_config_error(second):
    with pytest.raises(ConfigError, match="share architecture, num_layers and hidden_size.*source 1"):
        XCrossEncoder([tiny_deberta(1), second()], integrate_layers=2, alpha=1.0, beta=1.0)


def test_one_source_or_a_decoder_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 2 source models"):
        XCrossEncoder([tiny_deberta(1)], integrate_layers=2, alpha=1.0, beta=1.0)
    with pytest.raises(ConfigError, match="model_type='opt'"):
        EncoderStack(tiny_opt())
