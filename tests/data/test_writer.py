"""A truncated Parquet file of a prepared dataset is named in one line (issue 19 item 11)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from recplat.data.dataset import PreparedDataset
from recplat.data.writer import check_parquet_files, read_table_dir
from recplat.errors import DataError
from recplat.storage import write_parquet_atomic


def _dataset(root):
    write_parquet_atomic(root / "items.parquet", pa.table({"item_idx": [1, 2], "title": ["a", "b"],
                                                           "domain": ["Books", "Books"]}))
    part = root / "examples" / "train" / "part-00001.parquet"
    write_parquet_atomic(part, pa.table({"user": ["u"] * 500, "target": list(range(500))}))
    (root / "manifest.json").write_text(json.dumps({"format": "recplat-dataset/1"}))
    return part


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_part_file_is_named_when_the_dataset_opens(tmp_path):
    part = _dataset(tmp_path / "ds")
    assert PreparedDataset.open(tmp_path / "ds").items.num_rows == 2
    assert check_parquet_files(tmp_path / "ds") == 2
    _truncate(part)
    with pytest.raises(DataError) as info:
        PreparedDataset.open(tmp_path / "ds")
    message = str(info.value)
    assert message.startswith(f"{part}: not a readable Parquet file") and "\n" not in message
    with pytest.raises(DataError, match="part-00001.parquet: not a readable Parquet file"):
        read_table_dir(part.parent)


def test_a_truncated_items_file_fails_the_cli_with_one_line(tmp_path, monkeypatch, capsys):
    import recplat.runtime
    from recplat.cli import main

    monkeypatch.setattr(recplat.runtime, "init_ray", lambda *a, **k: None)  # popularity needs no Ray
    _dataset(tmp_path / "ds")
    _truncate(tmp_path / "ds" / "items.parquet")
    code = main(["train", "popularity", f"data.dataset={tmp_path / 'ds'}", f"out={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"recplat: error: {tmp_path / 'ds' / 'items.parquet'}: not a readable Parquet file")
    assert "\n" not in err and "Traceback" not in err
