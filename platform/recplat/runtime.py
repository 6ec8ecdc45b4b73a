"""Connecting to Ray: a local in-process cluster by default, a cluster when an address is given."""

from __future__ import annotations

import contextlib
import os
import re
import sys

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

    if not sys.stderr.isatty():  # workers of a local Ray inherit this: no progress-bar log spam
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not sys.stdout.isatty():  # the driver colours each worker's "(pid=...)" prefix: no ANSI codes in a log file
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        # nor transformers' "Loading weights" bar in every worker (it reads the hub's switch)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not sys.stderr.isatty():  # nor in Ray's own log lines (the dashboard URL is bold green)
        _strip_colours_from_ray_logs()
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"log_to_driver": not quiet}
    pinned: dict[str, str] = {}
    if not address:
        port = free_loopback_port()
        # address "local": ray.init() with no address joins the latest `ray start` cluster on the
        # machine (/tmp/ray/ray_current_cluster), e.g. another user's; no address here means our own
        kwargs.update(address="local", num_cpus=num_cpus or max(os.cpu_count() or 1, LOCAL_MIN_CPUS),
                      dashboard_host="127.0.0.1", dashboard_port=port)
        # Ray Train's placement-group cleaner asks the State API (served by the dashboard) every second
        # whether the run's controller is alive, and finds the API by auto-detection. With no dashboard
        # it logs a warning each time; with a second Ray on the machine it can ask the other cluster,
        # hear "no such actor" and remove a live run's workers (seen here). The processes of this
        # cluster inherit the environment at start-up: pin the API to this cluster's own dashboard.
        pinned = {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
        # Ray Train's PreemptionWatcher polls for cloud spot-instance notices: a local machine gets
        # none, and the actor costs every run a process (and an ERROR line, ray issue 53727)
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # Ray Train's controller checks on its workers every 2 s and moves a run through its states
        # (start, run, finish) one check at a time; on a local machine a check every 0.2 s costs
        # nothing and saves ~7 s of every run (a 4-step fit: 25 -> 18 s, docs/benchmarks.md)
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    else:  # without it ray.init() joins the latest cluster on the machine, not the one named by --address
        kwargs["address"] = address
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
    if not quiet:
        _drop_routine_ray_lines()
    # Ray Data's per-operator progress: bars on a terminal; in logs and CI only our own stage lines
    # (its non-terminal fallback prints a block of INFO lines every few seconds).
    import logging

    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    if not sys.stderr.isatty():
        logging.getLogger("ray.data").setLevel(logging.WARNING)


# Lines Ray's own processes echo to the driver on every local run, which no user can act on. The
# console drops them; they stay in Ray's session logs (/tmp/ray/session_latest/logs).
ROUTINE_RAY_LINES = (
    # Ray Train's PreemptionWatcher actor, logged at ERROR by the TrainController (ray issue 53727)
    "Actor with class name: 'PreemptionWatcher'",
    # raylet: more Python workers starting than physical cores; a local Ray here declares more
    # logical CPUs than the machine has on purpose (LOCAL_MIN_CPUS)
    "PYTHON worker processes have been started on node",
    # Ray Train, on every rank at every report: its metrics are our own "validation at step" line
    "Reporting training result",
)


def _drop_routine_ray_lines() -> None:
    """Filter ROUTINE_RAY_LINES out of what Ray echoes to the driver; every other line passes.

    Two routes reach the console: worker output goes through the stdstream dispatcher's handlers,
    and the raylet's messages (the worker-count warning) through `listen_error_messages`, which calls
    `ray._private.worker.print_to_stdstream` by its module name. Both are wrapped."""
    try:
        import ray._private.worker as ray_worker
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray version: print everything
        return

    def without_routine_lines(handler):
        if getattr(handler, "recplat_filtered", False):
            return handler

        def emit(data: dict, *args, **kwargs) -> None:
            lines = [line for line in data.get("lines", []) if not any(m in line for m in ROUTINE_RAY_LINES)]
            if lines:
                handler({**data, "lines": lines}, *args, **kwargs)
        emit.recplat_filtered = True
        return emit

    ray_worker.print_to_stdstream = without_routine_lines(ray_worker.print_to_stdstream)
    if not sys.stdout.isatty():  # the " [repeated 2x across cluster]" suffix is green even in a log file
        import ray._private.ray_logging as ray_logging

        ray_logging._color = lambda message: message
    with dispatcher._lock:
        dispatcher.handlers = [(name, without_routine_lines(handler)) for name, handler in dispatcher.handlers]


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _plain_record(record) -> bool:
    """A logging filter: the record's message without ANSI colour codes."""
    record.msg, record.args = _ANSI_ESCAPE.sub("", record.getMessage()), None
    return True


def _strip_colours_from_ray_logs() -> None:
    import logging

    for handler in logging.getLogger("ray").handlers:
        if _plain_record not in handler.filters:
            handler.addFilter(_plain_record)


def free_loopback_port() -> int:
    return free_loopback_ports(1)[0]


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports. All are bound at once: one at a time, the OS may hand a
    just-released port out again (a Ray head given the same port twice refuses to start)."""
    import socket

    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


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
