"""Evaluation over stored candidates: ranks, metrics, segments, result files, significance.

    metrics.py       pessimistic ranks; HR/Recall@K, NDCG@K, MRR(@K); metric-name parsing
    ranking.py       scores -> ranks: cached item tower, naive re-encoding reference, raw scores
    segments.py      Same/Mix/Diff (LLM-Rec Fig. 5), sparse/medium/dense (CPRec Table 5)
    results.py       evaluate_ranks -> EvalResults (ranks.parquet + metrics.json, printed table)
    significance.py  paired two-tailed t-test between two runs, matched on example keys

`ranking` imports torch, so it is not re-exported here: `from recplat.eval.ranking import ...`.
"""

from recplat.eval.metrics import MetricSpec, mean_metrics, metric_values, parse_metric, parse_metrics, pessimistic_ranks
from recplat.eval.results import EvalResults, evaluate_ranks, format_table, load_results
from recplat.eval.segments import ActivityThresholds, activity_segments, history_domain_segments, history_lengths
from recplat.eval.significance import PairedTTest, align_on_keys, compare_runs, paired_t_test

__all__ = [
    "ActivityThresholds",
    "EvalResults",
    "MetricSpec",
    "PairedTTest",
    "activity_segments",
    "align_on_keys",
    "compare_runs",
    "evaluate_ranks",
    "format_table",
    "history_domain_segments",
    "history_lengths",
    "load_results",
    "mean_metrics",
    "metric_values",
    "paired_t_test",
    "parse_metric",
    "parse_metrics",
    "pessimistic_ranks",
]
