"""Sanity tests of the single-process reference (tests/data/reference.py) on tiny hand-made
inputs whose outputs are worked out by hand. Never imports the Ray stage modules.

Inputs are written as canonical-column Parquet files and read through a `table` source. Until
the `table` reader (recplat.data.sources.table) exists, the same files are handed to the
reference directly (raw_from_tables); test_table_source_matches_direct_tables checks that both
routes agree once the reader is there.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.data import schema, seeded
from recplat.data.config import PrepareConfig
from tests.data.reference import H, U, raw_from_tables, reference_prepare

HAVE_TABLE_READER = importlib.util.find_spec("recplat.data.sources.table") is not None
DAY = 86400
NO_KCORE = {"user": 0, "item": 0}


def _write(tmp_path, interactions, items):
    """interactions: (user, item, domain, timestamp[, rating]); items: (item, domain, title[, category])."""
    inter = pa.table(
        {
            "user": [r[0] for r in interactions],
            "item": [r[1] for r in interactions],
            "domain": [r[2] for r in interactions],
            "timestamp": pa.array([r[3] for r in interactions], pa.int64()),
            "rating": pa.array([r[4] if len(r) > 4 else 1.0 for r in interactions], pa.float32()),
        },
        schema=schema.INTERACTIONS,
    )
    meta = pa.table(
        {
            "item": [r[0] for r in items],
            "domain": [r[1] for r in items],
            "title": [r[2] for r in items],
            "category": [r[3] if len(r) > 3 else None for r in items],
            "attributes": [None] * len(items),
        },
        schema=schema.ITEMS,
    )
    pq.write_table(inter, tmp_path / "interactions.parquet")
    pq.write_table(meta, tmp_path / "items.parquet")
    return inter, meta


def _config(tmp_path, **overrides) -> PrepareConfig:
    body = {
        "sources": [
            {
                "kind": "table",
                "interactions": str(tmp_path / "interactions.parquet"),
                "items": str(tmp_path / "items.parquet"),
            }
        ],
        "kcore": NO_KCORE,
    }
    body.update(overrides)
    return PrepareConfig.model_validate(body)


def prepare(tmp_path, interactions, items, **overrides):
    inter, meta = _write(tmp_path, interactions, items)
    cfg = _config(tmp_path, **overrides)
    raw = None if HAVE_TABLE_READER else raw_from_tables(inter, meta)
    out = reference_prepare(cfg, raw)
    for row in out["accounting"]:
        assert row["read"] == row["kept"] + sum(row["dropped"].values()), row
    return out, cfg


def acct(out, stage):
    rows = [r for r in out["accounting"] if r["stage"] == stage]
    assert len(rows) == 1, stage
    return rows[0]


def items_of(domain, *names, title=None):
    return [(n, domain, title or f"Title {n}") for n in names]


def seq_rows(user, domain, names, start=0, step=DAY):
    return [(user, n, domain, start + i * step) for i, n in enumerate(names)]


# ---------------------------------------------------------------------------------------------
def test_table_source_matches_direct_tables(tmp_path):
    if not HAVE_TABLE_READER:
        pytest.skip("recplat.data.sources.table not written yet")
    inter, meta = _write(
        tmp_path, seq_rows("u1", "X", ["a", "b", "c", "a"]), items_of("X", "a", "b", "c")
    )
    cfg = _config(tmp_path, candidates={"count": 5})
    via_source = reference_prepare(cfg)
    direct = reference_prepare(cfg, raw_from_tables(inter, meta))
    for key in ("items", "dropped_items", "interactions", "sequences", "examples/train", "examples/valid", "examples/test"):
        assert via_source[key].equals(direct[key]), key
    assert via_source["stats"] == direct["stats"]
    assert via_source["accounting"][1:] == direct["accounting"][1:]  # read counts records, not rows


# --- titles ----------------------------------------------------------------------------------
def test_titles_cleaning_reasons_and_unknown_items(tmp_path):
    items = [
        ("a", "X", "  Fish &amp;amp;\tChips \n"),  # unescaped once -> "Fish &amp; Chips"
        ("b", "X", None),
        ("c", "X", " \t "),
        ("d", "X", " NaN "),
        ("a", "X", "a later duplicate"),
        ("a", "Y", "Same id, other domain"),
        ("e", "X", "&lt;b&gt;ok&nbsp;fine"),  # &nbsp; -> \xa0, folded as whitespace
    ]
    inter = [
        ("u1", "a", "X", 1),
        ("u1", "b", "X", 2),  # no_title
        ("u1", "c", "X", 3),  # no_title
        ("u1", "d", "X", 4),  # no_title
        ("u1", "zz", "X", 5),  # no_metadata
        ("u1", "a", "Y", 6),
        ("u1", "e", "Y", 7),  # no_metadata: e exists only in X
        ("u1", "e", "X", 8),
    ]
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 0, "train_negatives": 0})
    kept = out["items"].to_pylist()
    assert [(r["item_idx"], r["domain"], r["item"], r["title"]) for r in kept] == [
        (1, "X", "a", "Fish &amp; Chips"),
        (2, "X", "e", "<b>ok fine"),
        (3, "Y", "a", "Same id, other domain"),
    ]
    dropped = out["dropped_items"].to_pylist()
    assert [(r["item"], r["domain"], r["reason"]) for r in dropped] == [
        ("b", "X", "title_missing"),
        ("c", "X", "title_empty"),
        ("d", "X", "title_nan"),
        ("a", "X", "duplicate_item"),
    ]
    assert acct(out, "titles") == {
        "stage": "titles", "unit": "items", "read": 7, "kept": 3,
        "dropped": {"duplicate_item": 1, "title_empty": 1, "title_missing": 1, "title_nan": 1},
    }
    assert acct(out, "item_titles") == {
        "stage": "item_titles", "unit": "interactions", "read": 8, "kept": 3,
        "dropped": {"no_metadata": 2, "no_title": 3},
    }
    assert out["interactions"].column("item_idx").to_pylist() == [1, 2, 3]  # sorted user, domain, ts


def test_titles_placeholder_keeps_items(tmp_path):
    items = [("a", "X", None), ("b", "X", "  "), ("c", "X", "nan"), ("c", "X", "dup")]
    inter = [("u1", "a", "X", 1), ("u1", "b", "X", 2), ("u1", "c", "X", 3)]
    out, _ = prepare(tmp_path, inter, items, titles={"on_missing": "placeholder", "placeholder": "None"})
    assert out["items"].column("title").to_pylist() == ["None", "None", "None"]
    assert out["dropped_items"].column("reason").to_pylist() == ["duplicate_item"]
    assert acct(out, "item_titles")["kept"] == 3


# --- dedupe ------------------------------------------------------------------------------------
def test_dedupe_exact_rows_only(tmp_path):
    inter = [
        ("u1", "a", "X", 10, 5.0),
        ("u1", "a", "X", 10, 5.0),  # duplicate
        ("u1", "a", "X", 10, 4.0),  # other rating: kept
        ("u1", "a", "X", 11, 5.0),  # other time: kept
        ("u1", "a", "X", 10, 5.0),  # duplicate
    ]
    out, _ = prepare(tmp_path, inter, items_of("X", "a"))
    assert acct(out, "dedupe")["dropped"] == {"duplicate": 2}
    assert out["interactions"].num_rows == 3
    rows = out["interactions"].select(["timestamp", "rating"]).to_pylist()
    assert rows == [{"timestamp": 10, "rating": 4.0}, {"timestamp": 10, "rating": 5.0}, {"timestamp": 11, "rating": 5.0}]

    out, _ = prepare(tmp_path, inter, items_of("X", "a"), dedupe=False)
    assert out["interactions"].num_rows == 5
    assert "dedupe" not in [r["stage"] for r in out["accounting"]]


# --- k-core ------------------------------------------------------------------------------------
def test_kcore_cascades_over_rounds(tmp_path):
    # user=2, item=2. u4 (1 interaction) goes -> d falls to 1 -> d goes -> u3 falls to 1 -> u3 goes
    # -> c falls to 1 -> c goes; u1 keeps a, b (2) and u2 keeps a, b.
    inter = [
        ("u1", "a", "X", 1), ("u1", "b", "X", 2), ("u1", "c", "X", 3),
        ("u2", "a", "X", 1), ("u2", "b", "X", 2),
        ("u3", "c", "X", 1), ("u3", "d", "X", 2),
        ("u4", "d", "X", 1),
    ]
    out, _ = prepare(tmp_path, inter, items_of("X", "a", "b", "c", "d"), kcore={"user": 2, "item": 2})
    got = out["interactions"].select(["user", "item"]).to_pylist()
    assert [(r["user"], r["item"]) for r in got] == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]
    assert acct(out, "kcore") == {"stage": "kcore", "unit": "interactions", "read": 8, "kept": 4, "dropped": {"kcore": 4}}
    assert out["kcore_rounds"] >= 2
    assert out["items"].column("item").to_pylist() == ["a", "b"]  # c, d lost every interaction
    assert out["stats"]["all"] == {"domain": "all", "users": 2, "items": 2, "interactions": 4, "density": 1.0,
                                   "training": 0, "validation": 0, "testing": 2}


def test_kcore_fixed_point_is_maximal(tmp_path):
    # A 2x2 biclique survives k=2 on both sides; a pendant user and item hang off it.
    inter = [
        ("u1", "a", "X", 1), ("u1", "b", "X", 2), ("u2", "a", "X", 3), ("u2", "b", "X", 4),
        ("u1", "p", "X", 5),  # p has one user -> p goes, u1 keeps a, b
        ("u3", "a", "X", 6),  # u3 has one item -> u3 goes
    ]
    out, _ = prepare(tmp_path, inter, items_of("X", "a", "b", "p"), kcore={"user": 2, "item": 2})
    assert out["interactions"].num_rows == 4
    # one side disabled: only users counted
    out, _ = prepare(tmp_path, inter, items_of("X", "a", "b", "p"), kcore={"user": 2, "item": 0})
    assert sorted(set(out["interactions"].column("user").to_pylist())) == ["u1", "u2"]
    assert out["interactions"].num_rows == 5


def test_kcore_mixed_vs_per_domain(tmp_path):
    inter = [
        ("u1", "a", "X", 1), ("u1", "b", "X", 2), ("u1", "p", "Y", 3),
        ("u2", "a", "X", 4), ("u2", "p", "Y", 5), ("u2", "q", "Y", 6),
    ]
    items = items_of("X", "a", "b") + items_of("Y", "p", "q")
    out, _ = prepare(tmp_path, inter, items, kcore={"user": 2, "item": 0, "scope": "mixed"})
    assert out["interactions"].num_rows == 6
    out, _ = prepare(tmp_path, inter, items, kcore={"user": 2, "item": 0, "scope": "per_domain"})
    got = [(r["user"], r["domain"], r["item"]) for r in out["interactions"].to_pylist()]
    assert got == [("u1", "X", "a"), ("u1", "X", "b"), ("u2", "Y", "p"), ("u2", "Y", "q")]
    assert acct(out, "kcore")["dropped"] == {"kcore": 2}


# --- sequences -------------------------------------------------------------------------------
def test_sequence_order_ties_and_scopes(tmp_path):
    # Same timestamp: ordered by domain, then item. Input deliberately out of order.
    inter = [
        ("u1", "b", "Y", 5), ("u1", "a", "X", 5), ("u1", "c", "X", 5), ("u1", "d", "X", 1), ("u1", "e", "Y", 9),
    ]
    items = items_of("X", "a", "c", "d") + items_of("Y", "b", "e")  # idx a1 c2 d3 b4 e5
    out, _ = prepare(tmp_path, inter, items, sequences={"scope": "both"}, candidates={"count": 0, "train_negatives": 0})
    seqs = {r["scope"]: r for r in out["sequences"].to_pylist()}
    assert [r["scope"] for r in out["sequences"].to_pylist()] == ["X", "Y", "__mixed__"]  # byte order
    assert seqs["__mixed__"]["items"] == [3, 1, 2, 4, 5]
    assert seqs["__mixed__"]["domains"] == ["X", "X", "X", "Y", "Y"]
    assert seqs["__mixed__"]["timestamps"] == [1, 5, 5, 5, 9]
    assert seqs["X"]["items"] == [3, 1, 2]
    assert seqs["Y"]["items"] == [4, 5]
    # counted once per scope built: 5 (mixed) + 3 + 2
    assert acct(out, "sequences") == {"stage": "sequences", "unit": "interactions", "read": 10, "kept": 10, "dropped": {}}


def test_consecutive_repeats_truncation_and_min_length(tmp_path):
    inter = seq_rows("u1", "X", ["a", "a", "b", "a", "a", "a", "c"]) + seq_rows("u2", "X", ["a", "b", "b"])
    out, _ = prepare(
        tmp_path, inter, items_of("X", "a", "b", "c"),
        sequences={"drop_consecutive_repeats": True, "max_length": 3, "min_length": 3},
        candidates={"count": 0, "train_negatives": 0},
    )
    # u1: a a b a a a c -> a b a c (3 repeats) -> last 3: b a c (1 truncated)
    # u2: a b b -> a b (1 repeat) -> 2 < 3: too_short (2 rows)
    assert out["sequences"].to_pylist() == [
        {"user": "u1", "scope": "__mixed__", "items": [2, 1, 3], "domains": ["X"] * 3,
         "timestamps": [2 * DAY, 3 * DAY, 6 * DAY], "ratings": [1.0] * 3}
    ]
    assert acct(out, "sequences") == {
        "stage": "sequences", "unit": "interactions", "read": 10, "kept": 3,
        "dropped": {"consecutive_repeat": 4, "too_short": 2, "truncated": 1},
    }


def test_one_per_day_picks_the_seeded_row(tmp_path):
    # day 0: 3 rows, day 1: 1 row, day 2: 2 rows
    ts = [0, 100, 200, DAY + 5, 2 * DAY, 2 * DAY + 1]
    names = ["a", "b", "c", "d", "e", "f"]
    inter = [("u1", n, "X", t) for n, t in zip(names, ts)]
    out, cfg = prepare(
        tmp_path, inter, items_of("X", *names), sequences={"one_per_day": True},
        candidates={"count": 0, "train_negatives": 0},
    )
    expected = []
    for day, day_idx in ((0, [1, 2, 3]), (1, [4]), (2, [5, 6])):
        u = seeded.uniform(seeded.row_keys(cfg.seed, "one_per_day", H("u1"), H("__mixed__"), np.array([day])), 1)[0, 0]
        expected.append(day_idx[math.floor(u * len(day_idx))])
    (seq,) = out["sequences"].to_pylist()
    assert seq["items"] == expected
    assert acct(out, "sequences")["dropped"] == {"one_per_day": 3}


def test_user_ratio_subsamples_whole_users(tmp_path):
    users = [f"user{i}" for i in range(40)]
    inter = [r for u in users for r in seq_rows(u, "X", ["a", "b", "c"])]
    out, cfg = prepare(
        tmp_path, inter, items_of("X", "a", "b", "c"), sequences={"user_ratio": 0.5, "scope": "both"},
        candidates={"count": 0, "train_negatives": 0},
    )
    keep = {u for u in users if U(cfg.seed, "user_ratio", H(u))[0] < 0.5}
    assert 0 < len(keep) < len(users)
    assert set(out["sequences"].column("user").to_pylist()) == keep
    # 3 rows per user, counted in the mixed and the X scope
    assert acct(out, "sequences")["dropped"] == {"user_subsampled": 6 * (len(users) - len(keep))}
    assert acct(out, "sequences")["kept"] == 6 * len(keep)


# --- splits ----------------------------------------------------------------------------------
def _examples(out):
    return {
        split: [(r["position"], r["history"], r["target"]) for r in out[f"examples/{split}"].to_pylist()]
        for split in ("train", "valid", "test")
    }


def test_leave_one_out_histories(tmp_path):
    names = ["i1", "i2", "i3", "i4", "i5", "i6"]  # item_idx 1..6
    inter = list(reversed(seq_rows("u1", "X", names)))  # file order does not matter
    no_neg = {"count": 0, "train_negatives": 0}
    out, _ = prepare(tmp_path, inter, items_of("X", *names), split={"max_history": 2}, candidates=no_neg)
    assert _examples(out) == {
        "train": [(1, [1], 2), (2, [1, 2], 3), (3, [2, 3], 4)],
        "valid": [(4, [3, 4], 5)],
        "test": [(5, [4, 5], 6)],
    }
    out, _ = prepare(tmp_path, inter, items_of("X", *names), split={"max_history": 2, "min_history": 2}, candidates=no_neg)
    assert _examples(out)["train"] == [(2, [1, 2], 3), (3, [2, 3], 4)]
    out, _ = prepare(tmp_path, inter, items_of("X", *names), split={"train_examples": "last"}, candidates=no_neg)
    assert _examples(out) == {
        "train": [(3, [1, 2, 3], 4)],
        "valid": [(4, [1, 2, 3, 4], 5)],
        "test": [(5, [1, 2, 3, 4, 5], 6)],
    }
    assert acct(out, "splits") == {"stage": "splits", "unit": "examples", "read": 3, "kept": 3, "dropped": {}}


def test_leave_one_out_short_sequences(tmp_path):
    inter = seq_rows("u1", "X", ["a", "b"]) + seq_rows("u2", "X", ["c"])
    out, _ = prepare(tmp_path, inter, items_of("X", "a", "b", "c"), candidates={"count": 0, "train_negatives": 0})
    # u1 (n=2): test t=1 only (valid t=0 has no history); u2 (n=1): nothing
    assert _examples(out) == {"train": [], "valid": [], "test": [(1, [1], 2)]}
    row = out["examples/test"].to_pylist()[0]
    assert (row["user"], row["scope"], row["split"], row["target_domain"]) == ("u1", "__mixed__", "test", "X")


def test_user_split(tmp_path):
    users = [f"user{i}" for i in range(30)]
    inter = []
    for u in users:
        inter += seq_rows(u, "X", ["a", "b"]) + seq_rows(u, "Y", ["p", "q", "r"], start=10 * DAY)
    items = items_of("X", "a", "b") + items_of("Y", "p", "q", "r")
    no_neg = {"count": 0, "train_negatives": 0}
    split = {"method": "user", "ratios": [3, 1, 1], "max_history": 3}
    out, cfg = prepare(tmp_path, inter, items, sequences={"scope": "both"}, split=split, candidates=no_neg)
    r0, r1 = 3 / 5, 4 / 5
    for u in users:
        draw = U(cfg.seed, "user_split", H(u))[0]
        want = "train" if draw < r0 else "valid" if draw < r1 else "test"
        for split_name in ("train", "valid", "test"):
            rows = [r for r in out[f"examples/{split_name}"].to_pylist() if r["user"] == u]
            if split_name != want:
                assert rows == []
                continue
            # one example per sequence, t = n - 1; history window of 3
            assert [(r["scope"], r["position"], r["history"], r["target"]) for r in rows] == [
                ("X", 1, [1], 2),
                ("Y", 2, [3, 4], 5),
                ("__mixed__", 4, [2, 3, 4], 5),
            ]
    sizes = [out[f"examples/{s}"].num_rows for s in ("train", "valid", "test")]
    assert sum(sizes) == 3 * len(users) and min(sizes) > 0
    for ratios, only in (([1, 0, 0], "train"), ([0, 2, 0], "valid"), ([0, 0, 1], "test")):
        out, _ = prepare(tmp_path, inter, items, split={"method": "user", "ratios": ratios}, candidates=no_neg)
        assert out[f"examples/{only}"].num_rows == len(users)


def test_cold_start_after_target_domain_filter(tmp_path):
    # X items a1 a2 a3 c g h i z -> 1..8, Y item b2 -> 9
    inter = (
        seq_rows("A", "X", ["a1", "a2", "a3", "c"])
        + [("B", "c", "X", 0), ("B", "b2", "Y", DAY), ("B", "z", "X", 2 * DAY)]
        + seq_rows("C", "X", ["g", "h", "i", "a1"])
    )
    items = items_of("X", "a1", "a2", "a3", "c", "g", "h", "i", "z") + items_of("Y", "b2")
    out, _ = prepare(
        tmp_path, inter, items, split={"cold_start": True, "target_domains": ["X"]},
        candidates={"count": 0, "train_negatives": 0},
    )
    # B's valid example (target b2 in Y) is dropped first, so c (in its s[0..1]) is NOT seen and
    # A's test target c stays; C's test target a1 is seen in A's train/valid prefixes.
    tests = [(r["user"], r["target"]) for r in out["examples/test"].to_pylist()]
    assert tests == [("A", 4), ("B", 8)]
    assert acct(out, "splits") == {
        "stage": "splits", "unit": "examples", "read": 8, "kept": 6,
        "dropped": {"other_domain": 1, "warm_target": 1},
    }
    # without the domain filter B's valid example makes c seen -> A's test is warm too
    out, _ = prepare(tmp_path, inter, items, split={"cold_start": True}, candidates={"count": 0, "train_negatives": 0})
    assert [(r["user"], r["target"]) for r in out["examples/test"].to_pylist()] == [("B", 8)]
    assert acct(out, "splits")["dropped"] == {"warm_target": 2}


# --- candidates ------------------------------------------------------------------------------
def _cands(out, split):
    return [r["candidates"] for r in out[f"examples/{split}"].to_pylist()]


def test_candidate_exclusion_uses_whole_prefix(tmp_path):
    # u1 sequence 1 2 3 4 in X; X pool is 1..6; Y items 7, 8 (used by u2 so they survive)
    inter = seq_rows("u1", "X", ["x1", "x2", "x3", "x4"]) + seq_rows("u2", "Y", ["y1", "y2"]) + seq_rows("u2", "X", ["x5", "x6"], start=9 * DAY)
    items = items_of("X", "x1", "x2", "x3", "x4", "x5", "x6") + items_of("Y", "y1", "y2")
    base = {"split": {"max_history": 1}}
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 10, "exclude": "history_and_target"}, **base)
    # u1 test t=3: history window [3] but the whole prefix {1,2,3} and the target 4 are excluded
    assert _cands(out, "test")[0] == [5, 6]
    assert _cands(out, "valid")[0] == [4, 5, 6]  # t=2: {1,2} + target 3
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 10, "exclude": "history"}, **base)
    assert _cands(out, "test")[0] == [4, 5, 6]
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 10, "exclude": "none"}, **base)
    assert _cands(out, "test")[0] == [1, 2, 3, 4, 5, 6]
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 10, "exclude": "history_and_target", "pool": "all"}, **base)
    assert _cands(out, "test")[0] == [5, 6, 7, 8]
    # u2 mixed: y1 y2 x5 x6 -> test target x6 (X): prefix {7, 8, 5} and 6 excluded from pool X
    assert _cands(out, "test")[1] == [1, 2, 3, 4]
    # train uses train_negatives
    out, _ = prepare(tmp_path, inter, items, candidates={"count": 10, "train_negatives": 0}, **base)
    assert _cands(out, "train") == [[], []]


def test_candidate_walk_is_the_seeded_sequence(tmp_path):
    names = [f"x{i:02d}" for i in range(1, 21)]  # pool X = 1..20
    # u1: 1..5; u2 uses 6..20 so that every item survives and is in the pool
    inter = seq_rows("u1", "X", names[:5]) + seq_rows("u2", "X", names[5:])
    out, cfg = prepare(tmp_path, inter, items_of("X", *names), candidates={"count": 6, "train_negatives": 2})
    pool = list(range(1, 21))
    seqs = {r["user"]: r["items"] for r in out["sequences"].to_pylist()}
    checked = 0
    for split, code in (("test", 2), ("valid", 1), ("train", 0)):
        for row in out[f"examples/{split}"].to_pylist():
            t, user = row["position"], row["user"]
            excluded = set(seqs[user][:t]) | {row["target"]}
            count = 2 if split == "train" else 6
            available = [i for i in pool if i not in excluded]
            if len(available) <= count:
                assert row["candidates"] == available, (split, t)
                checked += 1
                continue
            want, c = [], 1
            while len(want) < count:
                u = seeded.uniform(
                    seeded.row_keys(cfg.seed, "candidates", H(user), H("__mixed__"), np.array([code]), np.array([t])), 1, start=c
                )[0, 0]
                item = pool[math.floor(u * len(pool))]
                if item not in excluded and item not in want:
                    want.append(item)
                c += 1
            assert row["candidates"] == want, (split, t)
            assert len(set(row["candidates"])) == count and not set(row["candidates"]) & excluded
            assert c < 10_000
            checked += 1
    assert checked == 2 + 12 + 2 * 2  # u1: 2 train; u2: 12 train; 1 valid + 1 test each


def test_popularity_candidates_follow_weights(tmp_path):
    # item 1 has 30 interactions, items 2..5 one each: popularity draws hit 1 most of the time
    users = [f"u{i:02d}" for i in range(30)]
    inter = [(u, "hot", "X", 0) for u in users] + [(users[i], f"c{i}", "X", DAY) for i in range(4)]
    inter += [("v", "x", "Y", 0), ("v", "y", "Y", DAY), ("v", "zz", "Y", 2 * DAY)]
    items = items_of("X", "c0", "c1", "c2", "c3", "hot") + items_of("Y", "x", "y", "zz")
    out, cfg = prepare(
        tmp_path, inter, items,
        candidates={"count": 1, "strategy": "popularity", "exclude": "none", "pool": "target_domain"},
    )
    # v's test example (t=2, target zz=8, domain Y): pool Y = [6, 7, 8] with weights 1, 1, 1
    (row,) = [r for r in out["examples/test"].to_pylist() if r["user"] == "v"]
    u = U(cfg.seed, "candidates", H("v"), H("__mixed__"), 2, 2)[0]
    assert row["candidates"] == [[6, 7, 8][int(np.searchsorted([1, 2, 3], u * 3, side="right"))]]
    # the pool X cumsum is [1, 2, 3, 4, 34] (c0..c3 then hot): check the first example's first draw
    (row,) = [r for r in out["examples/test"].to_pylist() if r["user"] == "u00"]
    u = U(cfg.seed, "candidates", H("u00"), H("__mixed__"), 2, 1)[0]
    assert row["candidates"] == [[1, 2, 3, 4, 5][int(np.searchsorted([1, 2, 3, 4, 34], u * 34, side="right"))]]


# --- stats -----------------------------------------------------------------------------------
def test_stats_tables(tmp_path):
    inter = [
        ("u1", "a", "X", 1), ("u1", "p", "Y", 2), ("u1", "m", "Z", 3),
        ("u2", "a", "X", 1), ("u2", "b", "X", 2), ("u2", "p", "Y", 3),
        ("u3", "b", "X", 1),
    ]
    items = items_of("X", "a", "b") + items_of("Y", "p") + items_of("Z", "m")
    out, _ = prepare(tmp_path, inter, items)
    # the final dataset (LOO): u1 = a p m, u2 = a b p, u3 = b (too short for a valid/test example)
    row = lambda d, users, items, inter, train, valid, test: {  # noqa: E731
        "domain": d, "users": users, "items": items, "interactions": inter, "density": inter / (users * items),
        "training": train, "validation": valid, "testing": test}
    assert out["stats"] == {
        "domains": [row("X", 3, 2, 4, 2, 1, 0), row("Y", 2, 1, 2, 0, 1, 1), row("Z", 1, 1, 1, 0, 0, 1)],
        "all": row("all", 3, 4, 7, 2, 2, 2),
        "overlap": {"domains": ["X", "Y", "Z"], "users": [[3, 2, 1], [2, 2, 1], [1, 1, 1]]},
        "users_by_num_domains": [{"num_domains": k, "users": 1} for k in (1, 2, 3)],
    }


def test_output_schemas(tmp_path):
    inter = seq_rows("u1", "X", ["a", "b", "c", "d"])
    out, _ = prepare(tmp_path, inter, items_of("X", "a", "b", "c", "d"))
    assert out["items"].schema.equals(schema.INDEXED_ITEMS)
    assert out["dropped_items"].schema.equals(schema.DROPPED_ITEMS)
    assert out["interactions"].schema.equals(schema.INTERACTIONS.append(pa.field("item_idx", pa.int32())))
    assert out["sequences"].schema.equals(schema.SEQUENCES)
    for split in ("train", "valid", "test"):
        assert out[f"examples/{split}"].schema.equals(schema.EXAMPLES)
    assert [r["stage"] for r in out["accounting"]] == ["read", "titles", "item_titles", "dedupe", "kcore", "sequences", "splits"]
