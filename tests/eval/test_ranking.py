"""Cache path == naive path == brute force, on random data with exact (integer) scores and ties."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from recplat.data import schema
from recplat.errors import DataError
from recplat.eval.ranking import (
    PAD_ITEM,
    build_item_cache,
    needed_items,
    pad_candidates,
    candidate_mask,
    rank_candidates,
    rank_naive,
    rank_with_item_cache,
)

NUM_ITEMS, FEATURES, DIM = 40, 6, 4


class TinyEncoder:
    """Item features and a Linear layer with small integer values: every score is an exact integer,
    so the three paths must agree bit for bit, and ties are frequent."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.features = torch.randint(-2, 3, (NUM_ITEMS + 1, FEATURES), generator=g).float()
        self.linear = torch.nn.Linear(FEATURES, DIM, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randint(-1, 2, (DIM, FEATURES), generator=g).float())
        self.item_calls = 0

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        self.item_calls += len(ids)
        return self.linear(self.features[ids])

    def encode_user(self, history) -> torch.Tensor:
        return self.linear(self.features[torch.tensor(history, dtype=torch.long)].sum(0))


def random_examples(seed: int, n: int = 60) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        target = int(rng.integers(1, NUM_ITEMS + 1))
        ncand = int(rng.integers(0, 12))  # ragged, sometimes empty
        cands = rng.choice(np.arange(1, NUM_ITEMS + 1), size=ncand, replace=False).tolist()  # may hold the target
        history = rng.integers(1, NUM_ITEMS + 1, size=int(rng.integers(1, 6))).tolist()
        rows.append(dict(user=f"u{i}", scope=schema.MIXED_SCOPE, split="test", position=len(history), history=history,
                         target=target, target_domain="d", candidates=cands))
    return pa.Table.from_pylist(rows, schema=schema.EXAMPLES)


def brute_force_ranks(enc: TinyEncoder, examples: pa.Table) -> list[int]:
    w = enc.linear.weight.detach().numpy().astype(int)
    f = enc.features.numpy().astype(int)
    ranks = []
    for row in examples.to_pylist():
        u = w @ f[row["history"]].sum(0)
        score = lambda item: int(u @ (w @ f[item]))  # noqa: E731
        s_pos = score(row["target"])
        ranks.append(1 + sum(score(c) >= s_pos for c in row["candidates"] if c != row["target"]))
    return ranks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cache_path_equals_naive_equals_brute_force(seed):
    enc, examples = TinyEncoder(seed), random_examples(seed)
    cands, mask = pad_candidates(examples["candidates"])
    targets = examples["target"].to_numpy().copy()
    users = torch.stack([enc.encode_user(h) for h in examples["history"].to_pylist()])
    items = build_item_cache(enc.encode_items, needed_items(targets, cands), NUM_ITEMS, batch_size=7)
    # a tiny chunk budget forces many chunks
    cached = rank_with_item_cache(users, items, targets, cands, max_chunk_elements=50)
    naive = rank_naive(enc.encode_user, enc.encode_items, examples)
    expected = brute_force_ranks(enc, examples)
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(naive, expected)
    assert cached.dtype == np.int64
    # the same through raw scores
    pos = (items[targets] * users).sum(-1)
    cand = torch.einsum("ncd,nd->nc", items[cands], users)
    np.testing.assert_array_equal(rank_candidates(pos, cand, torch.as_tensor(targets), torch.as_tensor(cands)), expected)
    np.testing.assert_array_equal(rank_candidates(pos.detach().numpy(), cand.detach().numpy(), targets, cands, mask), expected)


def test_item_cache_encodes_each_needed_item_once():
    enc = TinyEncoder(3)
    ids = needed_items(np.array([5, 5, 9]), np.array([[9, 2, 0], [2, 0, 0], [7, 5, 0]]))
    np.testing.assert_array_equal(ids, [2, 5, 7, 9])
    cache = build_item_cache(enc.encode_items, ids, NUM_ITEMS, batch_size=3)
    assert enc.item_calls == 4 and cache.shape == (NUM_ITEMS + 1, DIM)
    assert torch.equal(cache[7], enc.encode_items(torch.tensor([7]))[0])
    assert not cache[0].any() and not cache[1].any()
    with pytest.raises(DataError, match="1..40"):
        build_item_cache(enc.encode_items, [41], NUM_ITEMS)


def test_pad_candidates_ragged():
    ids, mask = pad_candidates([[3, 4], [], [7, 8, 9]])
    np.testing.assert_array_equal(ids, [[3, 4, PAD_ITEM], [0, 0, 0], [7, 8, 9]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [0, 0, 0], [1, 1, 1]])


def test_padding_and_target_duplicates_are_masked():
    # items: 1 -> [1,0], 2 -> [0,1], 3 -> [2,0]; user [1,0]: scores 1, 0, 2; row 0 of the cache is padding
    items = torch.tensor([[9.0, 9.0], [1, 0], [0, 1], [2, 0]])
    users = torch.tensor([[1.0, 0], [1, 0], [1, 0]])
    targets = np.array([1, 1, 1])
    cands_zero = np.array([[2, 0, 0], [3, 2, 0], [1, 2, 0]])  # padded with 0; row 2 holds the target itself
    np.testing.assert_array_equal(rank_with_item_cache(users, items, targets, cands_zero), [1, 2, 1])
    cands_neg = np.where(cands_zero == 0, -1, cands_zero)  # padded with -1 works too
    np.testing.assert_array_equal(rank_with_item_cache(users, items, targets, cands_neg), [1, 2, 1])


def test_rank_candidates_masks_padding_and_target_copies_and_checks_shapes():
    pos = np.array([1.0, 1.0])
    cand = np.array([[1.0, np.nan], [2.0, 0.5]])
    targets = np.array([5, 5])
    np.testing.assert_array_equal(rank_candidates(pos, cand, targets, np.array([[3, 0], [4, 6]])), [2, 2])
    np.testing.assert_array_equal(rank_candidates(pos, cand, targets, np.array([[5, 0], [5, 6]])), [1, 1])
    np.testing.assert_array_equal(candidate_mask(targets, np.array([[5, -1], [4, 6]])), [[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="cand_scores"):
        rank_candidates(pos, cand[0], targets, cand[0])
    with pytest.raises(ValueError, match="shape"):
        rank_candidates(pos, cand, targets, np.ones((2, 3), dtype=np.int64))


def test_popularity_and_models_rank_identically_with_the_target_among_the_negatives():
    """Issue #18.3: every candidate scores the same except the target; with `exclude: none` the
    target also appears among the negatives. The popularity baseline, the cached model path and the
    naive reference must give the same ranks (the target's copy never counts against it)."""
    from recplat.recipes.popularity import rank_by_popularity

    # item 1 scores 3, every other item scores 1 (popularity, and <user, item> with user = [1])
    popularity = np.array([0.0, 3.0] + [1.0] * 8)
    items = torch.tensor(popularity[:, None], dtype=torch.float32)
    users = torch.ones(4, 1)
    targets = np.array([1, 1, 2, 2])
    cands = np.array([
        [4, 1, 5, 6],  # target 1 (best) and its copy: rank 1, not 2
        [1, 1, 7, 0],  # two copies and padding: rank 1
        [3, 2, 4, 5],  # target 2 ties the three others: rank 4 (pessimistic), its copy not counted
        [1, 2, 0, 0],  # target 2 below item 1: rank 2
    ])
    expected = [1, 1, 4, 2]
    np.testing.assert_array_equal(rank_by_popularity(popularity, targets, cands), expected)
    np.testing.assert_array_equal(rank_with_item_cache(users, items, targets, cands), expected)
    examples = [dict(history=[1], target=int(t), candidates=[int(c) for c in row if c]) for t, row in zip(targets, cands)]
    naive = rank_naive(lambda history: torch.ones(1), lambda ids: items[ids], examples)
    np.testing.assert_array_equal(naive, expected)
