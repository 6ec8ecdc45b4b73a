"""Reading raw dumps line by line: plain or gzip files, numbered lines, rejects, field parsing.

Every reader first tries a fast path (pyarrow over the whole file, see `jsonlines.py` and
`delimited.py`). When that fails, or its rows do not pass the checks, `parse_lines` reads the file
again one line at a time, so that each malformed line is found with its 1-based number and kept
in `rejects` (or, with `strict`, raises DataError("file:line: reason")). For valid input both paths
give the same table. Blank lines are not records.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import schema
from recplat.data.sources import ReadResult, ReadTask
from recplat.errors import DataError

TEXT_LIMIT = 500  # characters of a rejected line kept in rejected.parquet


def open_binary(path: str) -> BinaryIO:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def find_file(directory: str, name: str, what: str, gz: bool = True) -> str:
    """`directory/name`, or `directory/name.gz` when `gz`; DataError naming the path when neither exists."""
    base = Path(directory) / name
    candidates = [base, base.with_name(base.name + ".gz")] if gz else [base]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    also = f" (or {base.name}.gz)" if gz else ""
    raise DataError(f"{base}{also}: {what} not found")


def use_fast_path(task: ReadTask) -> bool:
    """`options["fast"] = False` forces the line-by-line parser (tests compare the two paths)."""
    return bool(task.options.get("fast", True))


class BadRecord(Exception):
    """A malformed record; `reason` is what rejected.parquet records (e.g. "missing_field:asin")."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Rejects:
    """The malformed lines of one file, or a DataError at the first one when `strict`."""

    def __init__(self, file: str, strict: bool):
        self.file, self.strict = str(file), strict
        self.rows: list[tuple[int, str, str]] = []

    def add(self, line: int, reason: str, text: str) -> None:
        if self.strict:
            raise DataError(f"{self.file}:{line}: {reason}")
        self.rows.append((line, reason, text[:TEXT_LIMIT]))

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        lines, reasons, texts = (list(c) for c in zip(*self.rows)) if self.rows else ([], [], [])
        return pa.table(
            {"file": [self.file] * len(lines), "line": lines, "reason": reasons, "text": texts},
            schema=schema.REJECTS,
        )


def parse_lines(
    path: str, parse: Callable[[str], Any], rejects: Rejects, encoding: str = "utf-8", skip: int = 0,
    reject_lines: dict[int, str] | None = None,
) -> list:
    """`parse(text)` for every non-blank line after the first `skip`; a BadRecord becomes a reject.
    `reject_lines` {line number: reason}: lines already judged bad (e.g. a cut last line)."""
    reject_lines = reject_lines or {}
    rows = []
    try:
        with open_binary(path) as fh:
            for number, raw in enumerate(fh, 1):
                if number <= skip:
                    continue
                try:
                    text = raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError:
                    rejects.add(number, "bad_encoding", raw.decode(encoding, "replace").rstrip("\r\n"))
                    continue
                if not text.strip():
                    continue
                if number in reject_lines:
                    rejects.add(number, reject_lines[number], text)
                    continue
                try:
                    rows.append(parse(text))
                except BadRecord as bad:
                    rejects.add(number, bad.reason, text)
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
        raise DataError(f"{path}: cannot read the file ({exc})") from None
    return rows


def unterminated_tail(path: str, encoding: str = "utf-8") -> tuple[int, str, str | None] | None:
    """(line number, text, previous line's text) of a plain file's last line when the file does not
    end with a newline, else None. A download or copy cut short ends mid-line like this. Not for
    .gz files: a gzip stream cut short fails to decompress as a whole (`parse_lines` says so)."""
    if str(path).endswith(".gz"):
        return None
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        fh.seek(0)
        newlines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read().split(b"\n")
    text = lambda raw: raw.decode(encoding, "replace").rstrip("\r")  # noqa: E731
    return newlines + 1, text(tail[-1]), text(tail[-2]) if len(tail) > 1 else None


def first_line(path: str, encoding: str = "utf-8") -> str:
    """The header line of a file (DataError when the file is empty)."""
    with open_binary(path) as fh:
        raw = fh.readline()
    if not raw.strip():
        raise DataError(f"{path}:1: missing header line")
    return raw.decode(encoding, "replace").rstrip("\r\n")


def count_nonblank_lines(path: str) -> int:
    """Lines holding at least one byte: what a whole-file parser must return as rows.

    (A whitespace-only or CRLF-blank line counts here but not as a row; the mismatch only sends
    the file to the line-by-line parser, which is slower but right.)
    """
    lines = empty = 0
    previous = b"\n"
    with open_binary(path) as fh:
        while chunk := fh.read(1 << 24):
            lines += chunk.count(b"\n")
            if chunk[:1] == b"\n" and previous == b"\n":
                empty += 1
            if chunk.count(b"\n\n"):  # runs of newlines: count overlapping pairs exactly
                newline = np.frombuffer(chunk, dtype=np.uint8) == 10
                empty += int(np.count_nonzero(newline[1:] & newline[:-1]))
            previous = chunk[-1:]
    if previous != b"\n":
        lines += 1  # last line without a newline
    return lines - empty


# --- field values, shared by every line parser -------------------------------------------------
def text_field(value: Any, name: str) -> str:
    """A required id: a non-empty string (an integer id is taken as its digits)."""
    if value is None or value == "":
        raise BadRecord(f"missing_field:{name}")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadRecord(f"bad_value:{name}")


def number_field(value: Any, name: str) -> float:
    """A required finite number (a rating)."""
    if value is None or value == "":
        raise BadRecord(f"missing_field:{name}")
    if isinstance(value, bool):
        raise BadRecord(f"bad_value:{name}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRecord(f"bad_value:{name}") from None
    if not math.isfinite(number):
        raise BadRecord(f"bad_value:{name}")
    return number


def integer_field(value: Any, name: str, fractional: bool = False) -> int:
    """A required integer (a timestamp); `fractional` accepts a number and truncates it."""
    if value is None or value == "":
        raise BadRecord(f"missing_field:{name}")
    if isinstance(value, bool):
        raise BadRecord(f"bad_value:{name}")
    number = None
    if isinstance(value, int):
        number = value
    elif fractional:
        number = int(number_field(value, name))
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            pass
    if number is None or not -(2**63) <= number < 2**63:
        raise BadRecord(f"bad_value:{name}")
    return number


# --- checking a fast-path table -------------------------------------------------------------------
def complete(table: pa.Table, texts: list[str], numbers: list[str], integers: list[str] = ()) -> bool:
    """True when the whole-file parse holds no row the line parser would reject: required ids
    non-empty, numbers present and finite, integers present."""
    for name in texts:
        column = table[name]
        if column.null_count or pc.any(pc.equal(column, "")).as_py():
            return False
    for name in numbers:
        column = table[name]
        if column.null_count or pc.all(pc.is_finite(column)).as_py() is False:
            return False
    return all(table[name].null_count == 0 for name in integers)


def floor_divide(column: pa.ChunkedArray, divisor: int) -> pa.Array:
    """Python's `//` on an int64 column without nulls (ms -> s)."""
    return pa.array(np.floor_divide(column.to_numpy(), divisor), pa.int64())


# --- building the canonical tables ---------------------------------------------------------------
def constant(value: str | None, n: int) -> pa.Array:
    """A string column holding `value` n times (cheap for millions of rows)."""
    if value is None:
        return pa.nulls(n, pa.string())
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], pa.string())).cast(pa.string())


def attributes_json(fields: dict) -> str | None:
    """The `attributes` column: a sorted JSON object of the non-empty fields, or None."""
    kept = {k: v for k, v in fields.items() if v not in (None, "", [], {})}
    return json.dumps(kept, sort_keys=True) if kept else None


def interactions_result(columns: dict, domain: str | None, rejects: Rejects) -> ReadResult:
    """ReadResult from user/item/timestamp/rating columns (arrays, or lists from `parse_lines`)."""
    n = len(columns["user"])
    table = pa.table(
        {
            "user": columns["user"],
            "item": columns["item"],
            "domain": columns["domain"] if "domain" in columns else constant(domain, n),
            "timestamp": pa.array(columns["timestamp"], pa.int64()) if isinstance(columns["timestamp"], list) else columns["timestamp"],
            "rating": columns["rating"] if columns.get("rating") is not None else pa.nulls(n, pa.float32()),
        }
    )
    table = schema.conform(table, schema.INTERACTIONS)
    return ReadResult(table, schema.empty(schema.ITEMS), rejects.table(), n + len(rejects))


def interactions_from_rows(rows: list[tuple], domain: str, rejects: Rejects) -> ReadResult:
    """ReadResult from (user, item, timestamp, rating) tuples."""
    users, items, stamps, ratings = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    columns = {"user": pa.array(users, pa.string()), "item": pa.array(items, pa.string()),
               "timestamp": stamps, "rating": pa.array(ratings, pa.float64())}
    return interactions_result(columns, domain, rejects)


def items_from_rows(rows: list[tuple], domain: str, rejects: Rejects) -> ReadResult:
    """ReadResult from (item, title, category, attributes) tuples, all strings or None."""
    items, titles, categories, attributes = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    table = pa.table(
        {
            "item": pa.array(items, pa.string()),
            "domain": constant(domain, len(items)),
            "title": pa.array(titles, pa.string()),
            "category": pa.array(categories, pa.string()),
            "attributes": pa.array(attributes, pa.string()),
        },
        schema=schema.ITEMS,
    )
    return ReadResult(schema.empty(schema.INTERACTIONS), table, rejects.table(), len(items) + len(rejects))
