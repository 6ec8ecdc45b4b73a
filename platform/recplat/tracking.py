"""Optional MLflow logging, off unless asked: `recplat run --mlflow` logs each finished run,
`recplat tune --mlflow` each trial as it reports (Ray's MLflowLoggerCallback).

    recplat run llmrec/table4_sasrec --profile smoke --mlflow          # a file store in <out>/mlruns
    MLFLOW_TRACKING_URI=http://mlflow:5000 recplat tune llmrec/fig7_lora_rank --mlflow

Where: MLflow's own MLFLOW_TRACKING_URI when it is set (any tracking server or store), else a local
file store in the run's (or the sweep's) folder. MLflow 3 keeps its file store in maintenance mode
and refuses it unless MLFLOW_ALLOW_FILE_STORE=true, which recplat sets for a file store it chose or
was given; to browse one: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri <out>/mlruns.

What: one MLflow run per recplat run (per variant of a sweep) or per Tune trial, in the experiment
`<job> (<profile>)` (a sweep: `<job> (<profile>, search <name>)`): the config as dotted parameters;
the validation metrics at every validation and the training loss and learning rate at every logged
step, each at its optimizer step; the test metrics as `test/<name>`. MLflow allows letters, digits
and `_-. :/` in a name: `recall@10` is logged as `recall_at_10`.

Needs the `mlflow` package (`pip install 'recplat[mlflow]'`: mlflow-skinny, the client alone).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from recplat.errors import ConfigError

URI_ENV = "MLFLOW_TRACKING_URI"
LOCAL_STORE = "mlruns"
MAX_PARAM_LENGTH = 6000  # MLflow 3's limits on a parameter's value and a key
MAX_KEY_LENGTH = 250


def require_mlflow() -> None:
    """--mlflow fails before anything runs when the package is missing."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("--mlflow: the mlflow package is not installed (pip install 'recplat[mlflow]')") from None


def tracking_uri(out: str | Path) -> str:
    """MLFLOW_TRACKING_URI, else a file store in `out`/mlruns (allowed: see the module docstring)."""
    uri = os.environ.get(URI_ENV) or Path(out, LOCAL_STORE).absolute().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return uri


def metric_name(key: str) -> str:
    """A metric or parameter name MLflow accepts: recall@10 -> recall_at_10."""
    return re.sub(r"[^\w.\- :/]", "_", key.replace("@", "_at_"))[:MAX_KEY_LENGTH]


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted `key: text` parameters."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[metric_name(name)] = str(value)[:MAX_PARAM_LENGTH]
    return out


def log_run(uri: str, experiment: str, run_name: str, config: dict[str, Any], summary: dict[str, Any]) -> str:
    """One finished recplat run as an MLflow run; returns its id."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={"recplat.recipe": str(summary.get("recipe"))})
    params = [Param(k, v) for k, v in flat_params(config).items()]
    train = summary.get("train") or {}
    metrics = [Metric(metric_name(k), float(v), 0, int(record["step"]))
               for record in [*train.get("history", []), *train.get("train_log", [])]
               for k, v in record.items() if k != "step" and _number(v)]  # fmt: skip
    metrics += [Metric(metric_name(f"test/{k}"), float(v), 0, int(train.get("step", 0)))
                for k, v in (summary.get("overall") or {}).items() if _number(v)]  # fmt: skip
    for start in range(0, max(len(params), len(metrics)), 100):  # MLflow's batch limits (100 params, 1000 metrics)
        client.log_batch(run.info.run_id, params=params[start:start + 100], metrics=metrics[start:start + 100])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


class TrialLogger(MLflowLoggerCallback):
    """Ray Tune's MLflow logger, at the training loop's optimizer step and with MLflow-safe metric
    names (its parameters are the search's dotted space keys, which MLflow accepts as they are)."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        metrics = {metric_name(k): v for k, v in result.items() if _number(v)}
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics,
                                     step=int(result.get("step", iteration)))  # fmt: skip


def trial_logger(uri: str, experiment: str) -> TrialLogger:
    return TrialLogger(tracking_uri=uri, experiment_name=experiment)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
