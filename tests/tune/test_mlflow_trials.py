"""`recplat tune --mlflow`: every trial an MLflow run, its results at the training loop's step
(a real Tune run of a plain function trainable, logged into a real MLflow file store)."""

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_trials_are_logged_at_the_loops_step_with_mlflow_safe_names(ray_local, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from ray import tune

    from recplat.tracking import tracking_uri, trial_logger

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # restored after the test: tracking_uri sets it
    uri = tracking_uri(tmp_path)

    def trainable(config):
        for step in (2, 4):
            tune.report({"step": step, "recall@1": config["recipe.train.lr"] * step})

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"CPU": 0.5}),
        param_space={"recipe.train.lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(metric="recall@1", mode="max"),
        run_config=tune.RunConfig(name="t", storage_path=str(tmp_path / "tune"), verbose=0,
                                  callbacks=[trial_logger(uri, "job (smoke, search s)")]),
    )  # fmt: skip
    assert not tuner.fit().errors
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("job (smoke, search s)").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        lr = float(run.data.params["recipe.train.lr"])
        curve = sorted(client.get_metric_history(run.info.run_id, "recall_at_1"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in curve] == [(2, pytest.approx(2 * lr)), (4, pytest.approx(4 * lr))]
