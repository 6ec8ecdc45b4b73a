"""End to end on a local Ray: TorchTrainer, 2 CPU workers, Ray Data shards from Parquet.

One DDP run is the reference; the fault drill must end bit-identical to it. Determinism comes from
the launcher's `preserve_order=True` split (same rows, same rank, same order each epoch), the
(seed, epoch, rank)-seeded local shuffle, and checkpoints that record the position in the epoch
plus every rank's RNG state (the model has dropout, so RNG restore matters).
"""

import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recplat.errors import RecplatError
from recplat.train import TrainConfig, fit
from tests.train.tasks import RatingTask, ScriptedMetricTask, make_ratings, write_parquet_parts

# Six fits (four on 2 workers, two on 1) and one restart: ~3.5 min on an idle 2-core machine, 6-8 min under load.
pytestmark = pytest.mark.slow

# 384 rows / 2 workers = 192 per rank = 12 micro-batches of 16 = 6 steps (grad_accum 2) per epoch.
# CPRec's schedule: warm-up to step 2, stable to 6, cosine annealing from 0.2 to 0.02 at step 12.
BASE = dict(num_workers=2, micro_batch_size=16, grad_accum=2, epochs=2, lr=0.2, min_lr=0.02, schedule="wsa",
            phase_ends=(2, 6), eval_every=3, metric="val_loss", mode="min", num_to_keep=2,
            shuffle_buffer=64, log_every=3, seed=7)


@pytest.fixture(scope="module")
def train_data(ray_local, tmp_path_factory):
    directory = write_parquet_parts(tmp_path_factory.mktemp("ratings") / "train", make_ratings(384, seed=0))
    # Materialized once: each epoch then re-splits blocks already in the object store instead of
    # re-reading the files (on this 2-core machine every epoch's read costs ~13 s).
    return ray_local.data.read_parquet(str(directory)).materialize()


@pytest.fixture(scope="module")
def ddp_reference(train_data, tmp_path_factory):
    cfg = TrainConfig(**BASE, storage_path=str(tmp_path_factory.mktemp("runs")), name="reference")
    return fit(RatingTask(), cfg, train_data)


def _live_actors_after_the_run(classes: set[str], wait_s: float = 30.0) -> set[str]:
    """Which of `classes` still have a live actor of this driver's job, `wait_s` after a run (Ray
    ends an actor asynchronously once its last handle is gone)."""
    import ray
    from ray.util.state import list_actors

    context = ray.get_runtime_context()  # this Ray, by address: another may run on the machine
    mine = [("state", "=", "ALIVE"), ("job_id", "=", context.get_job_id())]
    deadline = time.monotonic() + wait_s
    while True:
        alive = {a.class_name for a in list_actors(context.gcs_address, filters=mine, limit=1000)} & classes
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def _weights(checkpoint) -> dict[str, torch.Tensor]:
    return load_file(str(Path(checkpoint.path) / "model.safetensors"))


def _val_losses(result) -> list[float]:
    return [row["val_loss"] for row in result.summary["history"]]


@pytest.mark.timeout(300)
def test_ddp_two_workers_lowers_the_loss(ddp_reference):
    summary = ddp_reference.summary
    assert (summary["step"], summary["total_steps"], summary["resumed_from"]) == (12, 12, None)
    losses = _val_losses(ddp_reference)
    assert [row["step"] for row in summary["history"]] == [3, 6, 9, 12]
    assert losses[-1] < 0.7 * losses[0], losses
    # Table 7's inputs: 12 steps x 16 rows x 2 micro-batches x 2 workers, training time, rank 0's peak
    assert summary["cost"]["samples"] == 768 and summary["cost"]["seconds"] > 0
    assert summary["cost"]["peak_rss_gib"] > 0.1
    # Best-by-metric retention: num_to_keep=2 of the 4 checkpoints survive, the best among them.
    best = ddp_reference.best_checkpoint
    assert best.path.endswith(f"checkpoint_step{summary['best_step']:07d}")
    assert ddp_reference.best_metrics["val_loss"] == min(losses)
    kept = sorted(p.name for p in Path(ddp_reference.path).glob("checkpoint_step*"))
    assert len(kept) == 2 and "checkpoint_step0000012" in kept
    files = {p.relative_to(best.path).as_posix() for p in Path(best.path).rglob("*") if p.is_file()}
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng/rank0.json", "rng/rank1.json"} <= files


@pytest.mark.timeout(600)
def test_a_branch_from_the_stable_phase_survives_a_fault_and_ends_as_the_uninterrupted_run(
        ddp_reference, train_data, tmp_path):  # fmt: skip
    """Two guarantees in one drill (each fit costs ~25 s of start-up here):
    - a branch: CPRec's annealing variants share one stable phase. A trunk trains updates 1-6 with no
      annealing (A = S = 6: its last learning rate is the floor's); a run branching from its last
      checkpoint anneals to step 12 under the reference's schedule;
    - a worker fault: every rank of the branch raises after step 11, once; Ray Train restarts the group
      from the branch's own step-9 checkpoint (whose scheduler is the branch's).
    The branch ends bit-identical to the reference, which ran 1-12 in one go."""
    trunk = fit(RatingTask(), TrainConfig(**BASE, max_steps=6, storage_path=str(tmp_path), name="trunk"), train_data)
    assert trunk.summary["step"] == 6 and trunk.summary["last_checkpoint"].endswith("checkpoint_step0000006")
    assert trunk.summary["history"] == ddp_reference.summary["history"][:2]  # steps 3 and 6
    cfg = TrainConfig(**BASE, branch_from=trunk.summary["last_checkpoint"], storage_path=str(tmp_path), name="drill",
                      fail_at_step=11, max_failures=1)  # fmt: skip
    result = fit(RatingTask(), cfg, train_data)
    assert (tmp_path / "drill" / ".recplat_failed_at_step_11").exists()  # it did fail once
    assert result.summary["resumed_from"] == 9  # ... and resumed from its own step-9 checkpoint
    assert result.summary["branched_from"] == {"path": trunk.summary["last_checkpoint"], "step": 6}
    assert result.summary["history"] == ddp_reference.summary["history"]  # exact floats, steps 3-12
    assert result.summary["cost"]["samples"] == (12 - 9) * 64  # what the restarted attempt trained
    # the learning rates logged after steps 9 and 12 (the trunk's log, inherited, has the floor after its step 6)
    lrs = [[(row["step"], row["lr"]) for row in run.summary["train_log"] if row["step"] > 6] for run in (result, ddp_reference)]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 2
    final, reference = _weights(result.checkpoint), _weights(ddp_reference.checkpoint)
    assert final.keys() == reference.keys()
    for name in final:
        assert torch.equal(final[name], reference[name]), name


@pytest.mark.timeout(400)
def test_deepspeed_zero2_two_workers_lowers_the_loss_and_resumes(ddp_reference, train_data, tmp_path):
    cfg = TrainConfig(**BASE, strategy="deepspeed", storage_path=str(tmp_path), name="ds",
                      fail_at_step=11, max_failures=1)
    result = fit(RatingTask(), cfg, train_data)
    assert result.summary["resumed_from"] == 9
    losses = _val_losses(result)
    assert losses[-1] < 0.7 * losses[0], losses
    # Same optimizer, schedule, clipping and accumulation as DDP: the same curve up to float noise.
    assert losses == pytest.approx(_val_losses(ddp_reference), rel=1e-3)
    shards = {p.name for p in (Path(result.checkpoint.path) / "deepspeed" / "state").iterdir()}
    assert {"mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= shards  # every rank saved its shard


@pytest.mark.timeout(300)
def test_early_stopping_keeps_the_best_checkpoint(train_data, tmp_path):
    # Scripted validation: 5, 3, 4, 4 -> two validations without improvement at step 8 -> stop.
    # one worker: early stopping is rank 0's decision; the 2-worker runs above cover the collectives
    cfg = TrainConfig(**{**BASE, "num_workers": 1, "eval_every": 2, "num_to_keep": 1}, max_steps=20, patience=2,
                      storage_path=str(tmp_path), name="early")
    handler = signal.getsignal(signal.SIGINT)
    result = fit(ScriptedMetricTask([5.0, 3.0, 4.0, 4.0, 1.0]), cfg, train_data)
    # Ray Train's Ctrl-C handler (which holds the run's controller) is gone: the controller and the
    # Ray Data actors it owns end with the run
    assert signal.getsignal(signal.SIGINT) is handler
    assert _live_actors_after_the_run({"TrainController", "DatasetManager", "SplitCoordinator"}) == set()
    assert result.summary["stopped_early"] is True
    assert (result.summary["step"], result.summary["best"], result.summary["best_step"]) == (8, 3.0, 4)
    assert result.best_metrics["val_loss"] == 3.0
    assert result.best_checkpoint.path.endswith("checkpoint_step0000004")
    # num_to_keep=1 keeps the best; Ray Train also keeps the latest (the resume point).
    assert sorted(p.name for p in (tmp_path / "early").glob("checkpoint_step*")) == [
        "checkpoint_step0000004", "checkpoint_step0000008"]


@pytest.mark.timeout(300)
def test_a_failing_run_raises_a_readable_error(train_data, tmp_path):
    cfg = TrainConfig(**{**BASE, "num_workers": 1, "metric": "ndcg@10"}, storage_path=str(tmp_path), name="bad")
    with pytest.raises(RecplatError, match=r"rank 0: RecplatError: metric 'ndcg@10' is not among"):
        fit(RatingTask(), cfg, train_data)
