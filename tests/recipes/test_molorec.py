"""The MoLoRec recipe (spec §3): configuration checks, stage-2 data selection, and one slow run of
both stages and the entropy-chosen mixture on a tiny synthetic dataset with a TINY random Llama
("architecture only": real Ray Train, peft, generation and scoring; the numbers mean nothing)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recplat.config import validate
from recplat.errors import ConfigError
from recplat.recipes import molorec


def test_stages_that_mix_or_reuse_need_general_from():
    for stage in ("mixture", "general_only", "second_finetune"):
        with pytest.raises(ConfigError, match=f"stage: {stage} needs general_from"):
            validate(molorec.Config, {"data": {"dataset": "d"}, "stage": stage})
    for stage in ("general", "specific_only", "tallrec"):
        assert validate(molorec.Config, {"data": {"dataset": "d"}, "stage": stage}).stage == stage
    with pytest.raises(ConfigError, match="mixture.fixed"):
        validate(molorec.Config, {"data": {"dataset": "d"}, "stage": "general", "mixture": {"fixed": [0.5]}})


def _rows(n: int, tag: str) -> pa.Table:
    return pa.table({"prompt": [f"{tag}{i}" for i in range(n)], "answer": ["a"] * n})


def test_stage_two_rows_are_valid_prompts_plus_random_train_prompts_and_few_shot_fractions():
    cfg = validate(molorec.Config, {"data": {"dataset": "d"}, "stage": "tallrec",
                                    "specific": {"train_prompts": 30, "include_valid_prompts": True}})  # fmt: skip
    train, valid = _rows(100, "t"), _rows(10, "v")
    rows = molorec.target_training_rows(cfg, train, valid)
    prompts = rows.column("prompt").to_pylist()
    assert len(prompts) == 40 and len(set(prompts)) == 40
    assert sum(p.startswith("v") for p in prompts) == 10
    assert prompts == molorec.target_training_rows(cfg, train, valid).column("prompt").to_pylist()  # seeded
    few = cfg.model_copy(update={"specific": cfg.specific.model_copy(update={"train_fraction": 0.1})})
    assert molorec.target_training_rows(few, train, valid).num_rows == 4
    no_valid = cfg.model_copy(update={"specific": cfg.specific.model_copy(update={"include_valid_prompts": False})})
    assert not any(p.startswith("v") for p in molorec.target_training_rows(no_valid, train, valid).column("prompt").to_pylist())


def test_load_split_joins_titles_in_key_order(molorec_dataset):
    from recplat.data.dataset import PreparedDataset

    prepared = PreparedDataset.open(molorec_dataset)
    test = molorec.load_split(prepared, "test", ["Beauty"])
    assert test.num_rows > 0 and set(test.column("target_domain").to_pylist()) == {"Beauty"}
    for row in test.slice(0, 5).to_pylist():
        assert len(row["candidate_titles"]) == 30 and row["target_title"] in row["candidate_titles"]
        assert row["answer"].split("||")[0] == row["target_title"]  # the label starts with the target
        assert "||".join(row["candidate_titles"]) in row["prompt"]


# heavy: minutes of training per trial/stage on 2 cores; not yet passed on a quiet machine
@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_general_then_entropy_mixture_runs_and_reports_against_g_and_s(molorec_dataset, tmp_path):
    from peft import PeftModel

    from recplat.runs import RunSummary
    from tests.models.causal_lms import tiny_llama_dir

    model_dir = tiny_llama_dir(tmp_path / "tiny", answers_text=True)  # Eq. 10 needs title tokens
    common = {"model": {"name": str(model_dir), "max_length": 512},
              "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
              "train": {"num_workers": 1, "micro_batch_size": 2, "max_steps": 2, "eval_every": 2, "lr": 1e-3,
                        "metric": "val_loss", "mode": "min"},
              "eval": {"max_new_tokens": 6, "valid_size": 4, "test_size": 6, "batch_size": 3}}  # fmt: skip
    general = validate(molorec.Config, {**common, "stage": "general", "out": str(tmp_path / "general"),
                                        "data": {"dataset": str(molorec_dataset), "domains": ["Toys"]}})  # fmt: skip
    summary = molorec.run(general)
    assert (tmp_path / "general" / "adapter" / "adapter_config.json").is_file()
    assert summary.train["step"] == 2 and summary.model_extra["train_prompts"] > 0

    mixed = validate(molorec.Config, {
        **common, "stage": "mixture", "out": str(tmp_path / "mixture"),
        "data": {"dataset": str(molorec_dataset), "domains": ["Beauty"]},
        "general_from": {"run_dir": str(tmp_path / "general")},
        "specific": {"train_prompts": 20},
        "mixture": {"coefficients": "entropy", "lr_grid": [0.5, 2.0], "tta_prompts": 3, "batch_tokens": 4,
                    "grad_accum": 2, "max_new_tokens": 6},
    })  # fmt: skip
    summary = molorec.run(mixed)
    assert summary == RunSummary.read(tmp_path / "mixture")
    mix = summary.model_extra["mixture"]
    assert mix["lr"] in (0.5, 2.0) and set(mix["valid_ndcg@1_by_lr"]) == {"0.5", "2"}
    assert mix["tokens"] > 0 and mix["optimizer_steps"] > 0
    assert sum(mix["mean_weights"]) == pytest.approx(1.0) and mix["mean_weights"] != [0.5, 0.5]
    assert summary.test_examples == 6 and set(summary.model_extra["baselines"]) == {"molorec_g", "molorec_s"}
    against = {(t["against"], t["metric"]) for t in summary.significance}
    assert against == {(b, m) for b in ("molorec_g", "molorec_s") for m in mixed.eval.metrics}
    for sub in ("test", "test_molorec_g", "test_molorec_s"):
        assert (tmp_path / "mixture" / sub / "ranks.parquet").is_file(), sub
    weights = json.loads((tmp_path / "mixture" / "mixture_weights.json").read_text())
    assert len(weights["per_module"]) == 2 * 2  # q, v in 2 layers
    # the merged model is an ordinary peft adapter of rank r_g + r_s
    merged = tmp_path / "mixture" / "merged_adapter"
    assert json.loads((merged / "adapter_config.json").read_text())["r"] == 4
    PeftModel.from_pretrained(tiny_llama(), str(merged))
    assert not (tmp_path / "mixture" / "mixture_scratch").exists()
    assert np.isfinite(summary.overall["ndcg@1"])


# --- heavy: the paper's claim on the planted corpus, SmolLM2 on CPU ----------------------------
PLANTED_METRIC = "ndcg@3"  # graded (first three places), less all-or-nothing than ndcg@1 at this scale


def _paired_margin(ranks_a, ranks_b, metric: str) -> float:
    """Two standard errors of the paired per-example difference (seed noise at this size)."""
    from recplat.eval.metrics import parse_metric

    spec = parse_metric(metric)
    diff = spec.per_example(np.asarray(ranks_a)) - spec.per_example(np.asarray(ranks_b))
    return float(2 * diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


@pytest.mark.heavy
@pytest.mark.timeout(5400)
def test_on_the_planted_corpus_the_entropy_mixture_is_as_good_as_g_s_and_a_half_half_mix(ray_local, tmp_path):
    """Spec §3 on the planted synthetic corpus (topics shared by every domain, data/synth.py), at
    smoke scale on CPU with SmolLM2-135M: Θ_g on three source domains, Θ_s on the target, then the
    entropy-chosen mixture. On the same test prompts its NDCG@3 is at least the better of MoLoRec-G
    and MoLoRec-S and at least a fixed 0.5/0.5 mix, each within two standard errors of the paired
    difference. Passed 2026-12-01 in 28 min alone (NDCG@3: G 0.094, S 0.136, 0.5/0.5 0.136, entropy
    mixture 0.136 with w_g 0.40; docs/papers.md, MoLoRec "on the planted corpus")."""
    from recplat.config import load_preset, set_dotted
    from recplat.data.config import PrepareConfig
    from recplat.runs import prepared_dataset

    def prepare(name, domains):
        keys = {"name": name, "num_partitions": 2, "sources": [
            {"kind": "synthetic", "domains": domains, "users": 240, "items_per_domain": 60, "topics": 4,
             "mean_interactions": 12, "seed": 0}]}  # fmt: skip
        cfg = validate(PrepareConfig, set_dotted(load_preset("molorec_beauty"), keys))
        return str(prepared_dataset(cfg, tmp_path / name / "data"))

    common = {"model": {"name": "offline:smollm2", "max_length": 768},
              "lora": {"rank": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
              "train": {"num_workers": 1, "micro_batch_size": 2, "optimizer": "adamw", "lr": 1e-3, "schedule": "cosine",
                        "warmup_ratio": 0.05, "max_steps": 24, "eval_every": 12, "metric": "val_loss", "mode": "min"},
              "eval": {"metrics": ["ndcg@1", PLANTED_METRIC, "hit@3"], "max_new_tokens": 40, "valid_size": 8,
                       "test_size": 24, "batch_size": 8}}  # fmt: skip
    general = validate(molorec.Config, {**common, "stage": "general", "out": str(tmp_path / "general"),
                                        "data": {"dataset": prepare("sources", ["Clothing", "Grocery", "Pet"])}})
    molorec.run(general)
    target = prepare("target", ["Beauty"])
    mixed = validate(molorec.Config, {
        **common, "stage": "mixture", "out": str(tmp_path / "mixture"), "data": {"dataset": target},
        "general_from": {"run_dir": str(tmp_path / "general")}, "specific": {"train_prompts": 200},
        "mixture": {"coefficients": "entropy", "lr_grid": [0.3, 1.0], "tta_prompts": 8, "first_tokens": 3,
                    "batch_tokens": 8, "grad_accum": 2, "max_new_tokens": 40}})  # fmt: skip
    summary = molorec.run(mixed)

    # the fixed 0.5/0.5 mix of the same two adapters, on the same test prompts
    from recplat.data.dataset import PreparedDataset

    test = molorec.load_split(PreparedDataset.open(target), "test", None)
    test = test.take(np.sort(molorec.seeded_rows(test.num_rows, mixed.eval.test_size, mixed.eval.seed)))
    ctx = molorec.MixtureContext(mixed, tmp_path / "general" / "adapter", tmp_path / "mixture" / "adapter")
    ctx.mixture.set_weights((0.5, 0.5))
    half = molorec.evaluate_adapter(mixed, test, ctx.export(tmp_path / "half_half"), tmp_path / "test_half_half")

    ranks = {"molorec": "test", "molorec_g": "test_molorec_g", "molorec_s": "test_molorec_s"}
    ranks = {m: pq.read_table(tmp_path / "mixture" / sub / "ranks.parquet").column("rank").to_numpy()
             for m, sub in ranks.items()}
    ranks["half_half"] = half.per_example.column("rank").to_numpy()
    scores = {**{m: v[PLANTED_METRIC] for m, v in summary.model_extra["baselines"].items()},
              "molorec": summary.overall[PLANTED_METRIC], "half_half": half.overall[PLANTED_METRIC]}
    print(f"\nplanted corpus, {summary.test_examples} test prompts, {PLANTED_METRIC}: "
          + ", ".join(f"{m} {v:.4f}" for m, v in scores.items())
          + f"; mean weights {summary.model_extra['mixture']['mean_weights']}, lr {summary.model_extra['mixture']['lr']}")
    better = max(("molorec_g", "molorec_s"), key=scores.get)
    for other in (better, "half_half"):
        margin = _paired_margin(ranks["molorec"], ranks[other], PLANTED_METRIC)
        assert scores["molorec"] >= scores[other] - margin, (other, scores, margin)
