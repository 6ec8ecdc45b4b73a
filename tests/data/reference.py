"""A plain, single-process reference implementation of `recplat prepare`.

Written from docs/data-plane.md ("Exact semantics") only, without reading or importing the Ray
stage modules (titles, dedupe, kcore, sequences, splits, candidates, render, stats): two
implementations of one contract, which must agree exactly. It favours clarity over speed:
pandas and plain Python loops, one user / one sequence / one example at a time.

What it shares with the pipeline (and must share, because reading is tested separately and the
random draws have to be the same numbers):
  * `recplat.data.sources.plan_reads` / `run_read` for reading the configured sources;
  * `recplat.data.seeded.row_keys`, `uniform`, `hash_strings` for U(...) and H(...);
  * the schemas in `recplat.data.schema` and the config in `recplat.data.config`.

Entry points:
  reference_prepare(cfg, raw=None) -> dict   every table of a prepared dataset (+ stats, accounting)
  reference_accounting(cfg, raw=None) -> list[dict]   the per-stage row accounting only
  reference_read(cfg) -> RawInput            the read stage on its own

Where docs/data-plane.md leaves room for more than one reading, the choice made here is marked
with a comment starting "AMBIGUITY:" (collected in REFERENCE_CHOICES at the end of the module).
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recplat.data import schema, seeded
from recplat.data.config import PrepareConfig
from recplat.data.sources import plan_reads, run_read

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
INTERACTION_ORDER = ["user", "domain", "timestamp", "item", "rating"]
INDEXED_INTERACTIONS = schema.INDEXED_INTERACTIONS
SECONDS_PER_DAY = 86400


# ----------------------------------------------------------------------------------------------
# Randomness, in the contract's notation
# ----------------------------------------------------------------------------------------------
def H(x: str) -> np.ndarray:
    """H(x) = seeded.hash_strings([x]) : a length-1 uint64 array."""
    return seeded.hash_strings([x])


def U(seed: int, stage: str, *parts, n: int = 1, start: int = 1) -> np.ndarray:
    """U(stage, parts..., n, start) for ONE row: its draws start .. start+n-1, as a 1-D array.

    Every part is a single value (H(...) arrays of length 1, or plain ints); ints are passed as
    int64 arrays, which row_keys casts to uint64.
    """
    arrays = [p if isinstance(p, np.ndarray) else np.asarray([p], dtype=np.int64) for p in parts]
    keys = seeded.row_keys(seed, stage, *arrays)
    return seeded.uniform(keys, n, start=start)[0]


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------
@dataclass
class RawInput:
    """What the read stage hands on: every task's rows concatenated in plan order."""

    interactions: pa.Table  # schema.INTERACTIONS
    items: pa.Table  # schema.ITEMS, in read order
    rejects: pa.Table  # schema.REJECTS
    records: int  # records seen by the readers (== rows + rejects)


def reference_read(cfg: PrepareConfig) -> RawInput:
    """Tasks run in plan order; within a file, lines in file order (the readers' job)."""
    inter, items, rejects, records = [], [], [], 0
    for source in cfg.sources:
        for task in plan_reads(source):
            result = run_read(task, cfg.strict)
            inter.append(schema.conform(result.interactions, schema.INTERACTIONS))
            items.append(schema.conform(result.items, schema.ITEMS))
            rejects.append(schema.conform(result.rejects, schema.REJECTS))
            records += result.records
    return RawInput(
        interactions=pa.concat_tables(inter) if inter else schema.empty(schema.INTERACTIONS),
        items=pa.concat_tables(items) if items else schema.empty(schema.ITEMS),
        rejects=pa.concat_tables(rejects) if rejects else schema.empty(schema.REJECTS),
        records=records,
    )


def raw_from_tables(interactions: pa.Table, items: pa.Table, rejects: pa.Table | None = None) -> RawInput:
    """A RawInput built directly from canonical tables (records = rows + rejects)."""
    interactions = schema.conform(interactions, schema.INTERACTIONS)
    items = schema.conform(items, schema.ITEMS)
    rejects = schema.empty(schema.REJECTS) if rejects is None else schema.conform(rejects, schema.REJECTS)
    return RawInput(interactions, items, rejects, interactions.num_rows + items.num_rows + rejects.num_rows)


# ----------------------------------------------------------------------------------------------
# Accounting
# ----------------------------------------------------------------------------------------------
def _stage(stage: str, unit: str, read: int, kept: int, dropped: Counter | dict) -> dict:
    dropped = {k: int(v) for k, v in sorted(dict(dropped).items()) if v}
    assert read == kept + sum(dropped.values()), (stage, read, kept, dropped)
    return {"stage": stage, "unit": unit, "read": int(read), "kept": int(kept), "dropped": dropped}


# ----------------------------------------------------------------------------------------------
# titles
# ----------------------------------------------------------------------------------------------
def clean_title(title: str | None) -> str | None:
    """html.unescape once, then fold every run of whitespace into one space (and strip)."""
    if title is None:
        return None
    return " ".join(html.unescape(title).split())


def title_problem(raw: str | None, cleaned: str | None) -> str | None:
    """The reason an item's title is unusable, checked in the contract's order; None if usable."""
    if raw is None:
        return "title_missing"
    if cleaned == "":
        return "title_empty"
    if cleaned.lower() == "nan":
        return "title_nan"
    return None


def titles_stage(items: pa.Table, cfg: PrepareConfig):
    """-> (kept item rows (dicts) in read order, dropped_items table, set of kept keys, set of
    title-dropped keys, accounting row)."""
    rows = items.to_pylist()  # read order
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for row in rows:
        key = (row["domain"], row["item"])
        cleaned = clean_title(row["title"])
        if key in seen:
            reason = "duplicate_item"
        else:
            seen.add(key)
            reason = title_problem(row["title"], cleaned)
            if reason is not None and cfg.titles.on_missing == "placeholder":
                reason, cleaned = None, cfg.titles.placeholder
        if reason is None:
            kept.append({**row, "title": cleaned})
        else:
            # AMBIGUITY: dropped_items.title holds the row's title AFTER cleaning (null stays
            # null), for every reason including duplicate_item. Rows are in read order.
            dropped.append({"item": row["item"], "domain": row["domain"], "title": cleaned, "reason": reason})
    dropped_table = pa.Table.from_pylist(dropped, schema=schema.DROPPED_ITEMS)
    kept_keys = {(r["domain"], r["item"]) for r in kept}
    # An item "was dropped" (-> its interactions get no_title) when its first row was dropped
    # for a title reason; duplicate rows never hide a key whose first row was kept.
    title_dropped_keys = {(r["domain"], r["item"]) for r in dropped if r["reason"] != "duplicate_item"}
    count = _stage("titles", "items", len(rows), len(kept), Counter(r["reason"] for r in dropped))
    return kept, dropped_table, kept_keys, title_dropped_keys, count


# ----------------------------------------------------------------------------------------------
# interactions: unknown items, dedupe, k-core
# ----------------------------------------------------------------------------------------------
def drop_unknown_items(df: pd.DataFrame, kept_keys: set, title_dropped_keys: set):
    reasons = []
    for key in zip(df["domain"], df["item"]):
        if key in kept_keys:
            reasons.append(None)
        elif key in title_dropped_keys:
            reasons.append("no_title")
        else:
            reasons.append("no_metadata")
    reasons = pd.Series(reasons, index=df.index, dtype=object)
    kept = df[reasons.isna()]
    count = _stage("item_titles", "interactions", len(df), len(kept), Counter(reasons.dropna()))
    return kept, count


def dedupe(df: pd.DataFrame):
    # AMBIGUITY: "equal on all five columns" treats two null ratings (or null anything) as equal,
    # as pandas.duplicated does. The first row in read order is the one kept (the rows are equal).
    dup = df.duplicated(subset=["user", "item", "domain", "timestamp", "rating"], keep="first")
    kept = df[~dup]
    count = _stage("dedupe", "interactions", len(df), len(kept), {"duplicate": int(dup.sum())})
    return kept, count


def kcore(df: pd.DataFrame, k_user: int, k_item: int, scope: str):
    """Iterate {drop users below k_user; drop items below k_item} until a round drops nothing.

    The result is the unique maximal subset satisfying both bounds (removal order does not change
    the fixed point). -> (kept rows, accounting row, number of rounds that dropped something).
    """
    user_key = ["user"] if scope == "mixed" else ["user", "domain"]
    item_key = ["domain", "item"]  # items always count per (domain, item)
    cur = df
    rounds = 0
    while True:
        before = len(cur)
        if k_user > 0 and len(cur):
            user_counts = cur.groupby(user_key)["item"].transform("size")
            cur = cur[user_counts >= k_user]
        if k_item > 0 and len(cur):
            item_counts = cur.groupby(item_key)["user"].transform("size")
            cur = cur[item_counts >= k_item]
        if len(cur) == before:
            break
        rounds += 1
    count = _stage("kcore", "interactions", len(df), len(cur), {"kcore": len(df) - len(cur)})
    return cur, count, rounds


# ----------------------------------------------------------------------------------------------
# index
# ----------------------------------------------------------------------------------------------
def index_items(interactions: pd.DataFrame, kept_items: list[dict]):
    """item_idx 1..N over the surviving items in (domain, item) order (0 = padding).

    AMBIGUITY: "surviving items" = items with at least one interaction after k-core; items that
    passed the titles stage but have no interaction left (or never had one) are not indexed and
    do not appear in items.parquet, even when kcore.item == 0.
    """
    surviving = sorted(set(zip(interactions["domain"], interactions["item"])))
    idx_of = {key: i + 1 for i, key in enumerate(surviving)}
    by_key = {(r["domain"], r["item"]): r for r in kept_items}
    rows = [{"item_idx": idx_of[key], **by_key[key]} for key in surviving]
    items = pa.Table.from_pylist(rows, schema=schema.INDEXED_ITEMS)
    return items, idx_of


# ----------------------------------------------------------------------------------------------
# sequences
# ----------------------------------------------------------------------------------------------
def build_sequences(interactions: pd.DataFrame, cfg: PrepareConfig):
    """-> (list of kept sequence dicts, accounting row). Unit = interactions, once per scope built."""
    sc = cfg.sequences
    seed = cfg.seed
    dropped: Counter = Counter()
    read = kept_rows = 0
    out = []
    for user, rows in interactions.groupby("user", sort=True):
        # 1. user subsampling
        user_kept = True
        if sc.user_ratio < 1:
            user_kept = U(seed, "user_ratio", H(user), n=1)[0] < sc.user_ratio

        # 2. scopes
        scopes: list[tuple[str, pd.DataFrame]] = []
        if sc.scope in ("mixed", "both"):
            scopes.append((schema.MIXED_SCOPE, rows))
        if sc.scope in ("per_domain", "both"):
            for domain, part in rows.groupby("domain", sort=True):
                scopes.append((domain, part))

        for scope, part in scopes:
            # rows sorted by (timestamp, *tie_order, the other columns); stable, NaN ratings last
            rest = [c for c in ("domain", "item", "rating") if c not in sc.tie_order]
            part = part.sort_values(["timestamp", *sc.tie_order, *rest], kind="mergesort")
            read += len(part)
            if not user_kept:
                dropped["user_subsampled"] += len(part)
                continue
            seq = part.to_dict("records")

            # 3. one interaction per calendar day
            if sc.one_per_day:
                by_day: dict[int, list[dict]] = {}
                for r in seq:  # Python // is floor division, as in the contract
                    by_day.setdefault(int(r["timestamp"]) // SECONDS_PER_DAY, []).append(r)
                picked = []
                for day, day_rows in by_day.items():  # days come in sequence order
                    u = U(seed, "one_per_day", H(user), H(scope), day, n=1)[0]
                    picked.append(day_rows[math.floor(u * len(day_rows))])
                dropped["one_per_day"] += len(seq) - len(picked)
                seq = picked

            # 4. consecutive repeats: compare with the previous KEPT row
            if sc.drop_consecutive_repeats:
                kept_seq = []
                for r in seq:
                    if kept_seq and kept_seq[-1]["item_idx"] == r["item_idx"]:
                        dropped["consecutive_repeat"] += 1
                    else:
                        kept_seq.append(r)
                seq = kept_seq

            # 5. keep the most recent max_length rows
            if sc.max_length is not None and len(seq) > sc.max_length:
                dropped["truncated"] += len(seq) - sc.max_length
                seq = seq[len(seq) - sc.max_length :]

            # 6. too short: the whole sequence goes
            if len(seq) < sc.min_length:
                dropped["too_short"] += len(seq)
                continue

            kept_rows += len(seq)
            out.append(
                {
                    "user": user,
                    "scope": scope,
                    "items": [int(r["item_idx"]) for r in seq],
                    "domains": [r["domain"] for r in seq],
                    "timestamps": [int(r["timestamp"]) for r in seq],
                    "ratings": [None if pd.isna(r["rating"]) else float(r["rating"]) for r in seq],
                }
            )
    out.sort(key=lambda s: (s["user"], s["scope"]))
    return out, _stage("sequences", "interactions", read, kept_rows, dropped)


# ----------------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------------
def _example(seq: dict, split: str, t: int, max_history: int) -> dict:
    items = seq["items"]
    return {
        "user": seq["user"],
        "scope": seq["scope"],
        "split": split,
        "position": t,
        "history": items[max(0, t - max_history) : t],
        "target": items[t],
        "target_domain": seq["domains"][t],
    }


def make_examples(sequences: list[dict], cfg: PrepareConfig):
    """-> (kept examples, without candidates; accounting row). Unit = examples."""
    sp = cfg.split
    seed = cfg.seed
    r = np.asarray(sp.ratios, dtype=np.float64) / sum(sp.ratios)

    def exists(t: int) -> bool:
        # AMBIGUITY: the min_history rule applies to every split (valid and test too, and the
        # `user` method), not only to train, as the formula in the contract is written.
        return t >= 0 and min(t, sp.max_history) >= sp.min_history

    examples = []
    for seq in sequences:
        n = len(seq["items"])
        targets: list[tuple[str, int]] = []
        if sp.method == "leave_one_out":
            if sp.train_examples == "prefixes":
                targets += [("train", t) for t in range(1, n - 2)]  # t = 1 .. n-3
            else:
                targets.append(("train", n - 3))
            targets += [("valid", n - 2), ("test", n - 1)]
        else:  # user split: one example per sequence, its last item
            u = U(seed, "user_split", H(seq["user"]), n=1)[0]
            split = "train" if u < r[0] else "valid" if u < r[0] + r[1] else "test"
            targets.append((split, n - 1))
        examples += [_example(seq, split, t, sp.max_history) for split, t in targets if exists(t)]

    read = len(examples)
    dropped: Counter = Counter()
    if sp.target_domains is not None:
        # AMBIGUITY: an empty list keeps no example (literally "not listed"); None disables the filter.
        allowed = set(sp.target_domains)
        kept = [e for e in examples if e["target_domain"] in allowed]
        dropped["other_domain"] += len(examples) - len(kept)
        examples = kept
    if sp.cold_start:
        # seen = every item of s[0..t] (target included, the whole prefix, not only the window)
        # of every train and valid example left after the target-domain filter, over all users
        # and scopes. AMBIGUITY: s[0..t] is read as inclusive of t (cf. "s[0..t-1]" = the prefix
        # before the target in the candidates section).
        seqs = {(s["user"], s["scope"]): s["items"] for s in sequences}
        seen: set[int] = set()
        for e in examples:
            if e["split"] in ("train", "valid"):
                seen.update(seqs[(e["user"], e["scope"])][: e["position"] + 1])
        kept = [e for e in examples if not (e["split"] == "test" and e["target"] in seen)]
        dropped["warm_target"] += len(examples) - len(kept)
        examples = kept
    examples.sort(key=lambda e: (e["user"], e["scope"], SPLIT_CODES[e["split"]], e["position"]))
    return examples, _stage("splits", "examples", read, len(examples), dropped)


# ----------------------------------------------------------------------------------------------
# candidates
# ----------------------------------------------------------------------------------------------
class Pools:
    """The candidate pools: item_idx ascending, per domain and over all items, with weights."""

    def __init__(self, items: pa.Table, popularity: dict[int, int], cfg: PrepareConfig):
        idx = items.column("item_idx").to_pylist()
        domains = items.column("domain").to_pylist()
        self.all = sorted(idx)
        self.by_domain: dict[str, list[int]] = {}
        for i, d in sorted(zip(idx, domains)):
            self.by_domain.setdefault(d, []).append(i)
        self.popularity = popularity
        self.cfg = cfg.candidates
        self._cumsum: dict[str, tuple[np.ndarray, int]] = {}

    def pool(self, target_domain: str) -> list[int]:
        return self.by_domain.get(target_domain, []) if self.cfg.pool == "target_domain" else self.all

    def cumsum(self, target_domain: str) -> tuple[np.ndarray, int]:
        key = target_domain if self.cfg.pool == "target_domain" else "\x00all"
        if key not in self._cumsum:
            weights = np.asarray([self.popularity[i] for i in self.pool(target_domain)], dtype=np.int64)
            self._cumsum[key] = (np.cumsum(weights), int(weights.sum()))
        return self._cumsum[key]


def sample_candidates(example: dict, seq_items: list[int], pools: Pools, seed: int) -> list[int]:
    cc = pools.cfg
    count = cc.train_negatives if example["split"] == "train" else cc.count
    pool = pools.pool(example["target_domain"])
    t = example["position"]
    if cc.exclude == "none":
        excluded: set[int] = set()
    else:
        excluded = set(seq_items[:t])  # the whole prefix s[0..t-1], not just the history window
        if cc.exclude == "history_and_target":
            excluded.add(example["target"])
    available = [i for i in pool if i not in excluded]
    if len(available) <= count:
        return available  # ascending, because the pool is

    # The plain sequential walk over draws c = 1, 2, 3, ...; draws are fetched in blocks only to
    # save calls (draw c of a key is the same number whichever block it comes in).
    parts = (H(example["user"]), H(example["scope"]), SPLIT_CODES[example["split"]], t)
    if cc.strategy == "popularity":
        cumsum, total = pools.cumsum(example["target_domain"])
    taken: list[int] = []
    taken_set: set[int] = set()
    c = 1
    block = max(64, 2 * count)
    while len(taken) < count:
        draws = U(seed, "candidates", *parts, n=block, start=c)
        c += block
        for u in draws:
            if cc.strategy == "uniform":
                i = math.floor(u * len(pool))
            else:
                i = int(np.searchsorted(cumsum, u * total, side="right"))
            item = pool[i]
            if item in excluded or item in taken_set:
                continue
            taken.append(item)
            taken_set.add(item)
            if len(taken) == count:
                break
    return taken


# ----------------------------------------------------------------------------------------------
# render — NOT IN SCOPE YET
# ----------------------------------------------------------------------------------------------
# The render stage's output columns are still being designed (docs/data-plane.md "render").
# When they are fixed, add `reference_render(examples, items, family, cfg)` here, drawing its
# shuffles as order = argsort(U("render:<family>", H(user), H(scope), split_code, t, n=k),
# kind="stable"), and return its tables from reference_prepare as "rendered/<family>/<split>".
# Until then reference_prepare ignores cfg.render and returns no rendered tables.


# ----------------------------------------------------------------------------------------------
# stats
# ----------------------------------------------------------------------------------------------
def _density(users: int, items: int, interactions: int) -> float:
    return interactions / (users * items) if users and items else 0.0


def dataset_stats(sequences: list[dict], examples: list[dict], cfg: PrepareConfig) -> dict:
    """Paper-style tables (LLM-Rec Tables 1-3) of the FINAL dataset, in stats.json's layout.

    Counted over the kept sequences of the mixed scope when it is built (else the per-domain ones):
    per domain users, items (distinct item_idx), interactions, density = inter / (users * items),
    training (leave_one_out: all but each sequence's last two items; user: the train users'
    sequences whole), validation / testing (examples by target domain); "all" sums the domains'
    items and counts users once; overlap = users active in both domains (diagonal: the domain's
    users); users_by_num_domains for 1..#domains.
    """
    mixed = cfg.sequences.scope in ("mixed", "both")
    seqs = [s for s in sequences if (s["scope"] == schema.MIXED_SCOPE) == mixed]
    r = np.asarray(cfg.split.ratios, dtype=np.float64) / sum(cfg.split.ratios)
    users_of: dict[str, set] = {}
    items_of: dict[str, set] = {}
    interactions: Counter = Counter()
    training: Counter = Counter()
    domains_of_user: dict[str, set] = {}
    for seq in seqs:
        n = len(seq["items"])
        if cfg.split.method == "leave_one_out":
            train_positions = range(max(n - 2, 0))
        else:
            u = U(cfg.seed, "user_split", H(seq["user"]), n=1)[0]
            train_positions = range(n) if u < r[0] else range(0)
        for t, (item, domain) in enumerate(zip(seq["items"], seq["domains"])):
            users_of.setdefault(domain, set()).add(seq["user"])
            items_of.setdefault(domain, set()).add(item)
            domains_of_user.setdefault(seq["user"], set()).add(domain)
            interactions[domain] += 1
            training[domain] += t in train_positions
    held_out = {k: Counter(e["target_domain"] for e in examples if e["split"] == split)
                for k, split in (("validation", "valid"), ("testing", "test"))}
    domains = sorted(interactions)

    def row(name, users, items, inter, train, valid, test):
        return {"domain": name, "users": users, "items": items, "interactions": inter,
                "density": _density(users, items, inter), "training": train, "validation": valid, "testing": test}

    rows = [row(d, len(users_of[d]), len(items_of[d]), interactions[d], training[d], held_out["validation"][d],
                held_out["testing"][d]) for d in domains]
    total = row("all", len(domains_of_user), sum(len(items_of[d]) for d in domains), sum(interactions.values()),
                sum(training.values()), sum(held_out["validation"].values()), sum(held_out["testing"].values()))
    by_count = Counter(len(ds) for ds in domains_of_user.values())
    return {
        "domains": rows,
        "all": total,
        "overlap": {"domains": domains, "users": [[len(users_of[a] & users_of[b]) for b in domains] for a in domains]},
        "users_by_num_domains": [{"num_domains": k, "users": by_count.get(k, 0)} for k in range(1, len(domains) + 1)],
    }


# ----------------------------------------------------------------------------------------------
# the whole pipeline
# ----------------------------------------------------------------------------------------------
def reference_prepare(cfg: PrepareConfig, raw: RawInput | None = None) -> dict[str, Any]:
    """Every table of a prepared dataset, computed in one process.

    Returns {"items", "dropped_items", "interactions", "sequences", "examples/train",
    "examples/valid", "examples/test", "rejected"} as pa.Tables with the pipeline's schemas and
    row order, plus "stats" (dict), "accounting" (list of per-stage dicts, StageCount.as_dict
    layout) and "kcore_rounds" (int). `raw` replaces reading cfg.sources when given.
    """
    raw = reference_read(cfg) if raw is None else raw
    accounting = []

    # read: records seen == rows kept + malformed lines, by reason
    rejects = raw.rejects.column("reason").to_pylist()
    accounting.append(
        _stage("read", "records", raw.records, raw.interactions.num_rows + raw.items.num_rows, Counter(rejects))
    )

    # titles (unit: items), then interactions of unknown / title-less items (unit: interactions)
    kept_items, dropped_items, kept_keys, title_dropped_keys, count = titles_stage(raw.items, cfg)
    accounting.append(count)
    df = raw.interactions.to_pandas()
    df = df.astype({"user": object, "item": object, "domain": object})
    df, count = drop_unknown_items(df, kept_keys, title_dropped_keys)
    accounting.append(count)

    # dedupe
    if cfg.dedupe:
        df, count = dedupe(df)
        accounting.append(count)

    # k-core
    df, count, rounds = kcore(df, cfg.kcore.user, cfg.kcore.item, cfg.kcore.scope)
    accounting.append(count)

    # index
    items, idx_of = index_items(df, kept_items)
    df = df.assign(item_idx=[idx_of[k] for k in zip(df["domain"], df["item"])])
    df = df.astype({"item_idx": np.int32})
    df = df.sort_values(INTERACTION_ORDER, kind="mergesort").reset_index(drop=True)
    popularity = Counter(df["item_idx"].tolist())  # interactions per item after k-core

    # sequences
    seqs, count = build_sequences(df, cfg)
    accounting.append(count)

    # splits
    examples, count = make_examples(seqs, cfg)
    accounting.append(count)

    # candidates (drop nothing; no accounting row)
    pools = Pools(items, popularity, cfg)
    seq_items = {(s["user"], s["scope"]): s["items"] for s in seqs}
    for e in examples:
        e["candidates"] = sample_candidates(e, seq_items[(e["user"], e["scope"])], pools, cfg.seed)

    # render: NOT IN SCOPE YET (see the section above)

    out: dict[str, Any] = {
        "items": items,
        "dropped_items": dropped_items,
        "interactions": pa.Table.from_pandas(df[INDEXED_INTERACTIONS.names], schema=INDEXED_INTERACTIONS, preserve_index=False),
        "sequences": pa.Table.from_pylist(seqs, schema=schema.SEQUENCES),
        "rejected": raw.rejects,
    }
    for split in schema.SPLITS:
        rows = [e for e in examples if e["split"] == split]
        out[f"examples/{split}"] = pa.Table.from_pylist(rows, schema=schema.EXAMPLES)
    out["stats"] = dataset_stats(seqs, examples, cfg)
    out["accounting"] = accounting
    out["kcore_rounds"] = rounds
    return out


def reference_accounting(cfg: PrepareConfig, raw: RawInput | None = None) -> list[dict]:
    """Per-stage {stage, unit, read, kept, dropped: {reason: n}}, in pipeline order: read (records),
    titles (items), item_titles (interactions), dedupe (interactions; only when cfg.dedupe),
    kcore (interactions), sequences (interactions, once per scope built), splits (examples)."""
    return reference_prepare(cfg, raw)["accounting"]


REFERENCE_CHOICES = """
- dropped_items.title: the title after cleaning (null stays null), for every reason, read order.
- dedupe: null values compare equal (pandas.duplicated).
- index: only items with >= 1 interaction after k-core are indexed / written to items.parquet.
- splits: the min_history existence rule applies to every split and to the `user` method.
- target_domains: [] keeps nothing; None disables the filter.
- cold_start: s[0..t] includes the target; seen is global over users and scopes.
- stats: of the final sequences and examples, stats.json's layout (see dataset_stats).
"""
