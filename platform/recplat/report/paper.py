"""`recplat report NAME`: our numbers beside the paper's, for a finished `recplat run`.

    recplat report llmrec/table4_bert --profile smoke [--out DIR]

Reads <run dir>/run.json and each run's test/metrics.json; writes <run dir>/report/ (README.md with
the table, bars.png, memory.png when there are memory rows, and for a sweep sweep.png), the folder
replaced in one rename; prints the table.

Matching a paper number (metric, domain, variant) with our rows: the same metric and variant
(none for a job without a sweep); domain none, "SPIAO" or "all" is our overall row, any other the
target domain of that name or the one whose name has it as a word ("Scientific" ->
Industrial_and_Scientific) or as a word's stem ("Game" -> Video_Games, "Industry" ->
Industrial_and_Scientific). Values are in the paper's unit (percent for LLM-Rec and X-Cross,
fractions for MoLoRec and CPRec); the difference is ours - paper. Besides the test metrics, when
the job's paper numbers name them: train_hours = the run's training seconds / 3600; and from a
LLaRA run's summary `cost` (Table 7): train_minutes_per_epoch = rows per epoch at the training
throughput (validation and checkpoints left out), test_minutes = one pass over the test prompts,
train_memory_mb / test_memory_mb = peak GPU memory (MiB) of training rank 0 and of the generation
actors; a CPU run reports its peak resident set as train_rss_mb / test_rss_mb instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from recplat.errors import ConfigError
from recplat.report.data_limited import TABLE3_COLUMNS, data_limited_table, write_curves
from recplat.runs import RUN_FILE, RunSummary

PAPER_SCALE = {"llmrec": 100.0, "xcross": 100.0, "molorec": 1.0, "cprec": 1.0}  # our fractions -> paper unit
OVERALL = "all"
REPORT_DIR = "report"


@dataclass(frozen=True)
class Row:
    variant: str | None
    domain: str  # "all", a target domain, or "<segment>=<label>" (e.g. same_mix_diff=diff)
    metric: str
    ours: float | None
    paper: float | None = None
    note: str | None = None

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.paper is None else self.ours - self.paper


def match_domain(paper_domain: str | None, ours: Iterable[str]) -> str | None:
    """Our domain label for a paper's domain name (None when no single one fits)."""
    if paper_domain is None or paper_domain.lower() in ("spiao", OVERALL):
        return OVERALL
    ours = [d for d in ours if d != OVERALL and "=" not in d]
    if paper_domain in ours:
        return paper_domain
    hits = [d for d in ours if paper_domain.lower() in d.lower().split("_")]
    if not hits:  # a word of ours with the paper's name as its stem: Game -> Video_Games, Industry -> Industrial_...
        stem = paper_domain.lower()[: max(4, len(paper_domain) - 1)]
        hits = [d for d in ours if any(word.startswith(stem) for word in d.lower().split("_"))]
    return hits[0] if len(hits) == 1 else None


def our_numbers(record: dict, run_dir: Path, extra_metrics: set[str] = frozenset()) -> list[Row]:
    """Every metric row of every run of run.json, in the paper's unit."""
    scale = PAPER_SCALE[record["paper"]]
    rows = []
    for sub, entry in record["runs"].items():
        if not (run_dir / sub / "test" / "metrics.json").is_file():  # a run that tests nothing (MoLoRec stage 1)
            continue
        metrics = json.loads((run_dir / sub / "test" / "metrics.json").read_text(encoding="utf-8"))
        for r in metrics["rows"]:
            if r["group"] == OVERALL:
                domain = OVERALL
            elif r["group"] == "target_domain":
                domain = r["value"]
            else:
                domain = f"{r['group']}={r['value']}"
            for m in metrics["metrics"]:
                rows.append(Row(entry["variant"], domain, m, None if r[m] is None else r[m] * scale))
        summary = RunSummary.coerce(entry["summary"])
        seconds = summary.seconds.get("train")
        if "train_hours" in extra_metrics and summary.mode != "evaluate" and seconds is not None:
            rows.append(Row(entry["variant"], OVERALL, "train_hours", seconds / 3600))
        if extra_metrics & set(COST_METRICS):
            rows += cost_rows(entry["variant"], (summary.model_extra or {}).get("cost") or {})
    return rows


COST_METRICS = ("train_minutes_per_epoch", "train_memory_mb", "test_minutes", "test_memory_mb")


def is_cost(metric: str) -> bool:
    """A time or memory row (not a test metric)."""
    return metric in COST_METRICS or metric == "train_hours" or metric.endswith("_mb")


def cost_rows(variant: str | None, cost: dict) -> list[Row]:
    """Table 7's rows (module docstring) from a summary's `cost`: {train: {rows_per_epoch, seconds,
    samples, peak_*_gib}, test: {seconds, prompts, peak_*_gib}}."""
    rows = []
    train, test = cost.get("train"), cost.get("test")
    if train and train["samples"] > 0:
        rows.append(Row(variant, OVERALL, "train_minutes_per_epoch",
                        train["rows_per_epoch"] * train["seconds"] / train["samples"] / 60))
    if test:
        rows.append(Row(variant, OVERALL, "test_minutes", test["seconds"] / 60))
    for phase, part in (("train", train), ("test", test)):
        if part and "peak_gpu_gib" in part:
            rows.append(Row(variant, OVERALL, f"{phase}_memory_mb", part["peak_gpu_gib"] * 1024))
        elif part and "peak_rss_gib" in part:
            rows.append(Row(variant, OVERALL, f"{phase}_rss_mb", part["peak_rss_gib"] * 1024))
    return rows


def compare_rows(ours: list[Row], paper_numbers: list[dict]) -> list[Row]:
    """Our rows with the matching paper value; then the paper's numbers we have no row for."""
    domains: dict[str | None, list[str]] = {}
    for r in ours:
        domains.setdefault(r.variant, []).append(r.domain)
    matched: dict[tuple, dict] = {}
    unmatched = []
    for number in paper_numbers:
        domain = match_domain(number.get("domain"), domains.get(number.get("variant"), []))
        key = (number.get("variant"), domain, number["metric"])
        if number.get("variant") in domains and domain is not None and key not in matched and \
                any((r.variant, r.domain, r.metric) == key for r in ours):
            matched[key] = number
        else:
            unmatched.append(number)
    rows = []
    for r in ours:
        number = matched.get((r.variant, r.domain, r.metric))
        rows.append(Row(r.variant, r.domain, r.metric, r.ours, number and number["value"], number and number.get("note")))
    for n in unmatched:
        rows.append(Row(n.get("variant"), n.get("domain") or OVERALL, n["metric"], None, n["value"], n.get("note")))
    return rows


def format_markdown(rows: list[Row], digits: int = 2) -> str:
    """A Markdown table: [variant |] domain | metric | ours | paper | ours - paper [| note]; test
    metrics with `digits` places, times and memory with 2."""
    show_variant = any(r.variant for r in rows)
    show_note = any(r.note for r in rows)

    def num(v: float | None, metric: str, sign: bool = False) -> str:
        places = 2 if is_cost(metric) else digits  # minutes, hours, MB
        return "—" if v is None else f"{v:+.{places}f}" if sign else f"{v:.{places}f}"

    header = (["variant"] if show_variant else []) + ["domain", "metric", "ours", "paper", "ours − paper"]
    header += ["note"] if show_note else []
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * (len(header) - 3 - show_note)
                                                           + ["---:"] * 3 + ["---"] * show_note) + "|"]
    for r in rows:
        cells = ([r.variant or ""] if show_variant else []) + [r.domain, r.metric, num(r.ours, r.metric),
                                                               num(r.paper, r.metric), num(r.diff, r.metric, True)]
        cells += [r.note or ""] if show_note else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plots(rows: list[Row], record: dict, directory: Path) -> list[str]:
    """bars.png: ours vs the paper on the cells the paper reports (else our overall and segment
    rows), memory.png the same for memory rows (MB, Table 7); sweep.png: overall test metrics per
    variant, against trainable parameters when every run reports distinct counts (LLM-Rec Fig. 7),
    else in sweep order."""
    from recplat.report.plots import curves, grouped_bars

    variants = [e["variant"] for e in record["runs"].values() if e["variant"] is not None]
    sweep = len(variants) > 1
    if any(r.paper is not None for r in rows):  # the cells the paper reports
        shown = [r for r in rows if r.paper is not None]
    else:  # overall (and the segments of a single run: Fig. 5)
        shown = [r for r in rows if r.domain == OVERALL or (not sweep and "=" in r.domain)]
    unit = "%" if PAPER_SCALE[record["paper"]] == 100 else ""
    files = []
    for name, group, ylabel in (("bars.png", [r for r in shown if not r.metric.endswith("_mb")], unit),
                                ("memory.png", [r for r in shown if r.metric.endswith("_mb")], "MB")):
        bars: dict[str, dict[str, float]] = {"ours": {}, "paper": {}}
        for r in group:
            label = "\n".join(x for x in (r.metric, r.domain if r.domain != OVERALL else None, r.variant) if x)
            if r.ours is not None:
                bars["ours"][label] = r.ours
            if r.paper is not None:
                bars["paper"][label] = r.paper
        bars = {k: v for k, v in bars.items() if v}
        if bars:
            grouped_bars(bars, directory / name, f"{record['job']} ({record['profile']}): ours vs paper",
                         ylabel=ylabel, percent=False)
            files.append(name)
    if sweep:
        params = {e["variant"]: (RunSummary.coerce(e["summary"]).params or {}).get("trainable")
                  for e in record["runs"].values()}
        by_params = all(params.values()) and len(set(params.values())) == len(params)
        x = {v: params[v] if by_params else i for i, v in enumerate(variants)}
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r.domain == OVERALL and r.variant in x and not is_cost(r.metric):
                for who, value in (("ours", r.ours), ("paper", r.paper)):
                    if value is not None:
                        series.setdefault(f"{who} {r.metric}", []).append((x[r.variant], value))
        xlabel = "trainable parameters" if by_params else "variant: " + ", ".join(variants)
        if series:
            curves({k: sorted(v) for k, v in series.items()}, directory / "sweep.png",
                   f"{record['job']} ({record['profile']})", xlabel=xlabel, ylabel=unit, logx=by_params)
            files.append("sweep.png")
    return files


def write_report(run_dir: str | Path) -> tuple[Path, str]:
    """<run_dir>/report/{README.md, bars.png, sweep.png} from run.json; returns (folder, table)."""
    from recplat.storage import atomic_dir

    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; `recplat run` writes it when a run finishes")
    record = json.loads(path.read_text(encoding="utf-8"))
    extra = {n["metric"] for n in record["paper_numbers"]}
    ours = our_numbers(record, run_dir, extra)
    limited = data_limited_table(record, run_dir) if record.get("recipe") == "xcross" else {}
    for domain, row in limited.items():  # X-Cross Table 3: sizes and a gap, already in the paper's unit
        ours += [Row(None, domain, column, row[column]) for column in TABLE3_COLUMNS]
    for entry in record["runs"].values():  # X-Cross: each expert zero-shot on the target (Table 2's "<Domain>-LoRA")
        for expert in RunSummary.coerce(entry["summary"]).zero_shot or []:
            ours += [Row(entry["variant"], f"zero-shot {expert['expert']}", m, v * PAPER_SCALE[record["paper"]])
                     for m, v in expert["test"].items()]
    for entry in record["runs"].values():  # MoLoRec: Fig. 4's mean coefficients; MoLoRec-G/-S beside the mixture
        extra_keys = RunSummary.coerce(entry["summary"]).model_extra or {}
        if "mixture" in extra_keys:
            ours += [Row(entry["variant"], OVERALL, f"w_{k}", w)
                     for k, w in zip("gs", extra_keys["mixture"]["mean_weights"])]
        for method, metrics in (extra_keys.get("baselines") or {}).items():
            ours += [Row(entry["variant"], method, m, v * PAPER_SCALE[record["paper"]])
                     for m, v in metrics.items() if isinstance(v, float)]
    rows = compare_rows(ours, record["paper_numbers"])
    table = format_markdown(rows, digits=2 if PAPER_SCALE[record["paper"]] == 100 else 4)
    with atomic_dir(run_dir / REPORT_DIR, overwrite=True) as tmp:
        files = write_plots(rows, record, tmp) + (write_curves(limited, tmp) if limited else [])
        unit = "percent" if PAPER_SCALE[record["paper"]] == 100 else "fractions"
        lines = [
            f"# {record['job']}: {record['ref']}" + (f" ({record['row']})" if record.get("row") else ""), "",
            f"Profile `{record['profile']}`" + (", incomplete sweep" if not record.get("complete") else "")
            + f"; {unit}; job file `{record['file']}`; the paper's numbers are for the paper profile.", "",
            table, "",
            *[f"![{f}]({f})\n" for f in files],
        ]
        if record.get("claims"):
            lines += ["The paper's claims:", "", *[f"- {c}" for c in record["claims"]], ""]
        (tmp / "README.md").write_text("\n".join(lines), encoding="utf-8")
    return run_dir / REPORT_DIR, table

