"""Connecting to Ray: a local in-process cluster by default, a cluster when an address is given."""

from __future__ import annotations

import os

from recplat.errors import RecplatError

# A local Ray here must bind loopback only (shared/STACK.md), and report no usage stats.
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Start or join Ray once per process.

    With no `address` (and no RAY_ADDRESS) a local cluster starts on 127.0.0.1; `num_cpus` lets a
    2-core machine declare more logical CPUs so a Tune trial and its Train workers fit.
    """
    import ray

    if ray.is_initialized():
        return
    for key, value in _LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"log_to_driver": not quiet, "include_dashboard": False}
    if address:
        kwargs = {"address": address, "log_to_driver": not quiet}
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RecplatError(f"could not connect to {where}: {exc}") from None
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = True
