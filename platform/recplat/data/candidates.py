"""The candidates stage: seeded negatives stored with every example (evaluation candidates are data).

Semantics: docs/data-plane.md, "Exact semantics" -> candidates. Per example: count =
`train_negatives` (train) or `count` (valid/test); pool = item_idx of the target's domain or of
all items, ascending; weights 1 (`uniform`) or interactions after k-core (`popularity`);
excluded = nothing / set(s[0..t-1]) / that plus the target; available = pool minus excluded.
  * len(available) <= count: candidates = available, ascending;
  * else walk draws c = 1, 2, ... of U("candidates", H(user), H(scope), split_code, t): draw u
    maps to pool[floor(u * len(pool))] or pool[searchsorted(cumsum(w), u * sum(w), "right")];
    excluded or already-taken items are skipped; stop at `count` accepted, kept in that order.

The walk is vectorised: every example of a (split, pool) group draws `2 * count` numbers at once;
acceptance (not excluded, first occurrence in the row, within the first `count`) is a few array
operations; the rare examples still short continue from the next draw number with what they took
added to their exclusions. Draw c of a key is the same number whichever chunk it is drawn in, so
the result is exactly the sequential walk's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import seeded
from recplat.data.config import CandidatesConfig

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
ALL = "\x00all"  # pool key of the all-items pool
MAX_DRAWS_PER_CHUNK = 1 << 22  # rows x draws held at once (~32 MB of float64)


@dataclass
class CandidatePool:
    """Pools (item_idx ascending) per domain and over all items, with popularity cumsums."""

    pools: dict[str, np.ndarray]
    cumsums: dict[str, np.ndarray]
    n_idx: int  # item_idx values are < n_idx

    @classmethod
    def build(cls, items: pa.Table, popularity_by_idx: np.ndarray) -> "CandidatePool":
        """`items`: schema.INDEXED_ITEMS; `popularity_by_idx[i]` = interactions of item_idx i."""
        idx = items.column("item_idx").to_numpy(zero_copy_only=False).astype(np.int64)
        domains = np.asarray(items.column("domain").to_pylist(), dtype=object)
        pools = {ALL: np.sort(idx)}
        for domain in sorted(set(domains.tolist())):
            pools[domain] = np.sort(idx[domains == domain])
        weights = np.asarray(popularity_by_idx, dtype=np.int64)
        cumsums = {key: np.cumsum(weights[p]) for key, p in pools.items()}
        return cls(pools, cumsums, int(idx.max()) + 1 if len(idx) else 1)


def _taken_keys(rows: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    return rows.astype(np.int64) * width + items.astype(np.int64)


def _in_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def walk_draws(keys: np.ndarray, excluded: np.ndarray, pool: np.ndarray, cumsum: np.ndarray | None,
               count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The acceptance walk for rows 0..len(keys)-1 of one group (all with available > count).

    `excluded`: sorted unique keys row * width + item_idx. Returns (row, item) pairs in acceptance
    order per row (rows interleaved; a stable sort by row recovers each row's order).
    """
    out_rows, out_items = [], []
    active = np.arange(len(keys))
    need = np.full(len(keys), count, dtype=np.int64)
    draws, start = 2 * count, 1
    while len(active):
        u = seeded.uniform(keys[active], draws, start=start)
        if cumsum is None:
            picked = pool[np.floor(u * len(pool)).astype(np.int64)]
        else:
            picked = pool[np.searchsorted(cumsum, u * cumsum[-1], side="right")]
        pair = _taken_keys(active[:, None], picked, width)
        first = np.zeros(pair.size, dtype=bool)
        first[np.unique(pair.ravel(), return_index=True)[1]] = True  # first draw of an item in its row
        accept = first.reshape(pair.shape) & ~_in_sorted(pair, excluded)
        accept &= np.cumsum(accept, axis=1) <= need[active][:, None]
        r, c = np.nonzero(accept)  # row-major: each row's acceptances in draw order
        out_rows.append(active[r])
        out_items.append(picked[r, c])
        need[active] -= accept.sum(axis=1)
        excluded = np.union1d(excluded, pair[r, c])
        active = active[need[active] > 0]
        start += draws
    return np.concatenate(out_rows), np.concatenate(out_items)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the ranges [start, start + length), one after another."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def _excluded_keys(rows, prefix_values, prefix_off, targets, exclude: str, width: int) -> np.ndarray:
    """Sorted unique keys local_row * width + item_idx of each row's excluded items."""
    if exclude == "none":
        return np.zeros(0, np.int64)
    local = np.arange(len(rows))
    lengths = prefix_off[rows + 1] - prefix_off[rows]
    ex_rows = np.repeat(local, lengths)
    ex_items = prefix_values[_ranges(prefix_off[rows], lengths)]  # the whole prefix s[0..t-1]
    if exclude == "history_and_target":
        ex_rows, ex_items = np.concatenate([ex_rows, local]), np.concatenate([ex_items, targets])
    return np.unique(_taken_keys(ex_rows, ex_items, width))


def _available_pairs(rows: np.ndarray, excluded: np.ndarray, pool: np.ndarray, width: int):
    """(row, item) for every pool item not excluded, ascending per row (rows with available <= count)."""
    out_rows, out_items = [], []
    step = max(1, MAX_DRAWS_PER_CHUNK // max(1, len(pool)))
    for lo in range(0, len(rows), step):
        chunk = rows[lo : lo + step]
        keep = ~_in_sorted(_taken_keys(chunk[:, None], pool[None, :], width), excluded)
        r, c = np.nonzero(keep)
        out_rows.append(chunk[r])
        out_items.append(pool[c])
    return out_rows, out_items


def group_candidates(rows, prefix_values, prefix_off, targets, keys, pool, cumsum, count: int,
                     cfg: CandidatesConfig, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(local row, item) pairs for one (split, pool) group of rows, in acceptance order per row."""
    excluded = _excluded_keys(rows, prefix_values, prefix_off, targets, cfg.exclude, width)
    ex_local, ex_item = excluded // width, excluded % width
    in_pool = np.zeros(width, dtype=bool)
    in_pool[pool] = True
    available = len(pool) - np.bincount(ex_local[in_pool[ex_item]], minlength=len(rows))
    pairs_rows, pairs_items = _available_pairs(np.flatnonzero(available <= count), excluded, pool, width)
    walk = np.flatnonzero(available > count)
    if count > 0:
        step = max(1, MAX_DRAWS_PER_CHUNK // (2 * count))
        for lo in range(0, len(walk), step):
            chunk = walk[lo : lo + step]
            lo_key, hi_key = np.searchsorted(excluded, [chunk[0] * width, (chunk[-1] + 1) * width])
            ex_l, ex_i = ex_local[lo_key:hi_key], ex_item[lo_key:hi_key]
            pos = np.searchsorted(chunk, ex_l)  # rows of `chunk` are sorted; drop rows not walked
            mine = (pos < len(chunk)) & (chunk[np.minimum(pos, len(chunk) - 1)] == ex_l)
            r, items = walk_draws(keys[chunk], _taken_keys(pos[mine], ex_i[mine], width), pool, cumsum, count, width)
            pairs_rows.append(chunk[r])
            pairs_items.append(items)
    if not pairs_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pairs_rows), np.concatenate(pairs_items)


def sample_candidates(examples: pa.Table, pool: CandidatePool, cfg: CandidatesConfig, seed: int) -> pa.Table:
    """Examples with `prefix` (s[0..t-1]) -> the same rows with `candidates` (list<int32>) and
    without `prefix`; row order unchanged."""
    n = examples.num_rows
    splits = examples.column("split").to_numpy(zero_copy_only=False)
    split_code = np.array([SPLIT_CODES[s] for s in splits], dtype=np.int64)
    domains = examples.column("target_domain").to_numpy(zero_copy_only=False)
    pool_key = domains if cfg.pool == "target_domain" else np.full(n, ALL, dtype=object)
    positions = examples.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
    targets = examples.column("target").to_numpy(zero_copy_only=False).astype(np.int64)
    prefix_col = examples.column("prefix").combine_chunks()
    prefix_values = pc.list_flatten(prefix_col).to_numpy(zero_copy_only=False).astype(np.int64)
    prefix_off = prefix_col.offsets.to_numpy() - prefix_col.offsets[0].as_py()
    keys = seeded.row_keys(
        seed, "candidates", seeded.hash_strings(examples.column("user").to_numpy(zero_copy_only=False)),
        seeded.hash_strings(examples.column("scope").to_numpy(zero_copy_only=False)), split_code, positions,
    )
    width = max(pool.n_idx, int(targets.max(initial=0)) + 1, int(prefix_values.max(initial=0)) + 1)
    all_rows, all_items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for code in np.unique(split_code):
        count = cfg.train_negatives if code == 0 else cfg.count
        for key in sorted(set(pool_key[split_code == code].tolist())):
            rows = np.flatnonzero((split_code == code) & (pool_key == key))
            items = pool.pools.get(key, np.zeros(0, np.int64))
            cumsum = pool.cumsums.get(key) if cfg.strategy == "popularity" else None
            r, it = group_candidates(rows, prefix_values, prefix_off, targets[rows], keys[rows], items, cumsum,
                                     count, cfg, width)
            all_rows.append(rows[r])
            all_items.append(it)
    row_of, item_of = np.concatenate(all_rows), np.concatenate(all_items)
    order = np.argsort(row_of, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n), out=offsets[1:])
    candidates = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(item_of[order].astype(np.int32)))
    return examples.drop_columns(["prefix"]).append_column("candidates", candidates)


def _sample_batch(batch: pa.Table, pool_ref, cfg: CandidatesConfig, seed: int) -> pa.Table:
    import ray

    pool = ray.get(pool_ref) if isinstance(pool_ref, ray.ObjectRef) else pool_ref  # refs arrive unresolved
    return sample_candidates(batch, pool, cfg, seed)


def candidates_stage(examples_ds, pool_ref, cfg: CandidatesConfig, seed: int):
    """Ray Data: examples (with `prefix`) -> examples with `candidates` (row-wise, no grouping)."""
    return examples_ds.map_batches(
        _sample_batch, batch_format="pyarrow", fn_kwargs=dict(pool_ref=pool_ref, cfg=cfg, seed=seed)
    )
