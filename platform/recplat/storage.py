"""Atomic outputs: everything is written under a temporary name and renamed into place.

An interrupted run therefore never leaves a file or a dataset directory that looks complete.
A folder `atomic_dir` writes carries a mark (`.recplat`), and `atomic_dir` replaces or deletes
only marked folders (or datasets whose manifest says recplat wrote them): never a user's folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from recplat.errors import RecplatError

MARK = ".recplat"  # in every folder atomic_dir writes (and in its partial folders while it writes)
DATASET_FORMAT = "recplat-dataset/"  # manifest.json "format" of a prepared dataset (data/pipeline.py)
# Errors of the disk, not of the program: they become one line naming the folder.
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.ENOTDIR: "a path component is a file, not a folder",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}

# One set of Parquet options for every table we write: the same table gives the same bytes.
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_parquet_atomic(path: str | Path, table: pa.Table) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def written_by_recplat(path: str | Path) -> bool:
    """True for a folder recplat wrote: it has atomic_dir's mark, or it is a prepared dataset (its
    manifest.json names the recplat dataset format; datasets from before the mark have no mark)."""
    path = Path(path)
    if (path / MARK).is_file():
        return True
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(DATASET_FORMAT)


def disk_error(exc: BaseException, where: str | Path) -> RecplatError | None:
    """A one-line RecplatError for a disk-level OSError (full, read-only, a file where a folder
    should be ...) found in `exc` or what it wraps (Ray task errors carry the worker's as `cause`);
    None for any other error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
            name = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            return RecplatError(f"{where}: cannot write: {_DISK_ERRORS[exc.errno]}{name}")
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename.

    - `path` is locked while the block runs (`.NAME.lock` beside it): a second writer of the same
      folder fails at once instead of silently replacing the first one's result;
    - an existing `path` is replaced only with `overwrite`, and only when recplat wrote it;
    - partial folders of an earlier, killed writer of `path` (`.NAME.partial-*`) are removed;
    - on an exception the temporary directory is removed and `path` is left as it was; a full or
      read-only disk becomes a one-line RecplatError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
    except FileExistsError:  # mkdir met a file where a folder should be
        raise RecplatError(f"{path}: cannot write: {_DISK_ERRORS[errno.ENOTDIR]}") from None
    except OSError as exc:
        raise (disk_error(exc, path) or exc) from None
    try:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
        if path.exists():
            check_replaceable(path)
        _remove_leftovers(path)
        tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
            _write_mark(tmp)
            yield tmp
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(path, old)
            os.replace(tmp, path)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            error = disk_error(exc, path)
            if error is not None:
                raise error from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        _unlock(lock)


def check_replaceable(path: str | Path) -> None:
    """Refuse to replace a folder recplat did not write (a user's notes, another tool's output)."""
    path = Path(path)
    if not path.is_dir():
        raise RecplatError(f"{path}: exists and is not a folder; refusing to replace it")
    if not written_by_recplat(path):
        raise RecplatError(
            f"{path}: not a folder recplat wrote (no {MARK} mark, no dataset manifest.json); refusing to "
            "replace it: move it away or choose another output folder"
        )


def _write_mark(folder: Path) -> None:
    (folder / MARK).write_text("written by recplat: `--overwrite` may replace this folder\n", encoding="utf-8")


def _remove_leftovers(path: Path) -> None:
    """The partial / old folders a killed writer of `path` left (we hold `path`'s lock, so no live
    writer owns them); only marked ones: a folder recplat did not make stays."""
    for pattern in (f".{path.name}.partial-*", f".{path.name}.old-*"):
        for leftover in path.parent.glob(pattern):
            if leftover.is_dir() and written_by_recplat(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def _lock(path: Path) -> tuple[int, Path]:
    """An exclusive, non-blocking flock on `.NAME.lock` beside `path` (the kernel releases it when
    the process dies, so a killed writer leaves no stale lock)."""
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RecplatError(
                f"{path}: another recplat process (pid {holder}) is writing this folder now; wait for it "
                f"to finish or choose another output folder (lock: {lock_path})"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its previous holder removed while we opened it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd, lock_path
        os.close(fd)


def _unlock(lock: tuple[int, Path]) -> None:
    # Remove the file while still holding the lock: a process that opened it meanwhile sees the
    # inode change (the check in _lock) and takes a fresh one.
    fd, lock_path = lock
    try:
        lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)
