"""kcore.py: iterative k-core to the fixed point, hand-computed graphs and a naive reference."""

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from recplat.data import schema
from recplat.data.accounting import DROP
from recplat.data.config import KCoreConfig
from recplat.data.kcore import (
    combine_counts,
    kcore_filter,
    kcore_table,
    keep_sets,
    partial_counts,
)


def _table(edges):
    """edges: (user, domain, item) triples; timestamps are the row numbers."""
    return pa.table(
        {
            "user": [e[0] for e in edges],
            "item": [e[2] for e in edges],
            "domain": [e[1] for e in edges],
            "timestamp": pa.array(range(len(edges)), pa.int64()),
            "rating": pa.array([5.0] * len(edges), pa.float32()),
        },
        schema=schema.INTERACTIONS,
    )


# a, b rate x and y; c rates y and z. With k = 2: z (1 rating) goes first, then c is left with one
# interaction and goes in the second round; y then still has a and b.
CHAIN = [("a", "B", "x"), ("a", "B", "y"), ("b", "B", "x"), ("b", "B", "y"), ("c", "B", "y"), ("c", "B", "z")]


def _dropped(table, cfg):
    return kcore_table(_table(table), cfg).column(DROP).to_pylist()


def test_fixed_point_needs_two_rounds():
    assert _dropped(CHAIN, KCoreConfig(user=2, item=2)) == [None] * 4 + ["kcore", "kcore"]
    # one round alone would only remove (c, z)
    counts = combine_counts([partial_counts(_table(CHAIN), "mixed")])
    once = kcore_filter(_table(CHAIN), "mixed", keep_sets(counts, KCoreConfig(user=2, item=2)))
    assert once.column(DROP).to_pylist() == [None] * 5 + ["kcore"]


def test_separate_thresholds_and_zero_disables_a_side():
    assert _dropped(CHAIN, KCoreConfig(user=0, item=2)) == [None] * 5 + ["kcore"]  # c keeps (c, y)
    assert _dropped(CHAIN, KCoreConfig(user=2, item=0)) == [None] * 6  # every user has 2
    assert _dropped(CHAIN, KCoreConfig(user=0, item=0)) == [None] * 6
    assert _dropped(CHAIN, KCoreConfig(user=3, item=0)) == ["kcore"] * 6
    # item ≥ 3 keeps only y; then every user has one interaction, below user ≥ 2
    assert _dropped(CHAIN, KCoreConfig(user=2, item=3)) == ["kcore"] * 6
    assert _dropped(CHAIN, KCoreConfig(user=1, item=3)) == ["kcore", None, "kcore", None, None, "kcore"]


# u1 has one Books and one Movies interaction, u2 two Books and one Movies, u3 two Books.
TWO_DOMAINS = [
    ("u1", "B", "x"),
    ("u1", "M", "p"),
    ("u2", "B", "x"),
    ("u2", "B", "y"),
    ("u2", "M", "p"),
    ("u3", "B", "x"),
    ("u3", "B", "y"),
]


def test_mixed_vs_per_domain():
    # mixed: users 2, 3, 2; items x 3, y 2, p 2: everything survives
    assert _dropped(TWO_DOMAINS, KCoreConfig(user=2, item=2, scope="mixed")) == [None] * 7
    # per_domain: (u1,B)=1, (u1,M)=1, (u2,M)=1 fall; x then has 2, y 2: u2 stays in Books only
    assert _dropped(TWO_DOMAINS, KCoreConfig(user=2, item=2, scope="per_domain")) == [
        "kcore",
        "kcore",
        None,
        None,
        "kcore",
        None,
        None,
    ]


def test_items_count_per_domain():
    # the same raw id "x" in two domains is two items with one rating each
    edges = [("u1", "B", "x"), ("u2", "M", "x")]
    assert _dropped(edges, KCoreConfig(user=0, item=2)) == ["kcore", "kcore"]


def _naive_kcore(edges, user_k, item_k, scope):
    """Pure-Python reference: remove offending rows until none is left (row indices kept)."""
    alive = set(range(len(edges)))

    def user_key(e):
        return (e[0], e[1]) if scope == "per_domain" else e[0]

    while True:
        users = Counter(user_key(edges[r]) for r in alive)
        items = Counter((edges[r][1], edges[r][2]) for r in alive)
        bad = {r for r in alive if users[user_key(edges[r])] < user_k or items[(edges[r][1], edges[r][2])] < item_k}
        if not bad:
            return alive
        alive -= bad


def _random_edges(seed, n=400):
    rng = np.random.default_rng(seed)
    users = rng.zipf(1.6, n) % 60  # skewed degrees: many users and items near the threshold
    items = rng.zipf(1.6, n) % 40
    domains = rng.integers(0, 3, n)
    return [(f"u{u}", f"D{d}", f"i{i}") for u, d, i in zip(users, domains, items)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("user_k, item_k", [(5, 5), (3, 3), (4, 0), (0, 3), (2, 6)])
@pytest.mark.parametrize("scope", ["mixed", "per_domain"])
def test_matches_naive_reference(seed, user_k, item_k, scope):
    edges = _random_edges(seed)
    out = kcore_table(_table(edges), KCoreConfig(user=user_k, item=item_k, scope=scope))
    kept_rows = {r for r, reason in enumerate(out.column(DROP).to_pylist()) if reason is None}
    assert kept_rows == _naive_kcore(edges, user_k, item_k, scope)
    # the result satisfies both thresholds
    kept_edges = [edges[r] for r in kept_rows]
    users = Counter((e[0], e[1]) if scope == "per_domain" else e[0] for e in kept_edges)
    items = Counter((e[1], e[2]) for e in kept_edges)
    assert all(c >= user_k for c in users.values()) and all(c >= item_k for c in items.values())


def test_bucket_rounds_equal_the_kernel():
    """buckets.kcore_rounds: users split over 3 buckets (tasks), only item counts exchanged per
    round; the rows kept equal the single-table kernel's, in the same number of counting passes.
    The tasks run inline (the same calls as on Ray: the prepare tests run them on Ray)."""
    from recplat.data import buckets, seeded
    from recplat.data.execution import Tasks

    run = Tasks(on_ray=False)
    cases = [(_table(CHAIN), KCoreConfig(user=2, item=2))]
    cases += [(_table(_random_edges(seed)), KCoreConfig(user=3, item=4, scope=scope)) for seed, scope in ((0, "mixed"), (1, "per_domain"))]
    passes = []
    for table, cfg in cases:
        code = seeded.bucket_of(np.asarray(table.column("user").to_pylist(), dtype=object), 3)
        parts = [table.filter(pa.array(code == b)) for b in range(3)]
        summaries = [buckets.kcore_summary(p, cfg) for p in parts]
        refs, counts, rows, rounds = buckets.kcore_rounds(run, [run.put(p) for p in parts], summaries, cfg)
        got = pa.concat_tables(run.get(refs)).sort_by("timestamp")
        expected = kcore_table(table, cfg)
        assert got.equals(expected.filter(expected.column(DROP).is_null()).drop_columns([DROP]))
        assert rows == got.num_rows < table.num_rows and sum(counts.column("n").to_pylist()) == rows
        passes.append(rounds)
    assert passes[0] == 3 and min(passes) >= 2  # CHAIN: z goes, then c, then a pass that finds nothing
