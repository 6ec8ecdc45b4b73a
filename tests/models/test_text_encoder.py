"""LLM-Rec text encoder: pooling, input construction (spec §1.4–1.5), backbones, Eq. 6 training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, LlamaConfig, OPTConfig, PretrainedConfig, T5Config

from recplat.adapters import apply_lora, lora_config
from recplat.errors import ConfigError
from recplat.models.losses import candidate_cross_entropy
from recplat.models.padding import pad_sequences
from recplat.models.text_encoder import (
    DualEncoder,
    TitleTokens,
    infer_family,
    load_backbone,
    pool,
)
from tests.models.backbones import CLS, SEP, minilm_dir, minilm_tokenizer, save_tiny, tiny_opt, tiny_t5

# ---------------------------------------------------------------- pooling


def _index_hidden(batch: int, length: int) -> torch.Tensor:
    """Hidden states whose vector at position t is [t, t]: the pooled value names the position."""
    return torch.arange(length, dtype=torch.float).view(1, length, 1).expand(batch, length, 2).clone()


@pytest.mark.parametrize(
    ("family", "side", "expected"),
    [
        ("encoder", "right", [0, 0, 0]),  # [CLS] at position 0
        ("encoder", "left", [0, 3, 5]),  # [CLS] right after the pads
        ("decoder", "right", [5, 2, 0]),  # mask.sum - 1
        ("decoder", "left", [5, 5, 5]),  # always the last column
        ("encoder_decoder", "right", [5, 2, 0]),
        ("encoder_decoder", "left", [5, 5, 5]),
    ],
)
def test_pool_picks_the_family_token_for_each_padding_side(family, side, expected):
    _, mask = pad_sequences([[1] * 6, [1] * 3, [1]], pad_id=0, padding_side=side)
    pooled = pool(_index_hidden(3, 6), mask, family)
    assert pooled.shape == (3, 2)
    assert pooled[:, 0].tolist() == expected


def test_pool_rejects_an_unknown_family():
    with pytest.raises(ConfigError, match="family"):
        pool(_index_hidden(1, 2), torch.ones(1, 2), "seq2seq")


# ---------------------------------------------------------------- input construction (real MiniLM tokenizer)

HELLO, GUITAR = [7592, 2088, 1025], [2858, 7817, 1025]  # "hello world ;", "guitar strings ;" in vocab.txt
TITLES = ["<pad>", "Hello World", "Guitar Strings", " ".join(["word"] * 60)]


def test_title_ids_are_title_plus_semicolon_without_special_tokens():
    tokens = TitleTokens.from_titles(minilm_tokenizer(), TITLES, "encoder")
    assert tokens.ids[0] == []  # padding slot, whatever titles[0] says
    assert tokens.ids[1] == HELLO
    assert tokens.ids[2] == GUITAR
    assert len(tokens.ids[3]) == 40 and 1025 not in tokens.ids[3]  # truncated to 40: "; " cut off


def test_titles_may_be_a_mapping():
    tokens = TitleTokens.from_titles(minilm_tokenizer(), {2: "Guitar Strings", 1: "Hello World"}, "encoder")
    assert tokens.ids == [[], HELLO, GUITAR]


def test_item_input_encoder_puts_cls_in_front():
    tokens = TitleTokens.from_titles(minilm_tokenizer(), TITLES, "encoder")
    assert tokens.item_input(1) == [CLS, *HELLO]


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_item_input_decoder_appends_eos(family):
    tokens = TitleTokens.from_titles(minilm_tokenizer(with_eos=True), TITLES, family)
    assert tokens.item_input(2) == [*GUITAR, SEP]


def test_decoder_family_needs_an_eos_token():
    with pytest.raises(ConfigError, match="eos_token"):
        TitleTokens.from_titles(minilm_tokenizer(), TITLES, "decoder")


def test_user_input_concatenates_the_ten_most_recent_titles():
    titles = ["<pad>"] + [f"Item {n}" for n in range(1, 13)]
    tok = minilm_tokenizer()
    tokens = TitleTokens.from_titles(tok, titles, "encoder")
    history = list(range(1, 13))  # 12 items, oldest first
    expected = [CLS] + [t for n in range(3, 13) for t in tok(f"Item {n}; ", add_special_tokens=False).input_ids]
    assert tokens.user_input(history) == expected
    assert tokens.user_input([0, 0, 1, 2]) == [CLS, *tokens.ids[1], *tokens.ids[2]]  # left padding
    assert tokens.user_input(torch.tensor([1, 2, 0, 0])) == [CLS, *tokens.ids[1], *tokens.ids[2]]  # right


def test_user_input_decoder_has_one_eos_at_the_end():
    tokens = TitleTokens.from_titles(minilm_tokenizer(with_eos=True), TITLES, "decoder")
    assert tokens.user_input([1, 2]) == [*HELLO, *GUITAR, SEP]


@pytest.mark.parametrize("side", ["left", "right"])
def test_batches_pad_with_the_tokenizer_pad_id_on_the_requested_side(side):
    tokens = TitleTokens.from_titles(minilm_tokenizer(), TITLES, "encoder")
    ids, mask = tokens.item_batch(torch.tensor([[1], [2]]), padding_side=side)
    assert ids.tolist() == [[CLS, *HELLO], [CLS, *GUITAR]]  # equal lengths: no padding
    ids, mask = tokens.user_batch([[1, 2], [0, 1]], padding_side=side)
    long, short = [CLS, *HELLO, *GUITAR], [CLS, *HELLO]
    pad = [0] * 3
    assert ids.tolist() == [long, short + pad if side == "right" else pad + short]
    assert mask.sum(1).tolist() == [7, 4]
    with pytest.raises(ValueError, match="padding_side"):
        tokens.user_batch([[1]], padding_side="middle")


# ---------------------------------------------------------------- family inference and loading


@pytest.mark.parametrize(
    ("config", "family"),
    [
        (BertConfig(), "encoder"),
        (OPTConfig(), "decoder"),
        (LlamaConfig(), "decoder"),
        (T5Config(), "encoder_decoder"),
        (PretrainedConfig(architectures=["FooForCausalLM"]), "decoder"),
    ],
)
def test_infer_family_from_config(config, family):
    assert infer_family(config) == family


def test_infer_family_unknown_names_the_option():
    with pytest.raises(ConfigError, match="family="):
        infer_family(PretrainedConfig(architectures=["Mystery"]))


def test_load_backbone_minilm_is_a_bert_encoder():
    model, tokenizer, family = load_backbone(str(minilm_dir()))
    assert (type(model).__name__, family, tokenizer.cls_token_id) == ("BertModel", "encoder", CLS)


@pytest.mark.parametrize(
    ("build", "family", "cls_name"),
    [(tiny_opt, "decoder", "OPTModel"), (tiny_t5, "encoder_decoder", "T5EncoderModel")],
)
def test_load_backbone_infers_family_from_a_saved_folder(tmp_path, build, family, cls_name):
    """Architecture only: a tiny random model saved as a HF folder, loaded the real way."""
    model, tokenizer, inferred = load_backbone(str(save_tiny(build(), tmp_path)))
    assert (type(model).__name__, inferred, tokenizer.eos_token_id) == (cls_name, family, SEP)


# ---------------------------------------------------------------- encoding, left vs right padding


def _encode_both_sides(encoder: DualEncoder, tokens: TitleTokens, histories):
    out = {}
    for side in ("left", "right"):
        ids, mask = tokens.user_batch(histories, padding_side=side)
        with torch.no_grad():
            hidden = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
            out[side] = (encoder.encode(ids, mask), hidden, mask)
    return out


@pytest.mark.parametrize("build", [tiny_opt, tiny_t5])
def test_tiny_decoder_and_t5_pool_the_eos_and_ignore_padding_side(tmp_path, build):
    """Architecture only (random weights). OPT counts positions over real tokens (cumsum of the
    mask, and DualEncoder passes the same position_ids), T5 uses relative positions: so a left-
    and a right-padded batch give the same pooled vector, the hidden state of the appended EOS."""
    model, tokenizer, family = load_backbone(str(save_tiny(build(), tmp_path)))
    encoder = DualEncoder(model.eval(), family)
    tokens = TitleTokens.from_titles(tokenizer, TITLES, family)
    out = _encode_both_sides(encoder, tokens, [[1, 2, 3], [2], [1, 2]])
    left, right = out["left"][0], out["right"][0]
    assert left.shape == (3, 32)
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    for side, expected_index in (("left", [-1, -1, -1]), ("right", [46, 3, 6])):
        pooled, hidden, mask = out[side]
        width = mask.shape[1]
        assert width == 47  # 3 + 3 + 40 title tokens + EOS
        rows = [hidden[b, i % width] for b, i in enumerate(expected_index)]
        torch.testing.assert_close(pooled, torch.stack(rows))
        ids, _ = tokens.user_batch([[1, 2, 3], [2], [1, 2]], padding_side=side)
        assert ids[torch.arange(3), torch.tensor(expected_index) % width].tolist() == [SEP] * 3


def test_minilm_pools_cls_for_either_padding_side():
    model, tokenizer, family = load_backbone(str(minilm_dir()))
    encoder = DualEncoder(model.eval(), family)
    tokens = TitleTokens.from_titles(tokenizer, TITLES, family)
    out = _encode_both_sides(encoder, tokens, [[1, 2], [2]])
    torch.testing.assert_close(out["left"][0], out["right"][0], atol=1e-4, rtol=1e-4)
    assert out["left"][0].shape == (2, 384)


def test_score_is_an_inner_product():
    users, items = torch.randn(2, 4), torch.randn(2, 3, 4)
    expected = torch.stack([items[b] @ users[b] for b in range(2)])
    torch.testing.assert_close(DualEncoder.score(users, items), expected)
    table = torch.randn(5, 4)
    torch.testing.assert_close(DualEncoder.score(users, table), users @ table.T)


def test_cosine_score_uses_unit_vectors_and_scales_only_the_training_logits():
    model, tokenizer, family = load_backbone(str(minilm_dir()))
    tokens = TitleTokens.from_titles(tokenizer, TITLES, family)
    user_ids, user_mask = tokens.user_batch([[1, 2], [2]])
    item_ids, item_mask = tokens.item_batch(torch.tensor([[1, 2], [2, 1]]))
    item_ids, item_mask = item_ids.view(2, 2, -1), item_mask.view(2, 2, -1)
    dot = DualEncoder(model.eval(), family)
    cosine = DualEncoder(model, family, score="cosine", temperature=0.05)
    with torch.no_grad():
        raw, unit = dot.encode(user_ids, user_mask), cosine.encode(user_ids, user_mask)
        torch.testing.assert_close(unit, raw / raw.norm(dim=-1, keepdim=True))
        logits = cosine(user_ids, user_mask, item_ids, item_mask)
        items = cosine.encode(item_ids.view(4, -1), item_mask.view(4, -1)).view(2, 2, -1)
    torch.testing.assert_close(logits, DualEncoder.score(unit, items) / 0.05)
    assert logits.abs().max() <= 20 + 1e-4  # |cos| <= 1
    with pytest.raises(ConfigError, match="score must be one of"):
        DualEncoder(model, family, score="euclid")


def test_mean_pooling_averages_the_real_tokens_only():
    from recplat.models.text_encoder import mean_pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


# ---------------------------------------------------------------- Eq. 6


def test_candidate_cross_entropy_is_eq6_and_ignores_candidate_order():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    by_hand = -torch.log(torch.exp(logits[:, 0]) / torch.exp(logits).sum(1)).mean()
    torch.testing.assert_close(candidate_cross_entropy(logits), by_hand)
    moved = logits[:, [1, 2, 0]]  # the positive now in column 2
    torch.testing.assert_close(F.cross_entropy(moved, torch.tensor([2, 2])), by_hand)


def test_lora_dual_encoder_steps_lower_eq6_loss_on_minilm():
    torch.manual_seed(0)
    model, tokenizer, family = load_backbone(str(minilm_dir()))
    encoder = DualEncoder(apply_lora(model, lora_config(model, rank=4, alpha=8, dropout=0.0)), family)
    titles = ["<pad>", "Acoustic guitar strings", "Guitar capo", "Printer paper", "Stapler",
              "Oil paint set", "Canvas panels", "Microscope slides", "Lab goggles"]  # fmt: skip
    tokens = TitleTokens.from_titles(tokenizer, titles, family)
    histories = [[1], [3], [5], [7]]
    # positive first, and deliberately off-topic (guitar -> slides), the on-topic item a negative:
    # the pretrained encoder starts out preferring the wrong candidate
    candidates = torch.tensor([[7, 2, 4], [6, 4, 8], [8, 6, 1], [2, 8, 3]])
    user_ids, user_mask = tokens.user_batch(histories)
    item_ids, item_mask = tokens.item_batch(candidates)
    item_ids, item_mask = item_ids.view(4, 3, -1), item_mask.view(4, 3, -1)

    def loss() -> torch.Tensor:
        return candidate_cross_entropy(encoder(user_ids, user_mask, item_ids, item_mask))

    encoder.eval()
    with torch.no_grad():
        before = loss().item()
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=3e-3)
    encoder.train()
    for _ in range(6):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    encoder.eval()
    with torch.no_grad():
        after = loss().item()
    assert after < 0.7 * before, (before, after)
