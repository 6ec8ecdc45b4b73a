import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.storage import atomic_dir, write_json_atomic, write_parquet_atomic


def test_atomic_dir_success_and_failure(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
        assert not target.exists()  # nothing visible until the block succeeds
    assert (target / "a.txt").read_text() == "one"

    with pytest.raises(RuntimeError):
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "one"  # the old complete directory is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no partial leftovers

    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_atomic_files_are_deterministic(tmp_path):
    table = pa.table({"x": [3, 1, 2], "y": ["a", "b", None]})
    write_parquet_atomic(tmp_path / "1.parquet", table)
    write_parquet_atomic(tmp_path / "2.parquet", table)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()
    assert pq.read_table(tmp_path / "1.parquet").equals(table)
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.parquet", "2.parquet", "m.json"]
