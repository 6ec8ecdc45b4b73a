"""The driver side, without starting a run: configs Ray gets, step planning, error text."""

import pytest

from recplat.errors import ConfigError
from recplat.train.config import TrainConfig
from recplat.train.launch import (
    build_run_config,
    build_scaling_config,
    describe_failure,
    plan_total_steps,
    resolve_storage_path,
)


def test_plan_total_steps():
    assert plan_total_steps(TrainConfig(max_steps=7), None) == 7
    # 100 rows / 2 workers = 50 per rank -> 6 micro-batches of 8 -> 3 steps of 2, x 3 epochs
    assert plan_total_steps(TrainConfig(micro_batch_size=8, grad_accum=2, epochs=3), 100) == 9
    # accumulation carries over epoch ends: 3 epochs x 6 micro-batches / 4 = 4 steps
    assert plan_total_steps(TrainConfig(micro_batch_size=8, grad_accum=4, epochs=3), 100) == 4
    with pytest.raises(ConfigError, match="not one optimizer step"):
        plan_total_steps(TrainConfig(micro_batch_size=64), 100)
    with pytest.raises(ConfigError, match="max_steps"):
        plan_total_steps(TrainConfig(), None)


def test_ray_configs():
    cfg = TrainConfig(num_workers=3, cpus_per_worker=2, eval_every=5, metric="ndcg@10", mode="max",
                      num_to_keep=1, max_failures=2, storage_path="s3://bucket/runs", name="exp")
    scaling = build_scaling_config(cfg)
    assert (scaling.num_workers, scaling.use_gpu, scaling.resources_per_worker) == (3, False, {"CPU": 2})
    assert build_scaling_config(TrainConfig(use_gpu=True)).resources_per_worker == {"CPU": 1.0, "GPU": 1}
    run = build_run_config(cfg)
    assert (run.name, run.storage_path, run.failure_config.max_failures) == ("exp", "s3://bucket/runs", 2)
    ckpt = run.checkpoint_config
    assert (ckpt.num_to_keep, ckpt.checkpoint_score_attribute, ckpt.checkpoint_score_order) == (1, "ndcg@10", "max")


def test_storage_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_path(TrainConfig(storage_path="runs")).storage_path == str(tmp_path / "runs")
    assert resolve_storage_path(TrainConfig(storage_path="gs://b/r")).storage_path == "gs://b/r"
    with pytest.raises(ConfigError, match="local storage_path"):
        resolve_storage_path(TrainConfig(storage_path="gs://b/r", max_steps=9, fail_at_step=3))


def test_failures_read_like_sentences():
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2.api.exceptions import WorkerGroupError

    error = WorkerGroupError(
        "raw", {1: UserExceptionWithTraceback(ValueError("bad batch\nlast line says why"), "Traceback ...")}
    )
    text = describe_failure(TrainConfig(name="exp", max_failures=1), error)
    assert text == "training run 'exp' failed (after up to 1 restart(s)):\n  rank 1: ValueError: last line says why"
