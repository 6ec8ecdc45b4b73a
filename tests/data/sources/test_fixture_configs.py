"""Every tests/fixtures/<format>/prepare.yaml loads with the project's config loader, its relative
paths resolve against the config file's folder, and its sources plan and read; the committed
.gz fixtures match their plain-text sources (tests/fixtures/make_gz.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recplat.config import load_config
from recplat.data.config import PrepareConfig, resolve_paths
from recplat.data.sources import plan_reads
from tests.conftest import FIXTURES
from tests.data.sources.reading import read_tasks

CONFIGS = sorted(FIXTURES.glob("*/prepare.yaml"))
FORMATS = ["amazon2014", "amazon2018_csv", "amazon2018_reviews", "amazon2023", "ml-100k", "ml-1m",
           "ml-latest-small", "ninerec", "recbole", "table"]


def test_every_format_has_a_config():
    assert [p.parent.name for p in CONFIGS] == FORMATS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_fixture_config_loads_and_reads_from_any_directory(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative to the file, not to the working directory
    cfg = load_config(PrepareConfig, path)
    assert cfg.num_partitions == 2 and cfg.kcore.user == cfg.kcore.item == 2
    assert cfg.candidates.count == 5 and cfg.candidates.train_negatives == 2
    (source,) = cfg.sources
    tasks = plan_reads(source)
    assert tasks and all(Path(t.path).parent == path.parent for t in tasks)
    results = [result for _, result in read_tasks(source)]
    assert sum(r.interactions.num_rows for r in results) > 0 and sum(r.items.num_rows for r in results) > 0
    assert sum(r.rejects.num_rows for r in results) > 0  # every fixture holds malformed lines


def test_gz_fixtures_match_their_plain_sources():
    check = subprocess.run([sys.executable, str(FIXTURES / "make_gz.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert len(list(FIXTURES.glob("*/*.gz"))) == 6


def test_fixtures_stay_tiny():
    big = [str(p) for p in FIXTURES.rglob("*") if p.is_file() and p.stat().st_size > 8192]
    assert big == []


def test_resolve_paths_rule(tmp_path):
    data = {
        "sources": [
            {"kind": "amazon2018", "path": "raw/amazon", "domains": ["X"]},
            {"kind": "table", "interactions": "t/i.parquet", "items": "/abs/items.csv"},
            {"kind": "recbole"},  # no path: the installed package
            {"kind": "synthetic", "path_like": "not/a/path"},
            {"kind": "movielens", "path": "~/ml-1m", "variant": "ml-1m"},
        ],
        "render": {"templates": "templates.yaml"},
    }
    out = resolve_paths(data, tmp_path)
    assert out["sources"][0]["path"] == str(tmp_path / "raw" / "amazon")
    assert out["sources"][1] == {"kind": "table", "interactions": str(tmp_path / "t" / "i.parquet"), "items": "/abs/items.csv"}
    assert out["sources"][2] == {"kind": "recbole"}
    assert out["sources"][3] == {"kind": "synthetic", "path_like": "not/a/path"}
    assert out["sources"][4]["path"] == os.path.expanduser("~/ml-1m")
    assert out["render"]["templates"] == str(tmp_path / "templates.yaml")
    assert data["sources"][0]["path"] == "raw/amazon"  # the input is not modified
    assert resolve_paths({"sources": [{"kind": "amazon2014", "path": "../up/./x", "domains": ["B"]}]},
                         tmp_path / "conf")["sources"][0]["path"] == str(tmp_path / "up" / "x")


def test_load_config_resolves_file_paths_but_not_overrides(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    path = conf / "prepare.yaml"
    path.write_text("sources:\n  - {kind: amazon2014, path: data, domains: [Beauty]}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(PrepareConfig, Path("conf/prepare.yaml")).sources[0].path == str(conf / "data")
    # an override is typed on the command line: relative to the working directory
    cfg = load_config(PrepareConfig, path, ["sources.0.path=elsewhere"])
    assert cfg.sources[0].path == "elsewhere"
    # packaged presets keep working-directory paths (the CLI passes relative_to_file=False)
    assert load_config(PrepareConfig, path, relative_to_file=False).sources[0].path == "data"


def test_cli_presets_keep_working_directory_paths(monkeypatch):
    from recplat import cli

    seen = {}

    def fake_prepare(cfg, out, overwrite, show_progress):
        seen["cfg"] = cfg

    monkeypatch.setattr("recplat.data.pipeline.prepare", fake_prepare)
    monkeypatch.setattr("recplat.runtime.init_ray", lambda *a, **k: None)
    assert cli.main(["prepare", "--preset", "spiao", "--out", "unused"]) == 0
    assert seen["cfg"].sources[0].path == "data/raw/amazon2018"
    config = FIXTURES / "amazon2014" / "prepare.yaml"
    assert cli.main(["prepare", "--config", os.path.relpath(config), "--out", "unused"]) == 0
    assert seen["cfg"].sources[0].path == str(config.parent)
