"""Same/Mix/Diff and sparse/medium/dense on hand-built histories."""

import numpy as np
import pyarrow as pa
import pytest

from recplat.data import schema
from recplat.errors import ConfigError, DataError
from recplat.eval.segments import (
    ActivityThresholds,
    activity_segments,
    classify_history_domains,
    history_domain_segments,
    history_lengths,
    item_domain_lookup,
)

# item_idx 1-3 Arts, 4-6 Office, 7 Pantry (not in order, and item 8 absent on purpose)
ITEMS = pa.table({"item_idx": pa.array([4, 1, 7, 2, 5, 3, 6], pa.int32()),
                  "domain": ["Office", "Arts", "Pantry", "Arts", "Office", "Arts", "Office"],
                  "title": ["t"] * 7})


def examples(histories, target_domains):
    n = len(histories)
    return pa.table({"user": [f"u{i}" for i in range(n)], "scope": [schema.MIXED_SCOPE] * n, "split": ["test"] * n,
                     "position": pa.array([len(h) for h in histories], pa.int32()),
                     "history": pa.array(histories, pa.list_(pa.int32())), "target": pa.array([1] * n, pa.int32()),
                     "target_domain": target_domains, "candidates": pa.array([[]] * n, pa.list_(pa.int32()))})


def test_item_domain_lookup():
    lookup, names = item_domain_lookup(ITEMS)
    assert names == ["Arts", "Office", "Pantry"]
    np.testing.assert_array_equal(lookup, [-1, 0, 0, 0, 1, 1, 1, 2])


def test_same_mix_diff_by_hand():
    ex = examples(
        [[1, 2, 3], [1, 4], [4, 5, 7], [], [6], [2]],
        ["Arts", "Arts", "Arts", "Arts", "Office", "Pantry"],
    )
    got = history_domain_segments(ex, ITEMS)
    assert got.tolist() == ["same", "mix", "diff", "empty", "same", "diff"]


def test_only_the_last_window_items_count():
    # Office item first, then 10 Arts items: Mix over the whole history, Same over the last 10
    ex = examples([[4] + [1, 2, 3] * 3 + [1]], ["Arts"])
    assert history_domain_segments(ex, ITEMS, window=10).tolist() == ["same"]
    assert history_domain_segments(ex, ITEMS, window=None).tolist() == ["mix"]
    assert history_domain_segments(ex, ITEMS, window=1).tolist() == ["same"]
    with pytest.raises(ConfigError, match="window"):
        history_domain_segments(ex, ITEMS, window=0)


def test_unknown_target_domain_is_diff_and_unknown_items_fail():
    assert history_domain_segments(examples([[1]], ["Games"]), ITEMS).tolist() == ["diff"]
    with pytest.raises(DataError, match="item_idx 8"):
        history_domain_segments(examples([[1, 8]], ["Arts"]), ITEMS)
    with pytest.raises(DataError, match="item_idx 0"):
        history_domain_segments(examples([[0, 1]], ["Arts"]), ITEMS)


def test_classify_counts():
    assert classify_history_domains([0, 2, 1, 0], [0, 2, 3, 3]).tolist() == ["empty", "same", "mix", "diff"]


def test_activity_segments_cprec_thresholds():
    # CPRec Table 5: sparse [3,5), medium [5,9), dense [9,10]
    lengths = np.array([3, 4, 5, 8, 9, 10])
    assert activity_segments(lengths).tolist() == ["sparse", "sparse", "medium", "medium", "dense", "dense"]
    custom = ActivityThresholds(medium_from=2, dense_from=4)
    assert activity_segments([1, 2, 3, 4], custom).tolist() == ["sparse", "medium", "medium", "dense"]
    np.testing.assert_array_equal(history_lengths(examples([[1, 2], [], [3]], ["Arts"] * 3)), [2, 0, 1])
    with pytest.raises(ConfigError, match="medium_from=9, dense_from=5"):
        ActivityThresholds(medium_from=9, dense_from=5)
