"""LLM-Rec's claims on the planted synthetic corpus (data/synth.py), with the LLM-Rec LoRA MiniLM recipe:

1. Fig. 4's direction: trained on the mixed (all-domain) sequences it beats the same model trained
   on per-domain sequences, on the same mixed test examples of cross-domain histories (`heavy`:
   two 480-step fits, ~10 min each on the 2-core machine);
2. the fault drill: a run that fails mid-way and resumes from its last checkpoint ends with the
   uninterrupted run's validation history, best weights and test ranks, bit for bit (`heavy` too:
   2.6 min; the spine's own drill, tests/train/test_fit.py, is in the default run).

Each claim prepares one dataset with both kinds of sequences (`sequences.scope: both`); the drill's
uninterrupted reference is its own short mixed fit (12 steps, as is the drill).
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
# the drill: 12 steps of 2 x 8 rows; validation every 4 steps (one checkpoint each), on 30% of the valid users
TRAIN = dict(num_workers=2, micro_batch_size=8, lr=1e-3, max_steps=12, eval_every=4, metric="recall@10",
             mode="max", shuffle_buffer=64, seed=5)
FAIL_AT, RESUMES_FROM = 10, 8  # the drill fails after step 10 and resumes from the step-8 checkpoint
# Fig. 4: 480 steps of 1 x 16 rows (the 40-step fits above do not learn the cross-domain link, below)
FIG4_TRAIN = dict(TRAIN, num_workers=1, micro_batch_size=16, max_steps=480, eval_every=120)
FIG4_HISTORY = 2  # items of history: with 10, only 8 of 358 test histories lack the target's domain
# Two standard errors of the paired recall@10 difference on the ~285 cross-domain examples (SE
# ~0.025 measured): a smaller gap is not told apart from seed noise.
MARGIN = 0.05


def _prepare(tmp_path_factory, users: int, max_history: int) -> Path:
    """`users` over 3 domains, 4 planted topics named with different words in every domain (only
    mixed sequences link them); every user's mixed sequence and one sequence per (user, domain); 30
    stored test candidates and 5 train negatives from the target's domain."""
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare

    out = tmp_path_factory.mktemp("llmrec_claims") / "data"
    cfg = PrepareConfig.model_validate({
        "name": "synth-mixed-and-per-domain", "seed": 1,
        "sources": [{"kind": "synthetic", "domains": ["Books", "Movies", "Music"], "users": users,
                     "items_per_domain": 60, "topics": 4, "mean_interactions": 16, "seed": 3,
                     "vocabulary": "per_domain"}],
        "kcore": {"user": 5, "item": 3},
        "sequences": {"scope": "both"},
        "split": {"max_history": max_history},
        "candidates": {"count": 30, "train_negatives": 5, "pool": CANDIDATE_POOL},
        "num_partitions": 2,
    })
    prepare(cfg, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def drill_dataset(ray_local, tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory, users=150, max_history=10)


def _config(dataset: Path, train_scope: str, out: Path, name: str, max_history: int = 10, **train):
    """The LLM-Rec LoRA MiniLM run of both claims; only the training sequences, the history window,
    the training length (and the drill's fault injection) vary. Tested on the mixed sequences' test
    examples (`eval.scope` mixed)."""
    from recplat.recipes import llmrec
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.train.config import TrainConfig

    return llmrec.Config(
        data=RankingData(dataset=str(dataset), negatives=5, train_scope=train_scope),
        model=llmrec.ModelSettings(max_history=max_history),
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
def mixed_run(drill_dataset, runs_dir) -> dict:
    return _run(drill_dataset, "mixed", runs_dir, "mixed")


# Measured (session 6, cross-domain = Mix + Diff, 285 paired test examples, 30 candidates: random
# recall@10 is 1/3): mixed 0.653 vs per_domain 0.593 (p 0.015); Diff alone (114) 0.509 vs 0.421;
# Same (441) 0.805 vs 0.823, where the per-domain model is at home. Why the setup is what it is:
# with a topic's words shared by every domain (synth.py's default) per-domain sequences already
# teach "history words -> target words", which transfers to mixed histories unchanged (mixed vs
# per_domain 0.784 vs 0.755, p 0.16, sessions 3-4); with per-domain words and 10 history items the
# cross-domain histories nearly all hold target-domain items the per-domain model reads too (0.677
# vs 0.662, p 0.51 at 40 steps); with 2 history items, 120 steps were still too few (0.589 vs 0.551,
# p 0.10): the mixed model learns the cross-vocabulary link slowly (its best step was 240 of 480).
@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_mixed_training_beats_per_domain_training_on_cross_domain_histories(ray_local, tmp_path_factory):
    from recplat.eval.metrics import parse_metric
    from recplat.eval.significance import paired_t_test

    dataset = _prepare(tmp_path_factory, users=800, max_history=FIG4_HISTORY)
    out = tmp_path_factory.mktemp("llmrec_fig4_runs")
    summaries = {scope: _run(dataset, scope, out, scope, max_history=FIG4_HISTORY, **FIG4_TRAIN)
                 for scope in ("mixed", "per_domain")}  # fmt: skip
    assert summaries["mixed"].test_examples == summaries["per_domain"].test_examples
    mixed, single = _ranks(out, "mixed"), _ranks(out, "per_domain")
    keys = ["user", "scope", "position"]
    assert mixed[keys].equals(single[keys])  # the same test examples, in the same order
    cross = mixed["same_mix_diff"].isin(CROSS_DOMAIN).to_numpy()
    assert cross.sum() > 250
    recall = parse_metric("recall@10").per_example
    ours, theirs = recall(mixed["rank"].to_numpy()[cross]), recall(single["rank"].to_numpy()[cross])
    test = paired_t_test(ours, theirs)
    print(f"\nrecall@10 on {cross.sum()} cross-domain test examples: mixed {ours.mean():.4f}, "
          f"per_domain {theirs.mean():.4f} (paired t {test.t:.2f}, p {test.p:.2g}); overall: "
          f"mixed {summaries['mixed']['overall']}, per_domain {summaries['per_domain']['overall']}")
    assert ours.mean() > theirs.mean() + MARGIN
    assert test.p < 0.05


@pytest.mark.heavy  # 2.6 min; the same resume mechanism is in the default run (tests/train/test_fit.py)
@pytest.mark.timeout(1200)
def test_fault_drill_resumes_to_the_uninterrupted_result(drill_dataset, runs_dir, mixed_run):
    drill = _run(drill_dataset, "mixed", runs_dir, "drill", fail_at_step=FAIL_AT, max_failures=1)
    assert (runs_dir / "checkpoints" / "drill" / f".recplat_failed_at_step_{FAIL_AT}").exists()  # it failed once
    assert drill.train["resumed_from"] == RESUMES_FROM and mixed_run.train["resumed_from"] is None
    # Exact equality: the resumed workers restore weights, optimizer, schedule, every rank's RNG
    # (LoRA and MiniLM dropout) and the position in the data, and run the same float operations.
    assert drill.train["history"] == mixed_run.train["history"]
    assert drill.train["best_step"] == mixed_run.train["best_step"]
    assert drill.overall == mixed_run.overall
    assert np.array_equal(_ranks(runs_dir, "drill")["rank"], _ranks(runs_dir, "mixed")["rank"])
    ours = load_file(str(Path(drill.best_checkpoint) / "model.safetensors"))
    reference = load_file(str(Path(mixed_run.best_checkpoint) / "model.safetensors"))
    assert ours.keys() == reference.keys() and ours
    for name in ours:
        assert torch.equal(ours[name], reference[name]), name
