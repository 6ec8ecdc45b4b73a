"""Shared test setup: offline, loopback-only Ray, one Ray instance per test session."""

import os

# Set before anything imports ray or transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("RAY_ADDRESS", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray shared by every test that needs one (start-up costs seconds; do it once)."""
    import ray

    from recplat.runtime import init_ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()



# --- a stuck test is visible: `pytest -q` names each Ray or slow test as it starts, and any test
# that took 20 s or more when it ends (-v names every test already) -------------------------------
RAY_FIXTURES = {"ray_local", "ray_head"}
SLOW_SECONDS = 20.0
_session: dict = {"started": {}}


def pytest_configure(config):
    _session["config"] = config


def _say(line: str) -> None:
    config = _session.get("config")
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
    if reporter is not None and config.getoption("verbose") <= 0:
        reporter.ensure_newline()
        reporter.write_line(line)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    _session["announced"] = {item.nodeid for item in items if item.get_closest_marker("slow") is not None
                             or RAY_FIXTURES & set(item.fixturenames)}


def pytest_runtest_logstart(nodeid, location):  # noqa: ARG001
    """Outside output capture (a setup hook's line would be captured with the test's output)."""
    import time

    _session["started"][nodeid] = time.monotonic()
    if nodeid in _session.get("announced", ()):
        _say(f"[running] {nodeid}")


def pytest_runtest_logfinish(nodeid, location):  # noqa: ARG001
    import time

    seconds = time.monotonic() - _session["started"].pop(nodeid, time.monotonic())
    if seconds >= SLOW_SECONDS:
        _say(f"[{seconds:4.0f} s] {nodeid}")
