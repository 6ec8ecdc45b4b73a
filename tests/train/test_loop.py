"""Loop pieces that need no Ray: epoch bookkeeping with resume skipping, fault injection."""

import numpy as np
import pytest

from recplat.errors import RecplatError
from recplat.train.checkpoint import TrainerState
from recplat.train.config import TrainConfig
from recplat.train.loop import FaultInjector, InjectedFailure, _micro_batches
from recplat.train.task import Task


class FakeShard:
    """Stands in for a Ray DataIterator: `rows` rows numbered 0.., in order, every epoch."""

    def __init__(self, rows):
        self.rows = rows

    def iter_batches(self, batch_size, drop_last, **_):
        for start in range(0, self.rows - batch_size + 1 if drop_last else self.rows, batch_size):
            yield {"x": np.arange(start, min(start + batch_size, self.rows))}


def _take(iterator, n):
    return [int(next(iterator)["x"][0]) for _ in range(n)]


def test_micro_batches_cross_epochs_and_track_position():
    cfg = TrainConfig(micro_batch_size=4)
    state = TrainerState()
    batches = _micro_batches(FakeShard(10), Task(), cfg, state, rank=0)  # 2 full batches per epoch
    assert _take(batches, 3) == [0, 4, 0]
    assert (state.epoch, state.batch_in_epoch) == (1, 1)


def test_resume_skips_what_the_epoch_consumed():
    cfg = TrainConfig(micro_batch_size=2)
    state = TrainerState(epoch=3, batch_in_epoch=2)
    batches = _micro_batches(FakeShard(6), Task(), cfg, state, rank=0)
    assert _take(batches, 2) == [4, 0]
    assert (state.epoch, state.batch_in_epoch) == (4, 1)
    # A checkpoint taken right after an epoch's last batch resumes into the next epoch.
    state = TrainerState(epoch=0, batch_in_epoch=3)
    assert _take(_micro_batches(FakeShard(6), Task(), cfg, state, rank=0), 1) == [0]
    assert state.epoch == 1


def test_empty_shard_is_an_error():
    with pytest.raises(RecplatError, match="no full micro-batch of 8 rows"):
        next(_micro_batches(FakeShard(5), Task(), TrainConfig(micro_batch_size=8), TrainerState(), rank=1))


def test_fault_fires_once_per_run_directory(tmp_path):
    cfg = TrainConfig(storage_path=str(tmp_path), name="run", fail_at_step=3)
    first = FaultInjector(cfg, rank=0)
    first.maybe_fail(2)
    with pytest.raises(InjectedFailure, match="fail_at_step=3"):
        first.maybe_fail(3)
    again = FaultInjector(cfg, rank=0)  # the restart
    assert not again.armed
    again.maybe_fail(3)
    assert not FaultInjector(TrainConfig(storage_path=str(tmp_path)), rank=0).armed


def test_each_python_environment_keeps_its_own_deepspeed_op_cache(monkeypatch):
    """Two venvs sharing one op folder rebuilt DeepSpeed's CPU op each time they took turns."""
    import os
    import sys

    from recplat.train.loop import DEFAULT_TORCH_EXTENSIONS_DIR, torch_extensions_dir

    here = torch_extensions_dir()
    assert os.path.dirname(here) == os.path.expanduser(DEFAULT_TORCH_EXTENSIONS_DIR)
    assert here == torch_extensions_dir()  # stable for one environment
    monkeypatch.setattr(sys, "prefix", "/elsewhere/.venv")
    assert torch_extensions_dir() != here and os.path.dirname(torch_extensions_dir()) == os.path.dirname(here)
