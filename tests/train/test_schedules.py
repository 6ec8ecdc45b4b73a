import math

import pytest
import torch

from recplat.train.config import TrainConfig
from recplat.train.schedules import WsaSchedule, build_lr_lambda, schedule_for, warmup_steps_for, wsa_schedule


def test_warmup_steps_round_up():
    assert warmup_steps_for(100, 0.0) == 0
    assert warmup_steps_for(100, 0.1) == 10
    assert warmup_steps_for(10, 0.05) == 1


def test_linear_values():
    f = build_lr_lambda("linear", total_steps=10, warmup_ratio=0.2)  # 2 warmup steps
    assert [f(s) for s in range(11)] == pytest.approx([0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])


def test_cosine_values():
    f = build_lr_lambda("cosine", total_steps=12, warmup_ratio=1 / 3)  # 4 warmup steps
    assert [f(s) for s in range(4)] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert f(4) == pytest.approx(1.0)
    assert f(8) == pytest.approx(0.5)  # half-way through the decay
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert f(12) == pytest.approx(0.0)
    assert f(20) == pytest.approx(0.0)  # past the end stays at 0


def test_constant_values():
    f = build_lr_lambda("constant", total_steps=10, warmup_ratio=0.3)
    assert [f(s) for s in range(5)] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    g = build_lr_lambda("constant", total_steps=10)
    assert g(0) == 1.0


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'wsd'"):
        build_lr_lambda("wsd", total_steps=10)


def test_lambda_lr_state_round_trip():
    # LambdaLR saves the schedule's fields and a fresh scheduler continues the same curve.
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_lr_lambda("linear", 10, 0.2))
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"warmup_steps": 2, "total_steps": 10}

    opt2 = torch.optim.SGD([param], lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, build_lr_lambda("linear", 10, 0.2))
    sched2.load_state_dict(state)
    opt.step(), sched.step()
    opt2.step(), sched2.step()
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
    assert sched.get_last_lr() == pytest.approx([0.75])  # step 4 of 10, 2 warmup: 6/8


# --- CPRec WSA (Eq. 2-3) -------------------------------------------------------------------------


def wsa_equation(s: int, W: int, S: int, A: int, low: float, high: float) -> float:
    """Eq. 2-3 as printed (<= at each boundary), an absolute learning rate."""
    if s <= W:
        return low + (s / W) * (high - low)
    if s <= S:
        return high
    if s <= A:
        return low + 0.5 * (1 + math.cos(math.pi * (s - S) / (A - S))) * (high - low)
    raise AssertionError("Eq. 2-3 ends at A")


def lrs_used_by_each_update(lr_lambda, lr: float, updates: int) -> list[float]:
    """The learning rate optimizer update 1, 2, ... actually runs at, through torch's LambdaLR."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    used = []
    for _ in range(updates):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used


def test_wsa_equals_equation_2_3_at_every_update_including_the_boundaries():
    W, S, A, low, high = 2, 5, 9, 5e-6, 5e-4
    used = lrs_used_by_each_update(WsaSchedule(W, S, A, floor=low / high), high, A)
    assert used == pytest.approx([wsa_equation(s, W, S, A, low, high) for s in range(1, A + 1)], rel=1e-12)
    # the numbers, by hand: warm-up 1/2 and 2/2 of the way, stable, cosine quarters, the floor at A
    mid = low + 0.5 * (high - low)
    assert used == pytest.approx([mid, high, high, high, high,
                                  low + (1 + math.cos(math.pi / 4)) / 2 * (high - low), mid,
                                  low + (1 + math.cos(3 * math.pi / 4)) / 2 * (high - low), low], rel=1e-12)
    assert WsaSchedule(W, S, A, floor=low / high)(A + 3) == pytest.approx(low / high)  # held after A


def test_wsa_matches_transformers_wsd_schedule_value_for_value():
    # transformers branches with `<`, Eq. 2-3 with `<=`; the curve is continuous at W, S, A, so the
    # values agree at every update s (transformers' lambda at s = ours for update s)
    from transformers.optimization import get_wsd_schedule

    for W, S, A in [(2, 5, 9), (3, 3, 7), (4, 10, 17), (1, 1, 2)]:
        param = torch.nn.Parameter(torch.zeros(1))
        hf = get_wsd_schedule(torch.optim.SGD([param], lr=1.0), num_warmup_steps=W, num_stable_steps=S - W,
                              num_decay_steps=A - S, min_lr_ratio=0.01)
        ours = WsaSchedule(W, S, A, floor=0.01)
        assert [ours(s - 1) for s in range(1, A + 4)] == pytest.approx([hf.lr_lambdas[0](s) for s in range(1, A + 4)])
    # the one place the conventions part: no annealing (S = A). At s = A Eq. 2-3 is still stable
    # (eta_h), transformers (s < W + stable) is already past it and returns the floor.
    hf = get_wsd_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), num_warmup_steps=1,
                          num_stable_steps=5, num_decay_steps=0, min_lr_ratio=0.01)
    assert WsaSchedule(1, 6, 6, floor=0.01)(6 - 1) == 1.0 and hf.lr_lambdas[0](6) == pytest.approx(0.01)


def test_warmup_stable_never_anneals_and_wsa_without_phase_ends_is_warmup_then_cosine():
    ws = wsa_schedule("warmup_stable", total_steps=8, phase_ends=(2, 5), floor=0.1)
    assert [ws(s - 1) for s in range(1, 9)] == pytest.approx([0.55, 1, 1, 1, 1, 1, 1, 1])
    llara = wsa_schedule("wsa", total_steps=20, phase_ends=None, floor=0.01, warmup_ratio=0.05)  # W = S = 1
    assert (llara.warmup_end, llara.stable_end, llara.anneal_end) == (1, 1, 20)
    assert llara(0) == 1.0 and llara(19) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="after the run's 4 steps"):
        wsa_schedule("wsa", total_steps=4, phase_ends=(1, 5), floor=0.0)
    with pytest.raises(ValueError, match="0 <= W <= S <= A"):
        WsaSchedule(3, 2, 5)


def test_schedule_for_reads_min_lr_and_phase_ends_from_the_train_config():
    cfg = TrainConfig(schedule="wsa", lr=5e-4, min_lr=5e-6, phase_ends=(2, 5))
    f = schedule_for(cfg, 9)
    assert (f.warmup_end, f.stable_end, f.anneal_end, f.floor) == (2, 5, 9, pytest.approx(0.01))
    assert schedule_for(TrainConfig(schedule="cosine"), 10)(10) == 0.0
    with pytest.raises(ValueError, match="needs its phase ends"):
        build_lr_lambda("wsa", total_steps=10)
    with pytest.raises(ValueError, match="min_lr: the floor must be below lr"):
        TrainConfig(schedule="wsa", lr=1e-4, min_lr=1e-3)
    with pytest.raises(ValueError, match="only the wsa and warmup_stable schedules"):
        TrainConfig(schedule="cosine", min_lr=1e-6)


def test_a_restored_scheduler_switched_to_a_longer_schedule_goes_on_as_if_it_had_always_run_it():
    """A branch restores a trunk's LambdaLR (whose saved WsaSchedule fields would come back: A = 6)
    and must then run the branch's WSA (A = 10) from step 6 exactly as an uninterrupted run does."""
    from recplat.train.schedules import switch_schedule

    def scheduler(schedule):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def run(sched, steps):
        lrs = []
        for _ in range(steps):
            sched.optimizer.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
        return lrs

    whole = scheduler(WsaSchedule(2, 6, 10, floor=0.1))
    expected = run(whole, 10)
    trunk = scheduler(WsaSchedule(2, 6, 6, floor=0.1))
    assert run(trunk, 6) == expected[:5] + [pytest.approx(0.01)]  # after step 6 the trunk is at its floor
    branch = scheduler(WsaSchedule(2, 6, 10, floor=0.1))
    branch.optimizer.load_state_dict(trunk.optimizer.state_dict())
    branch.load_state_dict(trunk.state_dict())
    assert branch.lr_lambdas[0].anneal_end == 6  # what torch restores: the trunk's schedule
    switch_schedule(branch, WsaSchedule(2, 6, 10, floor=0.1))
    assert branch.get_last_lr() == [expected[5]] and branch.optimizer.param_groups[0]["lr"] == expected[5]
    assert run(branch, 4) == expected[6:]
    assert branch.state_dict()["lr_lambdas"][0]["anneal_end"] == 10  # and a restart of the branch keeps its own
