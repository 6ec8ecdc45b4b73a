"""JSON-lines dumps: Amazon 2018 reviews and meta, Amazon 2014 reviews, Amazon 2023 reviews and meta.

Fast path: one `pyarrow.json.read_json` over the whole (plain or gzip) file with an explicit schema
of the fields we keep, every other field ignored (docs/stack.md: ~10x faster than pandas). It is
used only when it parses, returns one row per non-blank line, and holds no row the line parser
would reject; otherwise the file is read again line by line to find the bad lines.
"""

from __future__ import annotations

import json
from typing import Callable

import pyarrow as pa
import pyarrow.json as pajson

from recplat.data.sources import ReadResult, ReadTask
from recplat.data.sources import lines
from recplat.data.sources.lines import BadRecord, Rejects

BLOCK_SIZE = 1 << 24  # 16 MiB: a line longer than a block makes the whole-file parse fail

INTERACTION_TYPES = {"user": pa.string(), "item": pa.string(), "rating": pa.float64(), "timestamp": pa.int64()}


def fast_json(path: str, fields: pa.Schema) -> pa.Table | None:
    """The `fields` of every line, or None when the file is not clean JSON lines."""
    try:
        table = pajson.read_json(
            path,
            read_options=pajson.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pajson.ParseOptions(explicit_schema=fields, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowException, OSError, EOFError):
        return None
    # two objects on one line, or one object over two lines, would parse but not line up
    if table.num_rows != lines.count_nonblank_lines(path):
        return None
    return table


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRecord("invalid_json") from None
    if not isinstance(value, dict):
        raise BadRecord("invalid_json")
    return value


def read_interactions(task: ReadTask, strict: bool, keys: dict[str, str], timestamp_divisor: int = 1) -> ReadResult:
    """Interactions from JSON lines; `keys` maps user/item/rating/timestamp to the file's keys.
    Timestamps are divided (Python `//`) by `timestamp_divisor` (1000 for milliseconds)."""
    user, item, rating, stamp = keys["user"], keys["item"], keys["rating"], keys["timestamp"]
    if lines.use_fast_path(task):
        fields = pa.schema([(keys[name], kind) for name, kind in INTERACTION_TYPES.items()])
        table = fast_json(task.path, fields)
        if table is not None and lines.complete(table, [user, item], [rating], [stamp]):
            timestamps = table[stamp]
            if timestamp_divisor != 1:
                timestamps = lines.floor_divide(timestamps, timestamp_divisor)
            columns = {"user": table[user], "item": table[item], "timestamp": timestamps, "rating": table[rating]}
            return lines.interactions_result(columns, task.domain, Rejects(task.path, strict))

    def parse(text: str) -> tuple:
        record = json_object(text)
        return (
            lines.text_field(record.get(user), user),
            lines.text_field(record.get(item), item),
            lines.integer_field(record.get(stamp), stamp) // timestamp_divisor,
            lines.number_field(record.get(rating), rating),
        )

    rejects = Rejects(task.path, strict)
    return lines.interactions_from_rows(lines.parse_lines(task.path, parse, rejects), task.domain, rejects)


def read_items(task: ReadTask, strict: bool, fields: pa.Schema, to_item: Callable[[dict], tuple]) -> ReadResult:
    """Items from JSON lines. `to_item(record)` -> (item, title, category, attributes) must read
    only the keys in `fields`: it sees whole-file rows (missing keys as None) and json.loads dicts."""
    if lines.use_fast_path(task):
        table = fast_json(task.path, fields)
        if table is not None:
            try:
                rows = [to_item(record) for record in table.to_pylist()]
            except BadRecord:
                rows = None
            if rows is not None:
                return lines.items_from_rows(rows, task.domain, Rejects(task.path, strict))
    rejects = Rejects(task.path, strict)
    rows = lines.parse_lines(task.path, lambda text: to_item(json_object(text)), rejects)
    return lines.items_from_rows(rows, task.domain, rejects)


def optional_text(value) -> str | None:
    """A free-text field (title, brand): strings as they are, other JSON values as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def text_list(value) -> list[str]:
    """A list-of-strings field (categories); a lone string is a one-element list."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    return [optional_text(v) for v in value if v is not None]
