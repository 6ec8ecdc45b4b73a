import pytest

from recplat.config import validate
from recplat.errors import ConfigError
from recplat.train.config import TrainConfig


def test_defaults_run_on_cpu():
    cfg = TrainConfig()
    assert (cfg.strategy, cfg.use_gpu, cfg.precision, cfg.num_workers) == ("ddp", False, "fp32", 2)
    assert cfg.checkpoint_interval is None
    assert TrainConfig(eval_every=5).checkpoint_interval == 5
    assert TrainConfig(eval_every=5, checkpoint_every=10).checkpoint_interval == 10


@pytest.mark.parametrize(
    "data, message",
    [
        ({"precision": "fp16"}, "fp16 is not supported on CPU"),
        ({"offload_optimizer": True}, "only the deepspeed strategy"),
        ({"metric": "val_loss"}, "set eval_every"),
        ({"patience": 2}, "early stopping needs a metric"),
        ({"eval_every": 4, "metric": "val_loss", "checkpoint_every": 6}, "multiple of eval_every"),
        ({"max_steps": 5, "fail_at_step": 5}, "must be below max_steps"),
        ({"strategy": "fsdp"}, "strategy"),
        ({"lr": 0}, "lr"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"batch_size": 8}, "batch_size: unknown key"),
        ({"strategy": "deepspeed", "lr_overrides": {"integrator": 1e-4}}, "lr_overrides: only with the ddp"),
        ({"lr_overrides": {"integrator": 0}}, "lr_overrides: 'integrator': 0"),
    ],
)
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig, data, source="jobs/x.yaml")


def test_round_trips_through_plain_data():
    cfg = TrainConfig(strategy="deepspeed", precision="bf16", offload_optimizer=True, eval_every=2,
                      metric="ndcg@10", mode="max", patience=3)
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg
