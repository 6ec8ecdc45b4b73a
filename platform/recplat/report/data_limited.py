"""X-Cross's data-limited experiment (spec §2.12: Table 3, Figure 3) from a finished sweep.

The sweep (jobs/xcross/table3_data_limited.yaml) trains X-Cross and a fresh target LoRA on N
random training questions for each N of the grid, `repeats` subsets each, all tested on the full
test set. Per target domain:

- the curve: mean Hit@1 over the repeats against N, for both methods, and the reference line = the
  test Hit@1 of the best zero-shot expert (the one X-Cross's selection ranks first on validation);
- Table 3: the largest N at which X-Cross is still significantly better than LoRA (two-tailed
  paired t-test on per-question Hit@1, pairs = same question and repeat, p < 0.05); the smallest N
  at which X-Cross, and at which LoRA, beats the reference (a size counts only at a grid value
  where the threshold is exceeded); gap = 1 - N_xcross / N_lora, in percent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recplat.runs import RunSummary

P_THRESHOLD = 0.05
METRIC = "hit@1"


def _runs(record: dict, run_dir: Path) -> list[dict]:
    """One entry per finished run with a train size: method, size, domain, ranks table."""
    import pyarrow.parquet as pq

    out = []
    for sub, entry in record["runs"].items():
        config = entry.get("config") or {}
        size = (config.get("data") or {}).get("train_size")
        if size is None:
            continue
        ranks = pq.read_table(Path(run_dir) / sub / "test" / "ranks.parquet")
        domains = sorted(set(ranks.column("target_domain").to_pylist()))
        out.append({"method": config["method"], "size": size, "domain": "/".join(domains), "ranks": ranks,
                    "summary": RunSummary.coerce(entry["summary"])})
    return out


def _per_question(ranks) -> tuple[list[tuple], np.ndarray]:
    keys = ["user", "scope", "position"] + (["repeat"] if "repeat" in ranks.column_names else [])
    cols = [ranks.column(k).to_pylist() for k in keys]
    return list(zip(*cols)), (ranks.column("rank").to_numpy() <= 1).astype(np.float64)


def data_limited_table(record: dict, run_dir: str | Path) -> dict[str, dict]:
    """domain -> {"sizes", "xcross", "lora" (mean Hit@1 per size), "p" (per size), "reference",
    and the four Table 3 numbers (None when never reached)}."""
    from recplat.eval.significance import paired_t_test

    by_domain: dict[str, dict] = {}
    for run in _runs(record, Path(run_dir)):
        by_domain.setdefault(run["domain"], {}).setdefault(run["size"], {})[run["method"]] = run
    table = {}
    for domain, sizes in sorted(by_domain.items()):
        grid = sorted(s for s, methods in sizes.items() if {"xcross", "lora"} <= set(methods))
        if not grid:
            continue
        row = {"sizes": grid, "xcross": [], "lora": [], "p": []}
        for size in grid:
            (kx, hx), (kl, hl) = (_per_question(sizes[size][m]["ranks"]) for m in ("xcross", "lora"))
            order = {k: i for i, k in enumerate(kl)}
            paired = np.array([order[k] for k in kx])
            row["xcross"].append(float(hx.mean()))
            row["lora"].append(float(hl.mean()))
            row["p"].append(paired_t_test(hx, hl[paired]).p if len(hx) > 1 else None)
        zero_shot = sizes[grid[0]]["xcross"]["summary"].zero_shot or []
        row["reference"] = zero_shot[0]["test"][METRIC] if zero_shot else None
        better = [s for s, x, l, p in zip(grid, row["xcross"], row["lora"], row["p"])
                  if x > l and p is not None and p < P_THRESHOLD]
        row["max_size_xcross_significantly_better"] = max(better) if better else None
        for method in ("xcross", "lora"):
            reached = [s for s, v in zip(grid, row[method]) if row["reference"] is not None and v > row["reference"]]
            row[f"min_size_{method}_beats_reference"] = min(reached) if reached else None
        nx, nl = row["min_size_xcross_beats_reference"], row["min_size_lora_beats_reference"]
        row["gap_percent"] = 100.0 * (1 - nx / nl) if nx and nl else None
        table[domain] = row
    return table


TABLE3_COLUMNS = ("max_size_xcross_significantly_better", "min_size_xcross_beats_reference",
                  "min_size_lora_beats_reference", "gap_percent")


def write_curves(table: dict[str, dict], directory: Path) -> list[str]:
    """Figure 3: Hit@1 (percent) against the training-set size, one panel per target domain."""
    from recplat.report.plots import curves

    files = []
    for domain, row in table.items():
        series = {f"{m} (mean of repeats)": [(s, 100 * v) for s, v in zip(row["sizes"], row[m])]
                  for m in ("xcross", "lora")}
        if row["reference"] is not None:
            series["best zero-shot expert"] = [(s, 100 * row["reference"]) for s in row["sizes"]]
        name = f"data_limited_{domain.replace('/', '_')}.png"
        curves(series, directory / name, f"X-Cross vs LoRA, {domain}: Hit@1 by training-set size",
               xlabel="training questions", ylabel="Hit@1 (%)", logx=False)
        files.append(name)
    return files
