"""Connecting to Ray: a local in-process cluster by default, a cluster when an address is given."""

from __future__ import annotations

import contextlib
import os

from recplat.errors import RecplatError

# A local Ray here must bind loopback only (docs/stack.md), and report no usage stats.
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
    kwargs: dict = {"log_to_driver": not quiet}
    pinned: dict[str, str] = {}
    if not address:
        port = free_loopback_port()
        kwargs.update(num_cpus=num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_CPUS),
                      dashboard_host="127.0.0.1", dashboard_port=port)
        # Ray Train's placement-group cleaner asks the State API (served by the dashboard) every second
        # whether the run's controller is alive, and finds the API by auto-detection. With no dashboard
        # it logs a warning each time; with a second Ray on the machine it can ask the other cluster,
        # hear "no such actor" and remove a live run's workers (seen here). The processes of this
        # cluster inherit the environment at start-up: pin the API to this cluster's own dashboard.
        pinned = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    try:
        with _environment(pinned):
            ray.init(**kwargs)
    except Exception as exc:  # ray.init raises a bare Exception when its raylet times out at start-up
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "" if address else (
            " (another local Ray starting at the same moment can cause this: retry, or start one with "
            "`ray start --head` and pass its address)"
        )
        raise RecplatError(f"could not start or connect to {where}: {text}{hint}") from None
    # Ray Data's per-operator progress: bars on a terminal; in logs and CI only our own stage lines
    # (its non-terminal fallback prints a block of INFO lines every few seconds).
    import logging
    import sys

    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    if not sys.stderr.isatty():
        logging.getLogger("ray.data").setLevel(logging.WARNING)


def free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set `values` in os.environ for the block only (the driver's own `ray job submit` and
    JobSubmissionClient read RAY_API_SERVER_ADDRESS too, and must keep the address they are given)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
