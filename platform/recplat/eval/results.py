"""Evaluation results: per-example ranks plus metric means overall, per domain and per segment.

LLM-Rec reports every metric per target domain and on all domains together (docs/papers.md §1.7),
Figure 5 per Same/Mix/Diff segment (§1.9); X-Cross per target domain (§2.10). `evaluate_ranks`
computes all of those rows from one rank per example. `EvalResults.write` stores

* `ranks.parquet` — one row per example (user, scope, position, target_domain, rank, + split and
  segment labels): what a paired t-test between two runs needs (significance.py);
* `metrics.json` — the aggregate rows; written last, so a directory with it is complete.

Both are written atomically (recplat.storage). Metric values are fractions; `format_table` prints %.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recplat.errors import DataError
from recplat.eval.metrics import MetricSpec, metric_values, parse_metrics
from recplat.storage import write_json_atomic, write_parquet_atomic

KEY_COLUMNS = ("user", "scope", "position")
RANKS_FILE, METRICS_FILE = "ranks.parquet", "metrics.json"
OVERALL = "all"
# Display order of known segment labels; anything else sorts alphabetically after them.
_LABEL_ORDER = {v: i for i, v in enumerate(["same", "mix", "diff", "empty", "sparse", "medium", "dense"])}


@dataclass
class EvalResults:
    """`rows`: dicts {group, value, n, <metric>: mean}; group "all" is the overall row."""

    metrics: list[str]
    rows: list[dict]
    per_example: pa.Table = field(repr=False)

    def row(self, group: str, value: str = OVERALL) -> dict:
        for r in self.rows:
            if r["group"] == group and r["value"] == value:
                return r
        raise KeyError(f"no result row for {group}={value!r}; groups: {sorted({r['group'] for r in self.rows})}")

    @property
    def overall(self) -> dict[str, float]:
        r = self.row(OVERALL)
        return {m: r[m] for m in self.metrics}

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "n_examples": self.per_example.num_rows, "rows": self.rows}

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ranks.parquet then metrics.json (each atomically) under `directory`."""
        directory = Path(directory)
        ranks_path, metrics_path = directory / RANKS_FILE, directory / METRICS_FILE
        write_parquet_atomic(ranks_path, self.per_example)
        write_json_atomic(metrics_path, self.to_json())
        return ranks_path, metrics_path

    def format_table(self) -> str:
        return format_table(self)


def evaluate_ranks(
    examples: pa.Table,
    ranks,
    metrics: Iterable[str | MetricSpec],
    by: Iterable[str] = ("target_domain",),
    segments: Mapping[str, Iterable] | None = None,
) -> EvalResults:
    """Metric means overall, per value of each `by` column, and per label of each segment.

    `examples` is the evaluated examples table (schema.EXAMPLES or at least the key columns,
    target_domain and the `by` columns), `ranks` one rank per row in the same order, `segments`
    name -> per-example labels (e.g. {"history_domains": history_domain_segments(...)}).
    """
    ranks = np.asarray(ranks)
    specs = parse_metrics(metrics)
    by, segments = list(by), dict(segments or {})
    n = examples.num_rows
    if ranks.shape != (n,):
        raise DataError(f"got {ranks.shape[0] if ranks.ndim else 'a scalar'} ranks for {n} examples")
    if n and (not np.issubdtype(ranks.dtype, np.integer) or ranks.min() < 1):
        raise DataError("ranks must be integers >= 1 (1 = the positive scored first)")
    needed = [*KEY_COLUMNS, "target_domain", *by]
    missing = [c for c in dict.fromkeys(needed) if c not in examples.column_names]
    if missing:
        raise DataError(f"examples table lacks column(s) {missing}; it has {examples.column_names}")

    columns = {c: examples[c] for c in [*KEY_COLUMNS, "split", "target_domain"] if c in examples.column_names}
    columns["rank"] = pa.array(ranks.astype(np.int64))
    labels: dict[str, np.ndarray] = {}
    for name, seg in segments.items():
        seg = np.asarray(list(seg) if not isinstance(seg, np.ndarray) else seg).astype(str)
        if seg.shape != (n,):
            raise DataError(f"segment {name!r} has {len(seg)} labels for {n} examples")
        if name in columns:
            raise DataError(f"segment name {name!r} collides with a column of the ranks table")
        labels[name] = seg
        columns[name] = pa.array(seg, type=pa.string())

    values = metric_values(ranks, specs)
    rows = [_row(OVERALL, OVERALL, np.ones(n, dtype=bool), values)]
    groupings = [(c, np.asarray(examples[c].to_pylist(), dtype=object).astype(str)) for c in by]
    for group, group_labels in [*groupings, *labels.items()]:
        for value in sorted(set(group_labels.tolist()), key=lambda v: (_LABEL_ORDER.get(v, len(_LABEL_ORDER)), v)):
            rows.append(_row(group, value, group_labels == value, values))
    return EvalResults(metrics=[s.name for s in specs], rows=rows, per_example=pa.table(columns))


def _row(group: str, value: str, select: np.ndarray, values: dict[str, np.ndarray]) -> dict:
    k = int(select.sum())
    row = {"group": group, "value": value, "n": k}
    for name, v in values.items():
        row[name] = float(v[select].mean()) if k else None  # None, not NaN: valid JSON
    return row


def load_results(directory: str | Path) -> EvalResults:
    """Read back what `EvalResults.write` wrote."""
    directory = Path(directory)
    metrics_path = directory / METRICS_FILE
    if not metrics_path.exists():
        raise DataError(f"{metrics_path} not found: no complete evaluation results in {directory}")
    obj = json.loads(metrics_path.read_text(encoding="utf-8"))
    return EvalResults(metrics=obj["metrics"], rows=obj["rows"], per_example=pq.read_table(directory / RANKS_FILE))


def format_table(results: EvalResults, percent: bool = True, digits: int = 2) -> str:
    """A fixed-width text table: one line per result row; metrics in % unless `percent=False`."""
    scale = 100.0 if percent else 1.0
    header = ["group", "value", "n", *[m + (" (%)" if percent else "") for m in results.metrics]]
    body = []
    for r in results.rows:
        cells = [str(r["group"]), str(r["value"]), str(r["n"])]
        for m in results.metrics:
            v = r[m]
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.{digits}f}")
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *[line(c) for c in body]])
