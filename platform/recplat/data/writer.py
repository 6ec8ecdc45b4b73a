"""Deterministic partitioned Parquet output.

Ray Data's own `write_parquet` names files by write task, so two runs of the same config would
give different file sets. Here every user-keyed table is written as one file per user bucket,
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


def _write_group(group: pa.Table, dest: str, sort_keys: list[str], schema: pa.Schema, split_by: str | None, split_order):
    keys = sort_keys
    bucket = int(group.column("bucket")[0].as_py())
    rows = []
    if split_by:
        for value in split_order:
            part = group.filter(pc.equal(group.column(split_by), value))
            if part.num_rows:
                _write_part(part, Path(dest) / value, bucket, keys, schema, split_order)
            rows.append(part.num_rows)
    else:
        _write_part(group, Path(dest), bucket, keys, schema, split_order)
        rows.append(group.num_rows)
    return pa.table({"bucket": [bucket], "rows": [int(sum(rows))]})


def _write_part(table: pa.Table, dest: Path, bucket: int, keys, schema: pa.Schema, split_order) -> None:
    table = sort_table(table, keys, split_order)
    table = pa.table({f.name: table.column(f.name).cast(f.type) for f in schema}, schema=schema)
    write_parquet_atomic(dest / PART.format(bucket), table)


def write_by_bucket(
    ds,
    dest: Path,
    schema: pa.Schema,
    keys: list[str],
    num_partitions: int,
    split_by: str | None = None,
    split_order: tuple[str, ...] = ("train", "valid", "test"),
) -> int:
    """Write a dataset with an int `bucket` column as part files (per split, if `split_by`)."""
    written = ds.groupby("bucket", num_partitions=num_partitions).map_groups(
        _write_group,
        batch_format="pyarrow",
        # not `keys=`: map_groups passes its own `keys` argument to the wrapped function
        fn_kwargs=dict(dest=str(dest), sort_keys=keys, schema=schema, split_by=split_by, split_order=split_order),
    )
    counts = written.to_pandas()  # runs the writes once
    total = int(counts["rows"].sum()) if len(counts) else 0
    # Every table directory exists and is readable even when it holds no rows.
    targets = [Path(dest) / s for s in split_order] if split_by else [Path(dest)]
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        if not any(target.glob("part-*.parquet")):
            write_parquet_atomic(target / PART.format(0), schema.empty_table())
    return total


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
