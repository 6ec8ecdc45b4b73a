"""The job catalog: `jobs/<paper>/<experiment>.yaml` -> typed `JobSpec`s (plain data, no code).

One YAML per paper experiment (a table, a table row, or a figure). A job's name is its path
without the suffix (`llmrec/table4_bert`), like torchtune's config names. Every job has at least
two profiles: `paper` (HF model ids, the real preprocessing, GPUs) and `smoke` (bundled or
synthetic data, an offline model, CPU workers).

    catalog = Catalog()                        # every jobs/**/*.yaml, validated
    spec = catalog.get("llmrec/table4_bert")   # unknown name -> ConfigError with a did-you-mean
    run = spec.resolve("smoke", variant=None, overrides=["recipe.train.lr=1e-4"])
    run.data      # PrepareConfig (preset + the profile's data overrides + variant + command line)
    run.recipe    # dict, validated later by the recipe's own config model
    run.resources # Resources

Sweeps: a profile's `sweep` lists named variants, each a mapping of dotted overrides relative to
the profile (`recipe.model.name`, `data.sources.0.users`, `resources.num_workers`); `grid` is the
same as a product of axes (variant names join the axis values with "-"). One file per figure or
table row keeps related runs together; a separate file is used where the data or recipe differ.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recplat.config import (StrictModel, apply_overrides, load_yaml, parsed_preset, preset_names, set_dotted,
                            validate)
from recplat.data.config import PrepareConfig
from recplat.errors import ConfigError, RecplatError
from recplat.runs import run_name
from recplat.train.config import TrainConfig
from recplat.tune.space import TuneSearch

PAPERS = ("llmrec", "xcross", "molorec", "cprec")
PAPER_TITLES = {
    "llmrec": "LLM-Rec (One Model for All)",
    "xcross": "X-Cross",
    "molorec": "MoLoRec",
    "cprec": "CPRec",
}
RECIPES = ("llmrec", "sasrec", "gru4rec", "xcross", "molorec", "cprec", "llara")
REQUIRED_PROFILES = ("paper", "smoke")
PROFILE_SECTIONS = ("data", "recipe", "resources")
JOBS_DIR_ENV = "RECPLAT_JOBS_DIR"
TRAIN_KEYS = ("num_workers", "use_gpu", "cpus_per_worker", "strategy")  # Resources -> TrainConfig
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
_LOADED: dict[tuple, dict[str, "JobSpec"]] = {}  # (folder, its job files' stats) -> the jobs (Catalog)
_LOADED_KEEP = 8


class JobNotReady(RecplatError):
    """A planned job was asked to run."""


# --- the pieces of a profile ---------------------------------------------------------------------
class DataRef(StrictModel):
    """A profile's dataset: a packaged preset (platform/recplat/data/defaults/<preset>.yaml) or an
    inline prepare config, plus dotted-key overrides. A plain PrepareConfig mapping (no `preset`/
    `config` key) is accepted as the inline config."""

    preset: str | None = None
    config: dict[str, Any] | None = None
    overrides: dict[str, Any] = {}  # dotted keys: {sources.0.users: 300, kcore.user: 3}

    @model_validator(mode="before")
    @classmethod
    def _inline_config(cls, data: Any) -> Any:
        if isinstance(data, dict) and not {"preset", "config", "overrides"} & set(data):
            return {"config": data}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "DataRef":
        if (self.preset is None) == (self.config is None):
            raise ValueError("give exactly one of preset (a packaged preset name) or config (an inline prepare config)")
        if self.preset is not None and self.preset not in preset_names():
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(preset_names())}")
        return self

    def mapping(self) -> dict[str, Any]:
        """The prepare config as plain data: preset (or inline config) with the overrides applied."""
        base = parsed_preset(self.preset) if self.preset is not None else (self.config or {})
        return set_dotted(base, self.overrides)  # a copy: the cached preset stays as parsed


class Resources(StrictModel):
    """How many Ray Train workers, on what: `train_settings` sets them on the recipe's TrainConfig,
    whose defaults they share (one set of defaults for the worker settings)."""

    num_workers: int = Field(TrainConfig.model_fields["num_workers"].default, ge=1)
    use_gpu: bool = TrainConfig.model_fields["use_gpu"].default
    gpus_per_worker: float = Field(0.0, ge=0)
    cpus_per_worker: float = Field(TrainConfig.model_fields["cpus_per_worker"].default, gt=0)
    strategy: Literal["ddp", "deepspeed"] = TrainConfig.model_fields["strategy"].default  # deepspeed = ZeRO stage 2
    accelerator_type: str | None = None  # e.g. A100-80G: informational, what the paper used

    @model_validator(mode="after")
    def _gpu_consistent(self) -> "Resources":
        if self.use_gpu and self.gpus_per_worker <= 0:
            raise ValueError("gpus_per_worker: must be > 0 when use_gpu is true")
        if not self.use_gpu and self.gpus_per_worker > 0:
            raise ValueError("gpus_per_worker: set use_gpu: true as well, or make it 0")
        return self

    @property
    def total_gpus(self) -> float:
        return self.num_workers * self.gpus_per_worker

    def train_settings(self) -> dict[str, Any]:
        """The TrainConfig keys these resources set (the one Resources -> TrainConfig mapping):
        Ray Train gives each worker one GPU, so gpus_per_worker must be 1 with GPUs."""
        if self.use_gpu and self.gpus_per_worker != 1:
            raise ConfigError(f"resources.gpus_per_worker: each Ray Train worker uses one GPU, got {self.gpus_per_worker}")
        return {key: getattr(self, key) for key in TRAIN_KEYS}


class Variant(StrictModel):
    """One run of a sweep: a name and dotted overrides relative to the profile."""

    name: str = Field(min_length=1)
    overrides: dict[str, Any] = {}
    note: str | None = None

    @field_validator("name")
    @classmethod
    def _name_chars(cls, name: str) -> str:
        if set(name) - set(_NAME_CHARS):
            raise ValueError(f"use lower-case letters, digits and _.- only, got {name!r}")
        return name

    @field_validator("overrides")
    @classmethod
    def _sections(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        return _check_sections(overrides)


class Profile(StrictModel):
    """One scale of a job: its data, the recipe's settings, resources, and optional sweep."""

    description: str | None = None
    data: DataRef
    recipe: dict[str, Any] = {}  # validated later by the recipe's own config model
    resources: Resources = Resources()
    sweep: list[Variant] = []
    # axis -> value name -> dotted overrides; the variants are the product of the axes
    grid: dict[str, dict[str, dict[str, Any]]] = {}
    # name -> a Ray Tune search over this profile's keys (`recplat tune`; recplat/tune/space.py)
    tune: dict[str, TuneSearch] = {}

    @model_validator(mode="after")
    def _sweep_shape(self) -> "Profile":
        if self.sweep and self.grid:
            raise ValueError("sweep and grid: give one of them (grid is a product of axes, sweep a list)")
        for axis, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{axis}: an axis needs at least one value")
            for value, overrides in values.items():
                Variant(name=value, overrides=overrides or {})  # same name/section rules
        names = [v.name for v in self.variants()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sweep: variant names must be unique, repeated: {', '.join(dupes)}")
        for search_name, search in self.tune.items():
            if set(search_name) - set(_NAME_CHARS):
                raise ValueError(f"tune.{search_name}: name searches with lower-case letters, digits and _.-")
            try:
                search.check_variants(names)
            except ValueError as exc:
                raise ValueError(f"tune.{search_name}.{exc}") from None
        return self

    def variants(self) -> list[Variant]:
        """The runs of this profile: the sweep list, or the grid's product ([] = a single run)."""
        if self.sweep:
            return list(self.sweep)
        if not self.grid:
            return []
        out = []
        axes = [list(values.items()) for values in self.grid.values()]
        for combo in itertools.product(*axes):
            merged: dict[str, Any] = {}
            for _, overrides in combo:
                merged.update(overrides or {})
            out.append(Variant(name="-".join(name for name, _ in combo), overrides=merged))
        return out

    def variant(self, name: str) -> Variant:
        variants = {v.name: v for v in self.variants()}
        if name not in variants:
            choices = ", ".join(variants) or "(this profile has no sweep)"
            raise ConfigError(f"unknown variant {name!r}{_did_you_mean(name, variants)}; choose one of {choices}")
        return variants[name]


class PaperNumber(StrictModel):
    """One number the paper reports (percent where the paper writes percent, as in docs/papers.md)."""

    metric: str = Field(min_length=1)  # recall@1, ndcg@10, hit@1, mrr, hr@1, valid_ratio, hours, vmem_gb ...
    value: float | None  # None only with a note, for cells such as "OOM"
    domain: str | None = None
    variant: str | None = None  # a variant of the paper profile's sweep
    note: str | None = None

    @model_validator(mode="after")
    def _value_or_note(self) -> "PaperNumber":
        if self.value is None and not self.note:
            raise ValueError("value: null needs a note saying what the paper wrote (e.g. OOM)")
        return self


# --- the job -------------------------------------------------------------------------------------
class JobSpec(StrictModel):
    name: str  # derived from the path: "llmrec/table4_bert"
    paper: Literal["llmrec", "xcross", "molorec", "cprec"]
    ref: str = Field(min_length=1)  # "Table 4", "Figure 7", "Table 3 / Figure 3"
    row: str | None = None  # the table row / column / series this job reproduces
    description: str = Field(min_length=1, max_length=200)
    recipe: Literal["llmrec", "sasrec", "gru4rec", "xcross", "molorec", "cprec", "llara"]
    status: Literal["ready", "planned"]
    requires: list[str] = []  # jobs whose outputs this one reads (checkpoints, adapters)
    profiles: dict[str, Profile]
    paper_numbers: list[PaperNumber] = []
    claims: list[str] = []  # the paper's qualitative findings, where it gives no numbers
    # filled by the loader, never written in a job file
    path: str = Field("", exclude=True)
    header: str = Field("", exclude=True)

    @field_validator("description")
    @classmethod
    def _one_line(cls, text: str) -> str:
        if "\n" in text.strip():
            raise ValueError("must be one line")
        return text.strip()

    @model_validator(mode="after")
    def _consistent(self) -> "JobSpec":
        missing = [p for p in REQUIRED_PROFILES if p not in self.profiles]
        if missing:
            raise ValueError(f"profiles: every job needs {' and '.join(REQUIRED_PROFILES)}; missing {', '.join(missing)}")
        if self.paper != self.name.split("/")[0]:
            raise ValueError(f"paper: {self.paper!r} does not match the folder of {self.name!r}")
        variants = {v.name for v in self.profiles["paper"].variants()}
        for i, number in enumerate(self.paper_numbers):
            if number.variant is not None and number.variant not in variants:
                raise ValueError(
                    f"paper_numbers.{i}.variant: {number.variant!r} is not a variant of the paper profile "
                    f"({', '.join(sorted(variants)) or 'it has no sweep'})"
                )
        return self

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def require_ready(self) -> None:
        """Raise a clear error for a planned job (its recipe, or its smoke run, is not there yet)."""
        if not self.ready:
            raise JobNotReady(
                f"{self.name} is planned: its {self.recipe!r} settings have not passed a smoke run yet "
                "(the job file's header says what is missing), so it cannot run. "
                "It is listed so its settings and the paper's numbers are in one place; "
                "`recplat jobs list` shows the jobs that are ready."
            )

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError(
                f"{self.name}: unknown profile {name!r}{_did_you_mean(name, self.profiles)}; "
                f"choose one of {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def resolve(self, profile: str, variant: str | None = None, overrides: list[str] = ()) -> "ResolvedRun":
        """Profile -> variant overrides -> command-line `key=value` overrides -> typed run.

        Keys are relative to the profile: `data.<prepare key>`, `recipe.<...>`, `resources.<...>`."""
        prof = self.profile(profile)
        return self._resolve(profile, None if variant is None else prof.variant(variant), overrides)

    def _resolve(self, profile: str, variant: Variant | None, overrides: list[str] = ()) -> "ResolvedRun":
        prof = self.profiles[profile]
        base = {
            "data": prof.data.mapping(),
            "recipe": copy.deepcopy(prof.recipe),  # the run's own: a loaded catalog is shared (Catalog)
            "resources": prof.resources.model_dump(),
        }
        where = f"{self.name} (profile {profile}"
        if variant is not None:
            base = set_dotted(base, variant.overrides)
            where += f", variant {variant.name}"
        where += ")"
        for text in overrides:
            key = text.partition("=")[0].strip()
            if key.split(".")[0] not in PROFILE_SECTIONS:
                raise ConfigError(
                    f"override {text!r}: keys start with one of {', '.join(PROFILE_SECTIONS)} (e.g. recipe.train.lr=1e-4)"
                )
        if overrides:
            base = apply_overrides(base, list(overrides))
        data = validate(PrepareConfig, base["data"], source=f"{where}: data")
        resources = validate(Resources, base["resources"], source=f"{where}: resources")
        if not isinstance(base["recipe"], dict):
            raise ConfigError(f"{where}: recipe must be a mapping")
        return ResolvedRun(self.name, profile, None if variant is None else variant.name, data, base["recipe"], resources)


@dataclass(frozen=True)
class ResolvedRun:
    """One concrete run of a job: everything a recipe needs, validated except the recipe section."""

    job: str
    profile: str
    variant: str | None
    data: PrepareConfig
    recipe: dict[str, Any]
    resources: Resources

    @property
    def run_name(self) -> str:
        """A directory-safe name: llmrec-table4_bert-smoke[-variant] (recplat.runs.run_name)."""
        return run_name(self.job, self.profile, self.variant)


# --- the catalog ---------------------------------------------------------------------------------
class Catalog:
    """Every job under a jobs/ folder, loaded and validated once per process: a later Catalog of
    the same folder, with no job file changed (path, size, modification time), reuses the loaded
    jobs (validating every variant of 40 jobs takes ~0.5 s, and one command may plan many runs)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else find_jobs_dir()
        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: job catalog folder not found")
        for path in sorted(self.root.rglob("*.yml")):
            raise ConfigError(f"{path}: name job files *.yaml (not .yml)")
        files = sorted(self.root.rglob("*.yaml"))
        stats = [path.stat() for path in files]
        key = (str(self.root.resolve()), tuple((str(p), st.st_mtime_ns, st.st_size) for p, st in zip(files, stats)))
        if key not in _LOADED:
            jobs = {spec.name: spec for spec in (load_job(path, self.root) for path in files)}
            for spec in jobs.values():
                for i, other in enumerate(spec.requires):
                    if other not in jobs:
                        raise ConfigError(
                            f"{spec.path}: requires.{i}: no job named {other!r}{_did_you_mean(other, jobs)}"
                        )
            while len(_LOADED) >= _LOADED_KEEP:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = jobs
        self._jobs: dict[str, JobSpec] = dict(_LOADED[key])

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self):
        return iter(self._jobs.values())

    def names(self) -> list[str]:
        return list(self._jobs)

    def get(self, name: str) -> JobSpec:
        name = name.removesuffix(".yaml").removeprefix("jobs/")
        if name not in self._jobs:
            raise ConfigError(f"no job named {name!r}{_did_you_mean(name, self._jobs)}; `recplat jobs list` shows them all")
        return self._jobs[name]

    def list(self, paper: str | None = None, status: str | None = None) -> list[JobSpec]:
        if paper is not None and paper not in PAPERS:
            raise ConfigError(f"unknown paper {paper!r}; choose one of {', '.join(PAPERS)}")
        return [
            s for s in self._jobs.values()
            if (paper is None or s.paper == paper) and (status is None or s.status == status)
        ]  # fmt: skip


def load_job(path: str | Path, root: str | Path) -> JobSpec:
    """One job file -> JobSpec; any problem is a ConfigError naming the file and the key."""
    path, root = Path(path), Path(root)
    name = path.relative_to(root).with_suffix("").as_posix()
    shown = (Path(root.name) / path.relative_to(root)).as_posix()  # jobs/llmrec/table4_bert.yaml
    data = load_yaml(path, shown)
    for key in ("path", "header"):
        if key in data:
            raise ConfigError(f"{shown}: {key}: unknown key (the loader fills it in)")
    if "name" in data and data["name"] != name:
        raise ConfigError(f"{shown}: name: must match the file's path {name!r}, got {data['name']!r}")
    if name.count("/") != 1 or set(name.replace("/", "")) - set(_NAME_CHARS):
        raise ConfigError(f"{shown}: job files live at jobs/<paper>/<experiment>.yaml (lower-case, _.-), got {name!r}")
    spec = validate(JobSpec, {**data, "name": name}, source=shown)
    for profile_name, profile in spec.profiles.items():
        # the data section must be a valid prepare config in every variant, not only the base
        validate(PrepareConfig, profile.data.mapping(), source=f"{shown}: profiles.{profile_name}.data")
        for variant in profile.variants():
            try:
                spec._resolve(profile_name, variant)
            except ConfigError as exc:
                raise ConfigError(f"{shown}: profiles.{profile_name}.sweep: {exc}") from None
    return spec.model_copy(update={"path": shown, "header": read_header(path)})


def read_header(path: str | Path) -> str:
    """The comment block at the top of a job file (the commands that run it), without the '#'."""
    lines = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].removeprefix(" "))
    return "\n".join(lines)


def find_jobs_dir() -> Path:
    """$RECPLAT_JOBS_DIR, else ./jobs, else the jobs/ folder of the source checkout."""
    if os.environ.get(JOBS_DIR_ENV):
        return Path(os.environ[JOBS_DIR_ENV])
    here = Path.cwd() / "jobs"
    if here.is_dir() and any(here.rglob("*.yaml")):
        return here
    return Path(__file__).resolve().parents[2] / "jobs"


def _check_sections(overrides: dict[str, Any]) -> dict[str, Any]:
    for key in overrides:
        if str(key).split(".")[0] not in PROFILE_SECTIONS:
            raise ValueError(f"{key}: override keys start with one of {', '.join(PROFILE_SECTIONS)}")
    return overrides


def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""

