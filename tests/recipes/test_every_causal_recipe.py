"""The causal-LM recipes (MoLoRec, LLaRA; CPRec's run is in test_cprec.py) through `execute_run` on a
TINY random Llama, each on its own preprocessing, and their first losses against the recorded ones
(with those of the SASRec LLaRA trains first, test_every_recipe.INLINE): the second half of
tests/recipes/test_every_recipe.py (which holds the recorded losses and the run helper), in its
own file so that `pytest -n 2` runs the two halves side by side."""

from __future__ import annotations

import pytest

from tests.recipes.test_every_recipe import _causal_lm_configs, _check_recorded, _run_all

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)
def test_every_causal_lm_recipe_runs_and_its_first_losses_are_the_recorded_ones(
    molorec_dataset, llara_dataset, tiny_llama_folder, tmp_path
):
    datasets = {"molorec": str(molorec_dataset), "llara": str(llara_dataset)}
    _check_recorded(_run_all(_causal_lm_configs(datasets, tiny_llama_folder), tmp_path))
