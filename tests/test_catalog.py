"""The job catalog: every jobs/**/*.yaml loads and validates; errors name the file and the key."""

import shutil
from pathlib import Path

import pytest

from recplat.catalog import Catalog, JobNotReady, load_job
from recplat.cli import main
from recplat.errors import ConfigError

JOBS = Path(__file__).resolve().parents[1] / "jobs"

# Every table and figure the issue lists: (paper, ref prefix).
REQUIRED = [
    ("llmrec", "Table 4"), ("llmrec", "Table 5"), ("llmrec", "Table 6"), ("llmrec", "Figure 4"),
    ("llmrec", "Figure 5"), ("llmrec", "Figure 6"), ("llmrec", "Figure 7"),
    ("xcross", "Table 2"), ("xcross", "Table 3 / Figure 3"), ("xcross", "Figure 4"), ("xcross", "Table 4"),
    ("molorec", "Table 1"), ("molorec", "Table 2"), ("molorec", "Table 3"), ("molorec", "Figure 4"),
    ("molorec", "Figure 5"),
    ("cprec", "Table 3"), ("cprec", "Table 4"), ("cprec", "Table 5"), ("cprec", "Table 6"), ("cprec", "Table 7"),
    ("cprec", "Figure 4"), ("cprec", "Figure 5"),
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(JOBS)


def test_every_entry_validates_with_every_variant(catalog):
    assert len(catalog) >= 30
    for spec in catalog:
        assert {"paper", "smoke"} <= set(spec.profiles)
        for name, profile in spec.profiles.items():
            spec.resolve(name)
            for variant in profile.variants():
                run = spec.resolve(name, variant.name)
                assert run.variant == variant.name


def test_names_are_unique_and_derived_from_the_path(catalog):
    files = sorted(JOBS.rglob("*.yaml"))
    assert len(files) == len(catalog)
    names = [p.relative_to(JOBS).with_suffix("").as_posix() for p in files]
    assert sorted(catalog.names()) == names
    for spec in catalog:
        assert spec.path == f"jobs/{spec.name}.yaml"
        assert spec.paper == spec.name.split("/")[0]


def test_every_table_and_figure_of_the_issue_has_an_entry(catalog):
    refs = {(s.paper, s.ref) for s in catalog}
    missing = [r for r in REQUIRED if r not in refs]
    assert not missing, missing
    assert {s.row for s in catalog.list(paper="llmrec") if s.ref == "Table 4"} >= {
        "LLM-Rec (BERT-110M)", "LLM-Rec (OPT-125M)", "LLM-Rec (FLAN-T5-110M)"
    }


def test_statuses_planned_entries_are_listed_and_refuse_to_run(catalog, planned_catalog):
    ready = [*catalog.list(paper="llmrec"), *catalog.list(paper="xcross"), *catalog.list(paper="molorec")]
    assert all(s.status == "ready" for s in ready)
    assert {s.paper for s in catalog.list(status="planned")} <= {"cprec"}  # a CPRec entry before its smoke ran
    catalog.get("cprec/cpt").require_ready()
    catalog.get("llmrec/table4_bert").require_ready()
    catalog.get("xcross/table2").require_ready()
    copy = Catalog(planned_catalog)  # the same entries, cprec/table4_zero_shot planned
    assert "cprec/table4_zero_shot" in {s.name for s in copy.list(status="planned")}
    assert len(copy.list(status="planned")) + len(copy.list(status="ready")) == len(copy) == len(catalog)
    with pytest.raises(JobNotReady, match="cprec/table4_zero_shot is planned"):
        copy.get("cprec/table4_zero_shot").require_ready()


def test_profiles_paper_scale_vs_smoke(catalog):
    for spec in catalog:
        smoke, paper = spec.resolve("smoke"), spec.resolve("paper")
        assert not smoke.resources.use_gpu, spec.name
        assert smoke.resources.num_workers <= 2, spec.name
        model = smoke.recipe.get("model", {})
        if "name" in model:
            assert model["name"].startswith("offline:"), spec.name
            assert not paper.recipe["model"]["name"].startswith("offline:"), spec.name
        kinds = {s.kind for s in smoke.data.sources}
        assert kinds <= {"synthetic", "recbole"}, (spec.name, kinds)
        if spec.recipe not in ("sasrec", "gru4rec") and paper.recipe.get("mode") != "evaluate":
            assert paper.resources.use_gpu, spec.name


def test_headers_carry_the_commands(catalog):
    for spec in catalog:
        assert f"recplat run {spec.name} --profile smoke" in spec.header, spec.name
        assert f"recplat submit {spec.name} --address" in spec.header, spec.name
        assert "ray job submit --address" in spec.header and f"recplat run {spec.name}" in spec.header


def test_paper_numbers_from_the_spec(catalog):
    bert = catalog.get("llmrec/table4_bert")
    spiao = {n.metric: n.value for n in bert.paper_numbers if n.domain == "SPIAO"}
    assert spiao == {"recall@1": 11.25, "recall@10": 31.47, "ndcg@10": 20.27}
    t5 = {(n.variant, n.metric): n.value for n in catalog.get("llmrec/table5_flant5_lora").paper_numbers}
    assert t5[("30m", "recall@1")] == 0.28 and t5[("5.5b", "recall@10")] == 28.88
    xc = {(n.domain, n.metric): n.value for n in catalog.get("xcross/table2").paper_numbers}
    assert xc[("Tools", "hit@1")] == 20.11 and xc[("Electronics", "mrr")] == 42.84
    cp = {(n.domain, n.metric): n.value for n in catalog.get("cprec/table3").paper_numbers}
    assert cp[("Game", "hr@1")] == 0.4764 and cp[("Bili_Cartoon", "valid_ratio")] == 0.9906


def test_sweeps_and_grids_resolve_overrides(catalog):
    opt = catalog.get("llmrec/table5_opt_fpft")
    run = opt.resolve("paper", "6.7b")
    assert run.recipe["model"]["name"] == "facebook/opt-6.7b" and run.resources.strategy == "deepspeed"
    assert opt.resolve("paper").recipe["model"]["name"] == "facebook/opt-125m"  # base untouched
    fig7 = catalog.get("llmrec/fig7_lora_rank")
    names = [v.name for v in fig7.profile("paper").variants()]
    assert "opt-1.3b-r64" in names and len(names) == 15
    run = fig7.resolve("paper", "opt-1.3b-r64", ["recipe.train.epochs=3", "data.kcore.user=3"])
    assert run.recipe["finetune"]["rank"] == 64 and run.recipe["train"]["epochs"] == 3 and run.data.kcore.user == 3
    smoke = catalog.get("llmrec/table4_bert").resolve("smoke")
    assert smoke.data.sources[0].users == 300 and smoke.run_name == "llmrec-table4_bert-smoke"


def test_bad_override_and_variant_are_named(catalog):
    spec = catalog.get("llmrec/table4_bert")
    with pytest.raises(ConfigError, match=r"data: kcore.usr: unknown key"):
        spec.resolve("smoke", overrides=["data.kcore.usr=3"])
    with pytest.raises(ConfigError, match="keys start with one of data, recipe, resources"):
        spec.resolve("smoke", overrides=["lr=3"])
    with pytest.raises(ConfigError, match="did you mean 6.7b"):
        catalog.get("llmrec/table5_opt_fpft").resolve("paper", "6.7")
    with pytest.raises(ConfigError, match="unknown profile 'smok'.*did you mean smoke"):
        spec.resolve("smok")


def test_did_you_mean(catalog):
    with pytest.raises(ConfigError, match=r"no job named 'llmrec/tabel4_bert' \(did you mean llmrec/table4_bert"):
        catalog.get("llmrec/tabel4_bert")
    assert catalog.get("jobs/llmrec/table4_bert.yaml").name == "llmrec/table4_bert"


def _copy_job(tmp_path, name="llmrec/table4_bert", edit=None) -> Path:
    dest = tmp_path / "jobs" / f"{name}.yaml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(JOBS / f"{name}.yaml", dest)
    if edit:
        dest.write_text(edit(dest.read_text()))
    return dest


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("status: ready", "status: ready\nstauts: planned"), r"stauts: unknown key"),
        (lambda t: t.replace("status: ready", "status: done"), r"status: Input should be 'ready' or 'planned'"),
        (lambda t: t.replace("num_workers: 6,", "num_wrkers: 6,"), r"profiles.paper.resources.num_wrkers: unknown key"),
        (lambda t: t.replace("num_partitions: 2}", "num_partitions: 2, kcore.usr: 3}"), r"profiles.smoke.data: kcore.usr: unknown key"),
        (lambda t: t.replace("data: {preset: spiao}", "data: {preset: spiaoo}"), r"profiles.paper.data.*unknown preset 'spiaoo'"),
        (lambda t: t.replace("- {metric: recall@1, domain: Pantry, value: 5.36}", "- {metric: recall@1, domain: Pantry, value: 5.36, variant: x}"), r"paper_numbers.3.variant"),
        (lambda t: t.replace("  smoke:\n", "  smokey:\n"), r"every job needs paper and smoke"),
        (lambda t: "name: llmrec/other\n" + t, r"name: must match the file's path 'llmrec/table4_bert'"),
    ],
)
def test_bad_key_names_the_file_and_the_key(tmp_path, edit, message):
    _copy_job(tmp_path, edit=edit)
    with pytest.raises(ConfigError, match=message) as info:
        Catalog(tmp_path / "jobs")
    assert str(info.value).startswith("jobs/llmrec/table4_bert.yaml: ")


def test_a_catalog_is_loaded_once_per_process_until_a_job_file_changes(tmp_path):
    dest = _copy_job(tmp_path)
    first = Catalog(tmp_path / "jobs")
    assert Catalog(tmp_path / "jobs").get("llmrec/table4_bert") is first.get("llmrec/table4_bert")  # reused
    run = first.get("llmrec/table4_bert").resolve("smoke")
    run.recipe["train"]["max_steps"] = -1  # a resolved run's settings are its own copy, not the loaded job's
    assert Catalog(tmp_path / "jobs").get("llmrec/table4_bert").resolve("smoke").recipe["train"]["max_steps"] != -1
    dest.write_text(dest.read_text().replace("description: LLM-Rec", "description: Edited LLM-Rec"))
    assert Catalog(tmp_path / "jobs").get("llmrec/table4_bert").description.startswith("Edited LLM-Rec")
    dest.write_text(dest.read_text().replace("status: ready", "stauts: ready"))
    with pytest.raises(ConfigError, match="stauts: unknown key"):  # an edit that breaks the file is seen too
        Catalog(tmp_path / "jobs")


def test_reading_the_catalog_does_not_import_torch():
    """`recplat jobs list/show` and every plan read TrainConfig, not the training spine: torch (~1.5 s
    per command) is imported on first use of fit/Task (recplat/train/__init__.py)."""
    import subprocess
    import sys

    code = ("import sys; from recplat.catalog import Catalog; from recplat.train import TrainConfig; Catalog(); "
            "print('torch' in sys.modules); from recplat.train import Task, fit; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_paper_must_match_folder_and_requires_must_exist(tmp_path):
    dest = _copy_job(tmp_path, "llmrec/fig5_segments")
    with pytest.raises(ConfigError, match=r"fig5_segments.yaml: requires.0: no job named 'llmrec/table4_bert'"):
        Catalog(tmp_path / "jobs")
    moved = tmp_path / "jobs" / "cprec" / "fig5_segments.yaml"
    moved.parent.mkdir()
    dest.rename(moved)
    with pytest.raises(ConfigError, match="paper: 'llmrec' does not match the folder"):
        load_job(moved, tmp_path / "jobs")


def test_cli_jobs_list_and_show(planned_catalog, capsys):
    assert main(["jobs", "list", "--paper", "cprec"]) == 0
    out = capsys.readouterr().out
    assert "cprec/table4_zero_shot " in out and "planned" in out and "llmrec/" not in out
    assert main(["jobs", "show", "llmrec/table4_bert", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# LLM-Rec Table 4") and "recplat run llmrec/table4_bert --profile smoke" in out
    assert "kind: synthetic" in out and "users: 300" in out and "paper:" in out
    assert main(["jobs", "show", "llmrec/tabel4_bert"]) == 2
    assert "did you mean llmrec/table4_bert" in capsys.readouterr().err


def test_resources_share_the_train_configs_worker_defaults():
    """One set of worker defaults, one Resources -> TrainConfig mapping."""
    from recplat.catalog import TRAIN_KEYS, Resources
    from recplat.errors import ConfigError
    from recplat.train.config import TrainConfig

    assert Resources().train_settings() == {k: getattr(TrainConfig(), k) for k in TRAIN_KEYS}
    gpus = Resources(num_workers=4, use_gpu=True, gpus_per_worker=1, cpus_per_worker=8, strategy="deepspeed")
    assert TrainConfig(**gpus.train_settings()).num_workers == 4
    with pytest.raises(ConfigError, match="gpus_per_worker: each Ray Train worker uses one GPU, got 2"):
        Resources(use_gpu=True, gpus_per_worker=2).train_settings()
