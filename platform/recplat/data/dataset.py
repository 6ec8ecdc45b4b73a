"""Reading a prepared dataset directory (what `recplat prepare` wrote) for training and evaluation.

Recipes never look at raw files or sample anything: they read the stored examples (history,
target, candidates) and the items table, and turn them into model inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import schema, writer
from recplat.errors import DataError


@dataclass(frozen=True)
class PreparedDataset:
    """A complete dataset directory: `PreparedDataset.open(path)` checks that it is one."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> "PreparedDataset":
        path = Path(path)
        if not (path / "manifest.json").is_file():
            raise DataError(
                f"{path} is not a prepared dataset (no manifest.json): run `recplat prepare --out {path}` first"
            )
        writer.check_parquet_files(path)  # a truncated file is named here, not deep in a Ray worker
        return cls(path)

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / "manifest.json").read_text())

    @cached_property
    def items(self) -> pa.Table:
        return writer.read_parquet_file(self.path / "items.parquet")

    @property
    def num_items(self) -> int:
        """Items are 1..num_items (0 is padding)."""
        return self.items.num_rows

    def _by_item_idx(self, column: str) -> np.ndarray:
        """An items-table column as an object array indexed by item_idx; index 0 is ""."""
        out = np.empty(self.num_items + 1, dtype=object)
        out[0] = ""
        out[self.items.column("item_idx").to_numpy()] = np.asarray(self.items.column(column).to_pylist(), dtype=object)
        return out

    @cached_property
    def titles(self) -> np.ndarray:
        return self._by_item_idx("title")

    @cached_property
    def item_domains(self) -> np.ndarray:
        return self._by_item_idx("domain")

    @property
    def domains(self) -> list[str]:
        return sorted(set(self.items.column("domain").to_pylist()))

    def examples(self, split: str) -> pa.Table:
        """One split's examples (schema.EXAMPLES), in stored order."""
        if split not in schema.SPLITS:
            raise DataError(f"unknown split {split!r}: one of {', '.join(schema.SPLITS)}")
        table = writer.read_table_dir(self.path / "examples" / split)
        return schema.empty(schema.EXAMPLES) if table.num_columns == 0 else table

    def rendered(self, family: str, split: str) -> pa.Table:
        path = self.path / "rendered" / family / split
        if not path.is_dir():
            raise DataError(f"{self.path} has no rendered text for {family!r}: add it to render.families and re-prepare")
        return writer.read_table_dir(path)


def padded_lists(column: pa.ChunkedArray | pa.Array, width: int | None = None, pad: int = 0, align: str = "right") -> np.ndarray:
    """A list<int> column as an int64 matrix [rows, width].

    align="right" keeps the last `width` values of each list and puts padding in front (the most
    recent item sits in the last column, as sequence models read it); align="left" keeps the first
    `width` and pads at the end (candidate lists).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
    width = int(lengths.max(initial=0)) if width is None else width
    out = np.full((len(lengths), width), pad, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = width - (np.repeat(lengths, lengths) - within) if align == "right" else within
    keep = (cols >= 0) & (cols < width)
    out[rows[keep], cols[keep]] = values[keep]
    return out
