"""Counter-based, partition-independent randomness for the data plane.

Every random choice in preprocessing (user subsampling, one-interaction-per-day picks, user
splits, candidate draws) is a pure function of (config seed, a stage tag, the row's own key):
it never depends on which Ray block or worker a row lands in, so the Ray pipeline and the
single-process reference draw exactly the same numbers, and the same seed gives the same bytes.

The generator is splitmix64 over a 64-bit key; strings are hashed with pandas' fixed-key
SipHash (`pandas.util.hash_array`), which is stable across processes and machines.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 values (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def hash_strings(values: Iterable[str] | np.ndarray) -> np.ndarray:
    """Stable uint64 hash of each string (None hashes like the empty string)."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    arr = np.where(pd.isna(arr), "", arr)
    return pd.util.hash_array(arr, categorize=False).astype(np.uint64)


def tag(name: str) -> int:
    """A stable 64-bit constant for a stage name, so stages never share random streams."""
    return int(hash_strings([name])[0])


def row_keys(seed: int, stage: str, *parts: np.ndarray) -> np.ndarray:
    """Combine the seed, a stage tag and per-row parts (uint64/int arrays) into one uint64 key per row."""
    with np.errstate(over="ignore"):
        key = mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(tag(stage)))
        n = len(parts[0]) if parts else 1
        out = np.full(n, key, dtype=np.uint64)
        for part in parts:
            out = mix64(out ^ np.asarray(part).astype(np.uint64))
    return out


def uniform(keys: np.ndarray, count: int, start: int = 1) -> np.ndarray:
    """Uniform floats in [0, 1): shape (len(keys), count); column j is draw number start + j.

    Draw number c of a key is always the same value, so a caller may take draws 1..100 now and
    101..200 later and get the same stream as taking 1..200 at once.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    counters = np.arange(start, start + count, dtype=np.uint64) * _GOLDEN
    with np.errstate(over="ignore"):
        bits = mix64(keys[:, None] ^ counters[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def bucket_of(users: np.ndarray, num_buckets: int) -> np.ndarray:
    """The partition a user's rows belong to: all of one user's rows share a bucket."""
    return (hash_strings(users) % np.uint64(num_buckets)).astype(np.int32)
