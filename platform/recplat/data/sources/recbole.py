"""RecBole atomic files (recbole.io/docs/user_guide/data/atomic_files.html): `<dataset>.inter` and
`<dataset>.item`, one domain.

Both are tab-separated with a typed header, `name:type` per column, type one of token,
token_seq (space-separated tokens), float, float_seq:
- `.inter`: user_id, item_id, timestamp (float seconds, truncated), rating (optional; null when
  the file has none); other columns are ignored;
- `.item`: item_id, the title field (`title_field`, else the first of movie_title, title,
  item_name), and other fields kept in `attributes` (token_seq as lists, float as numbers). The
  category is the first of class, genre, categories, category present, its tokens '|'-joined.

`source.path` is the folder holding the files (or RecBole's `data_path`, holding `<dataset>/`).
Without a path the ml-100k example inside the installed `recbole` package is read in place:
the package is found with importlib.util.find_spec and never imported (it pins an old Ray).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from recplat.data.sources import ReadResult, ReadTask, delimited, lines
from recplat.data.sources.lines import BadRecord, Rejects
from recplat.errors import DataError

KIND = "recbole"

USER, ITEM, RATING, TIMESTAMP = "user_id", "item_id", "rating", "timestamp"  # RecBole's default field names
TITLE_FIELDS = ("movie_title", "title", "item_name")
CATEGORY_FIELDS = ("class", "genre", "categories", "category")
TYPES = ("token", "token_seq", "float", "float_seq")


def package_dataset_dir(dataset: str) -> Path:
    """`<recbole>/dataset_example/<dataset>` of the installed package (DataError when absent)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DataError(
            "recbole source without `path`: the `recbole` package is not installed "
            "(pip install --no-deps recbole==1.2.1), or set `path` to a folder of atomic files"
        )
    return Path(spec.origin).parent / "dataset_example" / dataset


def dataset_dir(source) -> Path:
    if source.path is None:
        return package_dataset_dir(source.dataset)
    folder = Path(source.path)
    nested = folder / source.dataset
    if not (folder / f"{source.dataset}.inter").exists() and (nested / f"{source.dataset}.inter").exists():
        return nested  # RecBole's data_path layout: <data_path>/<dataset>/<dataset>.inter
    return folder


def plan(source) -> list[ReadTask]:
    """The .inter file, then the .item file."""
    folder = str(dataset_dir(source))
    options = {"title_field": source.title_field}
    inter = lines.find_file(folder, f"{source.dataset}.inter", f"RecBole interactions of {source.dataset}")
    item = lines.find_file(folder, f"{source.dataset}.item", f"RecBole items of {source.dataset}")
    return [
        ReadTask(KIND, "interactions", inter, source.domain, options),
        ReadTask(KIND, "items", item, source.domain, options),
    ]


def read(task: ReadTask, strict: bool) -> ReadResult:
    names, types = typed_header(task.path)
    if task.role == "interactions":
        return delimited.read_interactions(task, strict, inter_layout(task.path, names, types))
    return read_items(task, strict, names, types)


def typed_header(path: str) -> tuple[list[str], list[str]]:
    """Column names and types of an atomic file's `name:type` header."""
    names, types = [], []
    for column in lines.first_line(path).split("\t"):
        name, sep, kind = column.strip().rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise DataError(f"{path}:1: header column {column!r} is not name:type with type one of {', '.join(TYPES)}")
        names.append(name)
        types.append(kind)
    return names, types


def _require(path: str, names: list[str], wanted) -> None:
    missing = [name for name in wanted if name not in names]
    if missing:
        raise DataError(f"{path}:1: header lacks field(s) {', '.join(missing)} (has {', '.join(names)})")


def inter_layout(path: str, names: list[str], types: list[str]) -> delimited.Layout:
    _require(path, names, [USER, ITEM, TIMESTAMP])
    keys = {"user": USER, "item": ITEM, "timestamp": TIMESTAMP}
    if RATING in names:
        keys["rating"] = RATING
    return delimited.Layout(
        columns=names, keys=keys, delimiter="\t", header=True,
        fractional_timestamps=types[names.index(TIMESTAMP)] == "float",
    )


def read_items(task: ReadTask, strict: bool, names: list[str], types: list[str]) -> ReadResult:
    path = task.path
    _require(path, names, [ITEM])
    title_field = task.options.get("title_field")
    if title_field is None:
        title_field = next((name for name in TITLE_FIELDS if name in names), None)
        if title_field is None:
            raise DataError(f"{path}:1: no title field ({', '.join(TITLE_FIELDS)}); set the source's title_field")
    _require(path, names, [title_field])
    category_field = next((name for name in CATEGORY_FIELDS if name in names), None)
    width = len(names)
    at_item, at_title = names.index(ITEM), names.index(title_field)
    others = [(i, name, kind) for i, (name, kind) in enumerate(zip(names, types)) if i not in (at_item, at_title)]

    def parse(text: str) -> tuple:
        parts = text.split("\t")
        if len(parts) != width:
            raise BadRecord("bad_columns")
        fields = {name: field_value(parts[i], kind, name) for i, name, kind in others}
        category = fields.get(category_field) if category_field else None
        if isinstance(category, list):
            category = "|".join(str(c) for c in category)
        return lines.text_field(parts[at_item], ITEM), parts[at_title], category or None, lines.attributes_json(fields)

    rejects = Rejects(path, strict)
    rows = lines.parse_lines(path, parse, rejects, skip=1)
    return lines.items_from_rows(rows, task.domain, rejects)


def field_value(text: str, kind: str, name: str):
    """A typed atomic-file value: token as is, token_seq as a list, float(_seq) as numbers."""
    if kind == "token":
        return text
    if kind == "token_seq":
        return text.split()
    if kind == "float":
        return lines.number_field(text, name) if text else None
    return [lines.number_field(v, name) for v in text.split()]
