"""report/paper.py: matching paper numbers with our rows, the difference, the Markdown table, files."""

import json

import pytest

from recplat.report.paper import (Row, compare_rows, cost_rows, format_markdown, match_domain, our_numbers,
                                  write_report)

DOMAINS = ["all", "Industrial_and_Scientific", "Prime_Pantry", "same_mix_diff=same"]


def test_match_domain():
    assert match_domain("SPIAO", DOMAINS) == "all" and match_domain(None, DOMAINS) == "all"
    assert match_domain("Scientific", DOMAINS) == "Industrial_and_Scientific"
    assert match_domain("Prime_Pantry", DOMAINS) == "Prime_Pantry"
    assert match_domain("Pantry", DOMAINS) == "Prime_Pantry"
    assert match_domain("Office", DOMAINS) is None
    assert match_domain("same", DOMAINS) is None  # segments are never a paper domain
    # CPRec's names for its datasets: a word's stem
    assert match_domain("Game", ["all", "Video_Games"]) == "Video_Games"
    assert match_domain("Industry", ["all", "Industrial_and_Scientific"]) == "Industrial_and_Scientific"
    assert match_domain("Music", ["all", "Digital_Music"]) == "Digital_Music"


def test_compare_rows_matches_metric_domain_and_variant():
    ours = [Row(None, "all", "recall@1", 10.0), Row(None, "Prime_Pantry", "recall@1", 4.0),
            Row(None, "all", "ndcg@10", 20.5)]
    paper = [{"metric": "recall@1", "domain": "SPIAO", "value": 11.25},
             {"metric": "recall@1", "domain": "Pantry", "value": 5.36},
             {"metric": "recall@1", "domain": "Office", "value": 12.75}]
    rows = compare_rows(ours, paper)
    assert [(r.domain, r.metric, r.ours, r.paper) for r in rows] == [
        ("all", "recall@1", 10.0, 11.25), ("Prime_Pantry", "recall@1", 4.0, 5.36),
        ("all", "ndcg@10", 20.5, None), ("Office", "recall@1", None, 12.75),
    ]
    assert rows[0].diff == pytest.approx(-1.25) and rows[1].diff == pytest.approx(-1.36)
    assert rows[2].diff is None and rows[3].diff is None


def test_compare_rows_by_variant_and_notes():
    ours = [Row("125m", "all", "recall@1", 9.0), Row("350m", "all", "recall@1", 8.0)]
    paper = [{"metric": "recall@1", "domain": "SPIAO", "variant": "350m", "value": 10.43},
             {"metric": "recall@1", "domain": "SPIAO", "variant": "6.7b", "value": 11.44},
             {"metric": "min_vmem_gb", "variant": "125m", "value": None, "note": "OOM"}]
    rows = compare_rows(ours, paper)
    assert (rows[0].variant, rows[0].paper) == ("125m", None)
    assert (rows[1].variant, rows[1].paper, round(rows[1].diff, 2)) == ("350m", 10.43, -2.43)
    assert [(r.variant, r.metric, r.ours, r.paper, r.note) for r in rows[2:]] == [
        ("6.7b", "recall@1", None, 11.44, None), ("125m", "min_vmem_gb", None, None, "OOM")]


def test_markdown_table():
    rows = [Row(None, "all", "recall@1", 10.0, 11.25), Row(None, "Books", "ndcg@10", 3.0)]
    text = format_markdown(rows)
    assert text.splitlines() == [
        "| domain | metric | ours | paper | ours − paper |",
        "|---|---|---:|---:|---:|",
        "| all | recall@1 | 10.00 | 11.25 | -1.25 |",
        "| Books | ndcg@10 | 3.00 | — | — |",
    ]
    with_variant = format_markdown([Row("r8", "all", "recall@1", 1.0, 2.0, "a note")])
    assert with_variant.splitlines()[0] == "| variant | domain | metric | ours | paper | ours − paper | note |"
    assert with_variant.splitlines()[2] == "| r8 | all | recall@1 | 1.00 | 2.00 | -1.00 | a note |"


def _fake_run(tmp_path, variants, params=None):
    runs = {}
    for i, v in enumerate(variants):
        sub = v or "run"
        test = tmp_path / sub / "test"
        test.mkdir(parents=True)
        rows = [{"group": "all", "value": "all", "n": 10, "recall@1": 0.1 + 0.01 * i},
                {"group": "target_domain", "value": "Prime_Pantry", "n": 4, "recall@1": 0.05}]
        (test / "metrics.json").write_text(json.dumps({"metrics": ["recall@1"], "n_examples": 10, "rows": rows}))
        summary = {"recipe": "llmrec", "dataset": str(tmp_path / "data"), "seconds": {"train": 7200.0},
                   "params": {"trainable": (params or {}).get(v, 0)}}
        runs[sub] = {"variant": v, "dir": sub, "summary": summary}
    record = {"job": "llmrec/x", "file": "jobs/llmrec/x.yaml", "paper": "llmrec", "ref": "Table 5", "row": None,
              "profile": "paper", "complete": True, "runs": runs, "claims": ["bigger is better"],
              "paper_numbers": [{"metric": "recall@1", "domain": "SPIAO", "variant": variants[-1], "value": 11.0},
                                {"metric": "train_hours", "variant": variants[-1], "value": 3.0}]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    return record


def test_our_numbers_scale_to_percent_and_train_hours(tmp_path):
    record = _fake_run(tmp_path, [None])
    rows = our_numbers(record, tmp_path, {"train_hours"})
    assert [(r.domain, r.metric, round(r.ours, 6)) for r in rows] == [
        ("all", "recall@1", 10.0), ("Prime_Pantry", "recall@1", 5.0), ("all", "train_hours", 2.0)]


def test_write_report_table_and_plots(tmp_path):
    _fake_run(tmp_path, ["r8", "r16"], params={"r8": 1000, "r16": 2000})
    folder, table = write_report(tmp_path)
    assert "| r16 | all | recall@1 | 11.00 | 11.00 | +0.00 |" in table
    assert "| r16 | all | train_hours | 2.00 | 3.00 | -1.00 |" in table
    readme = (folder / "README.md").read_text()
    assert table in readme and "bigger is better" in readme and "![sweep.png](sweep.png)" in readme
    assert (folder / "bars.png").stat().st_size > 1000 and (folder / "sweep.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]  # no partial folder left


COST = {"train": {"rows_per_epoch": 1200, "seconds": 30.0, "samples": 240, "peak_rss_gib": 5.0, "peak_gpu_gib": 2.0},
        "test": {"seconds": 90.0, "prompts": 8, "peak_rss_gib": 3.0}}


def test_cost_rows_are_minutes_per_epoch_and_megabytes():
    rows = {r.metric: r.ours for r in cost_rows("game-cprec", COST)}
    # 1,200 rows per epoch at 240 samples in 30 s: 150 s = 2.5 min; the GPU's peak where there was one
    assert rows == {"train_minutes_per_epoch": 2.5, "test_minutes": 1.5, "train_memory_mb": 2048.0,
                    "test_rss_mb": 3072.0}
    assert cost_rows(None, {"train": None, "test": {"seconds": 6.0, "prompts": 8}}) == [
        Row(None, "all", "test_minutes", 0.1)]  # an evaluation-only run: nothing trained


def test_write_report_puts_time_beside_the_paper_and_memory_in_its_own_plot(tmp_path):
    record = _fake_run(tmp_path, ["game-llara", "game-cprec"])
    for entry in record["runs"].values():
        entry["summary"]["cost"] = COST
    record["paper"] = "cprec"
    record["paper_numbers"] = [{"metric": "train_minutes_per_epoch", "variant": "game-cprec", "value": 27.92},
                               {"metric": "train_memory_mb", "variant": "game-cprec", "value": 68428}]
    (tmp_path / "run.json").write_text(json.dumps(record))
    folder, table = write_report(tmp_path)
    assert "| game-cprec | all | train_minutes_per_epoch | 2.50 | 27.92 | -25.42 |" in table
    assert "| game-cprec | all | train_memory_mb | 2048.00 | 68428.00 | -66380.00 |" in table
    assert "| game-llara | all | test_rss_mb | 3072.00 | — | — |" in table
    assert (folder / "bars.png").stat().st_size > 1000 and (folder / "memory.png").stat().st_size > 1000
