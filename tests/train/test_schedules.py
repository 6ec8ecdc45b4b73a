import math

import pytest
import torch

from recplat.train.schedules import build_lr_lambda, warmup_steps_for


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
    with pytest.raises(ValueError, match="unknown schedule 'wsa'"):
        build_lr_lambda("wsa", total_steps=10)


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
