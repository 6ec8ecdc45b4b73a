"""splits.py: examples from sequences (leave-one-out, user split, filters, cold start) vs reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recplat.config import validate
from recplat.data import schema, seeded
from recplat.data.accounting import DROP, kept
from recplat.data.config import PrepareConfig, SplitConfig
from recplat.data.splits import make_examples, mark_warm_targets, seen_items
from recplat.data.writer import sort_table
from tests.data.reference import make_examples as reference_make_examples

SEED = 42


def _seqs(seqs: list[tuple[str, str, list[int], list[str]]]) -> pa.Table:
    """seqs: (user, scope, items, domains); timestamps 0.., ratings 1.0; bucket 0."""
    return pa.table(
        {
            "user": [s[0] for s in seqs],
            "scope": [s[1] for s in seqs],
            "items": pa.array([s[2] for s in seqs], pa.list_(pa.int32())),
            "domains": pa.array([s[3] for s in seqs], pa.list_(pa.string())),
            "timestamps": pa.array([list(range(len(s[2]))) for s in seqs], pa.list_(pa.int64())),
            "ratings": pa.array([[1.0] * len(s[2]) for s in seqs], pa.list_(pa.float32())),
            "bucket": pa.array([0] * len(seqs), pa.int32()),
        }
    )


def _brief(table: pa.Table) -> list[tuple]:
    return [(r["split"], r["position"], r["history"], r["target"], r[DROP]) for r in table.to_pylist()]


def test_leave_one_out_prefixes_and_windows():
    out = make_examples(_seqs([("u", "__mixed__", [11, 12, 13, 14, 15, 16], ["X"] * 6)]), SplitConfig(max_history=2), SEED)
    assert _brief(out) == [
        ("train", 1, [11], 12, None),
        ("train", 2, [11, 12], 13, None),
        ("train", 3, [12, 13], 14, None),
        ("valid", 4, [13, 14], 15, None),
        ("test", 5, [14, 15], 16, None),
    ]
    assert out.column("prefix").to_pylist()[-1] == [11, 12, 13, 14, 15]  # whole prefix, not the window


def test_last_mode_short_sequences_and_min_history():
    seqs = _seqs([("a", "X", [1, 2], ["X"] * 2), ("b", "X", [1, 2, 3, 4, 5], ["X"] * 5)])
    # a: valid t=0 has no history, test t=1 exists; b: train t=2 only (last), valid 3, test 4
    assert _brief(make_examples(seqs, SplitConfig(train_examples="last"), SEED)) == [
        ("test", 1, [1], 2, None),
        ("train", 2, [1, 2], 3, None),
        ("valid", 3, [1, 2, 3], 4, None),
        ("test", 4, [1, 2, 3, 4], 5, None),
    ]
    # min_history=3 with max_history=2 removes everything: min(t, 2) < 3
    assert make_examples(seqs, SplitConfig(min_history=3, max_history=2), SEED).num_rows == 0
    got = make_examples(seqs, SplitConfig(min_history=3), SEED)
    assert [(r["user"], r["split"], r["position"]) for r in got.to_pylist()] == [("b", "valid", 3), ("b", "test", 4)]


def test_user_split_follows_the_seeded_draw_for_every_scope():
    users = [f"u{i}" for i in range(60)]
    seqs = _seqs([(u, scope, [1, 2, 3], ["X"] * 3) for u in users for scope in ("X", "__mixed__")])
    cfg = SplitConfig(method="user", ratios=(3, 1, 1))
    out = make_examples(seqs, cfg, SEED).to_pylist()
    draws = seeded.uniform(seeded.row_keys(SEED, "user_split", seeded.hash_strings(users)), 1)[:, 0]
    want = {u: "train" if x < 0.6 else "valid" if x < 0.8 else "test" for u, x in zip(users, draws)}
    assert len(out) == 120 and all(r["position"] == 2 and r["split"] == want[r["user"]] for r in out)
    assert set(want.values()) == {"train", "valid", "test"}


def test_target_domains_mark_other_domain():
    seqs = _seqs([("u", "__mixed__", [1, 2, 3, 4, 5], ["X", "Y", "X", "Y", "X"])])
    out = make_examples(seqs, SplitConfig(target_domains=["X"]), SEED)
    assert [(r["position"], r["target_domain"], r[DROP]) for r in out.to_pylist()] == [
        (1, "Y", "other_domain"), (2, "X", None), (3, "Y", "other_domain"), (4, "X", None)
    ]
    assert set(make_examples(seqs, SplitConfig(target_domains=[]), SEED).column(DROP).to_pylist()) == {"other_domain"}


def test_cold_start_seen_set_is_prefix_and_target_of_kept_train_valid():
    seqs = _seqs([("a", "X", [1, 2, 3, 4], ["X"] * 4), ("b", "X", [5, 6, 3], ["X"] * 3), ("c", "X", [7, 8, 9], ["X", "Y", "X"])])
    out = make_examples(seqs, SplitConfig(target_domains=["X"]), SEED)
    seen = seen_items(out).column("item_idx").to_pylist()
    # a: train t=1 (1,2), valid t=2 (1,2,3); b: valid t=1 (5,6); c: valid t=1 targets Y -> not kept
    assert sorted(seen) == [1, 2, 3, 5, 6]
    marked = {(r["user"], r["split"]): r[DROP] for r in mark_warm_targets(out, pa.array(seen, pa.int32())).to_pylist()}
    assert marked[("a", "test")] is None  # 4 unseen
    assert marked[("b", "test")] == "warm_target"  # 3 seen in a's valid prefix
    assert marked[("c", "test")] is None and marked[("c", "valid")] == "other_domain"


# --- equality with the reference ----------------------------------------------------------------
def _random_seqs(rng, n=150) -> pa.Table:
    rows = []
    for k in range(n):
        length = int(rng.integers(1, 14))
        domains = [["Books", "Movies", "Toys"][d] for d in rng.integers(0, 3, length)]
        items = [int(i) for i in rng.integers(1, 40, length)]
        rows.append((f"u{k // 2}", ["Books", "__mixed__"][k % 2], items, domains))
    return _seqs(rows)


def _prepare_cfg(**split) -> PrepareConfig:
    return validate(PrepareConfig, {"seed": SEED, "sources": [{"kind": "synthetic"}], "split": split}, source="test")


VARIANTS = [
    dict(),
    dict(max_history=3, min_history=2, train_examples="last", cold_start=True),
    dict(method="user", ratios=[2, 1, 1], target_domains=["Toys", "Books"], min_history=2),
    dict(target_domains=["Movies"], cold_start=True, max_history=4),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_equals_reference_on_random_sequences(variant):
    """In three blocks, as the bucket tasks run it: the cold-start seen set is united over blocks."""
    cfg = _prepare_cfg(**variant)
    seqs = _random_seqs(np.random.default_rng(len(str(variant))))
    want, want_count = reference_make_examples(seqs.to_pylist(), cfg)
    third = -(-seqs.num_rows // 3)
    blocks = [make_examples(seqs.slice(lo, third), cfg.split, cfg.seed) for lo in range(0, seqs.num_rows, third)]
    if cfg.split.cold_start:
        seen = pa.chunked_array([seen_items(b).column("item_idx") for b in blocks]).unique()
        blocks = [mark_warm_targets(b, seen) for b in blocks]
    out = pa.concat_tables(blocks)
    reasons = out.column(DROP).to_pylist()
    assert {"read": out.num_rows, "kept": reasons.count(None)} == {k: want_count[k] for k in ("read", "kept")}
    assert {r: reasons.count(r) for r in set(reasons) - {None}} == want_count["dropped"]
    got = sort_table(kept(out), ["user", "scope", "split", "position"], schema.SPLITS)
    got = got.select([f.name for f in schema.EXAMPLES if f.name != "candidates"])
    assert got.to_pylist() == want


def test_empty_input_keeps_the_schema():
    out = make_examples(_seqs([]), SplitConfig(), SEED)
    assert out.num_rows == 0 and {"prefix", DROP, "bucket"} <= set(out.column_names)
