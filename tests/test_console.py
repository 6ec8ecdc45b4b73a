"""A quiet console: what a run prints into a log file is our progress lines and real problems, not
library deprecation warnings, ANSI colour codes or Ray's routine chatter."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

PYTHON_WARNING = re.compile(r"\b\w*Warning: ")  # "file.py:63: UserWarning: ...", "FutureWarning: ..."


def test_read_only_batches_are_copied_once_where_they_are_made():
    from recplat.train.loop import _writable

    frozen = np.arange(6).reshape(2, 3)
    frozen.flags.writeable = False
    mine = np.zeros(3)
    batch = _writable({"history": frozen, "target": mine, "name": "x"})
    assert batch["history"].flags.writeable and batch["history"].tolist() == frozen.tolist()
    assert batch["target"] is mine and batch["name"] == "x"  # writable arrays and the rest pass through


def test_routine_ray_lines_are_dropped_and_every_other_line_passes():
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from recplat.runtime import _drop_routine_ray_lines

    printed = []
    dispatcher.add_handler("test_console", lambda data: printed.append(data["lines"]))
    try:
        _drop_routine_ray_lines()
        _drop_routine_ray_lines()  # idempotent: one filter, not two
        dispatcher.emit({"pid": "raylet", "lines": [
            "WARNING: 8 PYTHON worker processes have been started on node: abc with address: 127.0.0.1",
            "E core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID: 'x' has constructor",
        ]})
        dispatcher.emit({"pid": 12, "lines": ["[recplat.train] step 10/120  loss 2.3", "RuntimeError: boom",
                                              "Reporting training result 1: TrainingReport(checkpoint=None) from rank 1"]})
    finally:
        dispatcher.remove_handler("test_console")
    assert printed == [["[recplat.train] step 10/120  loss 2.3", "RuntimeError: boom"]]


def test_the_log_dedup_suffix_is_plain_in_a_log_file():
    """Ray colours " [repeated 2x across cluster]" green whatever the sink; not when stdout is a
    file or pipe (pytest's capture here)."""
    import ray._private.ray_logging as ray_logging

    from recplat.runtime import _drop_routine_ray_lines

    _drop_routine_ray_lines()
    assert ray_logging._color(" [repeated 2x across cluster]") == " [repeated 2x across cluster]"


def test_the_raylet_warning_route_is_filtered_too(capsys):
    """The raylet's worker-count warning reaches the driver through `listen_error_messages`, which
    calls `ray._private.worker.print_to_stdstream` by module name, not through the dispatcher."""
    import ray._private.worker as ray_worker

    from recplat.runtime import _drop_routine_ray_lines

    original = ray_worker.print_to_stdstream
    try:
        _drop_routine_ray_lines()
        ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": [
            "WARNING: 8 PYTHON worker processes have been started on node: abc with address: 127.0.0.1"]},
            ignore_prefix=False)
        ray_worker.print_to_stdstream({"pid": "raylet", "is_err": False, "lines": ["disk is full"]},
                                      ignore_prefix=False)
    finally:
        ray_worker.print_to_stdstream = original
    out = capsys.readouterr().out
    # this test's own line only: the session's Ray (another test's) may print a real one meanwhile
    assert "node: abc" not in out
    assert "disk is full" in out


def test_ray_log_records_lose_their_colour_codes():
    import logging

    from recplat.runtime import _plain_record

    record = logging.LogRecord("ray", logging.INFO, "w.py", 1, "dashboard at %s%s%s %s", ("\x1b[1m", "\x1b[32m",
                               "http://127.0.0.1:8265", "\x1b[39m\x1b[22m"), None)  # fmt: skip
    assert _plain_record(record) and record.getMessage() == "dashboard at http://127.0.0.1:8265 "


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_a_captured_training_run_prints_no_python_warnings_colours_or_late_lines(tmp_path):
    """Two LLM-Rec steps on 2 Ray Train workers, as the demo runs them (worker logs to the driver),
    with stdout and stderr going to a pipe as in `make demo > log`."""
    script = textwrap.dedent(f"""
        from recplat.runtime import init_ray
        from recplat.data.config import PrepareConfig
        from recplat.data.pipeline import prepare
        from recplat.recipes import llmrec
        from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
        from recplat.train.config import TrainConfig

        init_ray(num_cpus=4, quiet=False)
        data = {str(tmp_path / "data")!r}
        prepare(PrepareConfig.model_validate({{
            "name": "console", "seed": 1,
            "sources": [{{"kind": "synthetic", "domains": ["Books", "Movies"], "users": 120,
                          "items_per_domain": 30, "topics": 3, "mean_interactions": 10, "seed": 3}}],
            "kcore": {{"user": 5, "item": 3}}, "candidates": {{"count": 20, "train_negatives": 3}},
            "num_partitions": 2}}), data, show_progress=False)
        llmrec.run(llmrec.Config(
            data=RankingData(dataset=data, negatives=3), eval=RankingEvalConfig(valid_ratio=0.2),
            finetune=llmrec.Finetune(method="lora", rank=4, alpha=8),
            train=TrainConfig(num_workers=2, micro_batch_size=4, lr=1e-3, max_steps=2, eval_every=2, log_every=1,
                              metric="recall@10", mode="max", storage_path={str(tmp_path / "ckpt")!r}, name="c"),
            out={str(tmp_path / "run")!r}))
        print("[console] done", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=840)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    lines = console.splitlines()
    assert not [line for line in lines if PYTHON_WARNING.search(line)], console[-3000:]
    assert "\x1b[" not in console
    assert "Loading weights" not in console and "Reporting training result" not in console
    assert not [line for line in lines if "PreemptionWatcher" in line or "PYTHON worker processes" in line]
    assert any("[recplat.train] step 2/2" in line for line in lines)  # our progress lines stay
    assert any("[recplat.train] validation at step 2" in line for line in lines)
    assert proc.stdout.rstrip().splitlines()[-1] == "[console] done"  # nothing from Ray after it
    assert "Checkpoint successfully created" not in console
