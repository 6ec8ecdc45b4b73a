"""Where `recplat prepare`'s tasks run: as Ray tasks, or one after another in this process.

The pipeline is written once against `Tasks` (docs/data-plane.md, "Execution"): `remote(fn)`,
`put`, `get` and `completed` are Ray's own calls on Ray, and inline the call happens at once and
its value stands in for its ObjectRef. The same functions run on the same inputs in the same
order of results, so both give the same bytes. Inline exists because starting Ray costs seconds
(5-30 here) that a small input does not repay: its whole prepare takes about one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

# Input files up to this size (with no Ray running in this process and none asked for) are read in
# this process; if they then hold more than pipeline.ROWS_PER_BUCKET interactions, Ray starts then.
INLINE_MAX_BYTES = 32 * 2**20


class Tasks:
    """Runs the pipeline's task functions as Ray tasks (`on_ray`) or inline in this process."""

    def __init__(self, on_ray: bool):
        self.on_ray = on_ray

    def remote(self, fn: Callable, num_returns: int = 1, **options) -> Callable:
        """`fn` as a task: calling it returns a ref, or a list of `num_returns` refs (inline: the values)."""
        if self.on_ray:
            import ray

            return ray.remote(fn).options(num_returns=num_returns, **options).remote
        if num_returns == 1:
            return fn
        return lambda *args: list(fn(*args))

    def put(self, value):
        if not self.on_ray:
            return value
        import ray

        return ray.put(value)

    def get(self, refs):
        if not self.on_ray:
            return refs
        import ray

        try:
            return ray.get(refs)
        except BaseException:
            _end_all(refs if isinstance(refs, list) else [refs])
            raise

    def completed(self, refs: list) -> Iterator[tuple[int, object]]:
        """(position in `refs`, value) as each task finishes (inline: in order)."""
        if not self.on_ray:
            yield from enumerate(refs)
            return
        import ray

        pending = {ref: i for i, ref in enumerate(refs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            try:
                value = ray.get(done[0])
            except BaseException:
                _end_all(list(pending))
                raise
            yield pending.pop(done[0]), value


# How long a failed prepare waits for its other tasks to stop before it removes its partial folder.
END_WAIT_S = 60.0


def _end_all(refs: list) -> None:
    """One task failed: stop the others and wait until none of them runs, so that the failed
    prepare removes its partial folder only when no task of it can still write there (one that
    was still writing a bucket's parts made the folder again after it was removed). `force`: Ray's
    gentle cancel raises KeyboardInterrupt in the task, which a SIGINT handler that an earlier task
    left in the reused worker process swallows (the task then runs to its end); what a stopped
    task wrote goes with the partial folder. Only the tasks still running are cancelled: Ray 2.60's
    force-cancel of a task that has already ended (the failed one) can trip a check in the driver's
    Ray core ("Tried to complete task that was not pending"), which kills the process or hangs it
    (seen in CI: a test stuck for 78 min; tests/data/test_execution.py repeats the case)."""
    import ray

    _, running = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in running:
        ray.cancel(ref, force=True)
    ray.wait(running, num_returns=len(running), timeout=END_WAIT_S)


def ray_running() -> bool:
    """Ray is initialised in this process (without importing ray: that alone costs a second)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def on_ray(start: Callable[[], None]) -> Tasks:
    """Tasks on the Ray of this process, started (or joined: RAY_ADDRESS) by `start` if none is."""
    if not ray_running():
        start()
    return Tasks(on_ray=True)


def inline_first(input_bytes: int) -> bool:
    """Whether `prepare`, not told where to run, starts in this process: no Ray is running here,
    none is asked for (RAY_ADDRESS), and the input files are small."""
    return not ray_running() and not os.environ.get("RAY_ADDRESS") and input_bytes <= INLINE_MAX_BYTES
