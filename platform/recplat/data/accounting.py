"""Row accounting: every stage reports rows in == rows kept + rows dropped, by reason.

Filtering kernels do not drop rows themselves: they set a `drop_reason` column (null = kept), and
the pipeline counts the reasons and filters. Nothing leaves the pipeline unexplained.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

DROP = "drop_reason"


def with_reason(table: pa.Table, reasons: pa.Array | list) -> pa.Table:
    """Attach (or replace) the drop_reason column."""
    arr = pa.array(reasons, type=pa.string()) if not isinstance(reasons, pa.Array) else reasons
    if DROP in table.column_names:
        table = table.drop_columns([DROP])
    return table.append_column(DROP, arr.cast(pa.string()))


def reason_counts(table: pa.Table) -> dict[str, int]:
    """{reason: rows} over the rows that carry a drop reason."""
    if DROP not in table.column_names or table.num_rows == 0:
        return {}
    col = table.column(DROP)
    dropped = col.filter(pc.is_valid(col))
    if len(dropped) == 0:
        return {}
    vc = pc.value_counts(dropped)
    return {str(v["values"]): int(v["counts"]) for v in vc.to_pylist()}


def kept(table: pa.Table) -> pa.Table:
    """The rows without a drop reason, without the drop_reason column."""
    if DROP not in table.column_names:
        return table
    return table.filter(pc.is_null(table.column(DROP))).drop_columns([DROP])


@dataclass
class StageCount:
    """What one stage did, in its own unit (interactions, items, sequences or examples)."""

    stage: str
    unit: str
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def add(self, read: int, kept: int, dropped: dict[str, int] | None = None) -> None:
        self.read += read
        self.kept += kept
        self.dropped.update(dropped or {})

    def balanced(self) -> bool:
        return self.read == self.kept + sum(self.dropped.values())

    def as_dict(self) -> dict:
        return {
            "stage": self.stage,
            "unit": self.unit,
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
        }
