"""SASRec: padding convention, causality, and learning a toy next-item rule with Eq. 6."""

from __future__ import annotations

import torch

from recplat.models.sasrec import SASRec
from tests.models.next_item_toy import NUM_ITEMS, hit_rate_at_1, train_toy


def _model(**kwargs) -> SASRec:
    torch.manual_seed(0)
    return SASRec(NUM_ITEMS, max_len=8, **kwargs).eval()


def test_shapes_and_score():
    model = _model()
    history = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    users = model(history)
    assert users.shape == (2, 64)
    candidates = torch.tensor([[5, 1, 2], [6, 7, 8]])
    expected = (model.item_embeddings(candidates) * users[:, None]).sum(-1)
    torch.testing.assert_close(model.score(users, candidates), expected)


def test_left_and_right_padding_give_the_same_user_vector():
    model = _model()
    left = torch.tensor([[0, 0, 0, 5, 6], [0, 1, 2, 3, 4], [0, 0, 0, 0, 9]])
    right = torch.tensor([[5, 6, 0, 0, 0], [1, 2, 3, 4, 0], [9, 0, 0, 0, 0]])
    torch.testing.assert_close(model(left), model(right), atol=1e-5, rtol=1e-5)


def test_output_at_position_i_does_not_depend_on_later_items():
    model = _model(num_blocks=2, num_heads=2)
    base = torch.tensor([[3, 7, 1, 9, 4, 2]])
    changed = base.clone()
    changed[0, 3:] = torch.tensor([11, 12, 13])  # items after position 2 differ
    out_base, out_changed = model.encode_sequence(base), model.encode_sequence(changed)
    torch.testing.assert_close(out_base[:, :3], out_changed[:, :3])
    assert not torch.allclose(out_base[:, 3:], out_changed[:, 3:])
    # a prefix alone gets the vector it has inside the longer history
    torch.testing.assert_close(model(base[:, :3]), out_base[:, 2])


def test_learns_the_toy_next_item_rule():
    model = _model(dropout=0.1)
    losses = train_toy(model)
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]  # first step: ~ln(6), chance level
    assert hit_rate_at_1(model) > 0.8  # random ranking: 1 / 20
