"""Helpers for the reader tests: read every task of a source through the fast (whole-file) path
or the line-by-line path, and show tables as plain tuples."""

import dataclasses

from recplat.data import schema
from recplat.data.sources import plan_reads, run_read


def read_tasks(source, fast: bool = True, strict: bool = False):
    """[(task, ReadResult)] in plan order; `fast=False` forces the line-by-line parser."""
    out = []
    for task in plan_reads(source):
        if not fast:
            task = dataclasses.replace(task, options={**task.options, "fast": False})
        result = run_read(task, strict)
        assert result.interactions.schema == schema.INTERACTIONS
        assert result.items.schema == schema.ITEMS
        assert result.rejects.schema == schema.REJECTS
        # nothing is dropped silently: every record is a row or a reject
        assert result.records == result.interactions.num_rows + result.items.num_rows + result.rejects.num_rows
        out.append((task, result))
    return out


def rows(table) -> list[tuple]:
    return [tuple(row.values()) for row in table.to_pylist()]


def rejects(result) -> list[tuple]:
    """(file name, line, reason) of each rejected line."""
    return [(r["file"].rsplit("/", 1)[-1], r["line"], r["reason"]) for r in result.rejects.to_pylist()]
