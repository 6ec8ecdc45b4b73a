"""Run layout, typed references between runs, and the typed run summary every recipe returns.

A run directory (what one recipe run writes; `recplat run` puts it at <out>/<variant or run>):

    summary.json   the RunSummary below
    test/          ranks.parquet, metrics.json (eval/results.py), comparison.json, significance.json
    checkpoints/   Ray Train's checkpoints (unless train.storage_path points elsewhere)

A job's run folder (`recplat run`, default runs/<job>-<profile>[-<variant>], see `run_name`):

    data/                 the prepared dataset, reused while its prepare config is unchanged
    <variant>/ | run/     one run directory per variant of the sweep (run/ without a sweep)
    run.json              job, profile, variants with their configs and summaries, the paper's numbers

A recipe declares what it reads from other runs by giving its Config fields of type `RunRef` (or
`list[RunRef]`), e.g. `init_from`, `eval.compare_with`, `xcross.experts`; `run_refs` finds them by
type, so `recplat run` fills and checks a new recipe's references without knowing its keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from recplat.config import StrictModel
from recplat.errors import ConfigError

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
RUNS_ROOT = "runs"
SINGLE_RUN = "run"  # the run directory of a job without a sweep


def run_name(job: str, profile: str, variant: str | None = None) -> str:
    """A directory-safe name: llmrec-table4_bert-smoke[-variant]."""
    return "-".join([job.replace("/", "-"), profile] + ([variant] if variant else []))


def default_out(job: str, profile: str, variant: str | None = None) -> Path:
    """Where `recplat run` and `recplat report` put a job's run folder without --out."""
    return Path(RUNS_ROOT) / run_name(job, profile, variant)


def run_subdir(variant: str | None) -> str:
    return variant or SINGLE_RUN


class RunSummary(BaseModel):
    """What a recipe run returns and writes as summary.json. Only the keys a recipe sets are
    written (`to_json`), so a summary reads back exactly as it was written."""

    model_config = ConfigDict(extra="allow")  # a recipe may add its own keys

    recipe: str
    dataset: str
    overall: dict[str, Any] = {}  # the test metrics over every test example
    test_examples: int | None = None
    best_validation: dict[str, Any] | None = None  # the validation metrics of the best checkpoint
    best_checkpoint: str | None = None  # its path (a local directory or a storage URI)
    seconds: dict[str, float] = {}  # timings: train, test (ranking recipes) or total
    params: dict[str, int] | None = None  # {"trainable", "total"} of the tested model
    mode: str | None = None  # "evaluate": nothing trained, another run's checkpoint was tested
    train: dict[str, Any] | None = None  # the training loop's summary: step, history, train_log
    # X-Cross
    method: str | None = None
    train_questions: int | None = None
    sources: list[str] | None = None  # the integrated experts, best first
    zero_shot: list[dict[str, Any]] | None = None  # every expert as it is: {expert, valid, test}
    repeats: list[dict[str, Any]] | None = None  # data-limited repeats
    significance: list[dict[str, Any]] | None = None  # paired t-tests against other runs
    comparison: list[dict[str, Any]] | None = None  # eval.compare_with, per result row

    @classmethod
    def coerce(cls, value: "RunSummary | dict") -> "RunSummary":
        return value if isinstance(value, cls) else cls.model_validate(value)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)

    def write(self, run_dir: str | Path) -> None:
        from recplat.storage import write_json_atomic

        write_json_atomic(Path(run_dir) / SUMMARY_FILE, self.to_json())

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunSummary":
        return cls.model_validate(json.loads((Path(run_dir) / SUMMARY_FILE).read_text(encoding="utf-8")))


class RunRef(StrictModel):
    """Another run: a catalog job (whose finished run `recplat run` finds next to this one and
    writes into `run_dir`), or a run directory given directly (`recplat train`)."""

    job: str | None = None  # e.g. llmrec/table4_bert; the same profile as this run
    variant: str | None = None  # a variant of that job's sweep
    run_dir: str | None = None  # the run's directory: summary.json, test/

    @model_validator(mode="after")
    def _job_or_dir(self) -> "RunRef":
        if self.job is None and self.run_dir is None:
            raise ValueError("give job (a catalog job) or run_dir (a finished run's directory)")
        return self

    @property
    def finished(self) -> bool:
        return self.run_dir is not None and (Path(self.run_dir) / SUMMARY_FILE).is_file()

    def summary(self, key: str) -> RunSummary:
        """The run's summary; `key` names this reference in errors (e.g. init_from)."""
        if self.run_dir is None:
            raise ConfigError(f"{key}.run_dir: not set; `recplat run` fills it in from {key}.job, "
                              "`recplat train` needs the directory of a finished run")
        if not self.finished:
            raise ConfigError(f"{key}: {self.run_dir} holds no finished run (no {SUMMARY_FILE})"
                              + (f"; run {self.job} first" if self.job else ""))
        return RunSummary.read(self.run_dir)


def run_refs(config: BaseModel, prefix: str = "") -> list[tuple[str, RunRef]]:
    """(dotted key, reference) for every RunRef in a config, found by type: a field holding a
    RunRef, or a list of them (`xcross.experts.0`, ...), at any depth."""
    found = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        key = f"{prefix}{name}"
        if isinstance(value, RunRef):
            found.append((key, value))
        elif isinstance(value, list):
            found += [(f"{key}.{i}", v) for i, v in enumerate(value) if isinstance(v, RunRef)]
        elif isinstance(value, BaseModel):
            found += run_refs(value, f"{key}.")
    return found


def prepared_dataset(cfg, directory: str | Path, fresh: bool = False, label: str = "run") -> Path:
    """The prepared dataset of `cfg` (a PrepareConfig) in `directory`: reused when its manifest's
    config equals `cfg` (and not `fresh`), else prepared there (replacing what was there)."""
    from recplat.data.pipeline import prepare

    directory = Path(directory)
    manifest = directory / "manifest.json"
    if not fresh and manifest.is_file() and \
            json.loads(manifest.read_text(encoding="utf-8"))["config"] == cfg.model_dump(mode="json"):
        print(f"[{label}] reusing the prepared dataset in {directory}", flush=True)
        return directory
    prepare(cfg, directory, overwrite=True, show_progress=True)
    return directory
