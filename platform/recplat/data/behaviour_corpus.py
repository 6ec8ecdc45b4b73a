"""CPRec's behaviour corpus in training order (spec §4.4-4.5): which prepared rows it keeps (the two
reconstructed guidelines) and the order the training spine reads them in (the WSA phases).

A prepared `cprec_cpt` dataset (`sequences.scope: both`) holds, per user, one sequence per domain
and one all-domain mixed sequence; an example's `scope` tells them apart: a domain name for a
domain-specific row, `schema.MIXED_SCOPE` for a mixed one.

- G1 `cross_domain_history` keeps a mixed row only when its history window holds items of more than
  one domain (so its user has behaviours in >= 2 domains; otherwise it repeats a domain-specific row).
- G2 `check_target_domain_negatives` checks that every stored candidate is from the target's domain
  (the preset's `candidates.pool: target_domain` draws them so).

Phases (WSA, Eq. 2-3), with B the effective batch (micro_batch x grad_accum x workers):
W = ceil(warmup_frac N_DS / B), S = ceil(N_DS / B), A = S + ceil(N_Mix / B) (`phase_ends`). Updates 1..S
read domain-specific rows (shuffled across domains, seeded), updates S+1..A exactly the mixed rows.
A phase's rows are cut or cycled to fill its updates (the last partial batch of each phase is
completed by repeating the first rows of its own shuffled order).

`worker_layout` puts the rows in the one order that makes this hold on every worker: Ray Train's
split of a one-block dataset with `equal=True` (streaming_split, `preserve_order`; train/launch.py)
hands worker r the r-th contiguous 1/n of the rows, and each worker reads its part in order in
micro-batches. So the dataset is worker 0's rows for updates 1..A, then worker 1's, ...; each row
carries the update, worker and micro-batch it was laid out for, and the training task checks them
as it reads (recipes/cprec.py), so a spine that shards differently fails loudly instead of mixing
phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recplat.data import schema
from recplat.errors import ConfigError, DataError

DOMAIN_SPECIFIC, MIXED = "domain_specific", "mixed"


def is_mixed(examples: pa.Table) -> np.ndarray:
    """True for rows of the all-domain mixed sequences."""
    return np.asarray(examples.column("scope").to_pylist(), dtype=object) == schema.MIXED_SCOPE


def _flat(examples: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(row index of every list element, the elements) of a list<int> column."""
    import pyarrow.compute as pc

    values = examples.column(column).combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(values), 0).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(lengths)), lengths), pc.list_flatten(values).to_numpy(zero_copy_only=False)


def cross_domain_history(examples: pa.Table, item_domains: np.ndarray) -> np.ndarray:
    """G1: per row, whether its history window holds items of more than one domain."""
    rows, items = _flat(examples, "history")
    domains = item_domains[items.astype(np.int64)]
    first = np.full(examples.num_rows, None, dtype=object)
    first[rows[::-1]] = domains[::-1]  # each row's first history domain
    differs = np.zeros(examples.num_rows, dtype=bool)
    np.logical_or.at(differs, rows, domains != first[rows])
    return differs


def check_target_domain_negatives(examples: pa.Table, item_domains: np.ndarray, where: str) -> None:
    """G2: every stored candidate is an item of its row's target domain, else a DataError naming
    the first offending row."""
    rows, items = _flat(examples, "candidates")
    target = np.asarray(examples.column("target_domain").to_pylist(), dtype=object)
    off = np.flatnonzero(item_domains[items.astype(np.int64)] != target[rows])
    if len(off):
        row = int(rows[off[0]])
        raise DataError(f"{where}: row {row} (target domain {target[row]}) stores candidates from other domains "
                        f"(item {int(items[off[0]])}); guidelines.target_domain_negatives needs candidates.pool: "
                        "target_domain")


@dataclass(frozen=True)
class PhasePlan:
    """The optimizer updates of a CPT run and what each phase reads (1-based updates)."""

    warmup_end: int  # W
    stable_end: int  # S: last update on domain-specific rows (phased data)
    anneal_end: int  # A: total updates
    batch: int  # B, rows per update over all workers

    @property
    def phase_ends(self) -> tuple[int, int]:
        return self.warmup_end, self.stable_end


def phase_plan(n_ds: int, n_mix: int, batch: int, warmup_frac: float,
               warmup_end: int | None = None, stable_end: int | None = None,
               anneal_end: int | None = None) -> PhasePlan:  # fmt: skip
    """W, S, A from the row counts (each may be set instead: a Tune search target)."""
    W = math.ceil(warmup_frac * n_ds / batch) if warmup_end is None else warmup_end
    S = math.ceil(n_ds / batch) if stable_end is None else stable_end
    A = S + math.ceil(n_mix / batch) if anneal_end is None else anneal_end
    if not 0 <= W <= S <= A or A < 1:
        raise ConfigError(f"cpt: phase ends must satisfy 0 <= W <= S <= A and A >= 1, got W={W}, S={S}, A={A} "
                          f"({n_ds} domain-specific and {n_mix} mixed rows, batch {batch})")
    return PhasePlan(W, S, A, batch)


def fill(order: np.ndarray, count: int, what: str) -> np.ndarray:
    """`count` rows from `order`: its first `count`, or all of it repeated as often as needed."""
    if count and not len(order):
        raise ConfigError(f"cpt: the {what} phase needs {count} rows but the corpus has none")
    return np.resize(order, count) if count else order[:0]


def worker_layout(consumption: np.ndarray, phases: np.ndarray, workers: int, micro_batch: int,
                  grad_accum: int) -> pa.Table:  # fmt: skip
    """The dataset order for `consumption` (row ids in the order updates read them: update u's
    rows are consumption[(u-1) B : u B], worker r's share the r-th k = micro_batch x grad_accum of
    them). Columns: row (into the corpus), update (1-based), rank, micro (index within the
    update), phase."""
    k = micro_batch * grad_accum
    batch = k * workers
    if len(consumption) % batch:
        raise ValueError(f"{len(consumption)} rows are not a whole number of updates of {batch}")
    updates = len(consumption) // batch
    # position p of the consumption order -> (update u, rank r, offset j): p = u B + r k + j
    grid = np.arange(len(consumption)).reshape(updates, workers, k).transpose(1, 0, 2).reshape(-1)
    u, rest = np.divmod(grid, batch)
    rank, offset = np.divmod(rest, k)
    return pa.table({"row": pa.array(consumption[grid], pa.int64()), "update": pa.array(u + 1, pa.int32()),
                     "rank": pa.array(rank, pa.int32()), "micro": pa.array(offset // micro_batch, pa.int32()),
                     "phase": pa.array(phases[grid].tolist(), pa.string())})


def consumption_order(ds_rows: np.ndarray, mix_rows: np.ndarray, plan: PhasePlan, data: str,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(row ids, phase names) in the order updates 1..A read them, for Fig. 4's data modes:

    phased           domain-specific rows (shuffled) for updates 1..S, mixed rows for S+1..A
    shuffled         both kinds shuffled together over updates 1..A (DS+Mix(N))
    domain_specific  domain-specific rows only, over updates 1..A (DS)"""
    rng = np.random.default_rng(seed)
    ds, mix = rng.permutation(ds_rows), rng.permutation(mix_rows)
    B = plan.batch
    if data == "phased":
        rows = np.concatenate([fill(ds, plan.stable_end * B, DOMAIN_SPECIFIC),
                               fill(mix, (plan.anneal_end - plan.stable_end) * B, MIXED)])
        phases = np.array([DOMAIN_SPECIFIC] * (plan.stable_end * B)
                          + [MIXED] * ((plan.anneal_end - plan.stable_end) * B), dtype=object)
        return rows, phases
    pool = ds if data == "domain_specific" else rng.permutation(np.concatenate([ds_rows, mix_rows]))
    rows = fill(pool, plan.anneal_end * B, "training")
    mixed = set(mix_rows.tolist()) if data == "shuffled" else set()
    return rows, np.array([MIXED if r in mixed else DOMAIN_SPECIFIC for r in rows.tolist()], dtype=object)
