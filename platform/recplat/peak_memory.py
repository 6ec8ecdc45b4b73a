"""This process's peak memory so far: what Table 7-style cost rows and the training log record."""

from __future__ import annotations


def peak_memory_gib() -> dict[str, float]:
    """`peak_rss_gib`: the process's peak resident set (Linux ru_maxrss); `peak_gpu_gib`, once CUDA
    is in use: the peak of torch's allocations on the current GPU."""
    import resource

    import torch

    peak = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # Linux: KiB
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return peak
