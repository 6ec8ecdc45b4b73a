"""Prepared datasets and the tiny causal LM shared by the recipe tests (made once per session)."""

from __future__ import annotations

import pytest


def _prepare(tmp_path_factory, preset: str, name: str, keys: dict):
    """`preset` with `keys` set (dotted), prepared once under a fresh session folder."""
    from recplat.config import load_preset, set_dotted, validate
    from recplat.data.config import PrepareConfig
    from recplat.runs import prepared_dataset

    data = set_dotted(load_preset(preset), {"name": name, "num_partitions": 2, **keys})
    return prepared_dataset(validate(PrepareConfig, data), tmp_path_factory.mktemp(name) / "data")


def _synthetic(domains: list[str], users: int, items: int, interactions: int) -> dict:
    return {"sources": [{"kind": "synthetic", "domains": domains, "users": users, "items_per_domain": items,
                         "topics": 4, "mean_interactions": interactions, "seed": 0}]}  # fmt: skip


@pytest.fixture(scope="session")
def tiny_dataset(ray_local, tmp_path_factory):
    """Two synthetic domains with the X-Cross preprocessing (per-domain sequences, user split,
    popularity-sampled negatives, the multiple-choice rendering): every ranking and X-Cross recipe
    reads it (tests/recipes/test_every_recipe.py). 9 negatives, not the preset's 29: X-Cross scores
    every (history, choice) pair, so its runs here cost a third. 60 items: the negatives outside a
    15-item history always exist (equal-width questions)."""
    keys = {"candidates.count": 9, "candidates.train_negatives": 9, **_synthetic(["Books", "Movies"], 150, 60, 14)}
    return _prepare(tmp_path_factory, "xcross_tools", "every_recipe", keys)


@pytest.fixture(scope="session")
def molorec_dataset(ray_local, tmp_path_factory):
    """Two synthetic domains with the MoLoRec preprocessing (leave-one-out, 29 uniform negatives,
    the molorec instruction rendering). 80 items per domain, so every user's target domain still
    has 29 items outside the history to draw (with 40 some examples stored only 28)."""
    return _prepare(tmp_path_factory, "molorec_beauty", "molorec_test", _synthetic(["Beauty", "Toys"], 40, 80, 8))


@pytest.fixture(scope="session")
def cprec_dataset(ray_local, tmp_path_factory):
    """Two synthetic domains with the CPRec corpus preprocessing (domain-specific + mixed sequences,
    19 same-domain negatives, the cprec rendering)."""
    return _prepare(tmp_path_factory, "cprec_cpt", "cprec_test", _synthetic(["Games", "Music"], 40, 60, 8))


@pytest.fixture(scope="session")
def llara_dataset(ray_local, tmp_path_factory):
    """One synthetic domain, CPRec's downstream preprocessing (3-core, history 3..10, 19 negatives,
    the llara rendering, per-domain sequences)."""
    keys = {"sequences.scope": "per_domain", "render.families": ["llara"], **_synthetic(["Games"], 40, 60, 8)}
    return _prepare(tmp_path_factory, "cprec_cpt", "llara_test", keys)


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory) -> str:
    """tests/models/backbones.py's tiny random BERT with MiniLM's tokenizer: the `model.name` of the
    LLM-Rec and X-Cross runs in tests/recipes/test_every_recipe.py."""
    from tests.models.backbones import tiny_bert_dir

    return tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory) -> str:
    """tests/models/causal_lms.py's tiny random Llama and SmolLM2's tokenizer saved as an ordinary HF
    folder: a `model.name` for the causal-LM recipe tests."""
    from tests.models.causal_lms import tiny_llama_dir

    return tiny_llama_dir(tmp_path_factory.mktemp("tiny_llama"))
