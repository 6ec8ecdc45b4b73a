import errno
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.errors import RecplatError
from recplat.storage import MARK, atomic_dir, write_json_atomic, write_parquet_atomic


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
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no partial leftovers, no lock file

    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARK, "b.txt"]


def test_overwrite_replaces_only_folders_recplat_wrote(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    with pytest.raises(RecplatError, match=r"notes: not a folder recplat wrote .*refusing to replace it"):
        with atomic_dir(notes, overwrite=True) as tmp:
            (tmp / "x").write_text("x")
    assert [p.name for p in notes.iterdir()] == ["todo.txt"] and (notes / "todo.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # nothing begun beside it

    # a dataset from before the mark: its manifest says recplat wrote it
    old = tmp_path / "old_ds"
    old.mkdir()
    write_json_atomic(old / "manifest.json", {"format": "recplat-dataset/1"})
    with atomic_dir(old, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("n")
    assert (old / "new.txt").is_file() and not (old / "manifest.json").exists()

    # a manifest of another tool is not recplat's
    other = tmp_path / "other"
    other.mkdir()
    write_json_atomic(other / "manifest.json", {"format": "something-else"})
    with pytest.raises(RecplatError, match="not a folder recplat wrote"):
        with atomic_dir(other, overwrite=True):
            pass


def test_a_second_writer_of_the_same_folder_fails_clearly(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target) as first:
        (first / "who").write_text("first")
        # another process trying the same folder meanwhile
        code = ("import sys; from recplat.storage import atomic_dir\n"
                "from recplat.errors import RecplatError\n"
                f"try:\n    with atomic_dir({str(target)!r}, overwrite=True) as t: (t / 'who').write_text('second')\n"
                "except RecplatError as e:\n    print(e); sys.exit(2)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert done.returncode == 2, done.stderr
        assert f"another recplat process (pid {os.getpid()}) is writing this folder" in done.stdout
        with pytest.raises(RecplatError, match="is writing this folder"):  # this process too
            with atomic_dir(target, overwrite=True):
                pass
    assert (target / "who").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    with atomic_dir(target, overwrite=True) as tmp:  # the lock went with the first writer
        (tmp / "who").write_text("third")
    assert (target / "who").read_text() == "third"


def test_a_killed_writers_partial_folder_is_removed_by_the_next(tmp_path):
    target = tmp_path / "ds"
    code = ("import os, signal; from recplat.storage import atomic_dir\n"
            f"with atomic_dir({str(target)!r}) as t:\n"
            "    (t / 'half.parquet').write_bytes(b'x' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -9
    partials = [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.partial-")]
    assert len(partials) == 1
    foreign = tmp_path / ".ds.partial-mine"  # looks like one, but recplat did not make it
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep")
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.partial-mine", "ds"]
    assert (foreign / "keep.txt").read_text() == "keep"


def test_a_full_disk_is_one_line_naming_the_folder(tmp_path):
    target = tmp_path / "ds"
    with pytest.raises(RecplatError) as info:
        with atomic_dir(target) as tmp:
            try:  # how Ray re-raises a worker's error: wrapped, the original as the cause
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "part-0.parquet"))
            except OSError as exc:
                raise RuntimeError("task failed") from exc
    assert str(info.value).startswith(f"{target}: cannot write: no space left on the device")
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_parent_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecplatError, match="a path component is a file, not a folder"):
        with atomic_dir(tmp_path / "file" / "ds"):
            pass


def test_atomic_files_are_deterministic(tmp_path):
    table = pa.table({"x": [3, 1, 2], "y": ["a", "b", None]})
    write_parquet_atomic(tmp_path / "1.parquet", table)
    write_parquet_atomic(tmp_path / "2.parquet", table)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()
    assert pq.read_table(tmp_path / "1.parquet").equals(table)
    write_json_atomic(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.parquet", "2.parquet", "m.json"]
