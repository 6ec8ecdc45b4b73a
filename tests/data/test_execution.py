"""recplat.data.execution: when one of prepare's Ray tasks fails, the others are ended before its
error reaches the pipeline (which then removes its partial folder: no task may write there after)."""

import time

import pytest

from recplat.data.execution import Tasks


def _fail():
    raise ValueError("bucket 1 failed")


def _write_late(path: str):
    for _ in range(300):  # working, as a bucket's task does: Ray's cancel interrupts Python code, not a long sleep
        time.sleep(0.1)
    with open(path, "w") as out:
        out.write("written after the failure")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["get", "completed"])
def test_a_failed_task_ends_the_others_before_its_error_is_raised(ray_local, tmp_path, how):
    run = Tasks(on_ray=True)
    late = tmp_path / "late"
    refs = [run.remote(_write_late)(str(late)), run.remote(_fail)()]
    started = time.monotonic()
    with pytest.raises(ValueError, match="bucket 1 failed"):
        run.get(refs) if how == "get" else list(run.completed(refs))
    assert time.monotonic() - started < 30  # the error did not wait for the late task to finish ...
    _, running = ray_local.wait(refs, num_returns=len(refs), timeout=0)
    assert running == []  # ... which no longer runs: cancelled
    time.sleep(1)
    assert not late.exists()
