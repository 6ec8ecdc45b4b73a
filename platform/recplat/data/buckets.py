"""The fused per-bucket work of `recplat prepare` (docs/data-plane.md, "Execution").

Interactions are shuffled ONCE by user bucket (`split_block`: a task per read block returns one
piece per bucket); after that every stage runs inside one Ray task per bucket on whole users, and
tables stay in the object store between tasks. Only small things reach the driver: drop-reason
counts, item counts per bucket (k-core rounds and popularity), the seen-item set of cold start,
partial stats and row counts. A bucket task writes its own part files, so the same config and
input give the same bytes whatever the cluster did.

Every function here is a plain function of tables; `pipeline.py` runs them as Ray tasks, or
inline in its own process for a small input (recplat.data.execution).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import accounting, candidates, dedupe, kcore, render, schema, sequences, splits, stats, writer
from recplat.data.config import KCoreConfig, PrepareConfig
from recplat.data.execution import Tasks
from recplat.data.titles import annotate_unknown_items

INTERACTION_ORDER = ["user", "domain", "timestamp", "item", "rating"]
EXAMPLE_ORDER = ["user", "scope", "split", "position"]
ITEM_COUNTS = pa.schema([("domain", pa.string()), ("item", pa.string()), ("n", pa.int64())])
SEQUENCE_COUNTERS = {"n_one_per_day": "one_per_day", "n_consecutive_repeat": "consecutive_repeat",
                     "n_truncated": "truncated"}


# --- the shuffle -------------------------------------------------------------------------------
def split_block(block: pa.Table, kept_keys: pa.Array, dropped_keys: pa.Array, num_buckets: int) -> tuple:
    """One read block -> (rows read, `item_titles` drop counts), then its kept rows + `bucket`
    (seeded.bucket_of(user)) as `num_buckets` pieces, piece b holding bucket b's rows."""
    annotated = annotate_unknown_items(block, kept_keys, dropped_keys)
    rows = accounting.kept(annotated)
    bucket = writer.bucket_column(rows.column("user"), num_buckets)
    rows = rows.append_column("bucket", bucket)
    codes = bucket.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=num_buckets), out=bounds[1:])
    # take, not slice: a slice would carry (and serialise) the whole block's buffers
    pieces = [rows.take(pa.array(order[bounds[b] : bounds[b + 1]])) for b in range(num_buckets)]
    return ((annotated.num_rows, accounting.reason_counts(annotated)), *pieces)


# --- dedupe and k-core -------------------------------------------------------------------------
def dedupe_bucket(run_dedupe: bool, cfg: KCoreConfig, *pieces: pa.Table) -> tuple[pa.Table, dict]:
    """A bucket's pieces -> (its rows, kept by dedupe, {"read", "dropped"} + `kcore_summary`)."""
    table = pa.concat_tables(pieces)
    info: dict = {"read": table.num_rows, "dropped": {}}
    if run_dedupe:
        annotated = dedupe.dedupe_interactions(table)
        info["dropped"] = accounting.reason_counts(annotated)
        table = accounting.kept(annotated)
    return table, info | kcore_summary(table, cfg)


def kcore_round(table: pa.Table, item_set, cfg: KCoreConfig) -> tuple[pa.Table, dict]:
    """One k-core round on one bucket: drop the rows whose user key is below `cfg.user` (users
    are local to their bucket) or whose item is in the driver's global `item_set` (see
    kcore.keep_sets), then summarise what is left for the next round."""
    sets = {"user": kcore.keep_sets(kcore.partial_counts(table, cfg.scope), cfg)["user"], "item": item_set}
    table = table.filter(pc.invert(kcore.violating_rows(table, cfg.scope, sets)))
    return table, kcore_summary(table, cfg)


def kcore_rounds(run: Tasks, tables: list, infos: list[dict], cfg: KCoreConfig) -> tuple[list, pa.Table, int, int]:
    """Driver side of k-core (kcore.py's semantics) over buckets: `tables` are the buckets' row
    refs (`run`'s) and `infos` their `kcore_summary`s. Each round sums the item counts, and the buckets with
    something to drop (a globally rare item, or a local user below `cfg.user`) run `kcore_round`;
    the rest keep their rows. Stops when nothing is below a threshold: the same rounds as
    removing every violating row of the whole table at once. -> (bucket refs, interactions per
    (domain, item) after k-core (`ITEM_COUNTS`), rows left, counting passes)."""
    tables, infos = list(tables), list(infos)
    rounds = 1 if cfg.user > 1 or cfg.item > 1 else 0
    remote = run.remote(kcore_round, num_returns=2)
    while True:
        counts = combine_item_counts([i["items"] for i in infos])
        items = item_set(counts, cfg)
        todo = [b for b, i in enumerate(infos) if items is not None or i["users_low"]]
        if not todo:
            return tables, counts, sum(i["rows"] for i in infos), rounds
        items_ref, rounds = run.put(items), rounds + 1
        for b in todo:
            tables[b], infos[b] = remote(tables[b], items_ref, cfg)
        for b, info in zip(todo, run.get([infos[b] for b in todo])):
            infos[b] = info


def kcore_summary(table: pa.Table, cfg: KCoreConfig) -> dict:
    """Rows, interactions per (domain, item) (`ITEM_COUNTS`) and user keys below `cfg.user`."""
    counted = table.group_by(["domain", "item"], use_threads=False).aggregate([("item", "count")])
    items = pa.table([counted.column("domain"), counted.column("item"), counted.column("item_count")], schema=ITEM_COUNTS)
    users_low = 0
    if cfg.user > 1 and table.num_rows:
        users = pc.value_counts(kcore.side_keys(table, "user", cfg.scope)).field("counts")
        users_low = int(pc.sum(pc.less(users, cfg.user)).as_py() or 0)
    return {"rows": table.num_rows, "items": items, "users_low": users_low}


def combine_item_counts(parts: list[pa.Table]) -> pa.Table:
    """Sum per-bucket `ITEM_COUNTS` tables: interactions per (domain, item) over all buckets."""
    if not parts:
        return ITEM_COUNTS.empty_table()
    summed = pa.concat_tables(parts).group_by(["domain", "item"], use_threads=False).aggregate([("n", "sum")])
    return pa.table([summed.column("domain"), summed.column("item"), summed.column("n_sum")], schema=ITEM_COUNTS)


def item_set(counts: pa.Table, cfg: KCoreConfig):
    """kcore.keep_sets' item side for the summed item counts (None: no item is below `cfg.item`)."""
    keys = schema.item_keys(counts.column("domain"), counts.column("item"))
    side = pa.array(["item"] * counts.num_rows, pa.string())
    table = pa.table({"side": side, "key": keys, "count": counts.column("n")}, schema=kcore.COUNTS)
    return kcore.keep_sets(table, cfg)["item"]


# --- index, sequences, splits, candidates, render, write, stats --------------------------------
def front(table: pa.Table, keys: pa.Array, pool: candidates.CandidatePool, cfg: PrepareConfig) -> tuple[dict, dict]:
    """A bucket's k-core rows -> (tables, info): item_idx attached, sequences built (their drop
    counts in info["sequences"]) and examples made; with cold start the examples keep `prefix` and
    info["seen"] holds the item_idx they have seen (the driver unites them), else candidates are
    drawn here too."""
    idx = pc.index_in(schema.item_keys(table.column("domain"), table.column("item")), value_set=keys)
    table = table.append_column("item_idx", pc.add(idx, 1).cast(pa.int32()))
    built = sequences.build_sequences(table, cfg.sequences, cfg.seed)
    seqs = accounting.kept(built)
    info: dict = {"sequences": sequence_counts(built)}
    if cfg.split.cold_start:
        examples = splits.make_examples(seqs, cfg.split, cfg.seed)
        info["seen"] = splits.seen_items(examples).column("item_idx").combine_chunks()
    else:
        examples = candidates.examples_with_candidates(seqs, cfg.split, pool, cfg.candidates, cfg.seed)
    return {"interactions": table, "sequences": seqs, "examples": examples}, info


def back(tables: dict, bucket: int, seen, pool, titles: np.ndarray, templates: dict | None, cfg: PrepareConfig,
         dest: str) -> dict:
    """Finish a bucket: (cold start: mark warm targets, draw candidates), write its part files and
    return {"splits": drop counts, "rows": rows per table, "stats": partial stats}."""
    examples = tables["examples"]
    if cfg.split.cold_start:
        examples = splits.mark_warm_targets(examples, seen)
    info = {"splits": (examples.num_rows, accounting.reason_counts(examples))}
    examples = accounting.kept(examples)
    if cfg.split.cold_start:
        examples = candidates.sample_candidates(examples, pool, cfg.candidates, cfg.seed)
    seqs = tables["sequences"]
    contents = {"interactions": tables["interactions"], "sequences": seqs, "examples": examples}
    contents |= {f"rendered/{family}": render.render_family(examples, titles, family, templates, cfg.render, cfg.seed)
                 for family in cfg.render.families}
    info["rows"] = {name: write_parts(contents[name], Path(dest) / name, bucket, table_schema, keys, split_by)
                    for name, (table_schema, keys, split_by) in output_tables(cfg).items()}
    info["stats"] = [stats.partial_from_sequences(seqs, cfg.sequences.scope, cfg.split, cfg.seed),
                     stats.partial_from_examples(examples)]
    return info


def front_and_back(table, keys, pool, bucket, titles, templates, cfg: PrepareConfig, dest: str) -> dict:
    """Everything after k-core in one task (no cold start: nothing global is needed midway)."""
    tables, info = front(table, keys, pool, cfg)
    return info | back(tables, bucket, None, pool, titles, templates, cfg, dest)


def output_tables(cfg: PrepareConfig) -> dict[str, tuple[pa.Schema, list[str], str | None]]:
    """Every user-keyed table of a prepared dataset: name -> (schema, sort keys, split column)."""
    tables = {"interactions": (schema.INDEXED_INTERACTIONS, INTERACTION_ORDER, None),
              "sequences": (schema.SEQUENCES, ["user", "scope"], None),
              "examples": (schema.EXAMPLES, EXAMPLE_ORDER, "split")}
    return tables | {f"rendered/{family}": (render.output_schema(family), EXAMPLE_ORDER, "split")
                     for family in cfg.render.families}


def write_parts(table: pa.Table, dest: Path, bucket: int, out_schema: pa.Schema, keys: list[str],
                split_by: str | None = None, split_order=("train", "valid", "test")) -> int:
    """This bucket's part file of a table (one per split value with `split_by`); none when empty."""
    if not split_by:
        if table.num_rows:
            writer.write_part(table, dest, bucket, keys, out_schema, split_order)
        return table.num_rows
    for value in split_order:
        part = table.filter(pc.equal(table.column(split_by), value))
        if part.num_rows:
            writer.write_part(part, dest / value, bucket, keys, out_schema, split_order)
    return table.num_rows


def sequence_counts(built: pa.Table) -> tuple[int, int, dict[str, int]]:
    """(interactions read, kept, dropped by reason) of `build_sequences` output (all scopes)."""
    lengths = pc.list_value_length(built.column("items")).to_numpy(zero_copy_only=False).astype(np.int64)
    reason = np.asarray(built.column(accounting.DROP).to_pylist(), dtype=object)
    dropped = {name: int(pc.sum(built.column(col)).as_py() or 0) for col, name in SEQUENCE_COUNTERS.items()}
    for name in ("too_short", "user_subsampled"):
        dropped[name] = int(lengths[reason == name].sum())
    read = int(pc.sum(built.column("n_read")).as_py() or 0)
    kept = int(lengths[pc.is_null(built.column(accounting.DROP)).to_numpy(zero_copy_only=False)].sum())
    return read, kept, {k: v for k, v in dropped.items() if v}
