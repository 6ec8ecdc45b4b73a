"""The sequences stage: whole users' interactions -> one chronological sequence per (user, scope).

Semantics: docs/data-plane.md, "Exact semantics" -> sequences (unit = interactions, counted once
per scope built). Per user: 1. seeded user subsampling (`user_ratio`); 2. one sequence per scope,
rows sorted by (timestamp, *tie_order, the other columns) (`SequencesConfig.sort_keys`); 3. `one_per_day` keeps the seeded row of each
day; 4. `drop_consecutive_repeats`; 5. `max_length` keeps the most recent rows; 6. `min_length`
drops short sequences whole.

The kernel is vectorised over every sequence of a block at once: one sort, then boolean masks
per step over the flat rows, then list columns built from offsets. Dropped sequences stay as rows
(`drop_reason` = too_short / user_subsampled) so the pipeline can count their interactions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import schema, seeded
from recplat.data.accounting import DROP
from recplat.data.config import SequencesConfig

SECONDS_PER_DAY = 86400
COUNTERS = ("n_read", "n_one_per_day", "n_consecutive_repeat", "n_truncated")
OUTPUT = pa.schema(
    list(schema.SEQUENCES)
    + [("bucket", pa.int32())]
    + [(name, pa.int64()) for name in COUNTERS]
    + [(DROP, pa.string())]
)


def scoped_rows(table: pa.Table, scope: str) -> pa.Table:
    """Rule 2: the interaction rows once per sequence they belong to, with a `scope` column
    (`__mixed__` for the all-domain sequence, the domain for per-domain ones)."""
    parts = []
    if scope in ("mixed", "both"):
        mixed = pa.array(np.full(table.num_rows, schema.MIXED_SCOPE, dtype=object), pa.string())
        parts.append(table.append_column("scope", mixed))
    if scope in ("per_domain", "both"):
        parts.append(table.append_column("scope", table.column("domain").cast(pa.string())))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def _starts(*columns) -> np.ndarray:
    """True where a row differs from the previous one on any column (row 0 always starts)."""
    n = len(columns[0])
    start = np.zeros(n, dtype=bool)
    if n == 0:
        return start
    start[0] = True
    for col in columns:
        if isinstance(col, np.ndarray):
            start[1:] |= col[1:] != col[:-1]
        else:
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            start[1:] |= pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return start


def _list(values: pa.Array, offsets: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values.cast(typ))


def build_sequences(table: pa.Table, cfg: SequencesConfig, seed: int) -> pa.Table:
    """Whole users' indexed interactions (user, item, domain, timestamp, rating, item_idx, bucket)
    -> `OUTPUT` rows, one per (user, scope) sorted by (user, scope), including dropped sequences.

    Lists hold the kept rows in order; for `user_subsampled` sequences every row of the scope,
    for `too_short` ones the rows left after steps 3-5 (the rows that get that reason). Counters
    say how many rows of the scope were read and dropped by steps 3, 4 and 5.
    """
    if table.num_rows == 0:
        return OUTPUT.empty_table()
    rows = scoped_rows(table, cfg.scope)
    keys = ("user", "scope", *cfg.sort_keys())  # rule 2; missing ratings last
    order = pc.sort_indices(rows, sort_keys=[(c, "ascending", "at_end") for c in keys])
    rows = rows.take(order)
    n = rows.num_rows
    seq_start = _starts(rows.column("user"), rows.column("scope"))
    seq_id = np.cumsum(seq_start) - 1
    first = np.flatnonzero(seq_start)
    n_seq = len(first)
    seq_users = rows.column("user").take(first).to_numpy(zero_copy_only=False)
    seq_scopes = rows.column("scope").take(first).to_numpy(zero_copy_only=False)
    alive = np.ones(n, dtype=bool)

    # 1. user subsampling: U("user_ratio", H(user), 1)[0] < user_ratio (same for all of a user's scopes)
    subsampled = np.zeros(n_seq, dtype=bool)
    if cfg.user_ratio < 1:
        u = seeded.uniform(seeded.row_keys(seed, "user_ratio", seeded.hash_strings(seq_users)), 1)[:, 0]
        subsampled = ~(u < cfg.user_ratio)
    processed = ~subsampled[seq_id]  # rows of sequences that go through steps 3-6

    # 3. one row per day: index floor(U("one_per_day", H(user), H(scope), day, 1)[0] * n_day)
    dropped_day = np.zeros(n, dtype=bool)
    if cfg.one_per_day:
        day = rows.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64) // SECONDS_PER_DAY
        day_start = _starts(seq_id, day)
        day_id = np.cumsum(day_start) - 1
        day_first = np.flatnonzero(day_start)
        n_day = np.diff(np.append(day_first, n))
        day_seq = seq_id[day_first]
        keys = seeded.row_keys(
            seed, "one_per_day", seeded.hash_strings(seq_users)[day_seq], seeded.hash_strings(seq_scopes)[day_seq],
            day[day_first],
        )
        pick = np.floor(seeded.uniform(keys, 1)[:, 0] * n_day).astype(np.int64)
        dropped_day = (np.arange(n) - day_first[day_id] != pick[day_id]) & processed
        alive &= ~dropped_day

    # 4. consecutive repeats: equal to the previous kept row of the same sequence. A run of equal
    # items keeps its first row, so comparing with the previous surviving row is enough.
    dropped_repeat = np.zeros(n, dtype=bool)
    if cfg.drop_consecutive_repeats:
        idx = np.flatnonzero(alive & processed)
        items = rows.column("item_idx").to_numpy(zero_copy_only=False)[idx]
        sid = seq_id[idx]
        repeat = np.zeros(len(idx), dtype=bool)
        repeat[1:] = (items[1:] == items[:-1]) & (sid[1:] == sid[:-1])
        dropped_repeat[idx[repeat]] = True
        alive &= ~dropped_repeat

    # 5. keep the last max_length rows of each sequence
    dropped_trunc = np.zeros(n, dtype=bool)
    if cfg.max_length is not None:
        idx = np.flatnonzero(alive & processed)
        sid = seq_id[idx]
        remaining = np.bincount(sid, minlength=n_seq)
        rank = np.arange(len(idx)) - np.searchsorted(sid, sid, side="left")  # position within sequence
        trunc = remaining[sid] - rank > cfg.max_length
        dropped_trunc[idx[trunc]] = True
        alive &= ~dropped_trunc

    # 6. too short: the whole sequence goes
    length = np.bincount(seq_id[alive], minlength=n_seq)
    too_short = ~subsampled & (length < cfg.min_length)
    reason = np.where(subsampled, "user_subsampled", np.where(too_short, "too_short", None))

    listed = np.flatnonzero(alive | ~processed)  # user_subsampled sequences list every row
    offsets = np.zeros(n_seq + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(seq_id[listed], minlength=n_seq))
    listed_rows = rows.take(pa.array(listed))
    ratings = listed_rows.column("rating").combine_chunks()
    ratings = pc.if_else(pc.is_nan(ratings), pa.scalar(None, ratings.type), ratings)  # NaN rating = missing
    counts = {
        "n_read": np.bincount(seq_id, minlength=n_seq),
        "n_one_per_day": np.bincount(seq_id[dropped_day], minlength=n_seq),
        "n_consecutive_repeat": np.bincount(seq_id[dropped_repeat], minlength=n_seq),
        "n_truncated": np.bincount(seq_id[dropped_trunc], minlength=n_seq),
    }
    columns = {
        "user": rows.column("user").take(first),
        "scope": rows.column("scope").take(first),
        "items": _list(listed_rows.column("item_idx").combine_chunks(), offsets, pa.int32()),
        "domains": _list(listed_rows.column("domain").combine_chunks(), offsets, pa.string()),
        "timestamps": _list(listed_rows.column("timestamp").combine_chunks(), offsets, pa.int64()),
        "ratings": _list(ratings, offsets, pa.float32()),
        "bucket": rows.column("bucket").take(first),
        **{name: pa.array(v.astype(np.int64)) for name, v in counts.items()},
        DROP: pa.array(reason.tolist(), pa.string()),
    }
    return pa.table([columns[f.name] for f in OUTPUT], names=OUTPUT.names).cast(OUTPUT)
