"""A sweep's results: one table (a row per trial), the best trial as a runnable `recplat run` line,
and plots (the objective against each parameter; the learning curves of every trial).

    <sweep>/sweep.json        {"job", "profile", "search", "metric", "mode", "rows": [...], "best", "command"}
                              (+ "trunks", "trunk_overrides" for a branching search: tune/branch.py)
    <sweep>/report/sweep.md   the table, best first, and the command
    <sweep>/report/objective_vs_<key>.png, learning_curves.png

A row: trial id, status (done | stopped at step N, by the scheduler | error), the trial's parameters,
the objective (the best validation value it reported), the last step, the test metrics of its best
checkpoint (done trials only: a stopped trial never reaches its test evaluation), and its wall-clock
start/end (Tune's `timestamp - time_total_s`), which show which trials ran at the same time.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from recplat.tune.space import TIME_ATTR, VARIANT_KEY, plain_values, trial_overrides
from recplat.tune.trial import FINAL_KEY, TEST_PREFIX

SWEEP_FILE = "sweep.json"
REPORT_DIR = "report"
_TRIAL_ID = re.compile(r"_([0-9a-f]{5}_\d{5})(_|$)")


def trial_row(result, metric: str, mode: str, configs: dict[str, dict] = {}) -> dict[str, Any]:  # noqa: B006
    """One ray.tune.Result -> a table row (plain data, JSON-ready); `configs`: trial id -> config,
    for a trial that failed before its first result (its Result carries no config)."""
    last = dict(result.metrics or {})
    frame = result.metrics_dataframe
    curve: list[list[float]] = []
    if frame is not None and metric in frame and TIME_ATTR in frame:
        rows = frame[frame[FINAL_KEY] != True] if FINAL_KEY in frame else frame  # noqa: E712 (NaN-safe)
        curve = [[float(s), float(v)] for s, v in zip(rows[TIME_ATTR], rows[metric])
                 if _finite(s) and _finite(v)]  # fmt: skip
    values = [v for _, v in curve] + ([last[metric]] if _finite(last.get(metric)) else [])
    objective = (max(values) if mode == "max" else min(values)) if values else None
    if last.get(FINAL_KEY):
        objective = last[metric]  # the best checkpoint's own validation value
    if result.error is not None:
        text = str(result.error).strip().splitlines()
        status = f"error: {type(result.error).__name__}: {text[-1] if text else ''}"
    elif last.get(FINAL_KEY):
        status = "done"
    elif TIME_ATTR not in last:
        status = "no result"
    else:
        status = f"stopped at step {last.get(TIME_ATTR, '?')}, by the scheduler"
    trial = last.get("trial_id") or _trial_id_from_path(result.path)
    started = last["timestamp"] - last["time_total_s"] if "timestamp" in last and "time_total_s" in last else None
    return {
        "trial": trial, "status": status, "params": plain_values(result.config or configs.get(trial) or {}), "objective": objective,
        "step": last.get(TIME_ATTR), "curve": curve,
        "test": {k[len(TEST_PREFIX):]: v for k, v in last.items() if k.startswith(TEST_PREFIX)},
        "started_at": started, "finished_at": last.get("timestamp"), "trial_dir": last.get("trial_dir"),
    }  # fmt: skip


def sweep_table(grid, plan, trunks: list[dict] = ()) -> dict[str, Any]:
    """The sweep's record: rows (best objective first), the best done trial and its command, and the
    trunk runs its trials branched from (tune/branch.py), if any."""
    from ray.tune import ExperimentAnalysis

    metric, mode = plan.search.metric, plan.search.mode
    configs = {t.trial_id: t.config for t in ExperimentAnalysis(plan.experiment_path).trials}
    rows = sorted((trial_row(r, metric, mode, configs) for r in grid), key=lambda row: _rank_key(row, mode))
    best = next((r for r in rows if r["status"] == "done"), None)  # only a finished trial has test metrics
    return {
        "job": plan.spec.name, "profile": plan.profile, "search": plan.search_name, "metric": metric, "mode": mode,
        "overrides": list(plan.overrides), "experiment": plan.experiment_path, "rows": rows,
        "best": best["trial"] if best else None,
        "command": best_command(plan.spec.name, plan.profile, plan.overrides, best["params"]) if best else None,
        **({"trunks": list(trunks), "trunk_overrides": dict(plan.search.branch.trunk)} if trunks else {}),
    }  # fmt: skip


def best_command(job: str, profile: str, overrides, params: dict[str, Any]) -> str:
    """`recplat run` with the trial's variant and values: the same resolution as the trial's."""
    variant, trial = trial_overrides(params)
    args = ["recplat", "run", job, "--profile", profile] + (["--variant", variant] if variant else [])
    return shlex.join(args + list(overrides) + trial)


def format_markdown(record: dict[str, Any], digits: int = 4) -> str:
    rows = record["rows"]
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    tests = list(dict.fromkeys(k for r in rows for k in r["test"]))
    head = ["trial", "status", *keys, f"{record['metric']} (valid)", TIME_ATTR, *(f"test {t}" for t in tests)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["trial"], r["status"], *(_cell(r["params"].get(k), digits) for k in keys),
                 _cell(r["objective"], digits), _cell(r["step"], digits), *(_cell(r["test"].get(t), digits) for t in tests)]
        lines.append("| " + " | ".join(cells) + " |")
    text = (f"# {record['job']} ({record['profile']}): search {record['search']}, {record['mode']} "
            f"{record['metric']} on validation\n\n" + "\n".join(lines) + "\n")
    if record.get("trunks"):
        shared = ", ".join(f"{k}={v}" for k, v in record["trunk_overrides"].items())
        text += (f"\nEvery trial branched from the last checkpoint of its trunk, the run with the same parameters "
                 f"and {shared} ({len(record['trunks'])} trunk run(s), in trunks/); a branch ends as the same run "
                 "made in one go would.\n")
    if record["command"]:
        text += f"\nBest trial {record['best']}; to run it alone:\n\n    {record['command']}\n"
    else:
        text += "\nNo trial finished.\n"
    return text


def write_sweep(record: dict[str, Any], plan) -> Path:
    """sweep.json, report/sweep.md and the plots, under the sweep folder; prints the table."""
    from recplat.storage import write_bytes_atomic, write_json_atomic

    write_json_atomic(plan.out / SWEEP_FILE, record)
    report = plan.out / REPORT_DIR
    text = format_markdown(record)
    write_bytes_atomic(report / "sweep.md", text.encode("utf-8"))
    write_plots(record, report)
    print("\n" + text, flush=True)
    return plan.out / SWEEP_FILE


def write_plots(record: dict[str, Any], directory: Path) -> list[str]:
    from recplat.report.plots import curves, scatter

    rows, metric = record["rows"], record["metric"]
    written = []
    for key in dict.fromkeys(k for r in rows for k in r["params"]):
        points = {}
        for r in rows:
            if r["objective"] is not None and key in r["params"]:
                group = "done" if r["status"] == "done" else r["status"].split(",")[0].split(":")[0]
                points.setdefault(group, []).append((r["params"][key], r["objective"]))
        numeric = all(isinstance(x, (int, float)) for pts in points.values() for x, _ in pts)
        logx = numeric and key != VARIANT_KEY and _spans_decades([x for pts in points.values() for x, _ in pts])
        name = f"objective_vs_{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.png"
        scatter(points, directory / name, f"{metric} (validation) vs {key}", xlabel=key, ylabel=metric, logx=logx)
        written.append(name)
    series = {r["trial"]: [tuple(p) for p in r["curve"]] for r in rows}
    curves(series, directory / "learning_curves.png", f"{metric} (validation) per trial", ylabel=metric)
    return written + ["learning_curves.png"]


def read_sweep(out: str | Path) -> dict[str, Any]:
    return json.loads((Path(out) / SWEEP_FILE).read_text(encoding="utf-8"))


def _rank_key(row: dict, mode: str):
    value = row["objective"]
    missing = value is None
    return (row["status"] != "done", missing, 0.0 if missing else (-value if mode == "max" else value), row["trial"])


def _trial_id_from_path(path: str | None) -> str:
    match = _TRIAL_ID.search(Path(path or "").name)
    return match.group(1) if match else Path(path or "?").name


def _spans_decades(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 30


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def is_sweep(out: str | Path) -> bool:
    """A `recplat tune` folder (sweep.json), not a `recplat run` one (run.json)."""
    return (Path(out) / SWEEP_FILE).is_file() and not (Path(out) / "run.json").is_file()


def show_sweep(out: str | Path) -> int:
    """`recplat report` on a sweep folder: the table and the best command again, plots redrawn."""
    from recplat.storage import write_bytes_atomic

    record = read_sweep(out)
    text = format_markdown(record)
    write_bytes_atomic(Path(out) / REPORT_DIR / "sweep.md", text.encode("utf-8"))
    write_plots(record, Path(out) / REPORT_DIR)
    print(text + f"\nreport: {Path(out) / REPORT_DIR / 'sweep.md'}")
    return 0
