from recplat.train.config import TrainConfig
from recplat.train.deepspeed_config import build_deepspeed_config


def test_default_zero2_fp32_adamw():
    cfg = TrainConfig(strategy="deepspeed", micro_batch_size=4, grad_accum=2, lr=2e-4, weight_decay=0.01)
    assert build_deepspeed_config(cfg) == {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 1.0,
        "zero_optimization": {
            "stage": 2,
            "contiguous_gradients": True,
            "overlap_comm": False,
            "reduce_scatter": True,
            "allgather_partitions": True,
        },
        "optimizer": {
            "type": "AdamW",
            "params": {"torch_adam": True, "lr": 2e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8},
        },
        "bf16": {"enabled": False},
        "fp16": {"enabled": False, "initial_scale_power": 16, "loss_scale_window": 1000},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def test_bf16_offload_adam_no_clip():
    cfg = TrainConfig(strategy="deepspeed", precision="bf16", offload_optimizer=True, optimizer="adam",
                      clip_norm=None, lr=1e-3)
    ds = build_deepspeed_config(cfg)
    assert ds["bf16"] == {"enabled": True}
    assert ds["fp16"]["enabled"] is False
    assert ds["gradient_clipping"] == 0.0
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    # "Adam" would silently become AdamW in DeepSpeed without adam_w_mode false.
    assert ds["optimizer"] == {
        "type": "Adam",
        "params": {"torch_adam": True, "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
                   "adam_w_mode": False},
    }


def test_gpu_fp16_overlaps_and_pins():
    cfg = TrainConfig(strategy="deepspeed", use_gpu=True, precision="fp16", offload_optimizer=True)
    ds = build_deepspeed_config(cfg)
    assert ds["fp16"] == {"enabled": True, "initial_scale_power": 16, "loss_scale_window": 1000}
    assert ds["bf16"] == {"enabled": False}
    assert ds["zero_optimization"]["overlap_comm"] is True
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}


def test_deepspeed_accepts_the_config():
    # DeepSpeed's own parser (no process group needed) takes the dict without complaint.
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = TrainConfig(strategy="deepspeed", micro_batch_size=4, grad_accum=3, precision="bf16", offload_optimizer=True)
    parsed = DeepSpeedConfig(build_deepspeed_config(cfg))  # no process group: world size 1
    assert parsed.zero_optimization_stage == 2
    assert parsed.train_batch_size == 4 * 3
    assert parsed.gradient_accumulation_steps == 3
    assert parsed.bfloat16_config.enabled
    assert parsed.zero_config.offload_optimizer.device == "cpu"
