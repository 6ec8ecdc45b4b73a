"""Ranking metrics for one relevant item among stored candidates.

Every method is scored the same way (LLM-Rec §1.7, X-Cross §2.10 in docs/papers.md): the positive
and its stored negatives get a score, the positive's rank among them is computed once, and every
metric is a function of that rank:

* HR@K = Recall@K = 1 if rank <= K (one relevant item, so hit rate and recall coincide);
* NDCG@K = 1 / log2(rank + 1) if rank <= K else 0 (the ideal DCG is 1: one relevant item);
* MRR = 1 / rank over the full candidate list (X-Cross: "mean 1/rank_of_positive");
  MRR@K sets it to 0 beyond K when asked for.

Ties are broken PESSIMISTICALLY: rank = 1 + #candidates whose score is >= the positive's. A model
that scores everything equal (a collapsed encoder, a constant output, all-NaN logits) then gets the
worst rank instead of a free hit, and a model cannot gain from quantised or saturated scores. The
optimistic (`>`) and random tie-breaks both reward degenerate models; the pessimistic one is a
lower bound that is the same on every run and device. NaN is treated the same way: a NaN candidate
score beats the positive, a NaN positive score loses to every candidate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from recplat.errors import ConfigError

# Accepted metric families and their aliases; `hit`, `hr` and `recall` are one metric here.
_FAMILIES = {"hit": "hit", "hr": "hit", "recall": "hit", "ndcg": "ndcg", "mrr": "mrr"}
_NAME = re.compile(r"^\s*([a-z]+)\s*(?:@\s*(\d+))?\s*$")


def pessimistic_ranks(pos_scores, cand_scores, mask=None):
    """1-based rank of the positive among its candidates, ties counted against the positive.

    `pos_scores` [N], `cand_scores` [N, C], optional boolean `mask` [N, C] (True = a real candidate;
    padded slots are ignored whatever their score). Works unchanged on numpy arrays and on torch
    tensors (the same expression is valid for both) and returns int64 of the same library.
    """
    # `~(c < p)` is `c >= p` except that any comparison with NaN counts as a win for the candidate.
    beats = ~(cand_scores < pos_scores[:, None])
    if mask is not None:
        beats = beats & mask
    return 1 + beats.sum(1)


def hit_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """HR@K (= Recall@K with one relevant item) per example: 1.0 if rank <= k else 0.0."""
    return (np.asarray(ranks) <= k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K per example with one relevant item: 1 / log2(rank + 1) if rank <= k else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def mrr(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
    """Reciprocal rank per example (full list); with `k`, MRR@K (0 beyond rank k)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    rr = 1.0 / ranks
    return rr if k is None else np.where(ranks <= k, rr, 0.0)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: `family` in {hit, ndcg, mrr}, `k` (None only for full MRR).

    `name` is the label used in results, as written by the user but normalised to lower case
    without spaces ("Recall@10" -> "recall@10"), so tables read like the paper being reproduced.
    """

    name: str
    family: str
    k: int | None

    def per_example(self, ranks: np.ndarray) -> np.ndarray:
        """The metric's value for each example (float64); the reported number is the mean."""
        if self.family == "hit":
            return hit_at_k(ranks, self.k)
        if self.family == "ndcg":
            return ndcg_at_k(ranks, self.k)
        return mrr(ranks, self.k)


def parse_metric(name: str | MetricSpec) -> MetricSpec:
    """Parse "recall@10", "hit@3", "hr@1", "ndcg@10", "mrr" or "mrr@10" (case-insensitive)."""
    if isinstance(name, MetricSpec):
        return name
    m = _NAME.match(str(name).lower())
    family = _FAMILIES.get(m.group(1)) if m else None
    if family is None:
        raise ConfigError(
            f"unknown metric {name!r}: expected one of hit@K, hr@K, recall@K, ndcg@K, mrr, mrr@K"
        )
    k = int(m.group(2)) if m.group(2) is not None else None
    if family != "mrr" and k is None:
        raise ConfigError(f"metric {name!r} needs a cut-off, e.g. {m.group(1)}@10")
    if k is not None and k < 1:
        raise ConfigError(f"metric {name!r}: the cut-off must be >= 1, got {k}")
    label = m.group(1) + (f"@{k}" if k is not None else "")
    return MetricSpec(name=label, family=family, k=k)


def parse_metrics(names: Iterable[str | MetricSpec]) -> list[MetricSpec]:
    """Parse several names; a repeated label is an error (it would overwrite a result column)."""
    specs = [parse_metric(n) for n in names]
    labels = [s.name for s in specs]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"metrics listed twice: {dupes}")
    if not specs:
        raise ConfigError("no metrics given")
    return specs


def metric_values(ranks: np.ndarray, metrics: Iterable[str | MetricSpec]) -> dict[str, np.ndarray]:
    """Per-example values of each metric, keyed by the metric's label."""
    return {s.name: s.per_example(ranks) for s in parse_metrics(metrics)}


def mean_metrics(ranks: np.ndarray, metrics: Iterable[str | MetricSpec]) -> dict[str, float]:
    """The mean of each metric over `ranks` (NaN for an empty set of examples)."""
    ranks = np.asarray(ranks)
    return {
        name: (float(v.mean()) if len(v) else float("nan"))
        for name, v in metric_values(ranks, metrics).items()
    }
