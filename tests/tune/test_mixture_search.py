"""MoLoRec's merge-coefficient search (`trials: mixture`, recplat/tune/mixture.py): planning checks
without Ray, and the catalog's smoke search end to end on a local Ray with a TINY random Llama
(real peft adapters trained by the recipe, real Tune trials, real generation; the numbers mean
nothing, the mechanics are what is checked): one row per w_g, each process loading the adapters
once for several trials, and the scores equal the recipe's own scoring of the exported mixture."""

import json
from pathlib import Path

import pytest
import yaml

from recplat.catalog import Catalog
from recplat.cli import main
from recplat.errors import ConfigError
from recplat.tune.experiment import plan_sweep
from recplat.tune.results import read_sweep
from tests.tune.jobs import JOBS

FIG4 = "molorec/fig4_coefficients"
W_G = {"trials": "mixture", "metric": "ndcg@1", "mode": "max",
       "space": {"variant": {"grid": ["warm"]}, "recipe.mixture.fixed": {"grid": [[0.0, 1.0], [1.0, 0.0]]}}}  # fmt: skip


def _catalog_with(root: Path, search: dict, job: str = FIG4) -> Catalog:
    data = yaml.safe_load((JOBS / f"{job}.yaml").read_text())
    data["profiles"]["smoke"]["tune"] = {"s": search}
    folder = root / "jobs" / job.split("/")[0]
    folder.mkdir(parents=True)
    (folder / f"{job.split('/')[1]}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if job == FIG4:  # the job it requires
        (folder / "stage1_general.yaml").write_text((JOBS / "molorec/stage1_general.yaml").read_text())
    return Catalog(root / "jobs")


@pytest.mark.parametrize(
    "job, change, message",
    [
        (FIG4, {"scheduler": {"type": "asha"}}, r"s.scheduler: evaluation-only trials report once; use fifo"),
        (FIG4, {"space": {"variant": {"grid": ["warm"]}, "recipe.mixture.fixed": {"grid": [[0.3, 0.3]]}}},
         r"s.space.recipe.mixture.fixed: \[0.3, 0.3\]: give \[w_g, w_s\] with w_g, w_s >= 0 and w_g \+ w_s = 1"),
        (FIG4, {"space": {"variant": {"grid": ["warm"]}, "recipe.train.lr": {"grid": [0.1]}}},
         r"s.space: a mixture search is over one of recipe.mixture.fixed or recipe.mixture.lr \(and variant\), "
         r"not recipe.train.lr"),
        (FIG4, {"space": {"variant": {"grid": ["warm"]}, "recipe.mixture.fixed": {"grid": [[0.5, 0.5]]},
                          "recipe.mixture.lr": {"grid": [0.1]}}}, r"s.space: a mixture search is over one of .*, not both"),
        (FIG4, {"space": {"variant": {"grid": ["warm"]}, "recipe.mixture.lr": {"grid": [0.1, -1.0]}}},
         r"s.space.recipe.mixture.lr: -1.0: .*mixture.lr: Input should be greater than 0"),
        ("llmrec/fig7_lora_rank", {"space": {"variant": {"grid": ["minilm-r2"]}}, "metric": "recall@1"},
         r"s.trials: mixture scores MoLoRec's adapter mixture; this job's recipe is llmrec"),
    ],
)
def test_a_mixture_search_is_checked_before_anything_runs(tmp_path, job, change, message):
    catalog = _catalog_with(tmp_path, {**W_G, **change}, job)
    if job == FIG4:  # so that only the search can be wrong
        _finished_stage1(tmp_path, "smoke")
    with pytest.raises(ConfigError, match=rf"^jobs/{job}.yaml: profiles.smoke.tune.{message}"):
        plan_sweep(job, "smoke", out=tmp_path / "s", catalog=catalog)


def test_the_catalog_search_needs_the_general_adapter_first(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe.general_from: no finished run of molorec/stage1_general .*"
                                          r"run `recplat run molorec/stage1_general --profile smoke` first"):
        plan_sweep(FIG4, "smoke", "w_g", out=tmp_path / "sweep", catalog=Catalog(JOBS))


def _finished_stage1(runs_root: Path, profile: str) -> None:
    """A finished stage-1 run where fig4's general_from looks for it (planning reads only that it
    finished: its summary.json)."""
    from recplat.run import find_run
    from recplat.runs import RunSummary

    catalog = Catalog(JOBS)
    folder = find_run("molorec/stage1_general", "ecommerce", profile, runs_root, catalog, "test")
    folder.mkdir(parents=True)
    RunSummary(recipe="molorec", dataset=str(runs_root / "data")).write(folder)


@pytest.mark.parametrize("profile, search, variant, lrs",
                         [("smoke", "entropy_lr", "warm", [0.1, 1.0, 10.0]),
                          ("paper", "entropy_lr_cold", "cold-toys", [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09])])
def test_the_entropy_lr_search_plans_trials_the_best_command_reproduces(tmp_path, profile, search, variant, lrs):
    """Every lr trial runs the entropy adaptation at exactly its lr (the variant's own lr_grid
    cleared: the cold variants set one), and the best command resolves the trial's config."""
    import shlex

    from recplat.run import plan_job
    from recplat.tune.results import best_command
    from recplat.tune.space import trial_overrides

    _finished_stage1(tmp_path, profile)
    catalog = Catalog(JOBS)
    plan = plan_sweep(FIG4, profile, search, out=tmp_path / "sweep", catalog=catalog)
    assert plan.search.trials == "mixture" and plan.search.space["recipe.mixture.lr"].grid == lrs
    assert plan.overrides[-2:] == ("recipe.mixture.coefficients=entropy", "recipe.mixture.lr_grid=[]")
    assert variant in plan.search.space["variant"].grid
    for lr in lrs:
        params = {"variant": variant, "recipe.mixture.lr": lr}
        trial_variant, trial = trial_overrides(params)
        ran = plan_job(FIG4, profile, trial_variant, plan.out, [*plan.overrides, *trial], catalog).runs[0].config
        assert (ran.mixture.coefficients, ran.mixture.lr, ran.mixture.lr_grid) == ("entropy", lr, [])
        argv = shlex.split(best_command(FIG4, profile, list(plan.overrides), params))
        rerun = plan_job(FIG4, profile, argv[argv.index("--variant") + 1], tmp_path / "rerun",
                         [a for a in argv if "=" in a], catalog, check=False).runs[0].config  # fmt: skip
        assert rerun.model_dump(exclude={"out", "data"}) == ran.model_dump(exclude={"out", "data"})
    if profile == "paper":  # without the search's overrides the cold variant would pick among its own grid
        own = plan_job(FIG4, profile, variant, plan.out, [], catalog, check=False).runs[0].config
        assert own.mixture.lr_grid == lrs


def tiny_model_overrides(root: Path) -> list[str]:
    """The TINY random Llama (SmolLM2's tokenizer) saved under `root`, and the smoke profile's
    overrides that train and evaluate with it for a few steps and tokens."""
    from tests.models.causal_lms import tiny_llama_dir

    model_dir = tiny_llama_dir(root / "tiny", answers_text=True)  # the entropy_lr trials need title tokens
    return [f"recipe.model.name={model_dir}", "recipe.model.max_length=512", "data.sources.0.users=40",
            "recipe.train.max_steps=2", "recipe.eval.max_new_tokens=6", "recipe.eval.test_size=4",
            "recipe.eval.batch_size=4"]  # fmt: skip


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_w_g_trials_reuse_the_loaded_adapters_and_match_the_recipes_scoring(ray_local, tmp_path):
    from recplat.recipes import molorec
    from recplat.run import plan_job
    from recplat.tune.mixture import _context, adapters_dir

    tiny = tiny_model_overrides(tmp_path)
    # Θ_g: the catalog's stage 1, where fig4's general_from finds it (next to the sweep folder)
    assert main(["run", "molorec/stage1_general", "--profile", "smoke", "--out",
                 str(tmp_path / "molorec-stage1_general-smoke"), *tiny]) == 0  # fmt: skip
    out = tmp_path / "sweep"
    assert main(["tune", FIG4, "--profile", "smoke", "--search", "w_g", "--out", str(out), *tiny,
                 "recipe.specific.train_prompts=20"]) == 0  # fmt: skip

    record = read_sweep(out)
    rows = record["rows"]
    assert sorted(r["params"]["recipe.mixture.fixed"][0] for r in rows) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(r["status"] == "done" and 0 <= r["objective"] <= 1 for r in rows)
    assert rows[0]["objective"] == max(r["objective"] for r in rows) and record["best"] == rows[0]["trial"]
    best = rows[0]["params"]["recipe.mixture.fixed"]
    assert record["command"].endswith(f"recipe.mixture.coefficients=fixed 'recipe.mixture.fixed=[{best[0]}, {best[1]}]'")
    assert (adapters_dir(out, "warm") / "adapter" / "adapter_config.json").is_file()  # Θ_s, trained once

    scored = {r["trial"]: json.loads((out / "trials" / r["trial"] / "validation.json").read_text()) for r in rows}
    pids = {s["pid"] for s in scored.values()}
    assert all(s["context_loads"] == 1 for s in scored.values())  # no process loaded the adapters twice
    assert len(pids) < len(rows)  # so some process scored several trials with what it had loaded
    assert all(s["prompts"] == 4 and len(s["outputs"]) == 4 for s in scored.values())  # eval.valid_size

    # the recipe's own path (export the mixed adapter, generate in Ray Data actors) gives the same answers
    cfg = plan_job(FIG4, "smoke", "warm", out, [*tiny, "recipe.specific.train_prompts=20"]).runs[0].config
    ctx, held_out = _context(cfg, adapters_dir(out, "warm"))
    for row in rows[:2]:
        ctx.mixture.set_weights(tuple(row["params"]["recipe.mixture.fixed"]))
        adapter = ctx.export(tmp_path / f"mix_{row['trial']}")
        results = molorec.evaluate_adapter(cfg, held_out, adapter, None)
        assert results.per_example.column("output").to_pylist() == scored[row["trial"]]["outputs"]
        assert results.overall["ndcg@1"] == pytest.approx(row["objective"])


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_entropy_lr_trials_match_the_recipes_own_lr_selection(ray_local, tmp_path):
    """Each lr trial scores what `molorec.entropy_mixture` scores for that lr of its grid (adapt λ
    from init on the unlabeled validation prompts, export, generate in Ray Data actors, score)."""
    from recplat.data.dataset import PreparedDataset
    from recplat.recipes import molorec
    from recplat.run import plan_job
    from recplat.tune.mixture import adapters_dir

    tiny = tiny_model_overrides(tmp_path)
    assert main(["run", "molorec/stage1_general", "--profile", "smoke", "--out",
                 str(tmp_path / "molorec-stage1_general-smoke"), *tiny]) == 0  # fmt: skip
    out = tmp_path / "sweep"
    extra = [*tiny, "recipe.specific.train_prompts=20"]
    assert main(["tune", FIG4, "--profile", "smoke", "--search", "entropy_lr", "--out", str(out), *extra]) == 0

    record = read_sweep(out)
    rows = record["rows"]
    assert sorted(r["params"]["recipe.mixture.lr"] for r in rows) == [0.1, 1.0, 10.0]
    assert all(r["status"] == "done" and 0 <= r["objective"] <= 1 for r in rows)
    best = rows[0]["params"]["recipe.mixture.lr"]
    assert record["command"].endswith(f"recipe.mixture.coefficients=entropy 'recipe.mixture.lr_grid=[]' "
                                      f"recipe.mixture.lr={best}")  # fmt: skip
    scored = {r["params"]["recipe.mixture.lr"]: json.loads((out / "trials" / r["trial"] / "validation.json").read_text())
              for r in rows}  # fmt: skip
    assert all(s["context_loads"] == 1 and s["adaptation"]["optimizer_steps"] >= 1 for s in scored.values())
    assert len({round(s["w_g"], 6) for s in scored.values()}) == 3  # each lr moved λ its own way from init

    # the recipe's own selection over the same grid, on the sweep's Θ_s, reaches the same scores
    cfg = plan_job(FIG4, "smoke", "warm", out, [*extra, "recipe.mixture.lr_grid=[0.1, 1.0, 10.0]"]).runs[0].config
    general = Path(cfg.general_from.summary("general_from").model_extra.get("adapter"))
    ctx = molorec.MixtureContext(cfg, general, adapters_dir(out, "warm") / "adapter")
    valid = molorec.load_split(PreparedDataset.open(cfg.data.dataset), "valid", cfg.data.domains)
    held_out = valid.take(molorec.seeded_rows(valid.num_rows, None, cfg.eval.seed)[: cfg.eval.valid_size])  # as run
    chosen = molorec.entropy_mixture(ctx, held_out, held_out, tmp_path / "scratch")
    assert chosen["valid_ndcg@1_by_lr"] == pytest.approx({f"{lr:g}": s["validation"]["ndcg@1"] for lr, s in scored.items()})
