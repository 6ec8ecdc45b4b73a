"""Delimited interaction files: Amazon 2018 ratings CSV, MovieLens u.data / ratings.dat /
ratings.csv, RecBole .inter, generic CSV tables.

Fast path: one `pyarrow.csv.read_csv` over the whole file. A multi-character separator made of
one repeated character (ml-1m's "::") is read with that character as delimiter and the empty
columns in between checked. The fast path is used only when it parses and holds no row the line
parser would reject; otherwise the file is read again line by line to find the bad lines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recplat.data.sources import ReadResult, ReadTask
from recplat.data.sources import lines
from recplat.data.sources.lines import BadRecord, Rejects

BLOCK_SIZE = 1 << 24


@dataclass(frozen=True)
class Layout:
    """How an interactions file is laid out."""

    columns: list[str]  # the file's columns, in order
    keys: dict[str, str]  # canonical user/item/timestamp(/rating/domain) -> column; no rating -> null,
    # no domain -> the task's domain
    delimiter: str = ","
    quoted: bool = False  # CSV quoting ("a, b") as in RFC 4180 files
    header: bool = False  # the first line names the columns and is not a record
    encoding: str = "utf-8"
    fractional_timestamps: bool = False  # timestamps written as floats (RecBole): truncated
    timestamp_divisor: int = 1  # 1000 for milliseconds


def split_line(text: str, layout: Layout) -> list[str]:
    if layout.quoted:
        return next(csv.reader([text], delimiter=layout.delimiter))
    return text.split(layout.delimiter)


def _fast(path: str, layout: Layout) -> pa.Table | None:
    """The file parsed by pyarrow, or None when it does not parse."""
    width = len(layout.delimiter)
    char = layout.delimiter[0]
    if layout.delimiter != char * width:
        return None  # no fast path for a separator like ", "
    names: list[str] = []
    fillers: list[str] = []  # "a::b" read with ":" is a, "", b: one empty column per extra character
    for i, column in enumerate(layout.columns):
        if i:
            gap = [f"__gap{i}_{k}" for k in range(width - 1)]
            names += gap
            fillers += gap
        names.append(column)
    types = {name: pa.string() for name in names}
    if "rating" in layout.keys:
        types[layout.keys["rating"]] = pa.float64()
    # integer timestamps are read as text and checked below: pyarrow's int64 parser also takes
    # hex ("0x10"), which the line parser (Python's int) refuses
    types[layout.keys["timestamp"]] = pa.float64() if layout.fractional_timestamps else pa.string()
    wanted = [layout.keys[k] for k in ("user", "item", "timestamp", "rating", "domain") if k in layout.keys]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if layout.header else 0,
                encoding=layout.encoding, block_size=BLOCK_SIZE,
            ),
            parse_options=pacsv.ParseOptions(delimiter=char, quote_char='"' if layout.quoted else False),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=wanted + fillers, null_values=[""],
                strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError):
        return None
    for filler in fillers:
        if pc.any(pc.not_equal(table[filler], "")).as_py():
            return None
    if not layout.fractional_timestamps:
        name = layout.keys["timestamp"]
        stamps = table[name]
        if not pc.all(pc.match_substring_regex(stamps, r"^-?[0-9]+$")).as_py():
            return None  # blanks, signs, spaces, hex...: the line parser decides
        try:
            stamps = stamps.cast(pa.int64())
        except pa.ArrowInvalid:  # out of the int64 range
            return None
        table = table.set_column(table.schema.get_field_index(name), name, stamps)
    return table


def read_interactions(task: ReadTask, strict: bool, layout: Layout) -> ReadResult:
    """Interactions of one delimited file, with every malformed line found by number."""
    keys = layout.keys
    rating, domain = keys.get("rating"), keys.get("domain")
    ids = [keys["user"], keys["item"]] + ([domain] if domain else [])
    cut = cut_last_line(task.path, layout)
    if cut is None and lines.use_fast_path(task):
        table = _fast(task.path, layout)
        numbers = [rating] if rating else []
        if layout.fractional_timestamps:
            numbers.append(keys["timestamp"])
        if table is not None and lines.complete(table, ids, numbers, [keys["timestamp"]]):
            stamps = table[keys["timestamp"]]
            if layout.fractional_timestamps:
                stamps = _truncate(stamps)
            if stamps is not None:
                if layout.timestamp_divisor != 1:
                    stamps = lines.floor_divide(stamps, layout.timestamp_divisor)
                columns = {"user": table[keys["user"]], "item": table[keys["item"]], "timestamp": stamps,
                           "rating": table[rating] if rating else None}
                if domain:
                    columns["domain"] = table[domain]
                return lines.interactions_result(columns, task.domain, Rejects(task.path, strict))

    position = {name: layout.columns.index(column) for name, column in keys.items()}
    width = len(layout.columns)

    def parse(text: str) -> tuple:
        parts = split_line(text, layout)
        if len(parts) != width:
            raise BadRecord("bad_columns")
        stamp = lines.integer_field(parts[position["timestamp"]], keys["timestamp"], layout.fractional_timestamps)
        row = (
            lines.text_field(parts[position["user"]], keys["user"]),
            lines.text_field(parts[position["item"]], keys["item"]),
            stamp // layout.timestamp_divisor,
            lines.number_field(parts[position["rating"]], rating) if rating else None,
        )
        return row + (lines.text_field(parts[position["domain"]], domain),) if domain else row

    rejects = Rejects(task.path, strict)
    rows = lines.parse_lines(task.path, parse, rejects, encoding=layout.encoding, skip=1 if layout.header else 0,
                             reject_lines={cut: "truncated_last_line"} if cut else None)
    if not domain:
        return lines.interactions_from_rows(rows, task.domain, rejects)
    domains = [row[4] for row in rows]
    result = lines.interactions_from_rows([row[:4] for row in rows], task.domain, rejects)
    result.interactions = result.interactions.set_column(
        result.interactions.schema.get_field_index("domain"), "domain", pa.array(domains, pa.string())
    )
    return result


def cut_last_line(path: str, layout: Layout) -> int | None:
    """The line number of a last line cut inside its final timestamp, else None.

    A file cut short mid-timestamp ("B00X,A1,5.0,14") still parses, as a 1970 timestamp. The sign:
    no newline at the end, the timestamp is the last column, and it has fewer digits than the line
    before's. (A last line merely missing its newline, or a cut elsewhere, which leaves too few
    columns, is not this case.)
    """
    if layout.columns[-1] != layout.keys["timestamp"] or layout.fractional_timestamps:
        return None
    tail = lines.unterminated_tail(path, layout.encoding)
    if tail is None or tail[2] is None:
        return None
    number, last, previous = tail
    last_stamp, previous_stamp = split_line(last, layout)[-1].strip(), split_line(previous, layout)[-1].strip()
    if previous_stamp.isdigit() and last_stamp.isdigit() and len(last_stamp) < len(previous_stamp):
        return number
    return None


def _truncate(stamps: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Float timestamps truncated to int64, or None when one is out of the int64 range (the line
    parser then rejects that line)."""
    try:
        return pc.trunc(stamps).cast(pa.int64())
    except pa.ArrowInvalid:
        return None


def header_columns(path: str, delimiter: str = ",", quoted: bool = True, encoding: str = "utf-8") -> list[str]:
    """The column names on a file's first line."""
    text = lines.first_line(path, encoding)
    if quoted:
        return next(csv.reader([text], delimiter=delimiter))
    return text.split(delimiter)
