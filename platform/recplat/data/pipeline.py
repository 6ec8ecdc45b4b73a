"""`recplat prepare`: raw multi-domain dumps -> one prepared dataset directory, on Ray Data.

Read top to bottom, this is the whole data plane: read -> titles -> dedupe -> k-core -> index ->
sequences -> splits -> candidates -> render -> write -> stats -> manifest. Each stage is a small
Ray Data transform in its own module; this file only composes them, counts what each one kept
and dropped (docs/data-plane.md), and writes the result atomically.
"""

from __future__ import annotations

import platform as _platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import accounting, schema, writer
from recplat.data.accounting import StageCount
from recplat.data.config import PrepareConfig
from recplat.data.inputs import fingerprint, plan_all, read_inputs
from recplat.errors import RecplatError
from recplat.storage import atomic_dir, write_json_atomic, write_parquet_atomic

INTERACTION_ORDER = ["user", "domain", "timestamp", "item", "rating"]
EXAMPLE_ORDER = ["user", "scope", "split", "position"]


@dataclass
class PrepareReport:
    out: Path
    stages: list[StageCount] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


def prepare(cfg: PrepareConfig, out: str | Path, overwrite: bool = False, show_progress: bool = True) -> PrepareReport:
    """Run the pipeline on the current Ray (call recplat.runtime.init_ray first) and write `out`."""
    import ray

    from recplat.data import candidates, dedupe, kcore, render, sequences, splits, stats, titles

    out = Path(out)
    if out.exists() and not overwrite:
        raise RecplatError(f"{out} already exists: choose another --out or pass --overwrite")
    started = time.time()
    log = _Log(show_progress)
    report = PrepareReport(out=out)
    P = cfg.num_partitions

    tasks = plan_all(cfg.sources)
    log.step("plan", f"{len(tasks)} read tasks from {len(cfg.sources)} source(s)")
    inputs_fp = fingerprint(tasks)

    with atomic_dir(out, overwrite=overwrite) as tmp:
        # --- read --------------------------------------------------------------------------
        bar = log.bar(len(tasks), "read")
        try:
            read = read_inputs(tasks, cfg.strict, progress=bar)
        finally:  # so that a --strict error line is not glued to the bar
            log.close(bar)
        write_parquet_atomic(tmp / "rejected.parquet", read.rejects)
        read_count = StageCount("read", "records")
        read_count.add(read.records, read.interaction_rows + read.item_rows, _counts(read.rejects, "reason"))
        report.stages.append(read_count)
        log.stage(read_count)

        # --- titles: clean titles, drop items without one, and their interactions -----------
        annotated_items = titles.annotate_titles(read.items, cfg.titles)
        item_count = StageCount("titles", "items")
        item_count.add(annotated_items.num_rows, 0, accounting.reason_counts(annotated_items))
        items = accounting.kept(annotated_items)
        item_count.kept = items.num_rows
        write_parquet_atomic(tmp / "dropped_items.parquet", titles.dropped_items(annotated_items))
        report.stages.append(item_count)
        log.stage(item_count)

        kept_keys, dropped_keys = titles.item_key_sets(annotated_items)
        ds = read.interactions.map_batches(
            _annotate_items_and_bucket,
            batch_format="pyarrow",
            fn_kwargs=dict(kept_keys=ray.put(kept_keys), dropped_keys=ray.put(dropped_keys), num_partitions=P),
        )
        ds, count = _filter_counted(ds, "item_titles", "interactions")
        report.stages.append(count)
        log.stage(count)

        # --- dedupe ----------------------------------------------------------------------
        if cfg.dedupe:
            ds, count = _filter_counted(dedupe.dedupe_stage(ds, P), "dedupe", "interactions")
            report.stages.append(count)
            log.stage(count)

        # --- k-core ----------------------------------------------------------------------
        before = ds.count()
        ds, rounds = kcore.kcore_stage(ds, cfg.kcore)
        ds = ds.materialize()
        after = ds.count()
        count = StageCount("kcore", "interactions")
        count.add(before, after, {"kcore": before - after} if before != after else {})
        report.stages.append(count)
        log.stage(count, f"{len(rounds)} round(s)")

        # --- index: item_idx 1..N in (domain, item) order; popularity for candidates ------
        popularity = _item_counts(ds)
        items = _index_items(items, popularity)
        write_parquet_atomic(tmp / "items.parquet", items)
        keys_sorted = schema.item_keys(items.column("domain"), items.column("item")).combine_chunks()
        ds = ds.map_batches(_attach_item_idx, batch_format="pyarrow", fn_kwargs=dict(keys=ray.put(keys_sorted))).materialize()
        log.step("index", f"{items.num_rows:,} items")

        # --- sequences -------------------------------------------------------------------
        seqs = sequences.sequences_stage(ds, cfg.sequences, cfg.seed, P).materialize()
        count = _sequence_count(seqs)
        report.stages.append(count)
        log.stage(count)
        seqs = seqs.map_batches(accounting.kept, batch_format="pyarrow").materialize()

        # --- splits and candidates ---------------------------------------------------------
        pool = ray.put(candidates.CandidatePool.build(items, popularity_by_idx(items, popularity)))
        if cfg.split.cold_start:  # the seen set is global: split everything, then draw candidates
            examples = splits.cold_start_stage(splits.examples_stage(seqs, cfg.split, cfg.seed))
            examples, count = _filter_counted(examples, "splits", "examples")
            examples = candidates.candidates_stage(examples, pool, cfg.candidates, cfg.seed).materialize()
        else:  # fused: candidates drawn from the sequences in the same task, no per-example prefix
            examples = candidates.examples_candidates_stage(seqs, cfg.split, pool, cfg.candidates, cfg.seed)
            examples, count = _filter_counted(examples, "splits", "examples")
        report.stages.append(count)
        log.stage(count)
        log.step("candidates", f"{cfg.candidates.count} per valid/test example, {cfg.candidates.train_negatives} per train example")

        # --- write the user-keyed tables -------------------------------------------------
        report.tables["interactions"] = writer.write_by_bucket(
            ds, tmp / "interactions", _with_idx(schema.INTERACTIONS), INTERACTION_ORDER, P
        )
        report.tables["sequences"] = writer.write_by_bucket(seqs, tmp / "sequences", schema.SEQUENCES, ["user", "scope"], P)
        report.tables["examples"] = writer.write_by_bucket(
            examples, tmp / "examples", schema.EXAMPLES, EXAMPLE_ORDER, P, split_by="split"
        )

        # --- render ----------------------------------------------------------------------
        if cfg.render.families:
            templates = render.load_templates(cfg.render.templates)
            titles_by_idx = np.array([None] + items.column("title").to_pylist(), dtype=object)
            titles_ref = ray.put(titles_by_idx)
            for family in cfg.render.families:
                rendered = render.render_stage(examples, titles_ref, family, templates, cfg.render, cfg.seed)
                rendered = rendered.map_batches(_add_bucket, batch_format="pyarrow", fn_kwargs=dict(num_partitions=P))
                report.tables[f"rendered/{family}"] = writer.write_by_bucket(
                    rendered, tmp / "rendered" / family, render.output_schema(family), EXAMPLE_ORDER, P, split_by="split"
                )
            log.step("render", ", ".join(cfg.render.families))

        # --- stats of the final dataset, in the papers' columns (per-stage counts: manifest) ---
        report.stats = stats.stats_stage(seqs, examples, cfg.sequences.scope, cfg.split, cfg.seed, P)
        write_json_atomic(tmp / "stats.json", report.stats)

        # --- manifest (last: a directory with a manifest is complete) ---------------------
        report.seconds = round(time.time() - started, 2)
        unbalanced = [c.stage for c in report.stages if not c.balanced()]
        if unbalanced:
            raise RecplatError(f"row accounting does not balance for stage(s) {unbalanced}: this is a bug")
        write_json_atomic(tmp / "manifest.json", _manifest(cfg, inputs_fp, report))

    log.summary(report)
    return report


# --- small transforms used above (module level so Ray can pickle them) ---------------------
def _annotate_items_and_bucket(batch: pa.Table, kept_keys, dropped_keys, num_partitions: int) -> pa.Table:
    from recplat.data.titles import annotate_unknown_items

    batch = annotate_unknown_items(batch, kept_keys, dropped_keys)
    return batch.append_column("bucket", writer.bucket_column(batch.column("user"), num_partitions))


def _attach_item_idx(batch: pa.Table, keys) -> pa.Table:
    import ray

    keys = ray.get(keys) if isinstance(keys, ray.ObjectRef) else keys  # fn_kwargs refs arrive unresolved
    idx = pc.index_in(schema.item_keys(batch.column("domain"), batch.column("item")), value_set=keys)
    return batch.append_column("item_idx", pc.add(idx, 1).cast(pa.int32()))


def _add_bucket(batch: pa.Table, num_partitions: int) -> pa.Table:
    """Rendered rows are keyed by user: recompute their bucket so they are written like examples."""
    if "bucket" in batch.column_names:
        batch = batch.drop_columns(["bucket"])
    return batch.append_column("bucket", writer.bucket_column(batch.column("user"), num_partitions))


def _reason_partial(batch: pa.Table) -> pa.Table:
    counts = accounting.reason_counts(batch)
    return pa.table({"reason": list(counts) + ["__kept__"], "n": list(counts.values()) + [
        batch.num_rows - sum(counts.values())]})


def _filter_counted(ds, stage: str, unit: str):
    """Materialise an annotated dataset, count its drop reasons, and keep the kept rows."""
    ds = ds.materialize()
    partial = ds.select_columns([accounting.DROP]).map_batches(_reason_partial, batch_format="pyarrow").to_pandas()
    totals = partial.groupby("reason")["n"].sum().to_dict() if len(partial) else {}
    kept = int(totals.pop("__kept__", 0))
    count = StageCount(stage, unit)
    count.add(kept + sum(totals.values()), kept, {k: int(v) for k, v in totals.items() if v})
    return ds.map_batches(accounting.kept, batch_format="pyarrow").materialize(), count


def _sequence_count(seqs) -> StageCount:
    cols = ["n_read", "n_one_per_day", "n_consecutive_repeat", "n_truncated", accounting.DROP, "items"]
    sums = seqs.select_columns(cols).map_batches(_sequence_partial, batch_format="pyarrow").to_pandas().sum()
    count = StageCount("sequences", "interactions")
    dropped = {k: int(sums[k]) for k in sums.index if k not in ("read", "kept") and int(sums[k])}
    count.add(int(sums["read"]), int(sums["kept"]), dropped)
    return count


def _sequence_partial(batch: pa.Table) -> pa.Table:
    lengths = pc.list_value_length(batch.column("items")).to_numpy(zero_copy_only=False)
    reason_col = batch.column(accounting.DROP)
    reason = np.asarray(reason_col.to_pylist(), dtype=object)
    row = {
        "read": int(pc.sum(batch.column("n_read")).as_py() or 0),
        "one_per_day": int(pc.sum(batch.column("n_one_per_day")).as_py() or 0),
        "consecutive_repeat": int(pc.sum(batch.column("n_consecutive_repeat")).as_py() or 0),
        "truncated": int(pc.sum(batch.column("n_truncated")).as_py() or 0),
        "kept": int(lengths[pc.is_null(reason_col).to_numpy(zero_copy_only=False)].sum()),
    }
    for name in ("too_short", "user_subsampled"):
        row[name] = int(lengths[reason == name].sum())
    return pa.table({k: [v] for k, v in row.items()})


def _item_counts(ds) -> pa.Table:
    """Interactions per (domain, item): only this small table reaches the driver."""
    partial = ds.map_batches(
        lambda b: b.group_by(["domain", "item"]).aggregate([("user", "count")]), batch_format="pyarrow"
    )
    refs = partial.to_arrow_refs()
    import ray

    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return pa.table({"domain": pa.array([], pa.string()), "item": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
    merged = pa.concat_tables(tables).group_by(["domain", "item"]).aggregate([("user_count", "sum")])
    return merged.rename_columns(["domain", "item", "n"])


def _index_items(items: pa.Table, counts: pa.Table) -> pa.Table:
    keep = pc.is_in(
        schema.item_keys(items.column("domain"), items.column("item")),
        value_set=schema.item_keys(counts.column("domain"), counts.column("item")).combine_chunks(),
    )
    kept = items.filter(keep).sort_by([("domain", "ascending"), ("item", "ascending")])
    idx = pa.array(np.arange(1, kept.num_rows + 1, dtype=np.int32))
    table = kept.add_column(0, "item_idx", idx)
    return schema.conform(table, schema.INDEXED_ITEMS)


def popularity_by_idx(items: pa.Table, counts: pa.Table) -> np.ndarray:
    """Interaction count per item_idx (index 0 unused)."""
    keys = schema.item_keys(items.column("domain"), items.column("item")).combine_chunks()
    pos = pc.index_in(schema.item_keys(counts.column("domain"), counts.column("item")), value_set=keys)
    out = np.zeros(items.num_rows + 1, dtype=np.int64)
    pos_np = pos.to_numpy(zero_copy_only=False)
    valid = ~np.isnan(pos_np.astype(float))
    out[pos_np[valid].astype(np.int64) + 1] = counts.column("n").to_numpy()[valid]
    return out


def _with_idx(s: pa.Schema) -> pa.Schema:
    return s.append(pa.field("item_idx", pa.int32()))


def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    return {str(r["values"]): int(r["counts"]) for r in pc.value_counts(table.column(column)).to_pylist()}


def _manifest(cfg: PrepareConfig, inputs_fp: list[dict], report: PrepareReport) -> dict:
    import numpy
    import pandas
    import pyarrow
    import ray

    import recplat

    return {
        "format": "recplat-dataset/1",
        "name": cfg.name,
        "seed": cfg.seed,
        "config": cfg.model_dump(mode="json"),
        "inputs": inputs_fp,
        "versions": {
            "recplat": recplat.__version__,
            "python": sys.version.split()[0],
            "platform": _platform.platform(),
            "ray": ray.__version__,
            "pyarrow": pyarrow.__version__,
            "pandas": pandas.__version__,
            "numpy": numpy.__version__,
        },
        "stages": [c.as_dict() for c in report.stages],
        "tables": report.tables,
        "seconds": report.seconds,
    }


class _Log:
    """Stage lines and progress bars on stderr; silent when show_progress is off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.time()

    def step(self, name: str, text: str) -> None:
        if self.enabled:
            print(f"[{time.time() - self.t0:7.1f}s] {name:<12} {text}", file=sys.stderr, flush=True)

    def stage(self, count: StageCount, extra: str = "") -> None:
        dropped = ", ".join(f"-{n:,} {r}" for r, n in sorted(count.dropped.items())) or "nothing dropped"
        self.step(count.stage, f"{count.read:,} -> {count.kept:,} {count.unit} ({dropped}){' ' + extra if extra else ''}")

    def bar(self, total: int, desc: str):
        if not self.enabled:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="file", file=sys.stderr)

    def close(self, bar) -> None:
        if bar is not None:
            bar.close()

    def summary(self, report: PrepareReport) -> None:
        if not self.enabled:
            return
        from recplat.data.stats import format_stats

        print(format_accounting(report.stages))
        print()
        print(format_stats(report.stats))
        print(f"\nwrote {report.out} in {report.seconds:.1f}s")


def format_accounting(stages: list[StageCount]) -> str:
    """The row accounting as a fixed-width table: stage, unit, read, kept, dropped by reason."""
    header = f"{'stage':<14}{'unit':<14}{'read':>12}{'kept':>12}  dropped"
    lines = [header, "-" * len(header)]
    for c in stages:
        dropped = ", ".join(f"{r} {n:,}" for r, n in sorted(c.dropped.items())) or "-"
        lines.append(f"{c.stage:<14}{c.unit:<14}{c.read:>12,}{c.kept:>12,}  {dropped}")
    return "\n".join(lines)
