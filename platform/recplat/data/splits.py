"""The splits stage: sequences -> train / valid / test examples (history, target).

Semantics: docs/data-plane.md, "Exact semantics" -> splits (unit = examples). For a sequence
`s[0..n-1]` and target index `t` the history is `s[max(0, t - max_history) : t]`; an example
exists only if `min(t, max_history) >= min_history`.
  * leave_one_out: test t = n-1, valid t = n-2, train t = 1..n-3 (`prefixes`) or n-3 (`last`);
  * user: one example per sequence, t = n-1, split drawn from U("user_split", H(user), 1);
  * target_domains: other targets get `other_domain`;
  * cold_start: test targets seen in s[0..t] of any kept train/valid example get `warm_target`.

Every example also carries `prefix` = s[0..t-1] (the whole prefix, not just the history window):
the cold-start filter and the candidates stage's exclusion need it. It is a temporary column:
`candidates.sample_candidates` drops it, and the writer keeps only `schema.EXAMPLES` columns.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recplat.data import seeded
from recplat.data.accounting import DROP
from recplat.data.config import SplitConfig

SPLIT_NAMES = np.array(["train", "valid", "test"], dtype=object)  # index = split code
OUTPUT = pa.schema(
    [
        ("user", pa.string()),
        ("scope", pa.string()),
        ("split", pa.string()),
        ("position", pa.int32()),
        ("history", pa.list_(pa.int32())),
        ("target", pa.int32()),
        ("target_domain", pa.string()),
        ("prefix", pa.list_(pa.int32())),
        ("bucket", pa.int32()),
        (DROP, pa.string()),
    ]
)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the ranges [start, start + length) one after another, and list offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lengths)
    return flat, offsets


def example_targets(lengths: np.ndarray, users: np.ndarray, cfg: SplitConfig, seed: int):
    """-> (sequence index, split code, t) per candidate example, before the existence rule,
    ordered by (sequence, split code, t)."""
    n_seq = len(lengths)
    seq_index = np.arange(n_seq)
    if cfg.method == "user":
        u = seeded.uniform(seeded.row_keys(seed, "user_split", seeded.hash_strings(users)), 1)[:, 0]
        r = np.asarray(cfg.ratios, dtype=np.float64) / sum(cfg.ratios)
        code = np.where(u < r[0], 0, np.where(u < r[0] + r[1], 1, 2))
        return seq_index, code, lengths - 1
    if cfg.train_examples == "prefixes":
        per_seq = np.maximum(lengths - 3, 0)
        train_seq = np.repeat(seq_index, per_seq)
        _, offsets = _ranges(np.zeros(n_seq, dtype=np.int64), per_seq)
        train_t = np.arange(len(train_seq)) - np.repeat(offsets[:-1], per_seq) + 1  # t = 1 .. n-3
    else:
        train_seq, train_t = seq_index, lengths - 3
    seq = np.concatenate([train_seq, seq_index, seq_index])
    code = np.concatenate([np.zeros(len(train_seq), np.int64), np.ones(n_seq, np.int64), np.full(n_seq, 2)])
    t = np.concatenate([train_t, lengths - 2, lengths - 1])
    order = np.lexsort((t, code, seq))
    return seq[order], code[order], t[order]


def make_examples(seqs: pa.Table, cfg: SplitConfig, seed: int) -> pa.Table:
    """Kept sequences (schema.SEQUENCES + `bucket`) -> `OUTPUT` rows sorted by (user, scope,
    split code, position) within the block; `drop_reason` = `other_domain` or null."""
    return examples_of(seqs, cfg, seed, prefix=True)[0]


def examples_of(seqs: pa.Table, cfg: SplitConfig, seed: int, prefix: bool) -> tuple[pa.Table, np.ndarray]:
    """`make_examples`, and each example's row in `seqs`; without the (quadratic) `prefix` column
    when `prefix` is False (the fused candidates stage reads the sequences instead)."""
    if seqs.num_rows == 0:
        schema = OUTPUT if prefix else OUTPUT.remove(OUTPUT.get_field_index("prefix"))
        return schema.empty_table(), np.zeros(0, np.int64)
    items_col = seqs.column("items").combine_chunks()
    lengths = pc.list_value_length(items_col).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    items = pc.list_flatten(items_col)
    domains = pc.list_flatten(seqs.column("domains").combine_chunks())
    users = seqs.column("user").to_numpy(zero_copy_only=False)

    seq, code, t = example_targets(lengths, users, cfg, seed)
    exists = (t >= 0) & (np.minimum(t, cfg.max_history) >= cfg.min_history)
    seq, code, t = seq[exists], code[exists], t[exists]

    history_start = starts[seq] + np.maximum(0, t - cfg.max_history)
    history_idx, history_off = _ranges(history_start, starts[seq] + t - history_start)
    target_at = pa.array(starts[seq] + t)
    target_domain = domains.take(target_at)
    reason = pa.nulls(len(seq), pa.string())
    if cfg.target_domains is not None:
        listed = pc.is_in(target_domain, value_set=pa.array(cfg.target_domains, pa.string()))
        reason = pc.if_else(listed, reason, pa.scalar("other_domain"))
    seq_at = pa.array(seq)
    columns = {
        "user": seqs.column("user").take(seq_at),
        "scope": seqs.column("scope").take(seq_at),
        "split": pa.array(SPLIT_NAMES[code].tolist() if len(code) else [], pa.string()),
        "position": pa.array(t.astype(np.int32)),
        "history": pa.ListArray.from_arrays(pa.array(history_off, pa.int32()), items.take(pa.array(history_idx))),
        "target": items.take(target_at),
        "target_domain": target_domain,
        "bucket": seqs.column("bucket").take(seq_at),
        DROP: reason,
    }
    if prefix:
        prefix_idx, prefix_off = _ranges(starts[seq], t)
        columns["prefix"] = pa.ListArray.from_arrays(pa.array(prefix_off, pa.int32()), items.take(pa.array(prefix_idx)))
    fields = [f for f in OUTPUT if f.name in columns]
    return pa.table([columns[f.name] for f in fields], names=[f.name for f in fields]).cast(pa.schema(fields)), seq


# --- cold start ---------------------------------------------------------------------------------
def seen_items(examples: pa.Table) -> pa.Table:
    """Item_idx of s[0..t] (prefix + target) over the kept train and valid examples of a batch."""
    fit_split = pc.is_in(examples.column("split"), value_set=pa.array(["train", "valid"]))
    fit = pc.and_(pc.is_null(examples.column(DROP)), fit_split)
    rows = examples.filter(fit)
    values = pa.concat_arrays([
        pc.list_flatten(rows.column("prefix").combine_chunks()).cast(pa.int32()),
        rows.column("target").combine_chunks().cast(pa.int32()),
    ])
    return pa.table({"item_idx": pc.unique(values)})


def mark_warm_targets(examples: pa.Table, seen: pa.Array) -> pa.Table:
    """Kept test examples whose target is in `seen` get `warm_target`; other rows are unchanged."""
    warm = pc.and_(
        pc.and_(pc.is_null(examples.column(DROP)), pc.equal(examples.column("split"), "test")),
        pc.is_in(examples.column("target"), value_set=seen),
    )
    reason = pc.if_else(warm, pa.scalar("warm_target"), examples.column(DROP))
    return examples.set_column(examples.schema.get_field_index(DROP), DROP, reason)
