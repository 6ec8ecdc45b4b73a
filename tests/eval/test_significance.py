"""Paired t-test against a hand computation; key matching; degenerate cases."""

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from recplat.errors import DataError
from recplat.eval.significance import align_on_keys, compare_runs, paired_t_test


def test_t_statistic_by_hand():
    a = np.array([0.5, 1.0, 0.25, 1.0, 0.0])
    b = np.array([0.25, 1.0, 0.5, 0.0, 0.0])
    d = a - b  # 0.25, 0, -0.25, 1, 0
    mean = d.sum() / 5  # 0.2
    sd = math.sqrt(((d - mean) ** 2).sum() / 4)
    t = mean / (sd / math.sqrt(5))
    res = paired_t_test(a, b, metric="mrr")
    assert res.t == pytest.approx(t) and res.mean_diff == pytest.approx(0.2) and res.n == 5
    assert res.p == pytest.approx(2 * stats.t.sf(abs(t), df=4))
    assert res.metric == "mrr" and res.significant(0.05) is (res.p < 0.05)


def test_degenerate_differences():
    same = paired_t_test([1, 0, 1], [1, 0, 1])
    assert (same.t, same.p, same.mean_diff) == (0.0, 1.0, 0.0)
    shifted = paired_t_test([1.0, 0.5, 0.75], [0.5, 0.0, 0.25])
    assert shifted.t == math.inf and shifted.p == 0.0 and shifted.mean_diff == pytest.approx(0.5)
    with pytest.raises(DataError, match="at least 2 pairs"):
        paired_t_test([1.0], [0.0])
    with pytest.raises(DataError, match="equal length"):
        paired_t_test([1.0, 2.0], [0.0])


def ranks_table(users, positions, ranks):
    return pa.table({"user": users, "scope": ["__mixed__"] * len(users),
                     "position": pa.array(positions, pa.int32()), "rank": pa.array(ranks, pa.int64())})


def test_compare_runs_matches_on_keys_not_order():
    a = ranks_table(["u1", "u2", "u3", "u1"], [3, 4, 5, 9], [1, 2, 10, 4])
    b = ranks_table(["u3", "u1", "u2", "u1"], [5, 9, 4, 3], [1, 4, 3, 2])  # shuffled
    res = compare_runs(a, b, "MRR")
    # aligned by key: u1/3: 1 vs 1/2; u1/9: 1/4 vs 1/4; u2/4: 1/2 vs 1/3; u3/5: 1/10 vs 1
    expected = paired_t_test([1, 1 / 4, 1 / 2, 1 / 10], [1 / 2, 1 / 4, 1 / 3, 1.0])
    assert res.t == pytest.approx(expected.t) and res.p == pytest.approx(expected.p) and res.metric == "mrr"
    ia, ib = align_on_keys(a, b)
    assert a.take(ia)["user"].to_pylist() == b.take(ib)["user"].to_pylist() == ["u1", "u1", "u2", "u3"]


def test_different_key_sets_fail_clearly():
    a = ranks_table(["u1", "u2", "u3"], [3, 4, 5], [1, 2, 3])
    b = ranks_table(["u1", "u2", "u4"], [3, 4, 5], [1, 2, 3])
    with pytest.raises(DataError, match=r"1 key\(s\) only in run A, e.g. \('u3'.*1 key\(s\) only in run B"):
        compare_runs(a, b, "hit@1")
    dup = ranks_table(["u1", "u1", "u2"], [3, 3, 4], [1, 2, 3])
    with pytest.raises(DataError, match="run B: 2 rows share a key"):
        compare_runs(a, dup, "hit@1")
    with pytest.raises(DataError, match="no 'rank' column"):
        compare_runs(a, b.drop_columns(["rank"]), "hit@1")
