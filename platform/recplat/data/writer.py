"""Deterministic partitioned Parquet output.

Files named by write task would differ from run to run. Here every user-keyed table is written as
one file per user bucket, by that bucket's task (recplat.data.buckets),
`part-<bucket>.parquet`, its rows sorted by the table's natural key: the same config and seed give
byte-identical files whatever the cluster did. Files land inside the pipeline's temporary
directory, which is renamed into place only when everything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recplat.storage import write_parquet_atomic

PART = "part-{:05d}.parquet"


def sort_table(table: pa.Table, keys: list[str], split_order: tuple[str, ...] | None = None) -> pa.Table:
    """Sort by `keys`; a `split` key sorts train < valid < test rather than alphabetically."""
    columns = []
    for key in keys:
        if key == "split" and split_order:
            codes = pc.index_in(table.column("split"), value_set=pa.array(list(split_order)))
            table = table.append_column("__split_code", codes)
            columns.append(("__split_code", "ascending"))
        else:
            columns.append((key, "ascending"))
    table = table.sort_by(columns)
    return table.drop_columns(["__split_code"]) if "__split_code" in table.column_names else table


def write_part(table: pa.Table, dest: Path, bucket: int, keys, schema: pa.Schema, split_order) -> None:
    """`dest/part-<bucket>.parquet`: the rows sorted by `keys`, with exactly `schema`'s columns."""
    table = sort_table(table, keys, split_order)
    table = pa.table({f.name: table.column(f.name).cast(f.type) for f in schema}, schema=schema)
    write_parquet_atomic(dest / PART.format(bucket), table)


def fill_empty_dirs(
    dest: Path, schema: pa.Schema, split_by: str | None = None, split_order: tuple[str, ...] = ("train", "valid", "test")
) -> None:
    """Every table directory (per split, if `split_by`) exists and is readable even when no bucket
    wrote a row to it: an empty `part-00000.parquet` of `schema`."""
    targets = [Path(dest) / s for s in split_order] if split_by else [Path(dest)]
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        if not any(target.glob("part-*.parquet")):
            write_parquet_atomic(target / PART.format(0), schema.empty_table())


def read_table_dir(path: str | Path) -> pa.Table:
    """All part files of one table directory, concatenated in bucket order."""
    parts = sorted(Path(path).glob("part-*.parquet"))
    return pa.concat_tables([read_parquet_file(p) for p in parts]) if parts else pa.table({})


def read_parquet_file(path: str | Path, **kwargs) -> pa.Table:
    """pq.read_table, with an unreadable file (truncated, not Parquet) named in a DataError."""
    try:
        return pq.read_table(path, **kwargs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from None


def check_parquet_files(root: str | Path) -> int:
    """Read the footer of every Parquet file under `root` (cheap: no data pages); a truncated or
    overwritten file is a DataError naming it, before any worker reads it. Returns the count."""
    files = sorted(Path(root).rglob("*.parquet"))
    for path in files:
        try:
            pq.read_metadata(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _unreadable(path, exc) from None
    return len(files)


def _unreadable(path, exc: Exception):
    from recplat.errors import DataError

    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return DataError(f"{path}: not a readable Parquet file ({detail}); was it truncated? Prepare the dataset again "
                     "(`recplat prepare --overwrite`)")


def bucket_column(users: pa.Array | pa.ChunkedArray, num_partitions: int) -> pa.Array:
    from recplat.data.seeded import bucket_of

    values = np.asarray(users.to_numpy(zero_copy_only=False), dtype=object)
    return pa.array(bucket_of(values, num_partitions), type=pa.int32())
