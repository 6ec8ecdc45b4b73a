"""Two-tailed paired Student's t-test between two runs (X-Cross §2.10, MoLoRec §3.7).

The pairs are the evaluated examples: both runs must have ranked exactly the same examples,
matched on (user, scope, position). A per-example metric (e.g. MRR, HR@1) is the paired sample:
d_i = metric_A(i) - metric_B(i), t = mean(d) / (sd(d) / sqrt(n)), sd with n - 1 degrees of freedom,
p = 2 * P(T_{n-1} >= |t|).

Degenerate case: when every difference is zero, sd = 0 and t = 0/0. The runs agree on every
example, so there is no evidence of a difference at all: we return t = 0, p = 1 (scipy would give
NaN, which a "p < 0.05" check silently treats as "not significant" anyway, but NaN poisons tables).
When all differences are equal but non-zero, t = ±inf and p = 0: a perfectly consistent shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy import stats

from recplat.errors import DataError
from recplat.eval.metrics import MetricSpec, parse_metric
from recplat.eval.results import KEY_COLUMNS


@dataclass(frozen=True)
class PairedTTest:
    """t statistic and two-sided p of run A vs run B; mean_diff = mean(A - B) over n pairs."""

    t: float
    p: float
    mean_diff: float
    n: int
    metric: str | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p < alpha


def paired_t_test(values_a, values_b, metric: str | None = None) -> PairedTTest:
    """Paired t-test on two aligned arrays of per-example values (same order, same length)."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"paired samples must be two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    n = len(a)
    if n < 2:
        raise DataError(f"a paired t-test needs at least 2 pairs, got {n}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise DataError("paired t-test: NaN among the per-example values")
    diff = a - b
    mean_diff = float(diff.mean())
    if np.all(diff == diff[0]):  # zero variance: t is 0/0 or ±x/0
        if diff[0] == 0:
            return PairedTTest(t=0.0, p=1.0, mean_diff=0.0, n=n, metric=metric)
        return PairedTTest(t=math.copysign(math.inf, mean_diff), p=0.0, mean_diff=mean_diff, n=n, metric=metric)
    res = stats.ttest_rel(a, b)
    return PairedTTest(t=float(res.statistic), p=float(res.pvalue), mean_diff=mean_diff, n=n, metric=metric)


def align_on_keys(table_a: pa.Table, table_b: pa.Table, keys=KEY_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (idx_a, idx_b) pairing the rows of two tables on `keys`, sorted by key.

    Raises DataError if a key is missing, duplicated, or present in one table only.
    """
    keys = list(keys)
    frames = []
    for label, table in (("A", table_a), ("B", table_b)):
        missing = [k for k in keys if k not in table.column_names]
        if missing:
            raise DataError(f"run {label}: key column(s) {missing} missing; it has {table.column_names}")
        df = table.select(keys).to_pandas()
        dupes = df[df.duplicated(keys, keep=False)]
        if len(dupes):
            raise DataError(f"run {label}: {len(dupes)} rows share a key, e.g. {tuple(dupes.iloc[0])}")
        df[f"_row_{label}"] = np.arange(len(df))
        frames.append(df)
    merged = frames[0].merge(frames[1], on=keys, how="outer", indicator=True).sort_values(keys)
    only_a, only_b = merged[merged["_merge"] == "left_only"], merged[merged["_merge"] == "right_only"]
    if len(only_a) or len(only_b):
        parts = []
        for label, only in (("A", only_a), ("B", only_b)):
            if len(only):
                parts.append(f"{len(only)} key(s) only in run {label}, e.g. {tuple(only[keys].iloc[0])}")
        raise DataError(
            f"the two runs ranked different examples ({'; '.join(parts)}): a paired test needs the same set"
        )
    return merged["_row_A"].to_numpy(np.int64), merged["_row_B"].to_numpy(np.int64)


def compare_runs(
    ranks_a: pa.Table, ranks_b: pa.Table, metric: str | MetricSpec, keys=KEY_COLUMNS
) -> PairedTTest:
    """Paired t-test of `metric` between two ranks tables (ranks.parquet from results.py).

    Each table needs the `keys` columns and `rank`; rows are matched on the keys, not on order.
    """
    spec = parse_metric(metric)
    for label, t in (("A", ranks_a), ("B", ranks_b)):
        if "rank" not in t.column_names:
            raise DataError(f"run {label}: no 'rank' column; it has {t.column_names}")
    ia, ib = align_on_keys(ranks_a, ranks_b, keys)
    va = spec.per_example(ranks_a["rank"].to_numpy()[ia])
    vb = spec.per_example(ranks_b["rank"].to_numpy()[ib])
    return paired_t_test(va, vb, metric=spec.name)


def compare_metric(ranks_ours, ranks_theirs, metric: str | MetricSpec) -> dict:
    """One metric of two runs on the same examples (aligned per-example ranks): both means, the
    relative difference ours / theirs - 1 (LLM-Rec Fig. 5's relative improvement) and the two-tailed
    paired t-test's p (None with fewer than 2 pairs). The one run comparison every recipe reports."""
    spec = parse_metric(metric)
    a, b = spec.per_example(np.asarray(ranks_ours)), spec.per_example(np.asarray(ranks_theirs))
    ours, theirs = (float(a.mean()), float(b.mean())) if len(a) else (None, None)
    return {"ours": ours, "theirs": theirs, "relative": ours / theirs - 1 if theirs else None,
            "p": paired_t_test(a, b).p if len(a) >= 2 else None}


def compare_with_run(results, other_dir) -> list[dict]:
    """Evaluation results (EvalResults) against another run's `<other_dir>/test` on the same
    examples, matched on the key columns: per result row (overall, per domain, per segment) and
    metric, `compare_metric`'s numbers."""
    from pathlib import Path

    from recplat.eval.results import OVERALL, load_results

    other = load_results(Path(other_dir) / "test")
    ia, ib = align_on_keys(results.per_example, other.per_example)
    ours, theirs = results.per_example["rank"].to_numpy()[ia], other.per_example["rank"].to_numpy()[ib]
    rows = []
    for row in results.rows:
        if row["group"] == OVERALL:
            select = np.ones(len(ia), dtype=bool)
        else:
            select = np.asarray(results.per_example[row["group"]].to_pylist(), dtype=object)[ia] == row["value"]
        out = {"group": row["group"], "value": row["value"], "n": int(select.sum())}
        for name in results.metrics:
            if name in other.metrics:
                out[name] = compare_metric(ours[select], theirs[select], name)
        rows.append(out)
    return rows
