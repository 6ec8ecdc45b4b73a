"""The `recplat prepare` config: one typed section per source and per stage.

Every default runs offline on one CPU machine. A wrong key or value fails validation with a
message naming it (see recplat.config.validate). The commented reference file with every key is
platform/recplat/data/defaults/prepare.yaml.

Relative paths in a config FILE (sources' path / interactions / items, render.templates) are
relative to that file's folder, so a config next to its data works from any working directory
(`resolve_paths`, applied by recplat.config.load_config before overrides). Paths given as
`key=value` overrides and paths in the packaged presets stay relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from recplat.config import StrictModel


# --- sources: one model per reader, told apart by `kind` -------------------------------------
class Amazon2018Source(StrictModel):
    """Amazon Review Data 2018: ratings CSV or 5-core review JSON lines, plus meta_<Domain>.json.gz."""

    kind: Literal["amazon2018"]
    path: str
    domains: list[str] = Field(min_length=1)
    ratings: Literal["csv", "reviews"] = "csv"


class Amazon2014Source(StrictModel):
    """Amazon 2014: reviews_<Domain>_5.json.gz and meta_<Domain>.json.gz (Python dict literals)."""

    kind: Literal["amazon2014"]
    path: str
    domains: list[str] = Field(min_length=1)


class Amazon2023Source(StrictModel):
    """Amazon Reviews 2023: <Domain>.jsonl(.gz) and meta_<Domain>.jsonl(.gz); timestamps in ms."""

    kind: Literal["amazon2023"]
    path: str
    domains: list[str] = Field(min_length=1)


class MovieLensSource(StrictModel):
    """MovieLens ml-100k, ml-1m, ml-latest(-small); one domain, named by `domain`."""

    kind: Literal["movielens"]
    path: str
    variant: Literal["ml-100k", "ml-1m", "ml-latest", "ml-latest-small"]
    domain: str = "Movies"


class RecBoleSource(StrictModel):
    """RecBole atomic files <name>.inter / <name>.item. Without `path`, the ml-100k example that
    ships inside the installed `recbole` package is read in place (never copied)."""

    kind: Literal["recbole"]
    path: str | None = None
    dataset: str = "ml-100k"
    domain: str = "Movies"
    title_field: str | None = None  # default: the first of movie_title/title/item_name present


class TableSource(StrictModel):
    """Generic Parquet or CSV tables with a column mapping onto the canonical schema."""

    kind: Literal["table"]
    interactions: str
    items: str
    # canonical name -> column name in the file; unmapped canonical names keep their own name
    columns: dict[str, str] = {}
    domain: str | None = None  # constant domain when the files have no domain column
    timestamp_unit: Literal["s", "ms"] = "s"


class NineRecSource(StrictModel):
    """NineRec (Bilibili) downstream files <dataset>_pair.csv / <dataset>_item.csv (data/sources/ninerec.py)."""

    kind: Literal["ninerec"]
    path: str
    dataset: str = "Bili_Movie"
    domain: str | None = None  # default: the dataset's name
    language: Literal["en", "zh"] = "en"  # which title the items get
    items_file: str | None = None  # default: <dataset>_item.csv
    timestamp_unit: Literal["s", "ms"] = "s"


class SyntheticSource(StrictModel):
    """A seeded multi-domain corpus with planted cross-domain preferences (see data/synth.py)."""

    kind: Literal["synthetic"]
    domains: list[str] = Field(default=["Books", "Movies", "Music", "Games", "Toys"], min_length=1)
    users: int = Field(default=2000, ge=1)
    items_per_domain: int = Field(default=200, ge=2)
    topics: int = Field(default=8, ge=1)
    mean_interactions: float = Field(default=20.0, gt=0)
    # shared: a topic's title words are the same in every domain; per_domain: every domain names
    # its topics with its own words, so only mixed-domain sequences link them (LLM-Rec Fig. 4)
    vocabulary: Literal["shared", "per_domain"] = "shared"
    seed: int = 0
    users_per_task: int = Field(default=50_000, ge=1)


Source = Annotated[
    Union[
        Amazon2018Source,
        Amazon2014Source,
        Amazon2023Source,
        MovieLensSource,
        RecBoleSource,
        TableSource,
        NineRecSource,
        SyntheticSource,
    ],
    Field(discriminator="kind"),
]


# --- stages ---------------------------------------------------------------------------------
class TitlesConfig(StrictModel):
    # drop: items without a usable title are removed (reason recorded);
    # placeholder: they stay with `placeholder` as title (LLM-Rec's code keeps "None").
    on_missing: Literal["drop", "placeholder"] = "drop"
    placeholder: str = "None"


class KCoreConfig(StrictModel):
    """Iterative k-core until a fixed point. 0 disables a side."""

    user: int = Field(default=5, ge=0)
    item: int = Field(default=5, ge=0)
    # mixed: counts over all domains together (LLM-Rec, CPRec); per_domain: within each domain
    scope: Literal["mixed", "per_domain"] = "mixed"


class SequencesConfig(StrictModel):
    # which sequences to build: one mixed (all-domain) sequence per user, one per (user, domain),
    # or both (CPRec's domain-specific + mixed corpus)
    scope: Literal["mixed", "per_domain", "both"] = "mixed"
    one_per_day: bool = False  # X-Cross: one seeded random interaction per calendar day (UTC)
    # opt-in: drop a row whose ITEM equals the previous kept row's. Not LLM-Rec's rule: its code
    # removes consecutive identical interactions (item, rating, domain, time all equal), which
    # after `dedupe` removes nothing, so the LLM-Rec presets leave this off (spec §1.2 step 4)
    drop_consecutive_repeats: bool = False
    # same-timestamp rows are ordered by these columns, then by the unlisted ones (so the order
    # is total); LLM-Rec's code sorts by (timestamp, item, rating): [item, rating]
    tie_order: list[Literal["domain", "item", "rating"]] = ["domain", "item", "rating"]
    min_length: int = Field(default=0, ge=0)  # sequences shorter than this are dropped
    max_length: int | None = Field(default=None, ge=1)  # keep only the most recent items
    user_ratio: float = Field(default=1.0, gt=0, le=1)  # seeded user subsampling

    @model_validator(mode="after")
    def _tie_order_distinct(self):
        if len(set(self.tie_order)) != len(self.tie_order):
            raise ValueError(f"tie_order must not repeat a column, got {self.tie_order}")
        return self

    def sort_keys(self) -> list[str]:
        """Rule 2's order inside a sequence: timestamp, the `tie_order` columns, then the rest."""
        rest = [c for c in ("domain", "item", "rating") if c not in self.tie_order]
        return ["timestamp", *self.tie_order, *rest]


class SplitConfig(StrictModel):
    # leave_one_out: last -> test, second to last -> valid, earlier prefixes -> train;
    # user: users split train/valid/test by `ratios`, one example per sequence (its last item)
    method: Literal["leave_one_out", "user"] = "leave_one_out"
    ratios: tuple[float, float, float] = (3.0, 1.0, 1.0)
    max_history: int = Field(default=10, ge=1)  # history window fed to models
    min_history: int = Field(default=1, ge=1)  # training examples need at least this much history
    train_examples: Literal["prefixes", "last"] = "prefixes"
    cold_start: bool = False  # MoLoRec: keep only test targets never seen in train/valid
    target_domains: list[str] | None = None  # keep only examples whose target is in these domains

    @model_validator(mode="after")
    def _ratios_positive(self):
        if any(r < 0 for r in self.ratios) or sum(self.ratios) <= 0:
            raise ValueError(f"ratios must be non-negative with a positive sum, got {self.ratios}")
        return self


class CandidatesConfig(StrictModel):
    count: int = Field(default=1000, ge=0)  # negatives stored with each valid/test example
    train_negatives: int = Field(default=10, ge=0)  # negatives stored with each train example
    strategy: Literal["uniform", "popularity"] = "uniform"
    pool: Literal["target_domain", "all"] = "target_domain"
    # none: LLM-Rec's code samples without excluding anything; history: not the user's items;
    # history_and_target: neither the user's items nor the target
    exclude: Literal["none", "history", "history_and_target"] = "history_and_target"


class RenderConfig(StrictModel):
    families: list[Literal["llmrec", "xcross", "molorec", "cprec", "llara"]] = []
    title_words: int | None = Field(default=None, ge=1)  # X-Cross cuts titles to 8 words
    templates: str | None = None  # a YAML file overriding the packaged templates


class PrepareConfig(StrictModel):
    name: str = "dataset"
    seed: int = 42
    sources: list[Source] = Field(min_length=1)
    titles: TitlesConfig = TitlesConfig()
    dedupe: bool = True
    kcore: KCoreConfig = KCoreConfig()
    sequences: SequencesConfig = SequencesConfig()
    split: SplitConfig = SplitConfig()
    candidates: CandidatesConfig = CandidatesConfig()
    render: RenderConfig = RenderConfig()
    num_partitions: int | None = Field(default=None, ge=1)  # user buckets (tasks, part files); unset: one per 100k interactions read
    strict: bool = False  # the first malformed input line is an error naming file:line

    @classmethod
    def resolve_file_paths(cls, data: dict[str, Any], base_dir: str | Path) -> dict[str, Any]:
        """Hook of recplat.config.load_config: see `resolve_paths`."""
        return resolve_paths(data, base_dir)


# Keys holding file or folder paths, per source kind.
SOURCE_PATH_KEYS = {
    "amazon2018": ("path",),
    "amazon2014": ("path",),
    "amazon2023": ("path",),
    "movielens": ("path",),
    "recbole": ("path",),
    "table": ("interactions", "items"),
    "ninerec": ("path",),
}


def resolve_paths(data: dict[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """A copy of raw prepare-config data whose relative paths are joined onto `base_dir` (made
    absolute); `~` is the home folder; absolute paths and non-strings are left alone."""
    base = Path(base_dir).resolve()

    def join(value):
        if not isinstance(value, str) or not value:
            return value
        value = os.path.expanduser(value)
        return value if os.path.isabs(value) else os.path.normpath(base / value)

    out = dict(data)
    if isinstance(data.get("sources"), list):
        out["sources"] = []
        for source in data["sources"]:
            if isinstance(source, dict):
                source = dict(source)
                for key in SOURCE_PATH_KEYS.get(source.get("kind"), ()):
                    if key in source:
                        source[key] = join(source[key])
            out["sources"].append(source)
    if isinstance(data.get("render"), dict) and "templates" in data["render"]:
        out["render"] = {**data["render"], "templates": join(data["render"]["templates"])}
    return out
