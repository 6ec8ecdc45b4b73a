"""dedupe.py: exact duplicates on all five columns count once; near duplicates are kept."""

import numpy as np
import pyarrow as pa

from recplat.data import schema, seeded
from recplat.data.accounting import DROP, kept
from recplat.data.dedupe import dedupe_interactions


def _table(rows, line=True):
    cols = {
        "user": [r[0] for r in rows],
        "item": [r[1] for r in rows],
        "domain": [r[2] for r in rows],
        "timestamp": pa.array([r[3] for r in rows], pa.int64()),
        "rating": pa.array([r[4] for r in rows], pa.float32()),
    }
    table = pa.table(cols, schema=schema.INTERACTIONS)
    if line:
        table = table.append_column("line", pa.array(range(len(rows)), pa.int64()))
    return table


def test_exact_vs_near_duplicates():
    rows = [
        ("u1", "i1", "Books", 100, 5.0),  # line 0: first of three exact copies
        ("u2", "i1", "Books", 100, 5.0),  # another user: not a duplicate
        ("u1", "i1", "Books", 100, 5.0),  # line 2: exact copy
        ("u1", "i1", "Books", 101, 5.0),  # other timestamp: a different interaction
        ("u1", "i1", "Books", 100, 4.0),  # other rating: a different interaction
        ("u1", "i1", "Movies", 100, 5.0),  # other domain: a different item
        ("u1", "i2", "Books", 100, 5.0),  # other item
        ("u1", "i1", "Books", 100, 5.0),  # line 7: exact copy
    ]
    out = dedupe_interactions(_table(rows))
    # sorted by (user, domain, timestamp, item, rating); ties keep input order, the first is kept
    assert out.column("line").to_pylist() == [4, 0, 2, 7, 6, 3, 5, 1]
    assert out.column(DROP).to_pylist() == [None, None, "duplicate", "duplicate", None, None, None, None]
    assert kept(out).num_rows == 6


def test_extra_columns_pass_through_and_empty_input():
    rows = [("u1", "i1", "Books", 1, 3.0), ("u1", "i1", "Books", 1, 3.0)]
    table = _table(rows, line=False)
    table = table.append_column("bucket", pa.array(seeded.bucket_of(np.array(["u1", "u1"]), 4)))
    out = dedupe_interactions(table)
    assert out.column_names == schema.INTERACTIONS.names + ["bucket", DROP]
    assert out.column(DROP).to_pylist() == [None, "duplicate"]
    empty = dedupe_interactions(schema.INTERACTIONS.empty_table())
    assert empty.num_rows == 0 and empty.column_names == schema.INTERACTIONS.names + [DROP]


def test_null_ratings_are_equal_to_each_other():
    rows = [("u1", "i1", "Books", 1, None), ("u1", "i1", "Books", 1, None), ("u1", "i1", "Books", 1, 2.0)]
    out = dedupe_interactions(_table(rows))
    assert out.column("line").to_pylist() == [2, 0, 1]  # nulls sort last
    assert out.column(DROP).to_pylist() == [None, None, "duplicate"]
