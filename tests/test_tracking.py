"""MLflow logging (recplat/tracking.py) into a real MLflow file store, read back with MLflow's client."""

import os
import sys

import pytest

from recplat.errors import ConfigError
from recplat.tracking import flat_params, log_run, metric_name, require_mlflow, tracking_uri

SUMMARY = {"recipe": "llmrec", "overall": {"recall@1": 0.25, "recall@10": 0.5, "n": 8, "note": "text"},
           "train": {"step": 6, "history": [{"step": 3, "recall@10": 0.3}, {"step": 6, "recall@10": 0.4}],
                     "train_log": [{"step": 3, "train_loss": 2.0, "lr": 0.1}, {"step": 6, "train_loss": 1.5, "lr": 0.05}]}}


def test_names_mlflow_accepts():
    assert metric_name("recall@10") == "recall_at_10" and metric_name("test/ndcg@3") == "test/ndcg_at_3"
    assert metric_name("a,b=c") == "a_b_c"
    assert flat_params({"train": {"lr": 0.1, "phase_ends": [2, 6]}, "data": {}, "out": "x"}) == \
        {"train.lr": "0.1", "train.phase_ends": "[2, 6]", "data": "{}", "out": "x"}


def test_a_run_is_logged_with_its_config_curves_and_test_metrics(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # restored after the test: tracking_uri sets it
    uri = tracking_uri(tmp_path / "run")
    assert uri == (tmp_path / "run" / "mlruns").as_uri() and os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    first = log_run(uri, "llmrec/table4 (smoke)", "run", {"train": {"lr": 0.1}, "seed": 0}, SUMMARY)
    second = log_run(uri, "llmrec/table4 (smoke)", "run", {"train": {"lr": 0.2}, "seed": 0}, SUMMARY)  # same experiment
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("llmrec/table4 (smoke)")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.info.run_id for r in runs} == {first, second}
    run = client.get_run(first)
    assert run.data.params == {"train.lr": "0.1", "seed": "0"} and run.info.status == "FINISHED"
    assert run.data.tags["recplat.recipe"] == "llmrec" and run.info.run_name == "run"
    curve = client.get_metric_history(first, "recall_at_10")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [(3, 0.3), (6, 0.4)]
    assert [m.value for m in sorted(client.get_metric_history(first, "lr"), key=lambda m: m.step)] == [0.1, 0.05]
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("test/")} == \
        {"test/recall_at_1": 0.25, "test/recall_at_10": 0.5, "test/n": 8.0}


def test_the_tracking_uri_and_the_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without the extra looks like
    with pytest.raises(ConfigError, match=r"^--mlflow: the mlflow package is not installed \(pip install 'recplat\[mlflow\]'\)"):
        require_mlflow()
