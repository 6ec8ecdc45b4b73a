"""Shared test setup: offline, loopback-only Ray, one Ray instance per test session."""

import os

# Set before anything imports ray or transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)

import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


LOCAL_CPUS = 4  # the logical CPUs of each test process's local Ray
SHARED_RAY = "RECPLAT_TEST_SHARED_RAY"  # set by the pytest-xdist controller: its Ray's address


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by every test that needs one (start-up costs seconds; do it once). Under
    pytest-xdist (`make test`) every worker joins the one Ray the controller started."""
    import ray

    from recplat.runtime import init_ray

    address = os.environ.get(SHARED_RAY)
    init_ray(address) if address else init_ray(num_cpus=LOCAL_CPUS)
    yield ray
    ray.shutdown()  # a worker leaves the shared Ray; the controller ends it


# --- one local Ray for the whole run under pytest-xdist: each worker starting its own would run a
# second set of Ray's daemons (gcs, raylet, dashboard, agents, log monitor: ~6 CPU-seconds a minute
# idle, ~13 to start; docs/benchmarks.md). Before the workers exist, the controller starts a helper
# process that starts it with recplat's own `init_ray` and is its driver; the workers inherit its
# address and the environment `init_ray` set. The helper ends the Ray when the controller closes
# its stdin: at the end of the run, or when the controller's process dies. Four logical CPUs per
# worker, as each worker's own Ray had: two 2-worker training runs side by side still leave CPUs for
# the Ray Data tasks feeding them. ---------------------------------------------------------------
SHARED_RAY_HELPER = """
import json, os, sys
from recplat.runtime import init_ray
before = dict(os.environ)
init_ray(num_cpus=int(sys.argv[1]))
import ray
env = {k: v for k, v in os.environ.items() if before.get(k) != v}
print(json.dumps({"address": ray.get_runtime_context().gcs_address, "env": env}), flush=True)
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything Ray prints later: to the log, not the unread pipe
sys.stdin.read()  # until the controller closes it, or dies
ray.shutdown()
"""


def _start_shared_ray(config) -> None:
    import json
    import subprocess
    import sys
    import tempfile

    workers = getattr(config.option, "numprocesses", None) or 0
    if hasattr(config, "workerinput") or workers < 2 or config.option.collectonly or os.environ.get(SHARED_RAY):
        return
    log = tempfile.TemporaryFile(mode="w+")
    helper = subprocess.Popen([sys.executable, "-c", SHARED_RAY_HELPER, str(LOCAL_CPUS * workers)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    line = helper.stdout.readline()
    if not line:  # each worker starts its own Ray instead
        helper.wait()
        log.seek(0)
        why = (log.read().strip().splitlines() or ["no output"])[-1]
        print(f"recplat tests: no shared Ray ({why}); each worker starts its own")
        return
    started = json.loads(line)
    os.environ.update(started["env"])
    os.environ[SHARED_RAY] = started["address"]
    _session["shared_ray"] = helper


def pytest_unconfigure(config):  # noqa: ARG001
    import subprocess

    helper = _session.pop("shared_ray", None)
    if helper is not None:
        helper.stdin.close()
        try:
            helper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            helper.kill()


PLANNED_JOB = "cprec/table4_zero_shot"


@pytest.fixture
def planned_catalog(tmp_path, monkeypatch) -> Path:
    """A copy of jobs/ in which PLANNED_JOB is `status: planned`, made the catalog every `recplat`
    command reads ($RECPLAT_JOBS_DIR): the planned-entry checks do not depend on which shipped
    entries are still planned."""
    import shutil

    jobs = tmp_path / "jobs"
    shutil.copytree(Path(__file__).resolve().parents[1] / "jobs", jobs)
    entry = jobs / f"{PLANNED_JOB}.yaml"
    text = entry.read_text()
    assert "status: ready" in text or "status: planned" in text, entry
    entry.write_text(text.replace("status: ready", "status: planned"))
    monkeypatch.setenv("RECPLAT_JOBS_DIR", str(jobs))
    return jobs


# --- a stuck test is visible: `pytest -q` names any test still running after 20 s (and again every
# 2 min), and any test that took 20 s or more when it ends. Under pytest-xdist (`make test` runs two
# workers) the controller sees every worker's test start and end, so the lines come from it. -------
SLOW_SECONDS, AGAIN_SECONDS = 20.0, 120.0
_session: dict = {"started": {}}
_started_lock = threading.Lock()  # the watcher thread reads _session["started"] while hooks write it


def pytest_configure(config):
    _session["config"] = config
    _start_shared_ray(config)
    if hasattr(config, "workerinput") or config.getoption("verbose") > 0:
        return  # an xdist worker's lines are not shown; -v names every test already
    threading.Thread(target=_watch, name="slow-test-watch", daemon=True).start()


def _say(line: str) -> None:
    config = _session.get("config")
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
    if reporter is not None and config.getoption("verbose") <= 0 and not hasattr(config, "workerinput"):
        reporter.ensure_newline()
        reporter.write_line(line)


def _watch() -> None:
    """Every 2 s: name the tests running for 20 s, 140 s, 260 s, ... (once each)."""
    import time

    said: dict[str, float] = {}
    while True:
        time.sleep(2.0)
        now = time.monotonic()
        with _started_lock:
            running = list(_session["started"].items())
        for nodeid, started in running:
            seconds = now - started
            if seconds >= said.get(nodeid, SLOW_SECONDS):
                said[nodeid] = seconds + AGAIN_SECONDS
                _say(f"[running {seconds:4.0f} s] {nodeid}")


# The longest files first: `make test` gives each of its two workers a whole file at a time, in
# collection order, so these start at once and a slow or stuck one shows early. It did not make the
# run faster (1,049 s vs 1,035 s with xdist's own order, docs/benchmarks.md "End to end": the CPU
# work is the limit). Plain `pytest` runs them first too, which changes nothing.
LONGEST_FILES = ("tests/recipes/test_every_recipe.py", "tests/recipes/test_every_causal_recipe.py",
                 "tests/train/test_fit.py", "tests/test_submit.py")


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: every other test keeps its place


def pytest_runtest_logstart(nodeid, location):  # noqa: ARG001
    """Outside output capture (a setup hook's line would be captured with the test's output)."""
    import time

    with _started_lock:
        _session["started"][nodeid] = time.monotonic()


def pytest_runtest_logfinish(nodeid, location):  # noqa: ARG001
    import time

    with _started_lock:
        seconds = time.monotonic() - _session["started"].pop(nodeid, time.monotonic())
    if seconds >= SLOW_SECONDS:
        _say(f"[{seconds:4.0f} s] {nodeid}")
