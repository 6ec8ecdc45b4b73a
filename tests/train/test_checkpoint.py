"""Save -> restore round trips of the checkpoint pieces, without Ray."""

import random
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recplat.errors import RecplatError
from recplat.train.checkpoint import (
    TrainerState,
    load_optimizer,
    load_rng,
    load_weights,
    read_state,
    save_optimizer,
    save_rng,
    save_weights,
    seed_everything,
    trainable_state_dict,
    write_state,
)
from recplat.train.schedules import build_lr_lambda


def _model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    return model


def _train(model, optimizer, scheduler, steps=3):
    for _ in range(steps):
        loss = model(torch.randn(5, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _fresh(seed):
    torch.manual_seed(seed)
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, build_lr_lambda("cosine", 20, 0.1))
    return model, optimizer, scheduler


def test_model_optimizer_scheduler_round_trip(tmp_path):
    model, optimizer, scheduler = _fresh(0)
    _train(model, optimizer, scheduler)
    save_weights(model, tmp_path / "model.safetensors")
    save_optimizer(tmp_path / "optimizer.pt", optimizer, scheduler)

    model2, optimizer2, scheduler2 = _fresh(1)  # different init: everything must come from disk
    load_weights(model2, tmp_path / "model.safetensors")
    load_optimizer(tmp_path / "optimizer.pt", optimizer2, scheduler2)
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name
    assert scheduler2.state_dict() == scheduler.state_dict()

    # Continuing both gives bit-identical weights: optimizer moments and LR came back exactly.
    torch.manual_seed(5)
    _train(model, optimizer, scheduler, steps=2)
    torch.manual_seed(5)
    _train(model2, optimizer2, scheduler2, steps=2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_only_trainable_weights_are_saved(tmp_path):
    torch.manual_seed(0)
    model = _model()
    model[0].requires_grad_(False)  # a frozen "base" layer, as with LoRA
    names = set(trainable_state_dict(model))
    assert "0.weight" not in names and "0.bias" not in names
    assert {"2.weight", "2.bias", "1.weight", "1.running_mean", "1.num_batches_tracked"} <= names
    save_weights(model, tmp_path / "w.safetensors")
    assert set(load_file(str(tmp_path / "w.safetensors"))) == names

    other = _model()
    other[0].requires_grad_(False)
    load_weights(other, tmp_path / "w.safetensors")  # frozen layer missing from the file: fine
    assert torch.equal(other[2].weight, model[2].weight)


def test_load_weights_rejects_a_different_model(tmp_path):
    save_weights(torch.nn.Linear(4, 1), tmp_path / "w.safetensors")
    with pytest.raises(RecplatError, match="weights do not fit the model"):
        load_weights(_model(), tmp_path / "w.safetensors")


def test_tied_weights_save(tmp_path):
    emb = torch.nn.Embedding(5, 3)
    head = torch.nn.Linear(3, 5, bias=False)
    head.weight = emb.weight  # tied: one parameter under two names
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    save_weights(model, tmp_path / "w.safetensors")
    assert set(load_file(str(tmp_path / "w.safetensors"))) == {"emb.weight"}  # saved once

    other = torch.nn.ModuleDict({"emb": torch.nn.Embedding(5, 3), "head": torch.nn.Linear(3, 5, bias=False)})
    other["head"].weight = other["emb"].weight
    load_weights(other, tmp_path / "w.safetensors")
    assert torch.equal(other["head"].weight, emb.weight)


def test_rng_round_trip_per_rank(tmp_path):
    seed_everything(3)
    save_rng(tmp_path, rank=1)
    expected = (random.random(), np.random.rand(), torch.rand(2))
    seed_everything(99)
    assert load_rng(tmp_path, rank=1)
    got = (random.random(), np.random.rand(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
    assert not load_rng(tmp_path, rank=0)  # no state saved for that rank


def test_trainer_state_round_trip(tmp_path):
    state = TrainerState(step=9, epoch=1, batch_in_epoch=6, best=0.5, best_step=6, bad_validations=1,
                         history=[{"step": 3, "val_loss": 0.7}, {"step": 6, "val_loss": 0.5}])
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    with pytest.raises(RecplatError, match="not a recplat checkpoint"):
        read_state(tmp_path / "nowhere")


def test_optimizer_file_is_read_weights_only(tmp_path, monkeypatch):
    model, optimizer, scheduler = _fresh(0)
    save_optimizer(tmp_path / "optimizer.pt", optimizer, scheduler)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_optimizer(tmp_path / "optimizer.pt", optimizer, scheduler)
    assert seen["weights_only"] is True


def test_a_resume_under_a_changed_config_is_refused_naming_the_keys(tmp_path):
    """Issue 19 item 7: a failed run rerun with another lr resumed its checkpoint and trained on at the
    old lr. Every checkpoint carries its training config; the launcher refuses a different one."""
    from recplat.train import TrainConfig
    from recplat.train.checkpoint import resume_config
    from recplat.train.launch import check_earlier_checkpoints

    first = TrainConfig(storage_path=str(tmp_path), name="run", lr=0.001, max_steps=20)
    for step in (5, 10):  # as train_loop writes them: trainer_state.json with the config in it
        directory = tmp_path / "run" / f"checkpoint_step{step:07d}"
        directory.mkdir(parents=True)
        write_state(directory, TrainerState(step=step, config=resume_config(first.model_dump())))
    check_earlier_checkpoints(first)  # the same config resumes
    # placement and fault tolerance may change between attempts
    check_earlier_checkpoints(first.model_copy(update={"max_failures": 3, "num_to_keep": 5, "log_every": 1}))
    check_earlier_checkpoints(first.model_copy(update={"name": "other"}))  # a new run: nothing to resume
    changed = first.model_copy(update={"lr": 0.05, "max_steps": 30})
    with pytest.raises(RecplatError) as info:
        check_earlier_checkpoints(changed)
    message = str(info.value)
    assert "checkpoint_step0000005: written under a different training config (lr: 0.001 -> 0.05; max_steps: 20 -> 30)" in message
    assert "\n" not in message
    # a checkpoint from before configs were recorded is not checked
    legacy = tmp_path / "old" / "checkpoint_step0000001"
    legacy.mkdir(parents=True)
    write_state(legacy, TrainerState(step=1))
    check_earlier_checkpoints(changed.model_copy(update={"name": "old"}))
    assert read_state(tmp_path / "run" / "checkpoint_step0000010").config["lr"] == 0.001


class _RunsCode:
    """What a crafted checkpoint holds: unpickling it calls os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_deepspeed_resume_never_runs_code_from_a_checkpoint(tmp_path):
    """Issue 19 item 2: DeepSpeed's TorchCheckpointEngine loads with weights_only=False; the engine
    DeepSpeedStrategy installs refuses anything but tensors, containers and DeepSpeed's own state."""
    import pickle

    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from recplat.train.strategies import WeightsOnlyLoads

    crafted = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "lr_scheduler": _RunsCode(tmp_path / "pwned")}, crafted)
    stock = TorchCheckpointEngine()
    ours = WeightsOnlyLoads(stock)
    with pytest.raises(pickle.UnpicklingError):
        ours.load(str(crafted), map_location="cpu")
    assert not (tmp_path / "pwned").exists()
    stock.load(str(crafted), map_location="cpu")  # DeepSpeed's own loader runs the file's code
    assert (tmp_path / "pwned").is_dir()

    # what a real ZeRO-2 optimizer shard holds still loads (besides tensors and containers)
    shard = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    state = {"optimizer_state_dict": {"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.gradients,
                                      "param_slice_mappings": [{"0.weight": fragment_address(numel=4, start=0)}],
                                      "single_partition_of_fp32_groups": [torch.arange(4.0)]},
             "ds_config": {"zero_optimization": {"stage": 2}}, "ds_version": "0.19.8"}
    torch.save(state, shard)
    loaded = ours.load(str(shard), map_location="cpu")["optimizer_state_dict"]
    assert loaded["zero_stage"] is ZeroStageEnum.gradients and loaded["loss_scaler"].cur_scale == 1.0
    assert loaded["param_slice_mappings"][0]["0.weight"] == fragment_address(numel=4, start=0)
    assert torch.equal(loaded["single_partition_of_fp32_groups"][0], torch.arange(4.0))
    assert ours.name == stock.name  # everything but load is DeepSpeed's engine


def test_a_branch_must_train_the_checkpoints_updates_alike(tmp_path):
    """CPRec's annealing variants branch from one stable-phase run: the branch may change how long it
    runs and its schedule after the branch point, nothing that would have trained updates 1..S otherwise."""
    from recplat.errors import ConfigError
    from recplat.train import TrainConfig
    from recplat.train.checkpoint import check_branchable, resume_config
    from recplat.train.launch import check_branch

    stable = dict(lr=0.01, min_lr=0.001, schedule="wsa", storage_path=str(tmp_path), name="trunk")
    trunk = TrainConfig(**stable, phase_ends=(2, 6), max_steps=6)  # A = S: no annealing
    directory = tmp_path / "trunk" / "checkpoint_step0000006"
    directory.mkdir(parents=True)
    write_state(directory, TrainerState(step=6, config=resume_config(trunk.model_dump()), total_steps=6))
    state = read_state(directory)

    def branch(**changes):
        cfg = TrainConfig(**{**stable, "phase_ends": (2, 6), "max_steps": 9, "name": "branch", **changes},
                          branch_from=str(directory))
        check_branchable(str(directory), state, cfg.model_dump(mode="json"), cfg.max_steps)
        return cfg

    check_branch(branch(), total_steps=9)  # annealing over updates 7-9
    branch(max_steps=7, name="other", max_failures=2)  # placement keys and the length may change
    for changes, problem in [
        ({"lr": 0.02}, "trained under a different config (lr: 0.01 -> 0.02); a branch may change only max_steps"),
        ({"phase_ends": (3, 6)}, "update 1 ran at learning rate 0.0055 there and would run at 0.004 here"),
        ({"phase_ends": (2, 5)}, "update 6 ran at learning rate 0.01 there and would run at 0.00868198 here"),
        ({"max_steps": 6}, "it is at step 6, not before this run's last step (6)"),
        ({"seed": 1}, "(seed: 0 -> 1)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(problem)):
            branch(**changes)
    write_state(directory, TrainerState(step=6))  # from before configs were recorded
    with pytest.raises(ConfigError, match="written before recplat recorded a checkpoint's config"):
        check_branchable(str(directory), read_state(directory), trunk.model_dump(mode="json"), 9)
    with pytest.raises(ConfigError, match=r"^branch_from: .*nowhere: not a readable recplat checkpoint"):
        check_branch(TrainConfig(**stable, branch_from=str(tmp_path / "nowhere")), total_steps=9)
