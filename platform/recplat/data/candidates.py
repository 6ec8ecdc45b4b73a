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
the result is exactly the sequential walk's. Exclusion never lists an example's prefix: an item is
in s[0..t-1] iff its first position in the sequence is < t (`FirstPositions`), and repeats among
a row's draws are found by sorting that row's own draws (`_first_in_row`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import seeded
from recplat.data.accounting import DROP
from recplat.data.config import CandidatesConfig, SplitConfig
from recplat.data.splits import examples_of

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


@dataclass
class FirstPositions:
    """Which items come before position t of a sequence, without listing each example's prefix:
    item x is in s[0..t-1] iff its FIRST position in s is < t. One sorted key per distinct
    (sequence, item) pair, so memory is linear in the sequences, not quadratic in their lengths."""

    keys: np.ndarray  # sorted unique sequence * width + item_idx
    first: np.ndarray  # the item's first position in that sequence
    width: int

    @classmethod
    def of(cls, values: np.ndarray, offsets: np.ndarray, width: int) -> "FirstPositions":
        """`values` = the sequences' items one after another, `offsets` [n_seq + 1] into them."""
        lengths = np.diff(offsets)
        seq = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        position = np.arange(len(values), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        key = _taken_keys(seq, values, width)
        order = np.argsort(key, kind="stable")  # equal keys keep position order: the first comes first
        key = key[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        return cls(key[first], position[order][first], width)

    def before(self, seq: np.ndarray, t: np.ndarray, items: np.ndarray) -> np.ndarray:
        """items[i] in s_seq[i][0..t[i]-1] (broadcasting `seq` and `t` against `items`)."""
        if len(self.keys) == 0:
            return np.zeros(np.shape(items), dtype=bool)
        key = _taken_keys(seq, items, self.width)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return (self.keys[pos] == key) & (self.first[pos] < t)

    def count_before(self, seq: np.ndarray, t: np.ndarray, in_pool: np.ndarray) -> np.ndarray:
        """Per row: distinct items of s_seq[0..t-1] with in_pool[item]."""
        sel = in_pool[self.keys % self.width]
        span = int(max(self.first.max(initial=0), t.max(initial=0))) + 1
        packed = np.sort((self.keys[sel] // self.width) * span + self.first[sel])
        return np.searchsorted(packed, seq * span + t) - np.searchsorted(packed, seq * span)


@dataclass
class Exclusions:
    """The excluded items of each row of a group: s[0..t-1] (`history`), plus the target."""

    positions: FirstPositions
    seq: np.ndarray  # per row: its sequence
    t: np.ndarray  # per row: the target's position
    targets: np.ndarray
    mode: str  # CandidatesConfig.exclude

    def of(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Excluded flags of items [len(rows), k] (or [len(rows)]) for the given local rows."""
        if self.mode == "none":
            return np.zeros(items.shape, dtype=bool)
        shape = (-1,) + (1,) * (items.ndim - 1)
        out = self.positions.before(self.seq[rows].reshape(shape), self.t[rows].reshape(shape), items)
        if self.mode == "history_and_target":
            out |= items == self.targets[rows].reshape(shape)
        return out

    def count_in(self, pool: np.ndarray) -> np.ndarray:
        """Per row: how many of `pool` are excluded."""
        if self.mode == "none":
            return np.zeros(len(self.seq), dtype=np.int64)
        in_pool = np.zeros(self.positions.width, dtype=bool)
        in_pool[pool] = True
        n = self.positions.count_before(self.seq, self.t, in_pool)
        if self.mode == "history_and_target":
            n += in_pool[self.targets] & ~self.positions.before(self.seq, self.t, self.targets)
        return n


def _first_in_row(picked: np.ndarray) -> np.ndarray:
    """True at the first draw of each item in its row: sort each row's own draws (stably, so the
    earliest of equal draws leads) and compare neighbours."""
    order = np.argsort(picked, axis=1, kind="stable")
    ordered = np.take_along_axis(picked, order, axis=1)
    lead = np.ones(picked.shape, dtype=bool)
    lead[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.empty(picked.shape, dtype=bool)
    np.put_along_axis(first, order, lead, axis=1)
    return first


def walk_draws(keys: np.ndarray, excluded: Exclusions, rows: np.ndarray, pool: np.ndarray, cumsum: np.ndarray | None,
               count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The acceptance walk for `rows` of one group (all with available > count); `keys[i]` is the
    draw key of rows[i]. Returns (index into rows, item) pairs in acceptance order per row (rows
    interleaved; a stable sort by row recovers each row's order)."""
    out_rows, out_items = [], []
    active = np.arange(len(keys))
    need = np.full(len(keys), count, dtype=np.int64)
    taken = np.zeros(0, np.int64)  # keys index * width + item accepted so far, of rows still walking
    draws, start = 2 * count, 1
    while len(active):
        u = seeded.uniform(keys[active], draws, start=start)
        if cumsum is None:
            picked = pool[np.floor(u * len(pool)).astype(np.int64)]
        else:
            picked = pool[np.searchsorted(cumsum, u * cumsum[-1], side="right")]
        accept = _first_in_row(picked) & ~excluded.of(rows[active], picked)
        if len(taken):  # a row walking on: what it already took counts as excluded
            accept &= ~_in_sorted(_taken_keys(active[:, None], picked, width), taken)
        accept &= np.cumsum(accept, axis=1) <= need[active][:, None]
        r, c = np.nonzero(accept)  # row-major: each row's acceptances in draw order
        out_rows.append(active[r])
        out_items.append(picked[r, c])
        need[active] -= accept.sum(axis=1)
        still = need[active] > 0
        if still.any():  # rare: remember what the rows still walking took
            mine = still[r]
            taken = np.union1d(taken[np.isin(taken // width, active[still])], _taken_keys(active[r][mine], picked[r, c][mine], width))
        active = active[still]
        start += draws
    return np.concatenate(out_rows), np.concatenate(out_items)


def _available_pairs(rows: np.ndarray, excluded: Exclusions, pool: np.ndarray):
    """(row, item) for every pool item not excluded, ascending per row (rows with available <= count)."""
    out_rows, out_items = [], []
    step = max(1, MAX_DRAWS_PER_CHUNK // max(1, len(pool)))
    for lo in range(0, len(rows), step):
        chunk = rows[lo : lo + step]
        keep = ~excluded.of(chunk, np.broadcast_to(pool, (len(chunk), len(pool))))
        r, c = np.nonzero(keep)
        out_rows.append(chunk[r])
        out_items.append(pool[c])
    return out_rows, out_items


def group_candidates(excluded: Exclusions, keys, pool, cumsum, count: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(local row, item) pairs for one (split, pool) group of rows, in acceptance order per row."""
    available = len(pool) - excluded.count_in(pool)
    pairs_rows, pairs_items = _available_pairs(np.flatnonzero(available <= count), excluded, pool)
    walk = np.flatnonzero(available > count)
    if count > 0:
        step = max(1, MAX_DRAWS_PER_CHUNK // (2 * count))
        for lo in range(0, len(walk), step):
            chunk = walk[lo : lo + step]
            r, items = walk_draws(keys[chunk], excluded, chunk, pool, cumsum, count, width)
            pairs_rows.append(chunk[r])
            pairs_items.append(items)
    if not pairs_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pairs_rows), np.concatenate(pairs_items)


def candidates_for_positions(
    seq_values: np.ndarray, seq_off: np.ndarray, ex_seq: np.ndarray, t: np.ndarray, targets: np.ndarray,
    split_code: np.ndarray, pool_key: np.ndarray, keys: np.ndarray, pool: CandidatePool, cfg: CandidatesConfig,
) -> pa.ListArray:
    """Candidate lists of examples given as (sequence, target position t): sequence ex_seq[i] is
    seq_values[seq_off[s]:seq_off[s + 1]]; its prefix s[0..t[i]-1] is never listed."""
    n = len(ex_seq)
    width = max(pool.n_idx, int(targets.max(initial=0)) + 1, int(seq_values.max(initial=0)) + 1)
    positions = FirstPositions.of(seq_values, seq_off, width)
    all_rows, all_items = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for code in np.unique(split_code):
        count = cfg.train_negatives if code == 0 else cfg.count
        for key in sorted(set(pool_key[split_code == code].tolist())):
            rows = np.flatnonzero((split_code == code) & (pool_key == key))
            items = pool.pools.get(key, np.zeros(0, np.int64))
            cumsum = pool.cumsums.get(key) if cfg.strategy == "popularity" else None
            excluded = Exclusions(positions, ex_seq[rows], t[rows], targets[rows], cfg.exclude)
            r, it = group_candidates(excluded, keys[rows], items, cumsum, count, width)
            all_rows.append(rows[r])
            all_items.append(it)
    row_of, item_of = np.concatenate(all_rows), np.concatenate(all_items)
    order = np.argsort(row_of, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=n), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(item_of[order].astype(np.int32)))


def draw_keys(seed: int, users, scopes, split_code: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The draw key of each example: U("candidates", H(user), H(scope), split_code, t)."""
    return seeded.row_keys(seed, "candidates", seeded.hash_strings(users), seeded.hash_strings(scopes), split_code, positions)


def _pool_keys(domains: np.ndarray, cfg: CandidatesConfig) -> np.ndarray:
    return domains if cfg.pool == "target_domain" else np.full(len(domains), ALL, dtype=object)


def sample_candidates(examples: pa.Table, pool: CandidatePool, cfg: CandidatesConfig, seed: int) -> pa.Table:
    """Examples with `prefix` (s[0..t-1]) -> the same rows with `candidates` (list<int32>) and
    without `prefix`; row order unchanged. (Each prefix is its own sequence, with t = its length.)"""
    splits = examples.column("split").to_numpy(zero_copy_only=False)
    split_code = np.array([SPLIT_CODES[s] for s in splits], dtype=np.int64)
    positions = examples.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
    prefix_col = examples.column("prefix").combine_chunks()
    prefix_values = pc.list_flatten(prefix_col).to_numpy(zero_copy_only=False).astype(np.int64)
    prefix_off = (prefix_col.offsets.to_numpy() - prefix_col.offsets[0].as_py()).astype(np.int64)
    keys = draw_keys(seed, examples.column("user").to_numpy(zero_copy_only=False),
                     examples.column("scope").to_numpy(zero_copy_only=False), split_code, positions)
    candidates = candidates_for_positions(
        prefix_values, prefix_off, np.arange(examples.num_rows), np.diff(prefix_off),
        examples.column("target").to_numpy(zero_copy_only=False).astype(np.int64), split_code,
        _pool_keys(examples.column("target_domain").to_numpy(zero_copy_only=False), cfg), keys, pool, cfg,
    )
    return examples.drop_columns(["prefix"]).append_column("candidates", candidates)


def examples_with_candidates(seqs: pa.Table, split: SplitConfig, pool: CandidatePool, cfg: CandidatesConfig, seed: int) -> pa.Table:
    """Splits and candidates fused, for a block of kept sequences: `splits.make_examples`'s rows
    with `candidates` and without `prefix`, equal to `sample_candidates` on the unfused rows.
    Rows the splits stage drops (`drop_reason` set) get no candidates."""
    examples, seq = examples_of(seqs, split, seed, prefix=False)
    kept = np.flatnonzero(pc.is_null(examples.column(DROP)).to_numpy(zero_copy_only=False)) if examples.num_rows else np.zeros(0, np.int64)
    items = seqs.column("items").combine_chunks() if seqs.num_rows else pa.array([], pa.list_(pa.int32()))
    values = pc.list_flatten(items).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = (items.offsets.to_numpy() - items.offsets[0].as_py()).astype(np.int64) if len(items) else np.zeros(1, np.int64)
    rows = examples.take(pa.array(kept, pa.int64()))
    split_code = np.array([SPLIT_CODES[s] for s in rows.column("split").to_pylist()], dtype=np.int64)
    t = rows.column("position").to_numpy(zero_copy_only=False).astype(np.int64)
    keys = draw_keys(seed, rows.column("user").to_numpy(zero_copy_only=False),
                     rows.column("scope").to_numpy(zero_copy_only=False), split_code, t)
    chosen = candidates_for_positions(
        values, offsets, seq[kept], t, rows.column("target").to_numpy(zero_copy_only=False).astype(np.int64),
        split_code, _pool_keys(rows.column("target_domain").to_numpy(zero_copy_only=False), cfg), keys, pool, cfg,
    )
    lengths = np.zeros(examples.num_rows, dtype=np.int64)
    lengths[kept] = np.diff(chosen.offsets.to_numpy())
    offsets_all = np.zeros(examples.num_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets_all[1:])
    candidates = pa.ListArray.from_arrays(pa.array(offsets_all, pa.int32()), chosen.values)
    return examples.append_column("candidates", candidates)
