"""LLM-Rec's claims on the planted synthetic corpus (data/synth.py), with the LLM-Rec LoRA MiniLM recipe:

1. Fig. 4's direction: trained on the mixed (all-domain) sequences it beats the same model trained
   on per-domain sequences, on the same mixed test examples of cross-domain histories (NOT
   reproduced on this corpus: an expected failure, `heavy`, with the measurements and the reason);
2. the fault drill: a run that fails mid-way and resumes from its last checkpoint ends with the
   uninterrupted run's validation history, best weights and test ranks, bit for bit.

One prepared dataset with both kinds of sequences (`sequences.scope: both`) serves every run; the
mixed run is claim 1's left side and claim 2's reference. Fits of ~3-5 min each on the loaded
2-core machine: two in the default run (reference, drill), one more with `-m heavy`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

METRICS = ["recall@1", "recall@10", "ndcg@10"]
CROSS_DOMAIN = ("mix", "diff")  # Same/Mix/Diff labels of histories holding another domain's items
CANDIDATE_POOL = "target_domain"  # LLM-Rec's protocol: negatives from the target's domain (spec §1.6-1.7)
# 40 steps of 2 x 8 rows; validation every 10 steps (one checkpoint each), on 30% of the valid users
TRAIN = dict(num_workers=2, micro_batch_size=8, lr=1e-3, max_steps=40, eval_every=10, metric="recall@10",
             mode="max", shuffle_buffer=64, seed=5)
FAIL_AT, RESUMES_FROM = 25, 20  # the drill fails after step 25 and resumes from the step-20 checkpoint
# Two standard errors of the paired recall@10 difference measured on these ~200 cross-domain
# examples (SE ~0.021): a smaller gap is not told apart from seed noise.
MARGIN = 0.05


@pytest.fixture(scope="module")
def mixed_and_per_domain_dataset(ray_local, tmp_path_factory):
    """400 users over 3 domains, 4 planted topics named with different words in every domain (only
    mixed sequences link them); every user's mixed sequence and one sequence per (user, domain); 30
    stored test candidates and 5 train negatives from the target's domain."""
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare

    out = tmp_path_factory.mktemp("llmrec_claims") / "data"
    cfg = PrepareConfig.model_validate({
        "name": "synth-mixed-and-per-domain", "seed": 1,
        "sources": [{"kind": "synthetic", "domains": ["Books", "Movies", "Music"], "users": 400,
                     "items_per_domain": 60, "topics": 4, "mean_interactions": 16, "seed": 3,
                     "vocabulary": "per_domain"}],
        "kcore": {"user": 5, "item": 3},
        "sequences": {"scope": "both"},
        "candidates": {"count": 30, "train_negatives": 5, "pool": CANDIDATE_POOL},
        "num_partitions": 2,
    })
    prepare(cfg, out, show_progress=False)
    return out


def _config(dataset: Path, train_scope: str, out: Path, name: str, **train):
    """The LLM-Rec LoRA MiniLM run of both claims; only the training sequences (and the drill's
    fault injection) vary. Tested on the mixed sequences' test examples (`eval.scope` mixed)."""
    from recplat.recipes import llmrec
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.train.config import TrainConfig

    return llmrec.Config(
        data=RankingData(dataset=str(dataset), negatives=5, train_scope=train_scope),
        eval=RankingEvalConfig(metrics=METRICS, valid_ratio=0.3, scope="mixed"),
        finetune=llmrec.Finetune(method="lora", rank=8, alpha=16, dropout=0.1),
        train=TrainConfig(**{**TRAIN, **train}, storage_path=str(out / "checkpoints"), name=name),
        out=str(out / name),
    )


def _run(dataset: Path, train_scope: str, out: Path, name: str, **train) -> dict:
    from recplat.recipes import llmrec

    return llmrec.run(_config(dataset, train_scope, out, name, **train))


def _ranks(out: Path, name: str):
    return pq.read_table(out / name / "test" / "ranks.parquet").to_pandas()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llmrec_claims_runs")


@pytest.fixture(scope="module")
def mixed_run(mixed_and_per_domain_dataset, runs_dir) -> dict:
    return _run(mixed_and_per_domain_dataset, "mixed", runs_dir, "mixed")


# Not reproduced on this corpus, measured (cross-domain recall@10, mixed vs per_domain, 204 paired
# examples): this test's settings 0.784 vs 0.755 (p 0.16); without the shuffle and dropout 0.691 vs
# 0.686; full fine-tuning 60 steps 0.755 vs 0.775; LoRA with
# candidates from every domain 0.701 vs 0.676 (p 0.25), the same with a 2-item history 0.521 vs
# 0.535; and the fig4_data_mix smoke profile (full FT, 10 steps) 0.760 (spiao) vs 0.842 (s2piao)
# overall. Why: the planted cross-domain signal is the user's topic, and a topic's title words are
# the same in every domain (synth.py), so per-domain sequences already teach "history words ->
# target words", which transfers to mixed histories unchanged. Hence this corpus now names the topics
# with different words in every domain (`vocabulary: per_domain`): still not reproduced, 0.677 vs
# 0.662 (p 0.51; overall 0.723 vs 0.707, session 4). Most cross-domain histories also hold items of
# the target's own domain (Mix), which the per-domain model reads as well, and 40 LoRA steps do not
# teach the mixed model the cross-vocabulary link; more steps, or Diff histories only, are next.
@pytest.mark.heavy
@pytest.mark.xfail(reason="no cross-domain signal that only mixed sequences carry in the planted corpus", strict=False)
@pytest.mark.timeout(1200)
def test_mixed_training_beats_per_domain_training_on_cross_domain_histories(mixed_and_per_domain_dataset,
                                                                           runs_dir, mixed_run):  # fmt: skip
    from recplat.eval.metrics import parse_metric
    from recplat.eval.significance import paired_t_test

    per_domain = _run(mixed_and_per_domain_dataset, "per_domain", runs_dir, "per_domain")
    assert mixed_run["test_examples"] == per_domain["test_examples"]
    mixed, single = _ranks(runs_dir, "mixed"), _ranks(runs_dir, "per_domain")
    keys = ["user", "scope", "position"]
    assert mixed[keys].equals(single[keys])  # the same test examples, in the same order
    cross = mixed["same_mix_diff"].isin(CROSS_DOMAIN).to_numpy()
    recall = parse_metric("recall@10").per_example
    ours, theirs = recall(mixed["rank"].to_numpy()[cross]), recall(single["rank"].to_numpy()[cross])
    test = paired_t_test(ours, theirs)
    print(f"\nrecall@10 on {cross.sum()} cross-domain test examples: mixed {ours.mean():.4f}, "
          f"per_domain {theirs.mean():.4f} (paired t {test.t:.2f}, p {test.p:.2g}); overall: "
          f"mixed {mixed_run['overall']}, per_domain {per_domain['overall']}")
    assert ours.mean() > theirs.mean() + MARGIN


@pytest.mark.timeout(1200)
def test_fault_drill_resumes_to_the_uninterrupted_result(mixed_and_per_domain_dataset, runs_dir, mixed_run):
    drill = _run(mixed_and_per_domain_dataset, "mixed", runs_dir, "drill", fail_at_step=FAIL_AT, max_failures=1)
    assert (runs_dir / "checkpoints" / "drill" / f".recplat_failed_at_step_{FAIL_AT}").exists()  # it failed once
    assert drill["train"]["resumed_from"] == RESUMES_FROM and mixed_run["train"]["resumed_from"] is None
    # Exact equality: the resumed workers restore weights, optimizer, schedule, every rank's RNG
    # (LoRA and MiniLM dropout) and the position in the data, and run the same float operations.
    assert drill["train"]["history"] == mixed_run["train"]["history"]
    assert drill["train"]["best_step"] == mixed_run["train"]["best_step"]
    assert drill["overall"] == mixed_run["overall"]
    assert np.array_equal(_ranks(runs_dir, "drill")["rank"], _ranks(runs_dir, "mixed")["rank"])
    ours = load_file(str(Path(drill["best_checkpoint"]) / "model.safetensors"))
    reference = load_file(str(Path(mixed_run["best_checkpoint"]) / "model.safetensors"))
    assert ours.keys() == reference.keys() and ours
    for name in ours:
        assert torch.equal(ours[name], reference[name]), name
