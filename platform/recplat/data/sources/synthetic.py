"""Reader for the generated corpus (SyntheticSource, data/synth.py): no files, only tasks.

`plan` makes one items task per domain and one interactions task per `users_per_task` users
(the range travels in the task's options); each task's rows are a function of the seed and
its own range only, so the corpus is the same however Ray schedules the tasks.
"""

from __future__ import annotations

from recplat.data import schema
from recplat.data.config import SyntheticSource
from recplat.data.sources import ReadResult, ReadTask
from recplat.data.synth import generate_interactions, generate_items


def plan(source: SyntheticSource) -> list[ReadTask]:
    options = source.model_dump()
    tasks = [ReadTask("synthetic", "items", "", domain, {"source": options}) for domain in source.domains]
    for start in range(0, source.users, source.users_per_task):
        stop = min(start + source.users_per_task, source.users)
        tasks.append(
            ReadTask("synthetic", "interactions", "", "", {"source": options, "user_start": start, "user_stop": stop})
        )
    return tasks


def read(task: ReadTask, strict: bool = False) -> ReadResult:
    """Generate one task's rows; generated rows are never malformed, so `rejects` stays empty."""
    source = SyntheticSource.model_validate(task.options["source"])
    if task.role == "items":
        items = generate_items(source, task.domain)
        return ReadResult(schema.empty(schema.INTERACTIONS), items, schema.empty(schema.REJECTS), items.num_rows)
    rows = generate_interactions(source, task.options["user_start"], task.options["user_stop"])
    return ReadResult(rows, schema.empty(schema.ITEMS), schema.empty(schema.REJECTS), rows.num_rows)
