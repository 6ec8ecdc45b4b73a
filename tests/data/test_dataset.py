"""Reading a prepared dataset directory (recplat/data/dataset.py)."""

import numpy as np
import pyarrow as pa
import pytest

from recplat.data.dataset import PreparedDataset, padded_lists
from recplat.errors import DataError

LISTS = pa.array([[1, 2, 3], [], [4], [5, 6, 7, 8, 9]], pa.list_(pa.int32()))


def test_padded_lists_right_keeps_most_recent():
    assert padded_lists(LISTS, 3).tolist() == [[1, 2, 3], [0, 0, 0], [0, 0, 4], [7, 8, 9]]


def test_padded_lists_left_keeps_first_and_default_width():
    assert padded_lists(LISTS, 2, align="left", pad=-1).tolist() == [[1, 2], [-1, -1], [4, -1], [5, 6]]
    assert padded_lists(pa.chunked_array([LISTS])).shape == (4, 5)


def test_open_requires_a_complete_dataset(tmp_path):
    with pytest.raises(DataError, match="not a prepared dataset .*recplat prepare"):
        PreparedDataset.open(tmp_path)


def test_titles_indexed_by_item_idx(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "manifest.json").write_text("{}")
    pq.write_table(pa.table({"item_idx": pa.array([2, 1], pa.int32()), "item": ["b", "a"], "domain": ["X", "Y"],
                             "title": ["Bee", "Ay"]}), tmp_path / "items.parquet")
    ds = PreparedDataset.open(tmp_path)
    assert ds.titles.tolist() == ["", "Ay", "Bee"] and ds.item_domains.tolist() == ["", "Y", "X"]
    assert ds.domains == ["X", "Y"]
    with pytest.raises(DataError, match="unknown split"):
        ds.examples("dev")
    with pytest.raises(DataError, match="no rendered text"):
        ds.rendered("llmrec", "train")
