"""Reading every configured source in parallel, and fingerprinting what was read.

Each read task (normally one file) runs as a task (recplat.data.execution: a Ray task, or inline);
its interactions stay in the object store (one block per task, split by user bucket next:
recplat.data.buckets), while the small items and rejects tables and the row counts come back to
the driver. Plain tasks, one Arrow parse per file,
were the fastest reader measured here (docs/stack.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recplat.data import schema
from recplat.data.execution import Tasks
from recplat.data.sources import ReadTask, plan_reads, run_read
from recplat.errors import DataError


@dataclass
class ReadOutput:
    interactions: list  # ObjectRefs of schema.INTERACTIONS tables, one per interactions read task
    items: pa.Table  # schema.ITEMS, in read order
    rejects: pa.Table  # schema.REJECTS
    records: int  # interaction and item records seen
    interaction_rows: int
    item_rows: int


def plan_all(sources) -> list[ReadTask]:
    return [task for source in sources for task in plan_reads(source)]


def fingerprint(tasks: list[ReadTask]) -> list[dict]:
    """sha256 and size of every input file, so a manifest says exactly what was read."""
    seen, out = set(), []
    for task in tasks:
        if not task.path or task.path in seen:
            continue
        seen.add(task.path)
        digest = hashlib.sha256()
        with open(task.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        out.append({"path": task.path, "bytes": Path(task.path).stat().st_size, "sha256": digest.hexdigest()})
    return out


def _read_one(task: ReadTask, strict: bool):
    """-> (interactions, (items, rejects, records, interaction rows)), or (empty, DataError message) for bad input:
    returned, not raised, so that Ray does not also print the failed task's traceback (and one
    "Unhandled error" per unread result) after the one-line message."""
    try:
        result = run_read(task, strict)
    except DataError as exc:
        return schema.empty(schema.INTERACTIONS), str(exc)
    interactions = schema.conform(result.interactions, schema.INTERACTIONS)
    return interactions, (result.items, result.rejects, result.records, interactions.num_rows)


def read_inputs(tasks: list[ReadTask], strict: bool, run: Tasks, progress=None) -> ReadOutput:
    """Run every read task (`run`: on Ray or inline); interactions stay distributed, the rest comes back."""
    read_one = run.remote(_read_one, num_returns=2, max_retries=2)
    refs = [read_one(task, strict) for task in tasks]
    interaction_refs = [r[0] for r in refs]
    items, rejects, records, rows = [], [], 0, 0
    results: dict[int, tuple] = {}
    for idx, result in run.completed([r[1] for r in refs]):
        if isinstance(result, str):
            raise DataError(result)
        results[idx] = result
        if progress is not None:
            progress.update(1)
    for idx in range(len(tasks)):  # plan order, whatever order the tasks finished in
        task_items, task_rejects, task_records, task_rows = results[idx]
        items.append(task_items)
        rejects.append(task_rejects)
        records += task_records
        rows += task_rows if tasks[idx].role == "interactions" else 0
    item_table = pa.concat_tables([schema.conform(t, schema.ITEMS) for t in items]) if items else schema.empty(schema.ITEMS)
    reject_table = (
        pa.concat_tables([schema.conform(t, schema.REJECTS) for t in rejects]) if rejects else schema.empty(schema.REJECTS)
    )
    return ReadOutput(
        interactions=[r for r, task in zip(interaction_refs, tasks) if task.role == "interactions"],
        items=item_table,
        rejects=reject_table,
        records=records,
        interaction_rows=rows,
        item_rows=item_table.num_rows,
    )
