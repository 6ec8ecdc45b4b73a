"""Connecting to Ray: a local in-process cluster by default, a cluster when an address is given."""

from __future__ import annotations

import os

from recplat.errors import RecplatError

# A local Ray here must bind loopback only (shared/STACK.md), and report no usage stats.
LOCAL_MIN_CPUS = 4
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Start or join Ray once per process.

    With no `address` (and no RAY_ADDRESS) a local cluster starts on 127.0.0.1. A local Ray
    declares at least LOCAL_MIN_CPUS logical CPUs: on a 2-core machine two Train workers would
    otherwise hold every CPU and the Ray Data tasks feeding them could never be scheduled.
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in _LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    import sys

    if not sys.stderr.isatty():  # workers of a local Ray inherit this: no progress-bar log spam
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"log_to_driver": not quiet, "include_dashboard": False}
    if address:
        kwargs = {"address": address, "log_to_driver": not quiet}
    else:
        kwargs["num_cpus"] = num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_CPUS)
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RecplatError(f"could not connect to {where}: {exc}") from None
    # Ray Data's per-operator progress: bars on a terminal; in logs and CI only our own stage lines
    # (its non-terminal fallback prints a block of INFO lines every few seconds).
    import logging
    import sys

    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    if not sys.stderr.isatty():
        logging.getLogger("ray.data").setLevel(logging.WARNING)
