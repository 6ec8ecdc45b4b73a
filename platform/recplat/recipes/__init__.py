"""One module per method: setup -> train (Ray Train) -> evaluate -> write results.

    llmrec.py       LLM-Rec: one text encoder for users and items (spec §1)
    id_baseline.py  SASRec / GRU4Rec on the same stored examples and candidates
    popularity.py   most-popular: the floor every model must clear
    xcross.py       X-Cross: per-domain LoRA experts integrated layer by layer (spec §2)
    molorec.py      MoLoRec: a general and a specific LoRA mixed per module in weight space (spec §3)
    llara.py        LLaRA: hybrid prompts (projected SASRec items), curriculum, one-title answers (spec §4.1)
    cprec.py        CPRec: all-domain continual pre-training under WSA, then LLaRA (spec §4)
    ranking_task.py what the ranking recipes share (arrays, Task base, checkpoint evaluation)
    settings.py     config sections several recipes share (LoRA, backbone)

Every recipe module exposes `Config` (a typed model with `data.dataset` and `out`, and `train: a
TrainConfig` when it trains) and `run(config) -> recplat.runs.RunSummary`. What it reads from other
runs are Config fields of type `recplat.runs.RunRef`. Adding a recipe = its module + one line below;
`recplat run`, `recplat train` and the catalog need no other change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """A recipe name: the module that runs it and the config keys the name itself fixes (one module
    may serve several names: sasrec and gru4rec are id_baseline with `arch` set)."""

    module: str
    fixed: dict[str, Any] = field(default_factory=dict)


RECIPES = {
    "llmrec": Recipe("recplat.recipes.llmrec"),
    "sasrec": Recipe("recplat.recipes.id_baseline", {"arch": "sasrec"}),
    "gru4rec": Recipe("recplat.recipes.id_baseline", {"arch": "gru4rec"}),
    "popularity": Recipe("recplat.recipes.popularity"),
    "xcross": Recipe("recplat.recipes.xcross"),
    "molorec": Recipe("recplat.recipes.molorec"),
    "llara": Recipe("recplat.recipes.llara"),
    "cprec": Recipe("recplat.recipes.cprec"),
}


def recipe(name: str) -> Recipe:
    from recplat.errors import ConfigError

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; built: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def recipe_module(name: str):
    import importlib

    return importlib.import_module(recipe(name).module)
