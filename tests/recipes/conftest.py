"""Prepared datasets shared by the recipe tests (prepared once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(ray_local, tmp_path_factory):
    """Two synthetic domains with the X-Cross preprocessing (per-domain sequences, user split, 29
    popularity-sampled negatives, the multiple-choice rendering): every recipe reads it
    (tests/recipes/test_every_recipe.py)."""
    from recplat.config import load_preset, set_dotted, validate
    from recplat.data.config import PrepareConfig
    from recplat.runs import prepared_dataset

    data = set_dotted(load_preset("xcross_tools"), {
        "name": "every_recipe", "num_partitions": 2,
        "sources": [{"kind": "synthetic", "domains": ["Books", "Movies"], "users": 150, "items_per_domain": 60,
                     "topics": 4, "mean_interactions": 14, "seed": 0}],
    })  # fmt: skip  60 items: 29 negatives outside a 15-item history always exist (equal-width questions)
    return prepared_dataset(validate(PrepareConfig, data), tmp_path_factory.mktemp("every_recipe") / "data")
