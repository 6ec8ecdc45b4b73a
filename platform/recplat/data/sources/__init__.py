"""Source readers: one module per raw format, all producing the canonical Arrow tables.

A source is read as a list of `ReadTask`s (normally one per file), each turned into a
`ReadResult` by its reader module's `read(task, strict)`; the pipeline runs the tasks in
parallel as Ray tasks (inline for a small input: recplat.data.inputs). Readers never drop a line silently: a malformed line goes to
`rejects` with its file and line number, or, with `strict`, raises DataError("file:line: why").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from recplat.data import schema


@dataclass(frozen=True)
class ReadTask:
    """One unit of parallel reading: a file (or a synthetic chunk) and what it holds."""

    kind: str  # the source kind, e.g. "amazon2018" (selects the reader module)
    role: str  # "interactions" or "items"
    path: str  # the file (empty for generated sources)
    domain: str  # the domain label its rows get ("" when the file carries its own)
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class ReadResult:
    interactions: pa.Table  # schema.INTERACTIONS (empty for an items task)
    items: pa.Table  # schema.ITEMS (empty for an interactions task)
    rejects: pa.Table  # schema.REJECTS
    records: int  # records seen (lines, rows): records == rows kept + rejected

    @classmethod
    def empty(cls) -> "ReadResult":
        return cls(
            schema.empty(schema.INTERACTIONS), schema.empty(schema.ITEMS), schema.empty(schema.REJECTS), 0
        )


READERS = {
    "amazon2018": "recplat.data.sources.amazon2018",
    "amazon2014": "recplat.data.sources.amazon2014",
    "amazon2023": "recplat.data.sources.amazon2023",
    "movielens": "recplat.data.sources.movielens",
    "recbole": "recplat.data.sources.recbole",
    "table": "recplat.data.sources.table",
    "ninerec": "recplat.data.sources.ninerec",
    "synthetic": "recplat.data.sources.synthetic",
}


def reader_for(kind: str):
    return importlib.import_module(READERS[kind])


def plan_reads(source) -> list[ReadTask]:
    """The read tasks of one configured source (a recplat.data.config source model).

    Raises DataError naming the path when an expected file is missing.
    """
    return reader_for(source.kind).plan(source)


def run_read(task: ReadTask, strict: bool = False) -> ReadResult:
    return reader_for(task.kind).read(task, strict)
