"""candidates.py: the seeded acceptance walk, exclusion modes, small pools, popularity, vs reference."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from recplat.config import validate
from recplat.data import schema, seeded
from recplat.data.candidates import CandidatePool, sample_candidates
from recplat.data.config import CandidatesConfig, PrepareConfig
from tests.data.reference import Pools
from tests.data.reference import sample_candidates as reference_sample_candidates

SEED = 42
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


def _items(domains: dict[str, int]) -> pa.Table:
    """Indexed items: item_idx 1.. in (domain, item) order, `n` items per domain."""
    rows = [(d, f"i{k:03d}") for d in sorted(domains) for k in range(domains[d])]
    return pa.table(
        {
            "item_idx": pa.array(range(1, len(rows) + 1), pa.int32()),
            "item": [r[1] for r in rows],
            "domain": [r[0] for r in rows],
            "title": [r[1] for r in rows],
            "category": pa.nulls(len(rows), pa.string()),
            "attributes": pa.nulls(len(rows), pa.string()),
        },
        schema=schema.INDEXED_ITEMS,
    )


def _examples(rows: list[dict]) -> pa.Table:
    """rows: user, scope, split, position, prefix (s[0..t-1]), target, target_domain."""
    return pa.table(
        {
            "user": [r["user"] for r in rows],
            "scope": [r.get("scope", "__mixed__") for r in rows],
            "split": [r["split"] for r in rows],
            "position": pa.array([len(r["prefix"]) for r in rows], pa.int32()),
            "history": pa.array([r["prefix"][-10:] for r in rows], pa.list_(pa.int32())),
            "target": pa.array([r["target"] for r in rows], pa.int32()),
            "target_domain": [r["target_domain"] for r in rows],
            "prefix": pa.array([r["prefix"] for r in rows], pa.list_(pa.int32())),
            "bucket": pa.array([0] * len(rows), pa.int32()),
        }
    )


def _sequential_walk(row: dict, pool: list[int], excluded: set, count: int, weights=None) -> list[int]:
    """The contract's walk, one draw at a time (c = 1, 2, ...)."""
    keys = seeded.row_keys(SEED, "candidates", seeded.hash_strings([row["user"]]), seeded.hash_strings([row.get("scope", "__mixed__")]),
                           np.array([SPLIT_CODES[row["split"]]]), np.array([len(row["prefix"])]))
    taken, c = [], 1
    while len(taken) < count:
        u = seeded.uniform(keys, 1, start=c)[0, 0]
        c += 1
        if weights is None:
            item = pool[math.floor(u * len(pool))]
        else:
            cum = np.cumsum(weights)
            item = pool[int(np.searchsorted(cum, u * cum[-1], side="right"))]
        if item not in excluded and item not in taken:
            taken.append(item)
    return taken


def _run(rows, domains, popularity=None, **cfg) -> list[list[int]]:
    items = _items(domains)
    pop = np.ones(items.num_rows + 1, np.int64) if popularity is None else np.asarray(popularity, np.int64)
    out = sample_candidates(_examples(rows), CandidatePool.build(items, pop), CandidatesConfig(**cfg), SEED)
    assert "prefix" not in out.column_names
    return out.column("candidates").to_pylist()


ROW = {"user": "u", "split": "test", "prefix": [1, 2, 2, 3], "target": 4, "target_domain": "A"}


def test_uniform_walk_and_exclude_modes():
    # domain A = item_idx 1..30, B = 31..40
    for exclude, excluded in (("none", set()), ("history", {1, 2, 3}), ("history_and_target", {1, 2, 3, 4})):
        (got,) = _run([ROW], {"A": 30, "B": 10}, count=10, exclude=exclude)
        assert got == _sequential_walk(ROW, list(range(1, 31)), excluded, 10)
        assert not set(got) & excluded and len(set(got)) == 10 and all(1 <= i <= 30 for i in got)
    (got,) = _run([ROW], {"A": 30, "B": 10}, count=25, pool="all")
    assert got == _sequential_walk(ROW, list(range(1, 41)), {1, 2, 3, 4}, 25)


def test_available_not_more_than_count_gives_available_ascending():
    # pool A = 1..6, excluded {1, 2, 3, 4}: available {5, 6}
    assert _run([ROW], {"A": 6, "B": 3}, count=5) == [[5, 6]]
    assert _run([ROW], {"A": 6, "B": 3}, count=2) == [[5, 6]]  # equal: no walk, ascending
    assert _run([ROW], {"A": 6, "B": 3}, count=2, exclude="none") != [[5, 6]]  # 6 available > 2: walk
    assert _run([ROW], {"A": 4, "B": 3}, count=3) == [[]]


def test_train_uses_train_negatives_and_zero_count():
    rows = [dict(ROW, split="train"), ROW]
    got = _run(rows, {"A": 30}, count=7, train_negatives=3)
    assert [len(c) for c in got] == [3, 7]
    assert _run(rows, {"A": 30}, count=0, train_negatives=0) == [[], []]


def test_walk_continues_past_the_first_chunk():
    # 13 available of 30 and count 12: 2 * count draws are rarely enough in one chunk
    row = dict(ROW, prefix=list(range(1, 17)), target=17)
    (got,) = _run([row], {"A": 30}, count=12)
    assert got == _sequential_walk(row, list(range(1, 31)), set(range(1, 18)), 12)


def test_popularity_follows_weights():
    pop = np.array([0] + [1] * 20 + [1000], np.int64)  # item 21 dominates
    (got,) = _run([ROW], {"A": 21}, popularity=pop, count=5, strategy="popularity")
    assert got[0] == 21
    assert got == _sequential_walk(ROW, list(range(1, 22)), {1, 2, 3, 4}, 5, weights=pop[1:])


# --- equality with the reference ----------------------------------------------------------------
def _random_examples(rng, n=300) -> list[dict]:
    rows = []
    for k in range(n):
        prefix = [int(i) for i in rng.integers(1, 61, int(rng.integers(0, 25)))]
        target = int(rng.integers(1, 61))
        rows.append({"user": f"u{k}", "scope": ["__mixed__", "B"][k % 2], "split": ["train", "valid", "test"][k % 3],
                     "prefix": prefix, "target": target, "target_domain": ["A", "B", "C"][(target - 1) // 20]})
    return rows


VARIANTS = [
    dict(count=12, train_negatives=4),
    dict(count=18, train_negatives=5, exclude="history"),
    dict(count=30, train_negatives=2, strategy="popularity", pool="all"),
    dict(count=15, train_negatives=15, exclude="none", strategy="popularity"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_equals_reference_on_random_examples(variant):
    rng = np.random.default_rng(len(str(variant)))
    items = _items({"A": 20, "B": 20, "C": 20})
    popularity = rng.integers(1, 50, items.num_rows + 1)
    cfg = validate(PrepareConfig, {"seed": SEED, "sources": [{"kind": "synthetic"}], "candidates": variant}, source="test")
    rows = _random_examples(rng)
    got = sample_candidates(_examples(rows), CandidatePool.build(items, popularity), cfg.candidates, SEED)
    pools = Pools(items, {i: int(popularity[i]) for i in range(1, items.num_rows + 1)}, cfg)
    want = [reference_sample_candidates({**r, "position": len(r["prefix"])}, r["prefix"] + [r["target"]], pools, SEED) for r in rows]
    assert got.column("candidates").to_pylist() == want


def test_empty_batch():
    items = _items({"A": 5})
    out = sample_candidates(_examples([]), CandidatePool.build(items, np.ones(6, np.int64)), CandidatesConfig(), SEED)
    assert out.num_rows == 0 and "candidates" in out.column_names and "prefix" not in out.column_names


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_fused_splits_and_candidates_equal_the_two_stages(variant):
    """Issue #21: candidates drawn from the sequences (first positions, no per-example prefix) are
    exactly those drawn from the materialised prefixes, row for row."""
    from recplat.data import splits
    from recplat.data.candidates import examples_with_candidates
    from recplat.data.config import SplitConfig

    rng = np.random.default_rng(7 + len(str(variant)))
    items = _items({"A": 20, "B": 20, "C": 20})
    popularity = rng.integers(1, 50, items.num_rows + 1)
    pool = CandidatePool.build(items, popularity)
    cfg = CandidatesConfig(**variant)
    seqs = []
    for k in range(120):
        values = [int(i) for i in rng.integers(1, 61 if k % 3 else 8, int(rng.integers(1, 30)))]  # some with many repeats
        seqs.append({"user": f"u{k}", "scope": ["__mixed__", "B"][k % 2], "items": values,
                     "domains": [["A", "B", "C"][(i - 1) // 20] for i in values], "bucket": 0})
    seqs = pa.Table.from_pylist(seqs, schema=pa.schema([("user", pa.string()), ("scope", pa.string()),
                                                        ("items", pa.list_(pa.int32())), ("domains", pa.list_(pa.string())),
                                                        ("bucket", pa.int32())]))
    split = SplitConfig(max_history=5, target_domains=["A", "B"])
    two_stages = splits.make_examples(seqs, split, SEED)
    kept = two_stages.filter(pa.compute.is_null(two_stages.column("drop_reason")))
    want = sample_candidates(kept, pool, cfg, SEED)
    fused = examples_with_candidates(seqs, split, pool, cfg, SEED)
    assert "prefix" not in fused.column_names and fused.num_rows == two_stages.num_rows
    got = fused.filter(pa.compute.is_null(fused.column("drop_reason")))
    assert got.select(want.column_names).equals(want)
    assert set(len(c) for c in fused.filter(pa.compute.is_valid(fused.column("drop_reason"))).column("candidates").to_pylist()) <= {0}
