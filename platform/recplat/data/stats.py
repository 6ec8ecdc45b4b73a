"""Dataset statistics as the papers print them, from the FINAL dataset (the written sequences and
examples, not an earlier stage; per-stage row counts are in manifest.json).

- per domain and over all domains: #users, #items, #interactions, density = inter / (users * items)
  (LLM-Rec §1.2 Table 1, X-Cross §2.8 Table 1, MoLoRec §3.3, CPRec §4.4/§4.6), counted over the
  items of the kept sequences of one scope (`mixed` when built, else the per-domain ones);
- #training, as LLM-Rec Table 1 counts it: the interactions the training split may use, i.e.
  every item of a sequence but its last two (valid and test targets) for `leave_one_out`, so
  #Training = #Interactions - 2 * #Users; every item of the train users' sequences for the
  `user` split. #validation / #testing: the written valid / test examples by target domain
  (Table 1's #Testing per domain = users whose last interaction is in that domain);
- pairwise user overlap between domains (LLM-Rec Table 2; the diagonal is each domain's #users);
- users by the number of domains they are active in (LLM-Rec Table 3).

Streaming: `partial_stats(batch)` summarises a batch that holds *whole users* (every row of a user
in the same batch, as in one user bucket's task), and `combine(partials)` adds summaries up. A
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

from recplat.data.config import SplitConfig
from recplat.data.schema import MIXED_SCOPE
from recplat.data.splits import example_targets
from recplat.errors import DataError

PARTIAL = pa.schema(
    [
        ("kind", pa.string()),  # "users" | "interactions" | "item" | "training" | "validation" | "testing"
        ("domains", pa.list_(pa.string())),  # users: the users' sorted domain set; else [domain]
        ("item", pa.string()),  # kind "item": the item id (null otherwise)
        ("count", pa.int64()),  # users with that domain set / interactions / interactions of the item / ...
    ]
)
SPLIT_KINDS = {"train": "training", "valid": "validation", "test": "testing"}
_MAX_DOMAINS = 62  # domain sets are int64 bitmasks inside one batch


def partial_stats(batch: pa.Table) -> pa.Table:
    """Summary of a user-complete batch of interactions (columns user, item, domain; an optional
    boolean `training` column adds per-domain "training" counts)."""
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
    counted = [("interactions", per_domain)]
    if "training" in batch.column_names:
        counted.append(("training", batch.filter(batch.column("training")).group_by("domain").aggregate([("domain", "count")])))
    for kind, table in counted:
        for domain, count in zip(table.column("domain").to_pylist(), table.column("domain_count").to_pylist()):
            rows_kind.append(kind)
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
    split_counts: dict[str, Counter] = {kind: Counter() for kind in SPLIT_KINDS.values()}
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
            elif kind in split_counts:
                split_counts[kind][domains[0]] += count
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
    splits = lambda d: {kind: c[d] for kind, c in split_counts.items()}  # noqa: E731
    rows = [_row(d, int(overlap[index[d], index[d]]), len(items.get(d, ())), interactions[d], splits(d)) for d in domains]
    total = _row("all", sum(domain_sets.values()), sum(r["items"] for r in rows), sum(interactions.values()),
                 {kind: sum(c.values()) for kind, c in split_counts.items()})
    return {
        "domains": rows,
        "all": total,
        "overlap": {"domains": domains, "users": overlap.tolist()},
        "users_by_num_domains": [{"num_domains": k, "users": by_count.get(k, 0)} for k in range(1, len(domains) + 1)],
    }


def _row(domain: str, users: int, items: int, interactions: int, splits: dict | None = None) -> dict:
    density = interactions / (users * items) if users and items else 0.0
    row = {"domain": domain, "users": users, "items": items, "interactions": interactions, "density": density}
    return row | {kind: int(n) for kind, n in (splits or {}).items()}


def stats_table(table: pa.Table) -> dict:
    """Stats of one in-memory interactions table (holding all rows of its users)."""
    return combine([partial_stats(table)])


def sequence_rows(seqs: pa.Table, scope: str, split: SplitConfig, seed: int) -> pa.Table:
    """The final interactions: (user, item, domain, training) for every item of the kept
    sequences of the stats scope (`scope` is SequencesConfig.scope: the mixed sequences when
    they are built, else the per-domain ones). `training` as in the module docstring."""
    if scope in ("mixed", "both"):
        seqs = seqs.filter(pc.equal(seqs.column("scope"), MIXED_SCOPE))
    lengths = pc.list_value_length(seqs.column("items")).to_numpy(zero_copy_only=False).astype(np.int64)
    seq_of_row = np.repeat(np.arange(seqs.num_rows), lengths)
    position = np.arange(len(seq_of_row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if split.method == "leave_one_out":
        training = position < lengths[seq_of_row] - 2
    else:
        seq_index, code, _ = example_targets(lengths, seqs.column("user").to_numpy(zero_copy_only=False), split, seed)
        train_seq = np.zeros(seqs.num_rows, dtype=bool)
        train_seq[seq_index] = code == 0
        training = train_seq[seq_of_row]
    return pa.table({
        "user": seqs.column("user").take(pa.array(seq_of_row, pa.int64())),
        "item": pc.list_flatten(seqs.column("items")).cast(pa.string()),
        "domain": pc.list_flatten(seqs.column("domains")),
        "training": pa.array(training, pa.bool_()),
    })


def partial_from_sequences(seqs: pa.Table, scope: str, split: SplitConfig, seed: int) -> pa.Table:
    """`partial_stats` of a batch of kept sequences holding whole users."""
    return partial_stats(sequence_rows(seqs, scope, split, seed))


def partial_from_examples(examples: pa.Table) -> pa.Table:
    """Per (split, target domain) example counts as PARTIAL rows of kind validation / testing."""
    counts = examples.group_by(["split", "target_domain"]).aggregate([("split", "count")])
    counts = counts.filter(pc.is_in(counts.column("split"), pa.array(["valid", "test"])))
    kinds = [SPLIT_KINDS[s] for s in counts.column("split").to_pylist()]
    domains = [[d] for d in counts.column("target_domain").to_pylist()]
    return pa.table({"kind": kinds, "domains": domains, "item": pa.nulls(len(kinds), pa.string()),
                     "count": counts.column("split_count").cast(pa.int64())}, schema=PARTIAL)


def final_stats(seqs: pa.Table, examples: pa.Table, scope: str, split: SplitConfig, seed: int) -> dict:
    """Stats of an in-memory final dataset: kept sequences and written examples."""
    return combine([partial_from_sequences(seqs, scope, split, seed), partial_from_examples(examples)])


# --- text tables for the terminal ------------------------------------------------------------
def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows]


def format_stats(stats: dict) -> str:
    """The three tables as fixed-width text (what `recplat prepare` prints)."""
    lines = ["Dataset statistics"]
    splits = [k for k in SPLIT_KINDS.values() if k in stats["all"]]
    body = [
        [r["domain"], f"{r['users']:,}", f"{r['items']:,}", f"{r['interactions']:,}", f"{r['density']:.2e}"]
        + [f"{r[k]:,}" for k in splits]
        for r in stats["domains"] + [stats["all"]]
    ]
    lines += _grid(["Domain", "#Users", "#Items", "#Interactions", "Density"] + [f"#{k.capitalize()}" for k in splits], body)
    names, matrix = stats["overlap"]["domains"], stats["overlap"]["users"]
    lines += ["", "User overlap between domains (diagonal: users of the domain)"]
    lines += _grid([""] + names, [[names[i]] + [f"{v:,}" for v in row] for i, row in enumerate(matrix)])
    lines += ["", "Users by number of domains"]
    lines += _grid(["#Domains", "#Users"], [[str(r["num_domains"]), f"{r['users']:,}"] for r in stats["users_by_num_domains"]])
    return "\n".join(lines)
