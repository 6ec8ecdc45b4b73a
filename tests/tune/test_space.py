"""The `tune:` section as typed data: Tune objects, errors that name the key, no test objective,
and `key=value` text that the catalog's override parser reads back as the same value. No Ray
runtime is started here."""

import math

import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.sample import Categorical, Float

from recplat.config import parse_override, validate
from recplat.errors import ConfigError
from recplat.tune.space import Param, TuneSearch, override_text, objective_problem, trial_overrides


def _search(**changes) -> TuneSearch:
    data = {"metric": "recall@1", "mode": "max",
            "space": {"variant": {"grid": ["minilm-r2", "minilm-r4"]},
                      "recipe.train.lr": {"loguniform": [1.0e-5, 1.0e-3]},
                      "recipe.finetune.dropout": {"uniform": [0.0, 0.2]},
                      "recipe.model.max_history": {"choice": [5, 10]}}}
    data.update(changes)
    return validate(TuneSearch, data, source="jobs/x.yaml: profiles.smoke.tune.s")


def test_space_translates_to_the_tune_objects():
    space = _search().param_space()
    assert space["variant"] == tune.grid_search(["minilm-r2", "minilm-r4"]) == {"grid_search": ["minilm-r2", "minilm-r4"]}
    lr, dropout, history = space["recipe.train.lr"], space["recipe.finetune.dropout"], space["recipe.model.max_history"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-5, 1e-3) and type(lr.sampler).__name__ == "_LogUniform"
    assert isinstance(dropout, Float) and (dropout.lower, dropout.upper) == (0.0, 0.2)
    assert type(dropout.sampler).__name__ == "_Uniform"
    assert isinstance(history, Categorical) and history.categories == [5, 10]
    draws = [lr.sample(random_state=seed) for seed in range(200)]
    assert all(1e-5 <= d < 1e-3 for d in draws)
    # log-uniform: about half the draws fall below the geometric mean 1e-4
    assert 70 < sum(d < 1e-4 for d in draws) < 130


def test_schedulers():
    assert isinstance(_search().build_scheduler(max_t=10), FIFOScheduler)
    asha = _search(scheduler={"type": "asha", "grace_period": 2, "reduction_factor": 3}).build_scheduler(max_t=12)
    assert isinstance(asha, ASHAScheduler)
    assert (asha._time_attr, asha._max_t, asha._reduction_factor) == ("step", 12, 3)
    assert not asha._stop_last_trials  # a trial at its last step still tests its best checkpoint
    assert asha.set_search_properties("recall@1", "max", config={})  # what TuneConfig(metric, mode) does
    assert asha.metric == "recall@1" and asha._metric_op == 1
    assert _search(scheduler={"type": "asha", "max_t": 40}).build_scheduler(max_t=12)._max_t == 40
    with pytest.raises(ValueError, match="max_t: ASHA needs the last step"):
        _search(scheduler={"type": "asha"}).build_scheduler(max_t=None)
    with pytest.raises(ValueError, match=r"grace_period: 20 is past the last step \(12\)"):
        _search(scheduler={"type": "asha", "grace_period": 20}).build_scheduler(max_t=12)


@pytest.mark.parametrize("metric", ["test/recall@1", "test.recall@1", "test_recall@1", "TEST recall", "overall.ndcg@10"])
def test_a_test_metric_as_objective_is_rejected(metric):
    with pytest.raises(ConfigError) as info:
        _search(metric=metric)
    message = str(info.value)
    assert message.startswith("jobs/x.yaml: profiles.smoke.tune.s: metric: ") and "is a test metric" in message
    assert "validation" in message


def test_validation_metrics_are_accepted():
    for metric in ("recall@1", "ndcg@10", "hit@1", "val_loss", "contest_score"):
        assert objective_problem(metric) is None, metric
    assert "use the validation metric 'recall@1'" in objective_problem("test/recall@1")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"space": {"recipe.train.lr": {"loguniform": [0.0, 1.0]}}}, r"space.recipe.train.lr: .*loguniform: needs low > 0"),
        ({"space": {"recipe.train.lr": {"uniform": [0.3, 0.1]}}}, r"space.recipe.train.lr: .*low < high, got \[0.3, 0.1\]"),
        ({"space": {"recipe.train.lr": {"grid": [1, 2], "choice": [3]}}}, r"space.recipe.train.lr: .*exactly one .*\(got grid, choice\)"),
        ({"space": {"recipe.train.lr": {"grid": []}}}, r"space.recipe.train.lr: .*grid: needs at least one value"),
        ({"space": {"recipe.train.lr": {"normal": [0, 1]}}}, r"space.recipe.train.lr.normal: unknown key"),
        ({"space": {"data.sources.0.users": {"grid": [100, 200]}}}, r"space: .*data.sources.0.users: the data are prepared once"),
        ({"space": {"train.lr": {"grid": [1]}}}, r"space: .*train.lr: keys are `variant` or start with recipe. or resources."),
        ({"space": {}}, r"space: Dictionary should have at least 1 item"),
        ({"mode": "maximise"}, r"mode: Input should be 'min' or 'max'"),
        ({"num_samples": 0}, r"num_samples: Input should be greater than or equal to 1"),
        ({"scheduler": {"type": "pbt"}}, r"scheduler: Input tag 'pbt' found using 'type' does not match"),
        ({"scheduler": {"type": "asha", "grace": 2}}, r"scheduler.asha.grace: unknown key"),
        ({"resources": {"CPU": -1}}, r"resources: .*CPU: must be >= 0"),
        ({"max_concurrent_trials": 0}, r"max_concurrent_trials: Input should be greater than or equal to 1"),
        ({"branch": {"keys": ["recipe.train.lr"], "trunk": {}}}, r"branch.trunk: Dictionary should have at least 1 item"),
        ({"branch": {"keys": ["recipe.train.lr"], "trunk": {"recipe.train.lrr": 1}}},
         r"branch: .*trunk: give the trunk run's value of each of keys \(recipe.train.lr\), got recipe.train.lrr"),
        ({"branch": {"keys": ["recipe.train.epochs"], "trunk": {"recipe.train.epochs": 1}}},
         r"branch.keys: recipe.train.epochs: not a key of space \(nor variant\)"),
        ({"branch": {"keys": ["recipe.train.lr"], "trunk": {"recipe.train.lr": 1}}},
         r"space.recipe.finetune.dropout: with branch, the trunk's keys are grids \(each trial must find its trunk\), not uniform"),
        ({"branch": {"keys": ["variant"], "trunk": {"variant": "minilm-r2"}}}, r"branch.keys: variant: not a key of space"),
    ],
)
def test_validation_errors_name_the_key(changes, message):
    with pytest.raises(ConfigError, match=r"^jobs/x.yaml: profiles.smoke.tune.s: " + message):
        _search(**changes)


def test_variant_values_must_be_variants_of_the_profile():
    search = _search()
    search.check_variants(["minilm-r2", "minilm-r4"])
    with pytest.raises(ValueError, match=r"space.variant: minilm-r4: not a variant of this profile \(minilm-r2\)"):
        search.check_variants(["minilm-r2"])
    with pytest.raises(ValueError, match="use grid or choice, not uniform"):
        _search(space={"variant": {"uniform": [0, 1]}}).check_variants(["a"])
    with pytest.raises(ValueError, match=r"space: this profile has a sweep/grid: add variant: \{grid: \[...\]\}"):
        _search(space={"recipe.train.lr": {"grid": [0.1]}}).check_variants(["a", "b"])


@pytest.mark.parametrize("value", [1e-05, 3.1622776601683794e-4, 0.1 + 0.2, 1e20, 4, True, "offline:minilm",
                                   "two words", [5, 10], None, -2.5e-7])
def test_override_text_round_trips_through_the_override_parser(value):
    keys, parsed = parse_override(override_text("recipe.train.lr", value))
    assert keys == ["recipe", "train", "lr"]
    assert parsed == value and type(parsed) is type(value)


def test_trial_overrides_keep_the_space_order_and_split_off_the_variant():
    import numpy as np

    variant, overrides = trial_overrides({"recipe.train.lr": np.float64(1e-4), "variant": "minilm-r4",
                                          "recipe.finetune.rank": np.int64(8)})
    assert variant == "minilm-r4"
    assert overrides == ["recipe.train.lr=0.0001", "recipe.finetune.rank=8"]
    assert math.isclose(parse_override(overrides[0])[1], 1e-4)
