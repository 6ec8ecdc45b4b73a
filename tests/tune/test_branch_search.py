"""CPRec's WSA search end to end (a local Ray, real Tune, real Ray Train, offline SmolLM2 + LoRA):
the stable phase is trained once, both annealing variants branch from its checkpoint, and the best
trial's `recplat run` line, which trains in one go, ends with the branch's very weights and validations."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from recplat.cli import main
from recplat.tune.results import read_sweep
from tests.tune.jobs import jobs_with

# one warm-up end and peak LR (one trunk: warm-up 1, stable to 6), annealing over 1 or 2 updates
WSA = {"metric": "val_loss", "mode": "min", "max_concurrent_trials": 2, "resources": {"CPU": 0.5},
       "space": {"recipe.cpt.warmup_end": {"grid": [1]}, "recipe.train.lr": {"grid": [1.0e-3]},
                 "recipe.cpt.anneal_end": {"grid": [7, 8]}},
       "branch": {"keys": ["recipe.cpt.anneal_end"], "trunk": {"recipe.cpt.anneal_end": 6}}}


def _run_summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_the_annealing_variants_branch_from_one_stable_phase(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECPLAT_JOBS_DIR", str(jobs_with(tmp_path, "cprec/cpt", {"wsa": WSA})))
    out = tmp_path / "sweep"
    assert main(["tune", "cprec/cpt", "--profile", "smoke", "--search", "wsa", "--out", str(out)]) == 0
    record = read_sweep(out)
    (trunk,) = record["trunks"]
    assert trunk["checkpoint"].endswith("checkpoint_step0000006") and Path(trunk["checkpoint"]).is_dir()
    assert trunk["params"] == {"recipe.cpt.warmup_end": 1, "recipe.train.lr": 1.0e-3}
    rows = {r["params"]["recipe.cpt.anneal_end"]: r for r in record["rows"]}
    assert sorted(rows) == [7, 8] and all(r["status"] == "done" for r in rows.values())
    for anneal_end, row in rows.items():
        train = _run_summary(Path(row["trial_dir"]))["train"]
        assert train["branched_from"] == {"path": trunk["checkpoint"], "step": 6}
        assert train["step"] == anneal_end and train["cost"]["samples"] == (anneal_end - 6) * 2
        assert [p[0] for p in row["curve"]] == ([8] if anneal_end == 8 else [7])  # the branch's own validations
    assert "Every trial branched from the last checkpoint of its trunk" in (out / "report" / "sweep.md").read_text()

    # the best trial's command trains updates 1..A in one go: the same validations, the same adapter
    best = next(r for r in record["rows"] if r["trial"] == record["best"])
    assert "branch_from" not in record["command"]
    assert main(record["command"].split()[1:] + ["--out", str(tmp_path / "rerun")]) == 0
    whole, branch = _run_summary(tmp_path / "rerun" / "run"), _run_summary(Path(best["trial_dir"]))
    assert whole["train"]["history"] == branch["train"]["history"]  # exact floats, steps 2, 4, 6 and after
    assert best["objective"] == branch["train"]["history"][-1]["val_loss"]  # the branch's one validation, at A
    adapters = [load_file(str(Path(s["adapter"]) / "adapter_model.safetensors")) for s in (whole, branch)]
    assert adapters[0].keys() == adapters[1].keys()
    assert all(adapters[0][k].equal(adapters[1][k]) for k in adapters[0])
