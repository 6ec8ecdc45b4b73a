"""Table rows from Tune results (no Ray runtime): statuses, the objective, test metrics, times,
the order of the table and the plots."""

from types import SimpleNamespace

import pandas as pd

from recplat.tune.results import _rank_key, format_markdown, trial_row, write_plots


def _result(rows, config, error=None, path="/x/run_trial_ab12c_00003_3_lr=0.1_2026"):
    frame = pd.DataFrame(rows) if rows else None
    last = dict(rows[-1]) if rows else {}
    return SimpleNamespace(metrics=last, metrics_dataframe=frame, config=config, error=error, path=path)


VALID = [{"step": 2, "recall@1": 0.30, "timestamp": 1000, "time_total_s": 40.0, "trial_id": "ab12c_00000"},
         {"step": 4, "recall@1": 0.45, "timestamp": 1020, "time_total_s": 60.0, "trial_id": "ab12c_00000"}]
FINAL = {"step": 4, "recall@1": 0.45, "final": True, "test/recall@1": 0.41, "test/ndcg@10": 0.6,
         "timestamp": 1031, "time_total_s": 71.0, "trial_id": "ab12c_00000", "trial_dir": "/s/trials/ab12c_00000"}


def test_a_finished_trial():
    row = trial_row(_result(VALID + [FINAL], {"variant": "r4", "recipe.train.lr": 1e-4}), "recall@1", "max")
    assert row["status"] == "done" and row["trial"] == "ab12c_00000" and row["objective"] == 0.45
    assert row["test"] == {"recall@1": 0.41, "ndcg@10": 0.6} and row["step"] == 4
    assert row["curve"] == [[2.0, 0.30], [4.0, 0.45]]  # the validations, not the final result
    assert (row["started_at"], row["finished_at"]) == (960.0, 1031)


def test_a_trial_stopped_by_the_scheduler_a_failed_one_and_one_without_results():
    stopped = trial_row(_result(VALID[:1], {"recipe.train.lr": 3.0}), "recall@1", "max")
    assert stopped["status"] == "stopped at step 2, by the scheduler" and stopped["test"] == {}
    assert stopped["objective"] == 0.30
    failed = trial_row(_result(VALID, {"recipe.train.lr": 1e-3}, error=RuntimeError("boom\nout of memory")),
                       "recall@1", "min")
    assert failed["status"] == "error: RuntimeError: out of memory" and failed["objective"] == 0.30  # mode min
    empty = trial_row(_result([], {}), "recall@1", "max", configs={"ab12c_00003": {"recipe.train.lr": 0.1}})
    assert empty["status"] == "no result" and empty["trial"] == "ab12c_00003"
    assert empty["params"] == {"recipe.train.lr": 0.1} and empty["objective"] is None


def test_the_table_orders_done_trials_first_best_first(tmp_path):
    rows = [
        {"trial": "a", "status": "stopped at step 2, by the scheduler", "objective": 0.9},
        {"trial": "b", "status": "done", "objective": 0.4},
        {"trial": "c", "status": "done", "objective": 0.5},
        {"trial": "d", "status": "no result", "objective": None},
    ]
    assert [r["trial"] for r in sorted(rows, key=lambda r: _rank_key(r, "max"))] == ["c", "b", "a", "d"]
    assert [r["trial"] for r in sorted(rows, key=lambda r: _rank_key(r, "min"))] == ["b", "c", "a", "d"]
    for r, lr in zip(rows, (3.0, 1e-4, 2e-4, 3e-4)):
        r.update(params={"variant": "r4", "recipe.train.lr": lr}, step=4, test={}, curve=[[2, 0.3]])
    record = {"job": "llmrec/fig7_lora_rank", "profile": "smoke", "search": "s", "metric": "recall@1",
              "mode": "max", "rows": rows, "best": "c", "command": "recplat run llmrec/fig7_lora_rank --profile smoke"}
    text = format_markdown(record)
    assert "| c | done | r4 | 0.0002 | 0.5 | 4 |" in text and text.endswith("--profile smoke\n")
    assert write_plots(record, tmp_path) == ["objective_vs_variant.png", "objective_vs_recipe.train.lr.png",
                                             "learning_curves.png"]
    assert all((tmp_path / name).stat().st_size > 1000 for name in write_plots(record, tmp_path))
