"""Metrics against hand-computed values, ties included (ties count against the positive)."""

import math

import numpy as np
import pytest
import torch

from recplat.errors import ConfigError
from recplat.eval.metrics import (
    MetricSpec,
    hit_at_k,
    mean_metrics,
    metric_values,
    mrr,
    ndcg_at_k,
    parse_metric,
    parse_metrics,
    pessimistic_ranks,
)

POS = np.array([0.5, 0.9, 0.2, 0.7])
CAND = np.array(
    [
        [0.5, 0.5, 0.1, 0.0],  # tied with 2 candidates -> rank 3
        [0.1, 0.2, 0.3, 0.4],  # strictly best -> rank 1
        [0.3, 0.4, 0.5, 0.6],  # strictly worst -> rank 5
        [0.8, 0.7, 0.1, 0.2],  # one above, one tied -> rank 3
    ]
)


def test_ties_count_against_the_positive():
    np.testing.assert_array_equal(pessimistic_ranks(POS, CAND), [3, 1, 5, 3])


def test_all_equal_scores_get_the_worst_rank():
    ranks = pessimistic_ranks(np.zeros(3), np.zeros((3, 7)))
    np.testing.assert_array_equal(ranks, [8, 8, 8])
    assert hit_at_k(ranks, 1).sum() == 0


def test_nan_scores_never_help_the_positive():
    pos = np.array([np.nan, 1.0])
    cand = np.array([[0.0, 0.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(pessimistic_ranks(pos, cand), [3, 2])


def test_mask_ignores_padded_slots():
    mask = np.array([[True, False, True, False], [True] * 4, [True, True, False, False], [False, True, True, True]])
    # row 0: one tie left; row 2: two higher left; row 3: only the tie at 0.7 left
    np.testing.assert_array_equal(pessimistic_ranks(POS, CAND, mask), [2, 1, 3, 2])


def test_torch_and_numpy_agree():
    t = pessimistic_ranks(torch.tensor(POS), torch.tensor(CAND))
    assert t.dtype == torch.int64
    np.testing.assert_array_equal(t.numpy(), pessimistic_ranks(POS, CAND))


def test_metric_values_by_hand():
    ranks = np.array([3, 1, 5, 3])
    np.testing.assert_array_equal(hit_at_k(ranks, 1), [0, 1, 0, 0])
    np.testing.assert_array_equal(hit_at_k(ranks, 3), [1, 1, 0, 1])
    np.testing.assert_allclose(ndcg_at_k(ranks, 3), [0.5, 1.0, 0.0, 0.5])  # 1/log2(4) = 0.5
    np.testing.assert_allclose(ndcg_at_k(np.array([2, 5]), 10), [1 / math.log2(3), 1 / math.log2(6)])
    np.testing.assert_allclose(mrr(ranks), [1 / 3, 1.0, 0.2, 1 / 3])
    np.testing.assert_allclose(mrr(ranks, k=3), [1 / 3, 1.0, 0.0, 1 / 3])


def test_means_by_name():
    got = mean_metrics(np.array([3, 1, 5, 3]), ["Recall@1", "hit@3", "ndcg@3", "mrr", "mrr@3"])
    assert got == pytest.approx(
        {"recall@1": 0.25, "hit@3": 0.75, "ndcg@3": 0.5, "mrr": (1 / 3 + 1 + 0.2 + 1 / 3) / 4, "mrr@3": (2 / 3 + 1) / 4}
    )
    # NDCG@1 == HR@1 with one relevant item
    vals = metric_values(np.array([1, 2, 7]), ["ndcg@1", "hr@1"])
    np.testing.assert_array_equal(vals["ndcg@1"], vals["hr@1"])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("recall@10", MetricSpec("recall@10", "hit", 10)),
        (" NDCG @ 10 ", MetricSpec("ndcg@10", "ndcg", 10)),
        ("hit@3", MetricSpec("hit@3", "hit", 3)),
        ("MRR", MetricSpec("mrr", "mrr", None)),
        ("mrr@10", MetricSpec("mrr@10", "mrr", 10)),
    ],
)
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize(
    "name, fragment",
    [("auc", "unknown metric"), ("ndcg", "needs a cut-off"), ("hit@0", ">= 1"), ("recall@x", "unknown")],
)
def test_parse_metric_errors(name, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_metric(name)


def test_parse_metrics_rejects_duplicates_and_empty():
    with pytest.raises(ConfigError, match="twice"):
        parse_metrics(["hit@1", "HIT@1"])
    with pytest.raises(ConfigError, match="no metrics"):
        parse_metrics([])
