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
