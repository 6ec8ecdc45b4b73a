"""The k-core stage: keep the largest sub-set where every user and every item is dense enough.

LLM-Rec §1.2 applies a 5-core filter to the mixed multi-domain data; CPRec §4.4 a 3-core.
Semantics: docs/data-plane.md, "Exact semantics" → kcore: the unique maximal sub-set of
interactions in which every user has ≥ `user` interactions and every item ≥ `item` (0 disables a
side). Scope `mixed` counts a user over all domains, `per_domain` over each (user, domain)
separately. Items always count per (domain, item). Dropped rows get `kcore`.

Removing every row that violates a threshold in the current graph, then recounting, reaches that
maximal sub-set: a row whose user or item is below k now is below k in every sub-set too.

On Ray (recplat.data.buckets.kcore_rounds) users are local to their user bucket; per round only
the buckets' item counts reach the driver, which sends back the below/above-threshold item key set
(`keep_sets`). It stops at the first round that finds nothing to remove.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import schema
from recplat.data.accounting import with_reason
from recplat.data.config import KCoreConfig

SIDES = ("user", "item")
COUNTS = pa.schema([("side", pa.string()), ("key", pa.string()), ("count", pa.int64())])


# --- kernels -------------------------------------------------------------------------------
def side_keys(table: pa.Table, side: str, scope: str) -> pa.ChunkedArray | pa.Array:
    """The string key a row counts under: user (mixed) or user␟domain (per_domain); domain␟item."""
    if side == "item":
        return schema.item_keys(table.column("domain"), table.column("item"))
    if scope == "per_domain":
        return pc.binary_join_element_wise(table.column("user"), table.column("domain"), "\x1f")
    return table.column("user")


def partial_counts(batch: pa.Table, scope: str) -> pa.Table:
    """One batch → `COUNTS` rows: interactions per user key and per item key in this batch."""
    parts = []
    for side in SIDES:
        counted = (
            pa.table({"key": side_keys(batch, side, scope)})
            .group_by("key", use_threads=False)
            .aggregate([("key", "count", pc.CountOptions(mode="all"))])
        )
        keys = counted.column("key")
        parts.append(
            pa.table(
                {"side": pa.array([side] * len(keys), pa.string()), "key": keys, "count": counted.column("key_count")},
                schema=COUNTS,
            )
        )
    return pa.concat_tables(parts)


def combine_counts(partials: list[pa.Table]) -> pa.Table:
    """Sum partial count tables: one row per (side, key)."""
    if not partials:
        return COUNTS.empty_table()
    summed = pa.concat_tables(partials).group_by(["side", "key"], use_threads=False).aggregate([("count", "sum")])
    return pa.table(
        {"side": summed.column("side"), "key": summed.column("key"), "count": summed.column("count_sum")},
        schema=COUNTS,
    )


def _side(counts: pa.Table, side: str) -> pa.Table:
    return counts.filter(pc.equal(counts.column("side"), side))


def keep_sets(counts: pa.Table, cfg: KCoreConfig) -> dict[str, tuple[pa.Array, bool] | None]:
    """Per side, the keys to test rows against: `(keys, True)` = keep only these, `(keys, False)` =
    drop these; None = nothing to drop on that side (threshold ≤ 1 or every key passes). Whichever
    of the kept/dropped sets is smaller is sent, since `pc.is_in` builds a hash set from it.
    """
    sets: dict[str, tuple[pa.Array, bool] | None] = {}
    for side, k in (("user", cfg.user), ("item", cfg.item)):
        rows = _side(counts, side)
        passing = pc.greater_equal(rows.column("count"), k)
        low = rows.column("key").filter(pc.invert(passing)).combine_chunks()
        if k <= 1 or len(low) == 0:
            sets[side] = None
        elif len(low) <= rows.num_rows - len(low):
            sets[side] = (low, False)
        else:
            sets[side] = (rows.column("key").filter(passing).combine_chunks(), True)
    return sets


def violating_rows(batch: pa.Table, scope: str, sets: dict) -> pa.Array:
    """Boolean mask of rows whose user key or item key fails its threshold under `sets`."""
    bad = pa.array(np.zeros(batch.num_rows, dtype=bool))
    for side in SIDES:
        if sets.get(side) is None:
            continue
        keys, is_keep_set = sets[side]
        member = pc.is_in(side_keys(batch, side, scope), value_set=keys)
        if isinstance(member, pa.ChunkedArray):
            member = member.combine_chunks()
        bad = pc.or_(bad, pc.invert(member) if is_keep_set else member)
    return bad


def kcore_filter(batch: pa.Table, scope: str, sets: dict) -> pa.Table:
    """Rows + `drop_reason` = `kcore` where `violating_rows`, null elsewhere (one round)."""
    reason = pc.if_else(violating_rows(batch, scope, sets), pa.scalar("kcore"), pa.scalar(None, pa.string()))
    return with_reason(batch, reason)


def _codes(keys: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    encoded = pc.dictionary_encode(keys, null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)


def kcore_table(table: pa.Table, cfg: KCoreConfig) -> pa.Table:
    """Single-table k-core: every row, in input order, + `drop_reason` (`kcore` / null)."""
    n = table.num_rows
    alive = np.ones(n, dtype=bool)
    if n and (cfg.user > 1 or cfg.item > 1):
        users, n_users = _codes(side_keys(table, "user", cfg.scope))
        items, n_items = _codes(side_keys(table, "item", cfg.scope))
        while True:
            user_count = np.bincount(users[alive], minlength=n_users)
            item_count = np.bincount(items[alive], minlength=n_items)
            bad = alive & ((user_count[users] < cfg.user) | (item_count[items] < cfg.item))
            if not bad.any():
                break
            alive &= ~bad
    reason = np.where(alive, None, "kcore")
    return with_reason(table, pa.array(reason, pa.string()))
