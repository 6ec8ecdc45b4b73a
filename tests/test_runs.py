"""recplat/runs.py: run layout, the typed run summary, and run references found by type."""

import json

import pytest

from recplat.config import StrictModel
from recplat.errors import ConfigError
from recplat.runs import RunRef, RunSummary, default_out, run_name, run_refs, run_subdir


def test_layout_names():
    assert run_name("llmrec/table4_bert", "smoke") == "llmrec-table4_bert-smoke"
    assert str(default_out("llmrec/table5_opt_fpft", "paper", "1.3b")) == "runs/llmrec-table5_opt_fpft-paper-1.3b"
    assert run_subdir(None) == "run" and run_subdir("1.3b") == "1.3b"


def test_summary_writes_only_what_the_recipe_set(tmp_path):
    summary = RunSummary(recipe="popularity", dataset="/d", overall={"recall@10": 0.25}, test_examples=4)
    summary.write(tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == {"recipe": "popularity", "dataset": "/d", "overall": {"recall@10": 0.25}, "test_examples": 4}
    back = RunSummary.read(tmp_path)
    assert back == summary and back.best_checkpoint is None and back.to_json() == written
    # a recipe's own keys survive; ints stay ints (run.json must not change on a round trip)
    extra = RunSummary.coerce({**written, "seconds": {"train": 1.5}, "train": {"step": 4}, "mine": [1]})
    assert extra.to_json()["train"] == {"step": 4} and extra.to_json()["mine"] == [1]
    assert RunSummary.coerce(extra) is extra


class _Eval(StrictModel):
    compare_with: list[RunRef] = []


class _NewRecipeConfig(StrictModel):
    """A recipe `recplat run` has never seen: its references are found by their type alone."""

    general_from: RunRef | None = None
    eval: _Eval = _Eval()
    name: str = "x"


def test_run_refs_are_found_by_type(tmp_path):
    cfg = _NewRecipeConfig(general_from={"job": "molorec/x"},
                           eval={"compare_with": [{"run_dir": str(tmp_path)}, {"job": "a/b", "variant": "v"}]})
    found = run_refs(cfg)
    assert [k for k, _ in found] == ["general_from", "eval.compare_with.0", "eval.compare_with.1"]
    assert found[0][1].job == "molorec/x" and run_refs(_NewRecipeConfig()) == []


def test_a_reference_reads_a_finished_run(tmp_path):
    ref = RunRef(job="llmrec/table4_bert")
    with pytest.raises(ConfigError, match=r"init_from.run_dir: not set"):
        ref.summary("init_from")
    ref.run_dir = str(tmp_path)
    assert not ref.finished
    with pytest.raises(ConfigError, match=r"init_from: .* holds no finished run .*; run llmrec/table4_bert first"):
        ref.summary("init_from")
    RunSummary(recipe="llmrec", dataset="/d", best_checkpoint="/ckpt").write(tmp_path)
    assert ref.finished and ref.summary("init_from").best_checkpoint == "/ckpt"
    with pytest.raises(ValueError, match="give job"):
        RunRef()
