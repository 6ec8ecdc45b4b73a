"""The reader tests run through both parsing paths (see tests/data/sources/reading.py)."""

import pytest


@pytest.fixture(params=[True, False], ids=["fast", "line_by_line"])
def fast(request) -> bool:
    """Run a test through both parsing paths: they must give the same tables."""
    return request.param
