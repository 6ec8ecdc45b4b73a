"""GRU4Rec: padding convention and learning a toy next-item rule with Eq. 6."""

from __future__ import annotations

import torch

from recplat.models.gru4rec import GRU4Rec, left_align
from tests.models.next_item_toy import NUM_ITEMS, hit_rate_at_1, train_toy


def _model(**kwargs) -> GRU4Rec:
    torch.manual_seed(0)
    return GRU4Rec(NUM_ITEMS, **kwargs).eval()


def test_left_align_moves_real_items_first_in_order():
    history = torch.tensor([[0, 0, 3, 4], [1, 2, 0, 0], [0, 0, 0, 0]])
    assert left_align(history).tolist() == [[3, 4, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0]]


def test_shapes_and_score():
    model = _model(hidden=32, embedding_size=16)
    users = model(torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]]))
    assert users.shape == (2, 16)
    candidates = torch.tensor([[5, 1, 2], [6, 7, 8]])
    expected = (model.item_embeddings(candidates) * users[:, None]).sum(-1)
    torch.testing.assert_close(model.score(users, candidates), expected)


def test_left_and_right_padding_give_the_same_user_vector():
    model = _model()
    left = torch.tensor([[0, 0, 0, 5, 6], [0, 1, 2, 3, 4], [0, 0, 0, 0, 9]])
    right = torch.tensor([[5, 6, 0, 0, 0], [1, 2, 3, 4, 0], [9, 0, 0, 0, 0]])
    torch.testing.assert_close(model(left), model(right))
    # and a pad-free history of the same items
    torch.testing.assert_close(model(torch.tensor([[5, 6]])), model(left)[:1])


def test_learns_the_toy_next_item_rule():
    model = _model(dropout=0.1)
    losses = train_toy(model)
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]  # first step: ~ln(6), chance level
    assert hit_rate_at_1(model) > 0.8  # random ranking: 1 / 20
