"""Planning a sweep (no Ray runtime): the catalog's `tune:` sections, errors naming the search key
and value, the implied grid search, and the best-trial command resolving the trial's own config."""

import shlex
from pathlib import Path

import pytest

from recplat.catalog import Catalog
from recplat.config import parse_override
from recplat.errors import ConfigError
from recplat.run import plan_job
from recplat.tune.experiment import plan_sweep
from recplat.tune.results import best_command
from recplat.tune.space import trial_overrides
from tests.tune.jobs import FIG7, JOBS, fig7_jobs_with



@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(JOBS)


def _catalog_with(tmp_path: Path, tune: dict) -> Catalog:
    return Catalog(fig7_jobs_with(tmp_path, tune))


SEARCH = {"metric": "recall@1", "mode": "max", "space": {"variant": {"grid": ["minilm-r2"]},
                                                         "recipe.train.lr": {"loguniform": [1.0e-5, 1.0e-3]}}}


def test_the_catalog_entry_plans(catalog, tmp_path):
    plan = plan_sweep(FIG7, "smoke", out=tmp_path / "s", catalog=catalog)
    assert plan.search_name == "lora_rank" and plan.search.scheduler.type == "asha"
    assert plan.search.metric == "recall@1" and plan.max_t == 10
    assert [r.variant for r in plan.runs] == ["minilm-r2", "minilm-r4"]
    assert {r.data_dir for r in plan.runs} == {tmp_path / "s" / "data"}  # one dataset for every trial
    assert plan.experiment_path == str(tmp_path / "s" / "tune")
    paper = plan_sweep(FIG7, "paper", out=tmp_path / "p", catalog=catalog)
    assert len(paper.runs) == 15 and paper.search.resources == {"CPU": 1}
    remote = plan_sweep(FIG7, "smoke", out=tmp_path / "s", storage="s3://bucket/sweeps/", catalog=catalog)
    assert remote.experiment_path == "s3://bucket/sweeps/s"


def test_a_profile_without_tune_runs_its_grid(catalog, tmp_path):
    sweep = catalog.get("xcross/table2_lora")  # a profile with a sweep and no tune: section
    plan = plan_sweep("xcross/table2_lora", "smoke", out=tmp_path / "x", catalog=catalog)
    names = [v.name for v in sweep.profile("smoke").variants()]
    assert plan.search_name == "grid" and plan.search.space["variant"].grid == names
    assert plan.search.metric == plan.runs[0].config.train.metric and plan.search.scheduler.type == "fifo"
    with pytest.raises(ConfigError, match=r"has no search 'nope'"):
        plan_sweep("xcross/table2_lora", "smoke", "nope", catalog=catalog)
    with pytest.raises(ConfigError, match="no tune: section and no sweep/grid: nothing to search"):
        plan_sweep("llmrec/table4_sasrec", "smoke", catalog=catalog)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"space": {"variant": {"grid": ["minilm-r2"]}, "recipe.finetune.rank": {"grid": [4, 0]}}},
         r"profiles.smoke.tune.s.space.recipe.finetune.rank: 0: .*finetune.rank: Input should be greater than or equal to 1"),
        ({"space": {"variant": {"grid": ["minilm-r2"]}, "recipe.train.lrr": {"choice": [0.1]}}},
         r"profiles.smoke.tune.s.space.recipe.train.lrr: 0.1: .*train.lrr: unknown key"),
        ({"space": {"variant": {"grid": ["minilm-r2"]}, "resources.num_workers": {"grid": [1, -1]}}},
         r"profiles.smoke.tune.s.space.resources.num_workers: -1: .*resources: num_workers: Input should be greater"),
        ({"metric": "mrr"}, r"profiles.smoke.tune.s.metric: 'mrr' is not a validation metric of this run "
                            r"\(it validates recall@1, recall@10, ndcg@10\)"),
        ({"scheduler": {"type": "asha", "grace_period": 50}},
         r"profiles.smoke.tune.s.scheduler.grace_period: 50 is past the last step \(10\)"),
    ],
)
def test_plan_errors_name_the_search_key_and_value(tmp_path, change, message):
    catalog = _catalog_with(tmp_path, {"s": {**SEARCH, **change}})
    with pytest.raises(ConfigError, match=r"^jobs/llmrec/fig7_lora_rank.yaml: " + message):
        plan_sweep(FIG7, "smoke", out=tmp_path / "s", catalog=catalog)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metric": "test/recall@1"}, r"profiles.smoke.tune.s.metric: .*'test/recall@1' is a test metric"),
        ({"space": {"variant": {"grid": ["minilm-r8"]}}},
         r"profiles.smoke.*tune.s.space.variant: minilm-r8: not a variant of this profile \(minilm-r2, minilm-r4\)"),
        ({"space": {"recipe.train.lr": {"grid": [0.1]}}}, r"profiles.smoke.*tune.s.space: this profile has a sweep/grid"),
        ({"space": {"data.kcore.user": {"grid": [3]}}}, r"profiles.smoke.tune.s.space: .*data.kcore.user: the data are prepared once"),
    ],
)
def test_catalog_errors_name_the_tune_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=r"^jobs/llmrec/fig7_lora_rank.yaml: " + message):
        _catalog_with(tmp_path, {"s": {**SEARCH, **change}})


def test_several_searches_need_a_name(tmp_path):
    catalog = _catalog_with(tmp_path, {"a": SEARCH, "b": SEARCH})
    with pytest.raises(ConfigError, match=r"several searches: pick one with --search \(a, b\)"):
        plan_sweep(FIG7, "smoke", catalog=catalog)
    assert plan_sweep(FIG7, "smoke", "b", out=tmp_path / "b", catalog=catalog).search_name == "b"


def test_the_best_command_resolves_the_trials_own_config(catalog, tmp_path):
    """The printed `recplat run` line, parsed back as a shell would and run through the catalog's
    override parser, gives the very recipe config the trial ran (but for its output folder)."""
    params = {"variant": "minilm-r4", "recipe.train.lr": 3.1622776601683795e-05, "recipe.finetune.dropout": 0.05}
    command = best_command(FIG7, "smoke", ["resources.num_workers=1"], params)
    assert command.startswith(f"recplat run {FIG7} --profile smoke --variant minilm-r4 resources.num_workers=1 ")
    argv = shlex.split(command)
    variant = argv[argv.index("--variant") + 1]
    overrides = [a for a in argv if "=" in a]
    rerun = plan_job(FIG7, "smoke", variant, tmp_path / "rerun", overrides, catalog, check=False).runs[0].config
    trial_variant, trial = trial_overrides(params)
    ran = plan_job(FIG7, "smoke", trial_variant, tmp_path / "sweep", ["resources.num_workers=1", *trial], catalog,
                   check=False).runs[0].config  # fmt: skip
    assert rerun.train.lr == params["recipe.train.lr"] and rerun.finetune.rank == 4 and rerun.train.num_workers == 1
    assert rerun.model_dump(exclude={"out", "data"}) == ran.model_dump(exclude={"out", "data"})
    assert parse_override(overrides[-2])[1] == params["recipe.train.lr"]
