"""Planning a sweep (no Ray runtime): the catalog's `tune:` sections, errors naming the search key
and value, the implied grid search, and the best-trial command resolving the trial's own config."""

import shlex
from pathlib import Path

import pytest

from recplat.catalog import Catalog
from recplat.config import parse_override
from recplat.errors import ConfigError
from recplat.run import plan_job
from recplat.tune.branch import trunk_overrides
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


def test_the_cprec_wsa_search_plans_trials_that_share_their_stable_phase(catalog, tmp_path):
    """CPRec's WSA search (FIFO: the gains arrive in the annealing): 8 trials, each one the run the
    best command would make; trials with the same warm-up and peak LR read the same rows at the same
    learning rates up to the stable phase's end S and differ only after it (the point an annealing
    variant would branch from a shared stable-phase checkpoint)."""
    import numpy as np

    from recplat.data.behaviour_corpus import consumption_order
    from recplat.recipes.cprec import plan_cpt
    from recplat.train.schedules import schedule_for

    plan = plan_sweep("cprec/cpt", "smoke", out=tmp_path / "w", catalog=catalog)
    assert plan.search_name == "wsa" and plan.search.scheduler.type == "fifo" and plan.search.metric == "val_loss"
    grid = [dict(zip(("recipe.cpt.warmup_end", "recipe.train.lr", "recipe.cpt.anneal_end"), v))
            for v in [(w, lr, a) for w in (1, 2) for lr in (5.0e-4, 1.0e-3) for a in (7, 8)]]
    ds, mix = np.arange(20), np.arange(20, 30)  # row ids of a corpus with 20 domain-specific and 10 mixed rows
    runs = {}
    for params in grid:
        _, overrides = trial_overrides(params)
        cfg = plan_job("cprec/cpt", "smoke", None, plan.out, overrides, catalog, check=False).runs[0].config
        phases, schedule = plan_cpt(cfg, len(ds), len(mix), cfg.train.num_workers)
        assert (phases.warmup_end, phases.stable_end, phases.anneal_end) == \
            (params["recipe.cpt.warmup_end"], 6, params["recipe.cpt.anneal_end"])
        train = cfg.train.model_copy(update={"phase_ends": schedule["phase_ends"]})
        lrs = [cfg.train.lr * schedule_for(train, phases.anneal_end)(s) for s in range(phases.anneal_end)]
        rows, _ = consumption_order(ds, mix, phases, cfg.cpt.data, cfg.train.seed)
        runs[tuple(params.values())] = (lrs, rows.tolist(), phases.batch)
        argv = shlex.split(best_command("cprec/cpt", "smoke", [], params))
        rerun = plan_job("cprec/cpt", "smoke", None, tmp_path / "r", [a for a in argv if "=" in a], catalog,
                         check=False).runs[0].config  # fmt: skip
        assert rerun.model_dump(exclude={"out", "data"}) == cfg.model_dump(exclude={"out", "data"})
    for w in (1, 2):
        for lr in (5.0e-4, 1.0e-3):
            (lrs7, rows7, batch), (lrs8, rows8, _) = runs[(w, lr, 7)], runs[(w, lr, 8)]
            assert lrs7[:6] == lrs8[:6] and rows7[: 6 * batch] == rows8[: 6 * batch]  # the shared stable trunk
            assert lrs7[6] != lrs8[6] and lrs7[6] == pytest.approx(cfg.train.min_lr)  # annealing: 1 vs 2 updates
    assert runs[(1, 5.0e-4, 7)][0][:6] != runs[(2, 5.0e-4, 7)][0][:6]  # warm-up length changes the trunk
    # ... so the search trains each of the 4 trunks once (A = S = 6, no annealing) and branches from it
    assert plan.search.branch.keys == ["recipe.cpt.anneal_end"] and plan.search.branch.trunk == {"recipe.cpt.anneal_end": 6}
    assert plan.trunk_path == str(tmp_path / "w" / "tune-trunks")
    trunk = plan_job("cprec/cpt", "smoke", None, plan.out, trunk_overrides(plan.search), catalog, check=False).runs[0].config
    phases, _ = plan_cpt(trunk, len(ds), len(mix), 1)
    assert (phases.warmup_end, phases.stable_end, phases.anneal_end) == (1, 6, 6)


def test_a_branch_search_plans_its_trunks(tmp_path):
    from tests.tune.jobs import jobs_with

    wsa = Catalog(JOBS).get("cprec/cpt").profile("smoke").tune["wsa"].model_dump(exclude_none=True)
    bad = {**wsa, "branch": {"keys": ["recipe.cpt.anneal_end"], "trunk": {"recipe.cpt.anneal_end": 0}}}
    catalog = Catalog(jobs_with(tmp_path, "cprec/cpt", {"wsa": bad}))
    with pytest.raises(ConfigError, match=r"^jobs/cprec/cpt.yaml: profiles.smoke.tune.wsa.branch.trunk.recipe.cpt."
                                          r"anneal_end: 0: .*cpt.anneal_end: Input should be greater than or equal to 1"):
        plan_sweep("cprec/cpt", "smoke", out=tmp_path / "b", catalog=catalog)
    fig7 = {**SEARCH, "space": {"variant": {"grid": ["minilm-r2"]}, "recipe.train.lr": {"grid": [1.0e-4]},
                                "recipe.train.max_steps": {"grid": [8, 10]}},
            "branch": {"keys": ["recipe.train.max_steps"], "trunk": {"recipe.train.max_steps": 6}}}
    plan = plan_sweep(FIG7, "smoke", out=tmp_path / "f", catalog=_catalog_with(tmp_path / "f7", {"s": fig7}))
    assert trunk_overrides(plan.search) == ["recipe.train.max_steps=6"]


def test_a_branching_sweep_resumes_from_its_trunks(catalog, tmp_path):
    """--resume after a driver died while training the trunks: only tune-trunks/ is saved; a new sweep
    is refused on either experiment (nothing is replaced)."""
    from recplat.tune.experiment import check_experiment

    plan = plan_sweep("cprec/cpt", "smoke", out=tmp_path / "w", catalog=catalog)
    with pytest.raises(ConfigError, match=r"w/tune-trunks: no sweep to resume there"):
        check_experiment(plan, resume=True)
    check_experiment(plan, resume=False)
    (tmp_path / "w" / "tune-trunks").mkdir(parents=True)
    (tmp_path / "w" / "tune-trunks" / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    check_experiment(plan, resume=True)
    with pytest.raises(ConfigError, match=r"w/tune-trunks: a sweep is already there: continue it with --resume"):
        check_experiment(plan, resume=False)
