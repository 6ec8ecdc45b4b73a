"""Fixtures for the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run every model test on one intra-op thread: for models this small a second thread buys
    little, and on a busy 2-core machine two spinning threads made the toy trainings ~10x slower
    (84 s vs 5 s for SASRec's). Restored afterwards (the setting is process-wide)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
