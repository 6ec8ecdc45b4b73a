import numpy as np


def test_peak_memory_is_this_process_resident_set():
    import psutil

    from recplat.peak_memory import peak_memory_gib

    ballast = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB touched: the peak is at least this
    peak = peak_memory_gib()
    assert peak["peak_rss_gib"] >= psutil.Process().memory_info().rss / 2**30 - 1e-3
    assert peak["peak_rss_gib"] > ballast.nbytes / 2**30
    assert "peak_gpu_gib" not in peak  # CPU-only torch here
