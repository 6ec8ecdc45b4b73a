"""The multiple-choice head equals HF's DebertaV2ForMultipleChoice (architecture only: a tiny
randomly initialised DeBERTa-v2, no weights downloaded)."""

import torch
from transformers import DebertaV2Config, DebertaV2ForMultipleChoice

from recplat.models.multiple_choice import MultipleChoiceHead, MultipleChoiceModel


def tiny_deberta_mc() -> DebertaV2ForMultipleChoice:
    torch.manual_seed(0)
    config = DebertaV2Config(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64, relative_attention=True,
                             position_buckets=16, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
                             position_biased_input=False, type_vocab_size=0, pooler_hidden_size=32,
                             pooler_dropout=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return DebertaV2ForMultipleChoice(config).eval()


def test_logits_equal_hf_deberta_multiple_choice():
    hf = tiny_deberta_mc()
    ours = MultipleChoiceModel(hf.deberta, hidden_size=32).eval()
    ours.head.pooler.load_state_dict(hf.pooler.dense.state_dict())
    ours.head.scorer.load_state_dict(hf.classifier.state_dict())
    ids = torch.randint(1, 100, (2, 5, 7))
    mask = torch.ones_like(ids)
    mask[0, :, 5:] = 0  # padding in the first question
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, expected)


def test_head_save_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    head = MultipleChoiceHead(8)
    head.save(tmp_path)
    other = MultipleChoiceHead(8).load(tmp_path)
    hidden = torch.randn(3, 4, 8)
    torch.testing.assert_close(head(hidden), other(hidden))
    assert head(hidden).shape == (3,)
