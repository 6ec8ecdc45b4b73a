"""`recplat prepare`: raw multi-domain dumps -> one prepared dataset directory, on Ray.

Read top to bottom, this is the whole data plane: read -> titles -> dedupe -> k-core -> index ->
sequences -> splits -> candidates -> render -> write -> stats -> manifest. Each stage's kernel is
a function of tables in its own module; the interactions are shuffled once by user bucket, then
one task per bucket runs the stages that need whole users (recplat.data.buckets), and only
small tables and counts come back here. Tasks run on Ray, or inline in this process when the
input is small and no Ray is running (recplat.data.execution). This file composes them, counts
what each stage kept and dropped (docs/data-plane.md, "Execution"), and writes the result
atomically.
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

from recplat.data import accounting, execution, schema, writer
from recplat.data.accounting import StageCount
from recplat.data.config import PrepareConfig
from recplat.data.execution import Tasks
from recplat.data.inputs import fingerprint, plan_all, read_inputs
from recplat.errors import RecplatError
from recplat.storage import atomic_dir, write_json_atomic, write_parquet_atomic


@dataclass
class PrepareReport:
    out: Path
    stages: list[StageCount] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    buckets: int = 0  # user buckets used (num_partitions, or chosen from the input size)


def prepare(cfg: PrepareConfig, out: str | Path, overwrite: bool = False, show_progress: bool = True,
            on_ray: bool | None = None) -> PrepareReport:
    """Run the pipeline and write `out`. Its tasks run on Ray with `on_ray=True` (this process's
    Ray, else recplat.runtime.init_ray starts or joins one) and in this process with False. None:
    on Ray when one is running here or RAY_ADDRESS is set; else inline while the input is small
    (execution.inline_first, then at most ROWS_PER_BUCKET interactions), Ray being started for more
    (docs/data-plane.md, "Execution")."""
    from recplat.data import buckets, candidates, render, stats, titles
    from recplat.runtime import init_ray

    out = Path(out)
    if out.exists() and not overwrite:
        raise RecplatError(f"{out} already exists: choose another --out or pass --overwrite")
    started = time.time()
    log = _Log(show_progress)
    report = PrepareReport(out=out)

    tasks = plan_all(cfg.sources)
    log.step("plan", f"{len(tasks)} read tasks from {len(cfg.sources)} source(s)")
    inputs_fp = fingerprint(tasks)
    inline = execution.inline_first(sum(f["bytes"] for f in inputs_fp)) if on_ray is None else not on_ray
    run = Tasks(on_ray=False) if inline else execution.on_ray(init_ray)

    with atomic_dir(out, overwrite=overwrite) as tmp:
        # --- read --------------------------------------------------------------------------
        bar = log.bar(len(tasks), "read")
        try:
            read = read_inputs(tasks, cfg.strict, run, progress=bar)
        finally:  # so that a --strict error line is not glued to the bar
            log.close(bar)
        write_parquet_atomic(tmp / "rejected.parquet", read.rejects)
        read_count = StageCount("read", "records")
        read_count.add(read.records, read.interaction_rows + read.item_rows, _counts(read.rejects, "reason"))
        report.stages.append(read_count)
        log.stage(read_count)
        P = report.buckets = num_buckets(cfg, read.interaction_rows)
        if on_ray is None and not run.on_ray and read.interaction_rows > ROWS_PER_BUCKET:  # repays Ray's start
            run = execution.on_ray(init_ray)
        log.step("tasks", f"{P} bucket(s), " + ("on Ray" if run.on_ray else "in this process (no Ray needed)"))

        # --- titles: clean titles, drop items without one, and their interactions -----------
        annotated_items = titles.annotate_titles(read.items, cfg.titles)
        item_count = StageCount("titles", "items")
        item_count.add(annotated_items.num_rows, 0, accounting.reason_counts(annotated_items))
        items = accounting.kept(annotated_items)
        item_count.kept = items.num_rows
        write_parquet_atomic(tmp / "dropped_items.parquet", titles.dropped_items(annotated_items))
        report.stages.append(item_count)
        log.stage(item_count)

        # --- the one shuffle: every read block -> one piece per user bucket ----------------
        kept_keys, dropped_keys = (run.put(k) for k in titles.item_key_sets(annotated_items))
        blocks = read.interactions or [run.put(schema.empty(schema.INTERACTIONS))]
        split = run.remote(buckets.split_block, num_returns=P + 1)
        pieces = [split(block, kept_keys, dropped_keys, P) for block in blocks]
        del blocks, read.interactions  # inline they are the tables themselves
        count = StageCount("item_titles", "interactions")
        for n, dropped in run.get([p[0] for p in pieces]):
            count.add(n, n - sum(dropped.values()), dropped)
        _log_stage(report, log, count)

        # --- dedupe, then k-core rounds: per round only item counts reach the driver -------
        dedupe = run.remote(buckets.dedupe_bucket, num_returns=2)
        refs = [dedupe(cfg.dedupe, cfg.kcore, *[p[b + 1] for p in pieces]) for b in range(P)]
        del pieces
        tables, infos = [r[0] for r in refs], run.get([r[1] for r in refs])
        if cfg.dedupe:
            count = StageCount("dedupe", "interactions")
            for info in infos:
                count.add(info["read"], info["rows"], info["dropped"])
            _log_stage(report, log, count)
        before = sum(i["rows"] for i in infos)
        tables, popularity, after, rounds = buckets.kcore_rounds(run, tables, infos, cfg.kcore)
        count = StageCount("kcore", "interactions")
        count.add(before, after, {"kcore": before - after} if before != after else {})
        _log_stage(report, log, count, f"{rounds} round(s)")

        # --- index: item_idx 1..N in (domain, item) order; popularity for candidates ------
        items = _index_items(items, popularity)
        write_parquet_atomic(tmp / "items.parquet", items)
        keys = run.put(schema.item_keys(items.column("domain"), items.column("item")).combine_chunks())
        pool = run.put(candidates.CandidatePool.build(items, popularity_by_idx(items, popularity)))
        titles_ref = run.put(np.array([None] + items.column("title").to_pylist(), dtype=object))
        templates = render.load_templates(cfg.render.templates) if cfg.render.families else None
        log.step("index", f"{items.num_rows:,} items")

        # --- per bucket: sequences -> splits -> candidates -> render -> write -> partial stats ---
        dest = str(tmp)
        if cfg.split.cold_start:  # the seen set is global: one exchange of seen items midway
            front = run.remote(buckets.front, num_returns=2)
            fronts = [front(tables[b], keys, pool, cfg) for b in range(P)]
            del tables
            firsts = run.get([f[1] for f in fronts])
            seen = [i.pop("seen") for i in firsts]
            seen = run.put(pc.unique(pa.concat_arrays(seen)) if seen else pa.array([], pa.int32()))
            back = run.remote(buckets.back)
            results = run.get([back(f[0], b, seen, pool, titles_ref, templates, cfg, dest)
                               for b, f in enumerate(fronts)])
            results = [first | result for first, result in zip(firsts, results)]
        else:
            fused = run.remote(buckets.front_and_back)
            results = run.get([fused(tables[b], keys, pool, b, titles_ref, templates, cfg, dest)
                               for b in range(P)])
            del tables
        count = StageCount("sequences", "interactions")
        for result in results:
            count.add(*result["sequences"])
        _log_stage(report, log, count)
        count = StageCount("splits", "examples")
        for result in results:
            n, dropped = result["splits"]
            count.add(n, n - sum(dropped.values()), dropped)
        _log_stage(report, log, count)
        log.step("candidates", f"{cfg.candidates.count} per valid/test example, {cfg.candidates.train_negatives} per train example")

        for name, (table_schema, _, split_by) in buckets.output_tables(cfg).items():
            report.tables[name] = sum(result["rows"][name] for result in results)
            writer.fill_empty_dirs(tmp / name, table_schema, split_by)
        if cfg.render.families:
            log.step("render", ", ".join(cfg.render.families))

        # --- stats of the final dataset, in the papers' columns (per-stage counts: manifest) ---
        report.stats = stats.combine(part for result in results for part in result["stats"])
        write_json_atomic(tmp / "stats.json", report.stats)

        # --- manifest (last: a directory with a manifest is complete) ---------------------
        report.seconds = round(time.time() - started, 2)
        unbalanced = [c.stage for c in report.stages if not c.balanced()]
        if unbalanced:
            raise RecplatError(f"row accounting does not balance for stage(s) {unbalanced}: this is a bug")
        write_json_atomic(tmp / "manifest.json", _manifest(cfg, inputs_fp, report))

    log.summary(report)
    return report


ROWS_PER_BUCKET = 100_000  # interactions per bucket task when num_partitions is unset (docs/data-plane.md)


def num_buckets(cfg: PrepareConfig, interaction_rows: int) -> int:
    """User buckets: `num_partitions` when set, else one per ROWS_PER_BUCKET interactions read. A
    function of the config and the input only, so the same config and input give the same files."""
    if cfg.num_partitions is not None:
        return cfg.num_partitions
    return max(1, -(-interaction_rows // ROWS_PER_BUCKET))


def _log_stage(report: PrepareReport, log, count: StageCount, extra: str = "") -> None:
    report.stages.append(count)
    log.stage(count, extra)


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



def _counts(table: pa.Table, column: str) -> dict[str, int]:
    if table.num_rows == 0:
        return {}
    return {str(r["values"]): int(r["counts"]) for r in pc.value_counts(table.column(column)).to_pylist()}


def _manifest(cfg: PrepareConfig, inputs_fp: list[dict], report: PrepareReport) -> dict:
    from importlib.metadata import version

    import numpy
    import pandas
    import pyarrow

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
            "ray": version("ray"),  # importing ray costs a second that an inline prepare need not pay
            "pyarrow": pyarrow.__version__,
            "pandas": pandas.__version__,
            "numpy": numpy.__version__,
        },
        "stages": [c.as_dict() for c in report.stages],
        "tables": report.tables,
        "buckets": report.buckets,
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
