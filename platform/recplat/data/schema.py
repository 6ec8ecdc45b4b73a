"""Arrow schemas shared by every source reader and stage.

Item identity is the pair (domain, item): the same raw id in two domains is two items.
After k-core every surviving item gets a dense `item_idx` (1..|V|, 0 is padding), assigned in
(domain, item) order; sequences and examples refer to items by that index.
"""

from __future__ import annotations

import pyarrow as pa

# One row per interaction, as read from a source (timestamps in seconds since the epoch).
INTERACTIONS = pa.schema(
    [
        ("user", pa.string()),
        ("item", pa.string()),
        ("domain", pa.string()),
        ("timestamp", pa.int64()),
        ("rating", pa.float32()),
    ]
)

# One row per item with its metadata. `title` may be null until the titles stage;
# `attributes` is a JSON object of the raw fields worth keeping (brand, year, price, ...).
ITEMS = pa.schema(
    [
        ("item", pa.string()),
        ("domain", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("attributes", pa.string()),
    ]
)

# A malformed input line: where it was and why it was refused.
REJECTS = pa.schema(
    [
        ("file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("text", pa.string()),
    ]
)

# Items after the titles stage and re-indexing.
INDEXED_ITEMS = pa.schema([("item_idx", pa.int32())] + list(ITEMS))

# Interactions after k-core, as written: with the item's index.
INDEXED_INTERACTIONS = INTERACTIONS.append(pa.field("item_idx", pa.int32()))

# An item dropped by the titles stage, with the reason.
DROPPED_ITEMS = pa.schema(
    [("item", pa.string()), ("domain", pa.string()), ("title", pa.string()), ("reason", pa.string())]
)

MIXED_SCOPE = "__mixed__"

# One chronological sequence per (user, scope); scope is a domain name or MIXED_SCOPE.
SEQUENCES = pa.schema(
    [
        ("user", pa.string()),
        ("scope", pa.string()),
        ("items", pa.list_(pa.int32())),
        ("domains", pa.list_(pa.string())),
        ("timestamps", pa.list_(pa.int64())),
        ("ratings", pa.list_(pa.float32())),
    ]
)

SPLITS = ("train", "valid", "test")

# One example: a history, the target, and the stored candidates (negatives only; the target is
# never in `candidates` unless the candidate config allows it, see data/candidates.py).
EXAMPLES = pa.schema(
    [
        ("user", pa.string()),
        ("scope", pa.string()),
        ("split", pa.string()),
        ("position", pa.int32()),  # index of the target in the user's sequence
        ("history", pa.list_(pa.int32())),
        ("target", pa.int32()),
        ("target_domain", pa.string()),
        ("candidates", pa.list_(pa.int32())),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast `table`'s columns to `schema` (extra columns are dropped)."""
    return pa.table({f.name: table.column(f.name).cast(f.type) for f in schema}, schema=schema)


def item_keys(domain: pa.Array | pa.ChunkedArray, item: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """The single string key of an item: domain and raw id joined by a unit separator."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(domain, item, "\x1f")
