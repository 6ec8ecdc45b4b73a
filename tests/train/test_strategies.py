import pytest
import torch
from torch import nn

from recplat.errors import RecplatError
from recplat.train.schedules import build_lr_lambda
from recplat.train.strategies import param_groups


class TwoParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.integrator = nn.Linear(4, 2, bias=False)
        self.head = nn.Linear(4, 1)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_overrides_split_the_trainable_parameters_and_the_schedule_scales_every_group():
    model = TwoParts()
    groups = param_groups(model, 3e-3, {"integrator": 1e-4})
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("integrator", 1e-4, 1), ("default", 3e-3, 2)]
    assert groups[0]["params"][0] is model.integrator.weight
    opt = torch.optim.AdamW(groups, lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_lr_lambda("linear", 4, 0.0))
    opt.step()
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.75e-4, 2.25e-3])  # linear decay, 1 of 4 steps done
    (everything,) = param_groups(model, 3e-3, {})
    assert everything["lr"] == 3e-3 and len(everything["params"]) == 3  # integrator weight, head weight and bias


def test_an_override_matching_nothing_is_an_error():
    with pytest.raises(RecplatError, match="no trainable parameter name contains 'frozen'"):
        param_groups(TwoParts(), 1e-3, {"frozen": 1e-4})
