"""Scoring the positive against its stored candidates (LLM-Rec §1.7 in docs/papers.md).

LLM-Rec pre-computes every item embedding once per evaluation and scores a user by dot products
with its candidates. `rank_with_item_cache` is that path: the caller encodes each needed item once
(`build_item_cache`), then ranks are gathered chunk by chunk so memory stays bounded with 1000
candidates per example. `rank_naive` re-encodes the candidates of every example; it is the
reference the cache path must equal, and the baseline of the benchmark. Both, and the popularity
baseline, turn scores into ranks through `rank_candidates` only: one masking rule for every ranker.

Candidate lists are ragged when fewer items were available than asked for. As arrays they are
padded with `PAD_ITEM = 0` (item_idx 0 is the padding row of the item vocabulary, schema.py), so a
padded slot is always a valid gather index; it is masked out of the ranking.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch

from recplat.errors import DataError
from recplat.eval.metrics import pessimistic_ranks

PAD_ITEM = 0


def pad_candidates(candidates) -> tuple[np.ndarray, np.ndarray]:
    """Ragged candidate lists -> (ids [N, C_max] int64 padded with PAD_ITEM, mask [N, C_max] bool).

    Accepts a pyarrow list column (`examples["candidates"]`) or any sequence of int sequences.
    """
    if isinstance(candidates, (pa.Array, pa.ChunkedArray)):
        candidates = candidates.to_pylist()
    lengths = np.array([len(c) for c in candidates], dtype=np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    ids = np.full((len(lengths), width), PAD_ITEM, dtype=np.int64)
    mask = np.arange(width)[None, :] < lengths[:, None]
    if width:
        ids[mask] = np.concatenate([np.asarray(c, dtype=np.int64) for c in candidates])
    return ids, mask


def candidate_mask(targets, candidates, mask=None):
    """Which candidate slots take part in a ranking: real candidates (not padding) that are not
    the target itself.

    `mask` [N, C] marks real candidates (default: `candidates > PAD_ITEM`, so padding with 0 or -1
    both work). A candidate equal to its own target is masked too: with `candidates.exclude: none`
    (LLM-Rec's code, spec §1.2 step 6) the sampler may store the positive among the negatives, and
    a pessimistic tie with its own copy would cost it one rank for nothing. numpy or torch in,
    the same library out.
    """
    valid = candidates > PAD_ITEM if mask is None else mask
    return valid & (candidates != targets[:, None])


def rank_candidates(pos_scores, cand_scores, targets, candidates, mask=None):
    """THE ranking rule every ranker uses (models, popularity, naive reference): the pessimistic
    1-based rank of each target's score among its candidates' scores, over `candidate_mask` slots.

    `pos_scores` [N], `cand_scores` [N, C], `targets` [N] and `candidates` [N, C] item_idx,
    optional `mask` [N, C] of real candidates. numpy arrays or torch tensors (all of one kind);
    returns int64 of the same kind.
    """
    if cand_scores.ndim != 2 or tuple(pos_scores.shape) != (cand_scores.shape[0],):
        raise ValueError(f"expected pos_scores [N] and cand_scores [N, C], got {tuple(pos_scores.shape)} and "
                         f"{tuple(cand_scores.shape)}")
    if tuple(candidates.shape) != tuple(cand_scores.shape) or (mask is not None and tuple(mask.shape) != tuple(cand_scores.shape)):
        raise ValueError(f"candidates {tuple(candidates.shape)} and mask must have cand_scores' shape {tuple(cand_scores.shape)}")
    return pessimistic_ranks(pos_scores, cand_scores, candidate_mask(targets, candidates, mask))


def needed_items(targets, candidates) -> np.ndarray:
    """The distinct item_idx (sorted, padding excluded) that an evaluation has to encode."""
    ids = np.unique(np.concatenate([np.ravel(np.asarray(x, dtype=np.int64)) for x in (targets, candidates)]))
    return ids[ids > PAD_ITEM]


@torch.no_grad()
def build_item_cache(
    encode_items: Callable[[torch.Tensor], torch.Tensor],
    item_ids,
    num_items: int,
    batch_size: int = 256,
) -> torch.Tensor:
    """Encode each of `item_ids` once -> item_vectors [num_items + 1, d] (row = item_idx).

    Rows of items not asked for (and padding row 0) stay zero: they are never gathered unmasked.
    `encode_items` receives CPU LongTensors (move them to the model's device inside it); the cache
    lives on the device of the vectors it returns.
    """
    ids = _tensor(item_ids, np.int64)
    if len(ids) and (int(ids.min()) < 1 or int(ids.max()) > num_items):
        raise DataError(f"item ids must be in 1..{num_items}, got range {int(ids.min())}..{int(ids.max())}")
    cache = None
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        vecs = encode_items(batch)
        if cache is None:
            cache = torch.zeros(num_items + 1, vecs.shape[-1], dtype=vecs.dtype, device=vecs.device)
        cache[batch.to(vecs.device)] = vecs
    if cache is None:
        raise DataError("build_item_cache: no items to encode")
    return cache


@torch.no_grad()
def rank_with_item_cache(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets,
    candidates,
    mask=None,
    max_chunk_elements: int = 1 << 25,
) -> np.ndarray:
    """Ranks from cached item vectors: score = <user, item>, gathered in memory-bounded chunks.

    `user_vectors` [N, d], `item_vectors` [V + 1, d] indexed by item_idx, `targets` [N], `candidates`
    [N, C] padded with PAD_ITEM (see `pad_candidates`), `mask` [N, C] (default: candidates > 0, so
    padding with 0 or -1 both work); slots are masked and ranked by `rank_candidates`. Each chunk gathers at most
    `max_chunk_elements` floats ([rows, C, d]); scores are computed in float32 on the item
    vectors' device.
    """
    device = item_vectors.device
    users = torch.as_tensor(user_vectors)
    targets = _tensor(targets, np.int64)
    cands = _tensor(candidates, np.int64)
    n, c = cands.shape if cands.ndim == 2 else (None, None)
    if n is None or users.shape[0] != n or targets.shape != (n,):
        raise ValueError(
            f"expected user_vectors [N, d], targets [N], candidates [N, C]; got "
            f"{tuple(users.shape)}, {tuple(targets.shape)}, {tuple(cands.shape)}"
        )
    valid = None if mask is None else _tensor(mask, bool)
    d = item_vectors.shape[1]
    rows = max(1, max_chunk_elements // max(1, c * d))
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, rows):
        sl = slice(start, start + rows)
        u = users[sl].to(device=device, dtype=torch.float32)
        pos = (item_vectors[targets[sl].to(device)].float() * u).sum(-1)
        # clamp: padded slots (masked below) are gathered from row 0 even if padded with -1
        ids = cands[sl].clamp_min(0).to(device)
        gathered = item_vectors.index_select(0, ids.reshape(-1)).view(*ids.shape, d).float()
        cand = torch.einsum("bcd,bd->bc", gathered, u)
        chunk_mask = None if valid is None else valid[sl].to(device)
        out[sl] = rank_candidates(pos, cand, targets[sl].to(device), cands[sl].to(device), chunk_mask).cpu().numpy()
    return out


@torch.no_grad()
def rank_naive(
    encode_user: Callable[[Sequence[int]], torch.Tensor],
    encode_items: Callable[[torch.Tensor], torch.Tensor],
    examples: pa.Table | Iterable[Mapping],
) -> np.ndarray:
    """Reference path: per example, encode the user and re-encode target + candidates, then rank.

    `encode_user(history)` -> [d]; `encode_items(LongTensor [k])` -> [k, d]. `examples` is an
    examples table (schema.EXAMPLES) or rows with history, target, candidates. Slow by design;
    it is what the cache path is checked against and benchmarked against.
    """
    rows = examples
    if isinstance(examples, pa.Table):
        rows = examples.select(["history", "target", "candidates"]).to_pylist()
    ranks = []
    for row in rows:
        cands = torch.tensor([c for c in row["candidates"] if c > PAD_ITEM], dtype=torch.long)
        u = encode_user(list(row["history"])).float()
        vecs = encode_items(torch.cat([torch.tensor([row["target"]], dtype=torch.long), cands])).float()
        scores = (vecs * u).sum(-1)
        target = torch.tensor([row["target"]], dtype=torch.long)
        ranks.append(int(rank_candidates(scores[:1], scores[None, 1:], target, cands[None, :])[0]))
    return np.asarray(ranks, dtype=np.int64)


def _tensor(x, dtype) -> torch.Tensor:
    """A CPU tensor from an array-like (numpy, pyarrow, list, tensor) without read-only views."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.bool if dtype is bool else torch.int64)
    a = np.asarray(x, dtype=dtype)
    return torch.from_numpy(a if a.flags.writeable else a.copy())
