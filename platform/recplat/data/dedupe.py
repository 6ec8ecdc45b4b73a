"""The dedupe stage: exact duplicate interactions count once.

Review dumps repeat lines (Amazon's 2018 ratings files hold the same (user, item, time, rating)
more than once). Semantics: docs/data-plane.md, "Exact semantics" → dedupe: rows equal on all five
columns (user, item, domain, timestamp, rating) are one interaction; all but one get `duplicate`.
A different timestamp or rating makes a different interaction, not a duplicate.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from recplat.data.accounting import with_reason

KEY_COLUMNS = ("user", "item", "domain", "timestamp", "rating")
# The natural order of interaction rows (docs/data-plane.md, "Deterministic order").
SORT_ORDER = ("user", "domain", "timestamp", "item", "rating")


def sort_interactions(table: pa.Table) -> pa.Table:
    """Rows sorted by (user, domain, timestamp, item, rating); ties keep their input order."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_end") for c in SORT_ORDER])
    return table.take(order)


def _same_as_previous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """For rows 1..n-1: is the value equal to the row before? Two nulls (or two NaNs) are equal."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    here, before = column.slice(1), column.slice(0, len(column) - 1)
    same = pc.fill_null(pc.equal(here, before), False)
    both_null = pc.and_(pc.is_null(here), pc.is_null(before))
    same = pc.or_(same, both_null)
    if pa.types.is_floating(column.type):
        both_nan = pc.fill_null(pc.and_(pc.is_nan(here), pc.is_nan(before)), False)
        same = pc.or_(same, both_nan)
    return same


def dedupe_interactions(table: pa.Table) -> pa.Table:
    """Whole users' rows → the same rows sorted by (user, domain, timestamp, item, rating), plus
    `drop_reason` = `duplicate` on every row but the first of each group equal on all five key
    columns (null = kept). Extra columns (e.g. `bucket`) pass through; an existing `drop_reason`
    is replaced (input rows are the kept rows of the previous stage).
    """
    table = sort_interactions(table)
    n = table.num_rows
    if n <= 1:
        return with_reason(table, pa.nulls(n, pa.string()))
    # Sorting on all five key columns makes equal rows adjacent.
    duplicate = _same_as_previous(table.column(KEY_COLUMNS[0]))
    for name in KEY_COLUMNS[1:]:
        duplicate = pc.and_(duplicate, _same_as_previous(table.column(name)))
    duplicate = pa.concat_arrays([pa.array([False]), duplicate])
    reason = pc.if_else(duplicate, pa.scalar("duplicate"), pa.scalar(None, pa.string()))
    return with_reason(table, reason)
