"""`recplat run`: every ready catalog entry's recipe section is its recipe's Config; one real smoke
run end to end through the command line (prepare -> train -> test -> run.json -> report)."""

import json
import time
from pathlib import Path

import pytest

from recplat.catalog import Catalog
from recplat.cli import main
from recplat.errors import ConfigError
from recplat.run import recipe_config, validate_job

JOBS = Path(__file__).resolve().parents[1] / "jobs"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(JOBS)


def test_every_ready_recipe_section_validates(catalog):
    checked = 0
    for spec in catalog.list(status="ready"):
        for profile in spec.profiles:
            configs = validate_job(spec, profile, catalog=catalog)
            assert configs and all(c.out.endswith(("/run", *(f"/{v.name}" for v in spec.profiles[profile].variants())))
                                   for c in configs), spec.name  # fmt: skip
            checked += len(configs)
    assert checked >= 80


def test_resources_and_paths_are_filled_in(catalog, tmp_path):
    spec = catalog.get("llmrec/table5_opt_fpft")
    cfg = recipe_config(spec, spec.resolve("paper", "6.7b"), tmp_path / "data", tmp_path / "6.7b", tmp_path, catalog)
    assert (cfg.train.num_workers, cfg.train.use_gpu, cfg.train.cpus_per_worker, cfg.train.strategy) == (6, True, 8, "deepspeed")
    assert cfg.model.name == "facebook/opt-6.7b" and cfg.finetune.method == "full" and cfg.eval.valid_ratio == 0.1
    assert cfg.data.dataset == str(tmp_path / "data") and cfg.out == str(tmp_path / "6.7b")
    sas = catalog.get("llmrec/table4_sasrec")
    cfg = recipe_config(sas, sas.resolve("smoke"), tmp_path / "d", tmp_path / "run", tmp_path, catalog)
    assert cfg.arch == "sasrec" and cfg.model.hidden_size == 16 and cfg.train.num_workers == 1
    # init_from / compare_with: the other job's run next to this one, same profile
    fig5 = catalog.get("llmrec/fig5_segments")
    cfg = recipe_config(fig5, fig5.resolve("smoke"), tmp_path / "d", tmp_path / "run", tmp_path, catalog)
    assert cfg.mode == "evaluate" and cfg.init_from.run_dir == str(tmp_path / "llmrec-table4_bert-smoke" / "run")
    assert cfg.eval.compare_with.run_dir == str(tmp_path / "llmrec-table4_sasrec-smoke" / "run")
    fig6 = catalog.get("llmrec/fig6_zero_shot")
    cfg = recipe_config(fig6, fig6.resolve("paper", "opt-350m"), tmp_path / "d", tmp_path / "r", tmp_path, catalog)
    assert cfg.init_from.run_dir == str(tmp_path / "llmrec-table5_opt_fpft-paper-350m" / "350m")


@pytest.mark.parametrize(
    "override, message",
    [
        ("recipe.model.nme=x", r"jobs/llmrec/table4_bert.yaml \(profile smoke\): recipe: model.nme: unknown key"),
        ("recipe.eval.by=target_domain", r"recipe: eval.by: unknown key"),
        ("recipe.train.num_workers=3", r"recipe.train.num_workers: set by `recplat run`.*use resources"),
        ("recipe.finetune.rank=8", r"finetune: .*rank: LoRA settings, set with method: full"),
        ("recipe.init_from.job=llmrec/table4_sasrec", r"init_from: only with mode: evaluate"),
        ("recipe.eval.valid_ratio=1.5", r"eval.valid_ratio: Input should be less than or equal to 1"),
    ],
)
def test_bad_recipe_keys_name_the_file_and_the_key(catalog, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_job(catalog.get("llmrec/table4_bert"), "smoke", overrides=[override], catalog=catalog)


def test_cli_run_refuses_planned_jobs_and_missing_inputs(planned_catalog, tmp_path, capsys):
    assert main(["run", "cprec/table4_zero_shot", "--profile", "smoke"]) == 2
    assert "is planned" in capsys.readouterr().err
    assert main(["run", "xcross/table2", "--profile", "smoke", "--out", str(tmp_path / "xc")]) == 2
    err = capsys.readouterr().err
    for missing in ("recipe.eval.compare_with.0: no finished run of xcross/table2_lora",
                    "recipe.xcross.experts.0: no finished run of xcross/table2_lora",
                    "recipe.xcross.experts.1: no finished run of xcross/table2_lora"):
        assert missing in err
    assert err.count("`recplat run xcross/table2_lora --profile smoke`") == 1 and not (tmp_path / "xc").exists()
    assert main(["run", "llmrec/fig5_segments", "--profile", "smoke", "--out", str(tmp_path / "fig5")]) == 2
    err = capsys.readouterr().err
    assert "recipe.init_from: no finished run of llmrec/table4_bert" in err
    assert "recplat run llmrec/table4_bert --profile smoke" in err and not (tmp_path / "fig5").exists()
    assert main(["run", "llmrec/table4_bert", "--profile", "smoke", "--variant", "x"]) == 2
    assert "this profile has no sweep" in capsys.readouterr().err


def check_smoke_run(out: Path, overrides: list[str], capsys) -> None:
    """What a finished `recplat run llmrec/table4_sasrec --profile smoke <overrides>` (4 steps) left
    in `out`, and `recplat report` on it: test_submit's end-to-end job (which runs this command on
    a Ray head) and the heavy CLI run below both check it."""
    record = json.loads((out / "run.json").read_text())  # written last, atomically
    assert record["job"] == "llmrec/table4_sasrec" and record["profile"] == "smoke" and record["complete"]
    assert record["variants"] == [] and list(record["runs"]) == ["run"]
    assert record["overrides"] == overrides
    assert {n["metric"] for n in record["paper_numbers"]} == {"recall@1", "recall@10", "ndcg@10"}
    summary = record["runs"]["run"]["summary"]
    assert summary["train"]["step"] == 4 and record["runs"]["run"]["config"]["train"]["max_steps"] == 4
    metrics = json.loads((out / "run" / "test" / "metrics.json").read_text())
    assert metrics["metrics"] == ["recall@1", "recall@10", "ndcg@10"]
    groups = {r["group"] for r in metrics["rows"]}
    assert groups == {"all", "target_domain", "same_mix_diff"}
    overall = next(r for r in metrics["rows"] if r["group"] == "all")
    assert overall["n"] == summary["test_examples"] > 0 and overall == {**overall, **summary["overall"]}
    assert 0 <= overall["recall@1"] <= overall["recall@10"] <= 1
    assert (out / "run" / "test" / "ranks.parquet").is_file() and (out / "data" / "manifest.json").is_file()
    capsys.readouterr()

    assert main(["report", "llmrec/table4_sasrec", "--profile", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| all | recall@1 |" in printed and "| 9.13 |" in printed  # the paper's SASRec Recall@1
    report = out / "report"
    assert sorted(p.name for p in report.iterdir()) == [".recplat", "README.md", "bars.png"]  # the mark: recplat wrote it
    assert "9.13" in (report / "README.md").read_text()


# heavy: the default run checks the same command's results as test_submit's end-to-end job
@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_smoke_run_end_to_end_through_the_cli(ray_local, tmp_path, capsys):
    out = tmp_path / "llmrec-table4_sasrec-smoke"
    overrides = ["recipe.train.max_steps=4", "recipe.train.eval_every=2"]
    started = time.monotonic()
    # overrides after the options (the entrypoint `recplat submit` builds)
    assert main(["run", "llmrec/table4_sasrec", "--profile", "smoke", "--out", str(out), *overrides]) == 0
    assert time.monotonic() - started < 300
    check_smoke_run(out, overrides, capsys)


def test_help_names_what_it_does(capsys):
    """Issue #20's help texts: train lists every built recipe, jobs list explains RUNS, prepare names
    its default preset as the README does, run and report default to the local smoke profile."""
    from recplat.cli import build_parser
    from recplat.recipes import RECIPES

    def help_of(*args):
        with pytest.raises(SystemExit):
            main([*args, "--help"])
        return " ".join(capsys.readouterr().out.split())

    assert all(name in help_of("train") for name in RECIPES) and "xcross" in RECIPES
    assert "RUNS" in help_of("jobs", "list")
    assert "default: ml100k" in help_of("prepare")
    assert "smoke (default" in help_of("run")
    parser = build_parser()
    assert parser.parse_args(["run", "llmrec/table4_bert"]).profile == "smoke"
    assert parser.parse_args(["report", "llmrec/table4_bert"]).profile == "smoke"


def test_every_recipe_module_is_a_recipe():
    """Config with data.dataset and out, run -> RunSummary: what `recplat run` relies on."""
    import importlib

    from recplat.recipes import RECIPES

    for name, entry in RECIPES.items():
        module = importlib.import_module(entry.module)
        fields = module.Config.model_fields
        assert "out" in fields and "dataset" in fields["data"].annotation.model_fields, name
        assert module.run.__annotations__["return"] in ("RunSummary", "RunSummary | dict") or name == "popularity"
        assert set(entry.fixed) <= set(fields), name
