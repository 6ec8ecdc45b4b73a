"""One module per method: setup -> train (Ray Train) -> evaluate -> write results.

    llmrec.py       LLM-Rec: one text encoder for users and items (spec §1)
    id_baseline.py  SASRec / GRU4Rec on the same stored examples and candidates
    popularity.py   most-popular: the floor every model must clear
    xcross.py       X-Cross: per-domain LoRA experts integrated layer by layer (spec §2)
    ranking_task.py what the ranking recipes share (arrays, Task base, checkpoint evaluation)

Every recipe module exposes `Config` (a typed model) and `run(config) -> dict` (the run summary).
"""

RECIPES = {
    "llmrec": "recplat.recipes.llmrec",
    "sasrec": "recplat.recipes.id_baseline",
    "gru4rec": "recplat.recipes.id_baseline",
    "popularity": "recplat.recipes.popularity",
    "xcross": "recplat.recipes.xcross",
}


def recipe_module(name: str):
    import importlib

    from recplat.errors import ConfigError

    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; built: {', '.join(sorted(RECIPES))}")
    return importlib.import_module(RECIPES[name])
