"""Per-example segment labels, for metrics broken down by segment.

* `history_domain_segments` — LLM-Rec Figure 5 (docs/papers.md §1.9): test instances split by the
  domains of the <= 10 most recent history items relative to the target's domain:
  Same = every history item is in the target's domain, Diff = none is, Mix = some but not all.
  An empty history is vacuously both "all" and "none", so it gets its own label `empty` rather
  than silently inflating Same or Diff (with `split.min_history >= 1`, the default, it never occurs).
* `activity_segments` — CPRec Table 5 (§4.7): users split by history length with thresholds 5 and
  9, left-closed/right-open: sparse [.., 5), medium [5, 9), dense [9, ..). The thresholds are
  configurable (`ActivityThresholds`).

Labels are numpy string arrays aligned with the examples table, ready for `evaluate_ranks(segments=)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.errors import ConfigError, DataError

SAME, MIX, DIFF, EMPTY = "same", "mix", "diff", "empty"
SPARSE, MEDIUM, DENSE = "sparse", "medium", "dense"


def item_domain_lookup(items: pa.Table) -> tuple[np.ndarray, list[str]]:
    """items.parquet -> (code [max_item_idx + 1] int32 indexed by item_idx, domain names).

    `code[i]` indexes the names list; -1 marks padding (row 0) and item_idx absent from the table.
    """
    idx = items["item_idx"].to_numpy().astype(np.int64)
    names, codes = np.unique(np.asarray(items["domain"].to_pylist(), dtype=object).astype(str), return_inverse=True)
    lookup = np.full(int(idx.max(initial=0)) + 1, -1, dtype=np.int32)
    lookup[idx] = codes
    return lookup, [str(n) for n in names]


def history_domain_segments(examples: pa.Table, items: pa.Table, window: int | None = 10) -> np.ndarray:
    """Same/Mix/Diff/empty per example from its last `window` history items (None = all).

    `examples` follows schema.EXAMPLES (history, target_domain); `items` has item_idx and domain.
    """
    if window is not None and window < 1:
        raise ConfigError(f"history window must be >= 1 or None, got {window}")
    lookup, names = item_domain_lookup(items)
    history = examples["history"].combine_chunks()
    n = len(history)
    lengths = pc.fill_null(pc.list_value_length(history), 0).to_numpy().astype(np.int64)
    flat = pc.list_flatten(history).to_numpy().astype(np.int64)
    parents = pc.list_parent_indices(history).to_numpy().astype(np.int64)
    if len(flat) and (flat.min() < 1 or flat.max() >= len(lookup) or (lookup[flat] < 0).any()):
        bad = flat[(flat < 1) | (flat >= len(lookup))]
        bad = bad if len(bad) else flat[lookup[flat] < 0]
        raise DataError(f"history item_idx {int(bad[0])} has no row in items (padding or unknown item)")

    # position of each flattened item inside its own list; keep the last `window` of each list
    starts = np.cumsum(lengths) - lengths
    pos_in_row = np.arange(len(flat)) - starts[parents]
    keep = np.ones(len(flat), dtype=bool) if window is None else pos_in_row >= lengths[parents] - window
    code_of = {name: i for i, name in enumerate(names)}
    target = np.array([code_of.get(d, -2) for d in examples["target_domain"].to_pylist()], dtype=np.int64)
    in_target = lookup[flat] == target[parents]

    kept_parents = parents[keep]
    n_hist = np.bincount(kept_parents, minlength=n)
    n_in = np.bincount(kept_parents, weights=in_target[keep], minlength=n).astype(np.int64)
    return classify_history_domains(n_in, n_hist)


def classify_history_domains(n_in_target, n_history) -> np.ndarray:
    """Label from counts: empty if n_history == 0, same if all in target domain, diff if none."""
    n_in, n_hist = np.asarray(n_in_target), np.asarray(n_history)
    labels = np.full(len(n_hist), MIX, dtype=object)
    labels[n_in == 0] = DIFF
    labels[(n_in == n_hist) & (n_hist > 0)] = SAME
    labels[n_hist == 0] = EMPTY
    return labels.astype(str)


@dataclass(frozen=True)
class ActivityThresholds:
    """History-length cut points (left-closed): sparse < medium_from <= medium < dense_from <= dense.

    Defaults are CPRec Table 5's (5 and 9). Lengths are `len(history)`, which the splitter caps at
    `split.max_history`; pass `position` lengths to `activity_segments` for the uncapped prefix.
    """

    medium_from: int = 5
    dense_from: int = 9

    def __post_init__(self):
        if not 0 <= self.medium_from <= self.dense_from:
            raise ConfigError(
                f"activity thresholds need 0 <= medium_from <= dense_from, "
                f"got medium_from={self.medium_from}, dense_from={self.dense_from}"
            )


def history_lengths(examples: pa.Table) -> np.ndarray:
    """len(history) per example (int64)."""
    return pc.fill_null(pc.list_value_length(examples["history"]), 0).to_numpy().astype(np.int64)


def activity_segments(lengths, thresholds: ActivityThresholds = ActivityThresholds()) -> np.ndarray:
    """sparse / medium / dense per example from history lengths (see `ActivityThresholds`)."""
    lengths = np.asarray(lengths)
    labels = np.full(len(lengths), SPARSE, dtype=object)
    labels[lengths >= thresholds.medium_from] = MEDIUM
    labels[lengths >= thresholds.dense_from] = DENSE
    return labels.astype(str)
