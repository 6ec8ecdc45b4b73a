"""sequences.py: per-(user, scope) chronological sequences, hand-worked cases and the reference."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from recplat.config import validate
from recplat.data import seeded
from recplat.data.accounting import DROP, kept
from recplat.data.config import PrepareConfig, SequencesConfig
from recplat.data.sequences import build_sequences
from tests.data.reference import build_sequences as reference_build_sequences

DAY = 86400
SEED = 42


def _table(rows, num_partitions=1) -> pa.Table:
    """rows: (user, item_idx, domain, timestamp[, rating]); item = f"i{item_idx}"."""
    users = np.array([r[0] for r in rows], dtype=object)
    return pa.table(
        {
            "user": pa.array(users.tolist(), pa.string()),
            "item": [f"i{r[1]}" for r in rows],
            "domain": [r[2] for r in rows],
            "timestamp": pa.array([r[3] for r in rows], pa.int64()),
            "rating": pa.array([r[4] if len(r) > 4 else 1.0 for r in rows], pa.float32()),
            "bucket": pa.array(seeded.bucket_of(users, num_partitions) if len(rows) else [], pa.int32()),
            "item_idx": pa.array([r[1] for r in rows], pa.int32()),
        }
    )


def _run(rows, **cfg) -> list[dict]:
    return build_sequences(_table(rows), SequencesConfig(**cfg), SEED).to_pylist()


def _accounting(out: pa.Table) -> dict:
    """The pipeline's count of one kernel output: read, kept and dropped by reason."""
    rows = out.to_pylist()
    dropped = {
        "one_per_day": sum(r["n_one_per_day"] for r in rows),
        "consecutive_repeat": sum(r["n_consecutive_repeat"] for r in rows),
        "truncated": sum(r["n_truncated"] for r in rows),
    }
    for reason in ("too_short", "user_subsampled"):
        dropped[reason] = sum(len(r["items"]) for r in rows if r[DROP] == reason)
    kept_rows = sum(len(r["items"]) for r in rows if r[DROP] is None)
    return {"read": sum(r["n_read"] for r in rows), "kept": kept_rows, "dropped": {k: v for k, v in dropped.items() if v}}


def test_order_ties_and_scopes():
    # equal timestamps: by domain, then item (raw id), then rating; rows deliberately out of order
    rows = [("u1", 4, "Y", 5), ("u1", 1, "X", 5), ("u1", 2, "X", 5), ("u1", 3, "X", 1), ("u1", 5, "Y", 9)]
    out = _run(rows, scope="both")
    assert [r["scope"] for r in out] == ["X", "Y", "__mixed__"]  # sorted by (user, scope) bytes
    mixed = out[2]
    assert mixed["items"] == [3, 1, 2, 4, 5] and mixed["domains"] == ["X", "X", "X", "Y", "Y"]
    assert mixed["timestamps"] == [1, 5, 5, 5, 9]
    assert out[0]["items"] == [3, 1, 2] and out[1]["items"] == [4, 5]
    assert [r["n_read"] for r in out] == [3, 2, 5] and all(r[DROP] is None for r in out)


def test_same_timestamp_and_item_sorts_by_rating_nan_last():
    rows = [("u", 1, "X", 7, 5.0), ("u", 1, "X", 7, float("nan")), ("u", 1, "X", 7, 2.0)]
    (seq,) = _run(rows)
    assert seq["ratings"] == [2.0, 5.0, None]  # a missing (NaN) rating is written as null


def test_repeats_truncation_and_min_length():
    a, b, c = 1, 2, 3
    u1 = [("u1", i, "X", k * DAY) for k, i in enumerate([a, a, b, a, a, a, c])]
    u2 = [("u2", i, "X", k * DAY) for k, i in enumerate([a, b, b])]
    out = build_sequences(_table(u1 + u2), SequencesConfig(drop_consecutive_repeats=True, max_length=3, min_length=3), SEED)
    rows = out.to_pylist()
    # u1: a a b a a a c -> a b a c (3 repeats) -> last 3: b a c (1 truncated)
    assert rows[0]["items"] == [b, a, c] and rows[0]["timestamps"] == [2 * DAY, 3 * DAY, 6 * DAY]
    assert (rows[0]["n_consecutive_repeat"], rows[0]["n_truncated"], rows[0][DROP]) == (3, 1, None)
    # u2: a b b -> a b -> too short; the row stays, listing the 2 rows that get the reason
    assert rows[1]["items"] == [a, b] and rows[1][DROP] == "too_short"
    assert _accounting(out) == {"read": 10, "kept": 3, "dropped": {"consecutive_repeat": 4, "too_short": 2, "truncated": 1}}
    assert kept(out).column("user").to_pylist() == ["u1"]


def test_repeats_compare_with_previous_kept_row_per_scope():
    # item 1 (X) twice in a row in scope X, but separated by item 2 (Y) in the mixed sequence
    rows = [("u", 1, "X", 1), ("u", 2, "Y", 2), ("u", 1, "X", 3), ("u", 1, "X", 4)]
    out = _run(rows, scope="both", drop_consecutive_repeats=True)
    by_scope = {r["scope"]: r for r in out}
    assert by_scope["__mixed__"]["items"] == [1, 2, 1]  # only the adjacent repeat goes
    assert by_scope["X"]["items"] == [1]  # within X all three are consecutive
    assert by_scope["X"]["n_consecutive_repeat"] == 2


def test_one_per_day_picks_the_seeded_row():
    ts = [0, 100, 200, DAY + 5, 2 * DAY, 2 * DAY + 1, -5]  # -5 is day -1 (floor division)
    rows = [("u1", i + 1, "X", t) for i, t in enumerate(ts)]
    (seq,) = _run(rows, one_per_day=True)
    expected = []
    for day, day_idx in ((-1, [7]), (0, [1, 2, 3]), (1, [4]), (2, [5, 6])):
        keys = seeded.row_keys(SEED, "one_per_day", seeded.hash_strings(["u1"]), seeded.hash_strings(["__mixed__"]),
                               np.array([day], dtype=np.int64))
        expected.append(day_idx[math.floor(seeded.uniform(keys, 1)[0, 0] * len(day_idx))])
    assert seq["items"] == expected and seq["n_one_per_day"] == 3


def test_user_ratio_subsamples_whole_users():
    users = [f"user{i}" for i in range(40)]
    rows = [(u, k + 1, "X", k) for u in users for k in range(3)]
    out = build_sequences(_table(rows), SequencesConfig(user_ratio=0.5, scope="both"), SEED)
    keys = seeded.row_keys(SEED, "user_ratio", seeded.hash_strings(users))
    keep = {u for u, x in zip(users, seeded.uniform(keys, 1)[:, 0]) if x < 0.5}
    assert 0 < len(keep) < len(users)
    assert set(kept(out).column("user").to_pylist()) == keep
    dropped = [r for r in out.to_pylist() if r[DROP] == "user_subsampled"]
    assert {r["user"] for r in dropped} == set(users) - keep and all(len(r["items"]) == 3 for r in dropped)
    assert _accounting(out)["dropped"] == {"user_subsampled": 6 * (40 - len(keep))}  # 3 rows x 2 scopes


def test_empty_input_keeps_the_schema():
    out = build_sequences(_table([]), SequencesConfig(), SEED)
    assert out.num_rows == 0 and "items" in out.column_names and DROP in out.column_names


# --- equality with the reference ----------------------------------------------------------------
def _random_rows(rng, n=1500, users=60):
    rows = []
    for _ in range(n):
        domain = ["Books", "Movies", "Toys"][rng.integers(0, 3)]
        idx = int(rng.integers(1, 8)) + 10 * ["Books", "Movies", "Toys"].index(domain)
        rating = float(rng.integers(1, 6)) if rng.random() > 0.05 else float("nan")
        rows.append((f"u{rng.integers(0, users)}", idx, domain, int(rng.integers(-2, 12)) * DAY // 3, rating))
    return rows


def test_llmrec_tie_order_ignores_the_domain_and_repeats_are_kept():
    """Issue #18.1-2: LLM-Rec sorts by (timestamp, item, rating) and keeps an item rated again."""
    rows = [("u1", 7, "A", 5, 2.0), ("u1", 3, "B", 5, 1.0), ("u1", 3, "A", 9), ("u1", 3, "B", 12), ("u1", 5, "A", 5, 1.0)]
    llmrec = SequencesConfig(tie_order=["item", "rating"])
    assert llmrec.sort_keys() == ["timestamp", "item", "rating", "domain"]
    (seq,) = _run(rows, tie_order=["item", "rating"])
    assert seq["items"] == [3, 5, 7, 3, 3] and seq["domains"] == ["B", "A", "A", "A", "B"]
    assert seq["n_consecutive_repeat"] == 0
    (default,) = _run(rows)  # (timestamp, domain, item, rating)
    assert default["items"] == [5, 7, 3, 3, 3]
    (dropping,) = _run(rows, tie_order=["item", "rating"], drop_consecutive_repeats=True)  # the opt-in item-level drop
    assert dropping["items"] == [3, 5, 7, 3] and dropping["n_consecutive_repeat"] == 1
    with pytest.raises(ValueError, match="tie_order"):
        SequencesConfig(tie_order=["item", "item"])


def _prepare_cfg(**seq) -> PrepareConfig:
    return validate(PrepareConfig, {"seed": SEED, "sources": [{"kind": "synthetic"}], "sequences": seq}, source="test")


VARIANTS = [
    dict(),
    dict(scope="both", one_per_day=True, drop_consecutive_repeats=True, max_length=5, min_length=3),
    dict(scope="per_domain", one_per_day=True, min_length=2, user_ratio=0.6),
    dict(scope="mixed", drop_consecutive_repeats=True, max_length=1, min_length=1, user_ratio=0.3),
    dict(scope="both", tie_order=["item", "rating"], one_per_day=True),
    dict(scope="mixed", tie_order=["rating"]),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_equals_reference_on_random_tables(variant):
    cfg = _prepare_cfg(**variant)
    table = _table(_random_rows(np.random.default_rng(len(str(variant)))))
    out = build_sequences(table, cfg.sequences, cfg.seed)
    df = table.drop_columns(["bucket"]).to_pandas()
    want, want_count = reference_build_sequences(df, cfg)
    got = kept(out).drop_columns(["bucket", "n_read", "n_one_per_day", "n_consecutive_repeat", "n_truncated"])
    assert got.to_pylist() == want
    assert _accounting(out) == {k: want_count[k] for k in ("read", "kept", "dropped")}
