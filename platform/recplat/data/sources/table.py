"""Generic tables: an interactions table and an items table, Parquet or CSV, with a column mapping.

`source.columns` maps canonical names (user, item, timestamp, rating, domain, title, category,
attributes) to the files' column names; an unmapped name is looked for under its own name.
- interactions: user, item, timestamp required; rating optional (null when absent); domain from
  its column when the file has one, else the constant `source.domain` (one of the two is needed).
  `timestamp_unit: ms` stores `timestamp // 1000`.
- items: item and title required; domain as above; category optional; the other columns are kept
  as the `attributes` JSON object (unless the file has an attributes column, kept as it is).

Formats by extension: `.parquet`/`.pq`, a folder of `*.parquet` parts (one read task per part),
or `.csv`/`.tsv` (plain or .gz, header line, RFC 4180 quoting, utf-8). CSV interactions use the
shared delimited reader (a malformed line is rejected with its line number). CSV items are read
record by record, so quoted titles may span lines; a record's line is where it starts. In Parquet
files `line` is the 1-based row number.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recplat.data.sources import ReadResult, ReadTask, delimited, lines
from recplat.data.sources.lines import BadRecord, Rejects
from recplat.errors import DataError

KIND = "table"

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
INTERACTION_NAMES = ("user", "item", "timestamp", "rating", "domain")
ITEM_NAMES = ("item", "domain", "title", "category", "attributes")


# --- planning --------------------------------------------------------------------------------
def plan(source) -> list[ReadTask]:
    """The interactions file(s), then the items file(s); every column checked against the header."""
    tasks = []
    for role, path in (("interactions", source.interactions), ("items", source.items)):
        for file in table_files(path, role):
            columns = mapped_columns(file, role, source.columns, file_columns(file), source.domain)
            options = {"columns": columns, "timestamp_unit": source.timestamp_unit}
            tasks.append(ReadTask(KIND, role, file, source.domain or "", options))
    return tasks


def table_format(path: str) -> tuple[str, str]:
    """("parquet", "") or ("csv", delimiter) from the file name."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(PARQUET_SUFFIXES) and not str(path).lower().endswith(".gz"):
        return "parquet", ""
    for suffix, delimiter in CSV_SUFFIXES.items():
        if name.endswith(suffix):
            return "csv", delimiter
    raise DataError(f"{path}: unknown table format (expected .parquet, .pq, .csv, .tsv, .csv.gz or .tsv.gz)")


def table_files(path: str, role: str) -> list[str]:
    folder = Path(path)
    if folder.is_dir():
        parts = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix in PARQUET_SUFFIXES)
        if not parts:
            raise DataError(f"{path}: {role} folder holds no .parquet files")
        return parts
    if not folder.is_file():
        raise DataError(f"{path}: {role} table not found")
    table_format(path)
    return [path]


def file_columns(path: str) -> list[str]:
    kind, delimiter = table_format(path)
    if kind == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    columns = delimited.header_columns(path, delimiter=delimiter)
    return [columns[0].lstrip("\ufeff")] + columns[1:]  # a byte-order mark (spreadsheet exports)


def mapped_columns(path: str, role: str, mapping: dict[str, str], present: list[str], domain: str | None) -> dict:
    """canonical name -> file column for the names this role reads and the file has.

    DataError naming the file when a required column is missing, or a mapped one is absent."""
    names = INTERACTION_NAMES if role == "interactions" else ITEM_NAMES
    required = ["user", "item", "timestamp"] if role == "interactions" else ["item", "title"]
    if domain is None:
        required.append("domain")
    out = {}
    for name in names:
        column = mapping.get(name, name)
        if column in present:
            out[name] = column
        elif name in required or name in mapping:
            why = f"mapped from {name!r}" if name in mapping else "required"
            extra = " (or set the source's domain)" if name == "domain" else ""
            raise DataError(f"{path}: no column {column!r} ({why}){extra}; the file has {', '.join(present)}")
    return out


# --- reading -------------------------------------------------------------------------------------
def read(task: ReadTask, strict: bool) -> ReadResult:
    kind, delimiter = table_format(task.path)
    columns = task.options["columns"]
    divisor = 1000 if task.options.get("timestamp_unit") == "ms" else 1
    if task.role == "interactions":
        if kind == "csv":
            layout = delimited.Layout(
                columns=file_columns(task.path), keys=columns, delimiter=delimiter, quoted=True, header=True,
                fractional_timestamps=True, timestamp_divisor=divisor,
            )
            return delimited.read_interactions(task, strict, layout)
        return read_parquet_interactions(task, strict, columns, divisor)
    rejects = Rejects(task.path, strict)
    records = csv_records(task.path, delimiter, rejects) if kind == "csv" else parquet_records(task.path)
    return read_items(task, columns, records, rejects)


def read_parquet_interactions(task: ReadTask, strict: bool, columns: dict, divisor: int) -> ReadResult:
    """Vectorised checks; only a column that needs parsing (e.g. numbers stored as strings) and
    the rows that fail are looked at one by one."""
    table = _read_parquet(task.path, list(dict.fromkeys(columns.values())))
    rejects = Rejects(task.path, strict)
    bad: dict[int, str] = {}  # row -> the first reason found
    out = {}
    for name in ("user", "item", "domain"):
        if name in columns:
            out[name] = _text_column(table[columns[name]], columns[name], bad, task.path)
    out["timestamp"] = _timestamp_column(table[columns["timestamp"]], columns["timestamp"], bad)
    if "rating" in columns:
        out["rating"] = _number_column(table[columns["rating"]], columns["rating"], bad)
    for i in sorted(bad):
        rejects.add(i + 1, bad[i], _row_text(table, i))
    if bad:
        keep = np.ones(table.num_rows, dtype=bool)
        keep[list(bad)] = False
        out = {name: pc.filter(column, pa.array(keep)) for name, column in out.items()}
    if divisor != 1:
        out["timestamp"] = lines.floor_divide(out["timestamp"], divisor)
    out.setdefault("rating", None)
    return lines.interactions_result(out, task.domain or None, rejects)


def read_items(task: ReadTask, columns: dict, records, rejects: Rejects) -> ReadResult:
    """Items from (line, {column: value}, text) records; `rejects` also gets the records' own problems."""
    special = set(columns.values())
    rows, domains = [], []
    for line, record, text in records:
        try:
            item = lines.text_field(record.get(columns["item"]), columns["item"])
            domain = task.domain
            if "domain" in columns:
                domain = lines.text_field(record.get(columns["domain"]), columns["domain"])
            title = _optional_text(record.get(columns["title"]))
            category = _optional_text(record.get(columns["category"])) if "category" in columns else None
            if "attributes" in columns:
                attributes = _optional_text(record.get(columns["attributes"]))
            else:
                others = {k: v for k, v in record.items() if k not in special and not _blank(v)}
                attributes = lines.attributes_json(others)
        except BadRecord as bad:
            rejects.add(line, bad.reason, text)
            continue
        rows.append((item, title, category, attributes))
        domains.append(domain)
    result = lines.items_from_rows(rows, "", rejects)
    at = result.items.schema.get_field_index("domain")
    result.items = result.items.set_column(at, "domain", pa.array(domains, pa.string()))
    return result


# --- records -------------------------------------------------------------------------------------
def csv_records(path: str, delimiter: str, rejects: Rejects):
    """(line where the record starts, {column: text}, text) per CSV record after the header; a record
    with the wrong number of fields, or bytes that are not utf-8, is rejected."""
    try:
        with lines.open_binary(path) as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
            reader = csv.reader(text, delimiter=delimiter)
            header = None
            start = 1
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    rejects.add(start, "bad_csv", str(exc))
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line is not a record
                if header is None:
                    header = [name.lstrip("\ufeff") if i == 0 else name for i, name in enumerate(fields)]
                    continue
                shown = delimiter.join(fields)
                try:
                    shown.encode("utf-8")
                except UnicodeEncodeError:
                    text = shown.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    rejects.add(line, "bad_encoding", text)
                    continue
                if len(fields) != len(header):
                    rejects.add(line, "bad_columns", shown)
                    continue
                yield line, dict(zip(header, fields)), shown
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from None


def parquet_records(path: str):
    table = _read_parquet(path, None)
    for i, record in enumerate(table.to_pylist(), 1):
        yield i, record, json.dumps(record, default=str, ensure_ascii=False)


def _read_parquet(path: str, columns: list[str] | None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


# --- Parquet columns -----------------------------------------------------------------------------
def _text_column(column: pa.ChunkedArray, name: str, bad: dict, path: str) -> pa.Array:
    """Ids as strings (integers are taken as their digits); null or empty marks the row bad."""
    column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_integer(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        raise DataError(f"{path}: column {name!r} must hold strings or integers, got {column.type}")
    _mark(bad, pc.or_kleene(pc.is_null(column), pc.equal(column, "")).fill_null(True), f"missing_field:{name}")
    return column


def _number_column(column: pa.ChunkedArray, name: str, bad: dict) -> pa.Array:
    """A float64 column; null marks missing_field, non-finite or unparsable bad_value."""
    column = column.combine_chunks()
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
        _mark(bad, pc.is_null(column), f"missing_field:{name}")
        _mark(bad, pc.invert(pc.is_finite(column)).fill_null(False), f"bad_value:{name}")
        return column
    values = []
    for i, value in enumerate(column.to_pylist()):  # strings and other types: parse one by one
        try:
            values.append(lines.number_field(value, name))
        except BadRecord as exc:
            values.append(None)
            bad.setdefault(i, exc.reason)
    return pa.array(values, pa.float64())


def _timestamp_column(column: pa.ChunkedArray, name: str, bad: dict) -> pa.Array:
    """int64 timestamps in the file's unit: integers as they are, floats truncated, Arrow
    timestamps as seconds since the epoch, strings parsed one by one."""
    column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("s", tz=column.type.tz), safe=False).cast(pa.int64())
    if pa.types.is_floating(column.type):
        column = column.cast(pa.float64())
        _mark(bad, pc.is_null(column), f"missing_field:{name}")
        in_range = pc.and_(pc.greater_equal(column, -(2.0**63)), pc.less(column, 2.0**63))  # NaN: false
        _mark(bad, pc.invert(in_range).fill_null(False), f"bad_value:{name}")
        column = pc.if_else(pc.fill_null(in_range, False), column, 0.0)
        column = pc.trunc(column).cast(pa.int64())
    if pa.types.is_integer(column.type):
        column = column.cast(pa.int64())
        _mark(bad, pc.is_null(column), f"missing_field:{name}")
        return column.fill_null(0)
    values = []
    for i, value in enumerate(column.to_pylist()):
        try:
            values.append(lines.integer_field(value, name, fractional=True))
        except BadRecord as exc:
            values.append(0)
            bad.setdefault(i, exc.reason)
    return pa.array(values, pa.int64())


def _mark(bad: dict, mask: pa.Array, reason: str) -> None:
    for i in np.flatnonzero(mask.to_numpy(zero_copy_only=False)):
        bad.setdefault(int(i), reason)


def _row_text(table: pa.Table, i: int) -> str:
    return json.dumps(table.slice(i, 1).to_pylist()[0], default=str, ensure_ascii=False)


def _optional_text(value) -> str | None:
    """A text cell: strings as they are (CSV "" stays ""), NaN as null, other values as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.dumps(value, default=str, ensure_ascii=False)


def _blank(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
