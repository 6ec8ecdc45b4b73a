"""Dataset statistics as the papers print them, from the final interactions.

- per domain and over all domains: #users, #items, #interactions, density = inter / (users * items)
  (LLM-Rec §1.2 Table 1, X-Cross §2.8 Table 1, MoLoRec §3.3, CPRec §4.4/§4.6);
- pairwise user overlap between domains (LLM-Rec Table 2; the diagonal is each domain's #users);
- users by the number of domains they are active in (LLM-Rec Table 3).

Streaming: `partial_stats(batch)` summarises a batch that holds *whole users* (every row of a user
in the same batch, as after `groupby("bucket")`), and `combine(partials)` adds summaries up. A
partial holds one row per domain set seen (with its user count), one per domain (interaction
count) and one per distinct (domain, item) in the batch; `combine` keeps a counter per domain set
and per domain plus the set of item ids per domain, so its memory is bounded by #items + #domain
sets, never by #users or #interactions. Rows of partials are additive, so they may be re-batched.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.errors import DataError

PARTIAL = pa.schema(
    [
        ("kind", pa.string()),  # "users" | "interactions" | "item"
        ("domains", pa.list_(pa.string())),  # users: the users' sorted domain set; else [domain]
        ("item", pa.string()),  # kind "item": the raw item id (null otherwise)
        ("count", pa.int64()),  # users with that domain set / interactions / interactions of the item
    ]
)
_MAX_DOMAINS = 62  # domain sets are int64 bitmasks inside one batch


def partial_stats(batch: pa.Table) -> pa.Table:
    """Summary of a user-complete batch of interactions (columns user, item, domain)."""
    if batch.num_rows == 0:
        return PARTIAL.empty_table()
    domain_names = sorted(set(batch.column("domain").to_pylist()))
    if len(domain_names) > _MAX_DOMAINS:
        raise DataError(f"stats: at most {_MAX_DOMAINS} domains are supported, got {len(domain_names)}")
    # one row per (user, domain) pair, then each user's domain set as a bitmask (sum == OR on unique pairs)
    pairs = batch.select(["user", "domain"]).group_by(["user", "domain"]).aggregate([])
    user_codes = pc.dictionary_encode(pairs.column("user")).combine_chunks().indices.to_numpy()
    dom_codes = pc.index_in(pairs.column("domain"), pa.array(domain_names)).to_numpy(zero_copy_only=False)
    masks = np.zeros(int(user_codes.max()) + 1 if len(user_codes) else 0, dtype=np.int64)
    np.add.at(masks, user_codes, np.left_shift(np.int64(1), dom_codes.astype(np.int64)))
    mask_values, mask_users = np.unique(masks, return_counts=True)
    rows_kind, rows_domains, rows_item, rows_count = [], [], [], []
    for mask, users in zip(mask_values.tolist(), mask_users.tolist()):
        rows_kind.append("users")
        rows_domains.append([d for i, d in enumerate(domain_names) if mask >> i & 1])
        rows_item.append(None)
        rows_count.append(users)
    per_domain = batch.group_by("domain").aggregate([("domain", "count")])
    for domain, count in zip(per_domain.column("domain").to_pylist(), per_domain.column("domain_count").to_pylist()):
        rows_kind.append("interactions")
        rows_domains.append([domain])
        rows_item.append(None)
        rows_count.append(count)
    head = pa.table(
        {"kind": rows_kind, "domains": rows_domains, "item": pa.array(rows_item, pa.string()), "count": rows_count},
        schema=PARTIAL,
    )
    items = batch.group_by(["domain", "item"]).aggregate([("item", "count")])
    n = items.num_rows
    item_rows = pa.table(
        {
            "kind": pa.array(["item"] * n, pa.string()),
            "domains": pa.ListArray.from_arrays(
                pa.array(np.arange(n + 1, dtype=np.int32)), items.column("domain").combine_chunks().cast(pa.string())
            ),
            "item": items.column("item").cast(pa.string()),
            "count": items.column("item_count").cast(pa.int64()),
        },
        schema=PARTIAL,
    )
    return pa.concat_tables([head, item_rows])


def combine(partials: Iterable[pa.Table]) -> dict:
    """Add up partial summaries into the JSON-able stats dict (see `format_stats` for the layout)."""
    domain_sets: Counter = Counter()
    interactions: Counter = Counter()
    items: dict[str, set] = {}
    for part in partials:
        for kind, domains, item, count in zip(
            part.column("kind").to_pylist(), part.column("domains").to_pylist(),
            part.column("item").to_pylist(), part.column("count").to_pylist(),
        ):
            if kind == "users":
                domain_sets[tuple(domains)] += count
            elif kind == "interactions":
                interactions[domains[0]] += count
            else:
                items.setdefault(domains[0], set()).add(item)
    domains = sorted(set(interactions) | set(items) | {d for s in domain_sets for d in s})
    index = {d: i for i, d in enumerate(domains)}
    overlap = np.zeros((len(domains), len(domains)), dtype=np.int64)
    by_count = Counter()
    for dset, users in domain_sets.items():
        by_count[len(dset)] += users
        for d in dset:
            overlap[index[d], index[d]] += users
        for a, b in combinations(dset, 2):
            overlap[index[a], index[b]] += users
            overlap[index[b], index[a]] += users
    rows = [_row(d, int(overlap[index[d], index[d]]), len(items.get(d, ())), interactions[d]) for d in domains]
    total = _row("all", sum(domain_sets.values()), sum(r["items"] for r in rows), sum(interactions.values()))
    return {
        "domains": rows,
        "all": total,
        "overlap": {"domains": domains, "users": overlap.tolist()},
        "users_by_num_domains": [{"num_domains": k, "users": by_count.get(k, 0)} for k in range(1, len(domains) + 1)],
    }


def _row(domain: str, users: int, items: int, interactions: int) -> dict:
    density = interactions / (users * items) if users and items else 0.0
    return {"domain": domain, "users": users, "items": items, "interactions": interactions, "density": density}


def stats_table(table: pa.Table) -> dict:
    """Stats of one in-memory interactions table (holding all rows of its users)."""
    return combine([partial_stats(table)])


def stats_stage(interactions_ds, num_partitions: int | None = None) -> dict:
    """Ray Data: partial stats per user bucket (`bucket` column), summed on the driver as they stream in."""
    if "bucket" not in interactions_ds.schema().names:
        raise DataError("stats: the interactions dataset needs the `bucket` column (seeded.bucket_of)")
    parts = interactions_ds.groupby("bucket", num_partitions=num_partitions).map_groups(
        partial_stats, batch_format="pyarrow"
    )
    return combine(parts.iter_batches(batch_format="pyarrow", batch_size=None))


# --- text tables for the terminal ------------------------------------------------------------
def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def format_stats(stats: dict) -> str:
    """The three tables as fixed-width text (what `recplat prepare` prints)."""
    lines = ["Dataset statistics"]
    body = [
        [r["domain"], f"{r['users']:,}", f"{r['items']:,}", f"{r['interactions']:,}", f"{r['density']:.2e}"]
        for r in stats["domains"] + [stats["all"]]
    ]
    lines += _grid(["Domain", "#Users", "#Items", "#Interactions", "Density"], body)
    names, matrix = stats["overlap"]["domains"], stats["overlap"]["users"]
    lines += ["", "User overlap between domains (diagonal: users of the domain)"]
    lines += _grid([""] + names, [[names[i]] + [f"{v:,}" for v in row] for i, row in enumerate(matrix)])
    lines += ["", "Users by number of domains"]
    lines += _grid(["#Domains", "#Users"], [[str(r["num_domains"]), f"{r['users']:,}"] for r in stats["users_by_num_domains"]])
    return "\n".join(lines)
