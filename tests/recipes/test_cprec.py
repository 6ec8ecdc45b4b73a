"""CPRec's continual pre-training (spec §4.4-4.5): phase lengths from the row counts, the worker
layout of the phased corpus, the guidelines on hand-made rows, and one slow 2-worker run (a TINY
random Llama: real Ray Train, peft; the numbers mean nothing) that records which phase every
micro-batch of every rank came from and the LR of every update."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from recplat.config import validate
from recplat.data import behaviour_corpus as corpus
from recplat.data.schema import MIXED_SCOPE
from recplat.errors import ConfigError, DataError
from recplat.recipes import cprec
from tests.recipes.test_every_recipe import STEPS, _check_recorded


def test_phase_lengths_come_from_the_row_counts_and_the_effective_batch():
    plan = corpus.phase_plan(n_ds=1000, n_mix=300, batch=16, warmup_frac=0.05)
    # W = ceil(50/16), S = ceil(1000/16), A = S + ceil(300/16)
    assert (plan.warmup_end, plan.stable_end, plan.anneal_end) == (4, 63, 63 + 19)
    cfg = validate(cprec.Config, {"data": {"dataset": "d"}, "train": {"num_workers": 2, "micro_batch_size": 2,
                                                                       "grad_accum": 4}})  # fmt: skip
    plan, schedule = cprec.plan_cpt(cfg, 1000, 300, workers=2)  # B = 2 x 4 x 2
    assert (plan.warmup_end, plan.stable_end, plan.anneal_end, plan.batch) == (4, 63, 82, 16)
    assert schedule == {"schedule": "wsa", "phase_ends": (4, 63), "max_steps": 82}
    ends = cfg.model_copy(update={"cpt": cfg.cpt.model_copy(update={"warmup_end": 1, "stable_end": 3, "anneal_end": 5})})
    assert cprec.plan_cpt(ends, 1000, 300, workers=2)[1] == {"schedule": "wsa", "phase_ends": (1, 3), "max_steps": 5}


def test_fig4_ablation_modes_pick_data_and_schedule():
    def plan(data, schedule):
        cfg = validate(cprec.Config, {"data": {"dataset": "d"}, "cpt": {"data": data, "schedule": schedule},
                                      "train": {"num_workers": 1, "micro_batch_size": 10, "grad_accum": 1}})  # fmt: skip
        return cprec.plan_cpt(cfg, 1000, 300, workers=1)

    assert plan("phased", "warmup_stable")[1] == {"schedule": "warmup_stable", "phase_ends": (5, 100), "max_steps": 130}
    assert plan("shuffled", "cosine")[1] == {"schedule": "wsa", "phase_ends": (5, 5), "max_steps": 130}
    # DS: 100 updates on domain-specific rows, annealing over the full run's share (30/130)
    assert plan("domain_specific", "wsa_over_ds")[1] == {"schedule": "wsa", "phase_ends": (5, round(100 * 100 / 130)),
                                                         "max_steps": 100}
    with pytest.raises(ConfigError, match="wsa_over_ds anneals over domain-specific rows"):
        plan("phased", "wsa_over_ds")


def test_consumption_order_phases_and_fill():
    ds, mix = np.arange(10), np.arange(10, 13)
    plan = corpus.phase_plan(len(ds), len(mix), batch=4, warmup_frac=0.05)  # S = 3, A = 4
    rows, phases = corpus.consumption_order(ds, mix, plan, "phased", seed=0)
    assert len(rows) == 16 and list(phases) == ["domain_specific"] * 12 + ["mixed"] * 4
    assert sorted(rows[:10]) == list(range(10)) and list(rows[10:12]) == list(rows[:2])  # completed from the start
    assert sorted(rows[12:15]) == [10, 11, 12] and rows[15] == rows[12]
    again, _ = corpus.consumption_order(ds, mix, plan, "phased", seed=0)
    assert list(again) == list(rows)  # seeded
    shuffled, kinds = corpus.consumption_order(ds, mix, plan, "shuffled", seed=0)
    assert sorted(shuffled[:13]) == list(range(13)) and "mixed" in set(kinds[:12])
    only_ds, kinds = corpus.consumption_order(ds, mix, plan, "domain_specific", seed=0)
    assert set(only_ds) <= set(range(10)) and set(kinds) == {"domain_specific"}


def test_worker_layout_gives_each_worker_its_contiguous_part_in_update_order():
    consumption = np.arange(24)  # updates of B = 2 workers x 2 rows x 2 micro-batches = 8
    phases = np.array(["domain_specific"] * 16 + ["mixed"] * 8, dtype=object)
    layout = corpus.worker_layout(consumption, phases, workers=2, micro_batch=2, grad_accum=2)
    assert layout.column("row").to_pylist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19,
                                                4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]
    assert layout.column("rank").to_pylist() == [0] * 12 + [1] * 12
    assert layout.column("update").to_pylist() == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3] * 2
    assert layout.column("micro").to_pylist() == [0, 0, 1, 1] * 6
    # a contiguous split in halves, read in micro-batches: the phase switches at update S + 1 = 3 on both
    for half in (layout.slice(0, 12), layout.slice(12, 12)):
        by_update = {}
        for u, p in zip(half.column("update").to_pylist(), half.column("phase").to_pylist()):
            by_update.setdefault(u, set()).add(p)
        assert by_update == {1: {"domain_specific"}, 2: {"domain_specific"}, 3: {"mixed"}}
    with pytest.raises(ValueError, match="not a whole number of updates of 8"):
        corpus.worker_layout(np.arange(20), np.array(["x"] * 20, dtype=object), 2, 2, 2)


def _examples(rows: list[tuple[str, str, list[int], str, list[int]]]) -> pa.Table:
    return pa.table({"user": [r[0] for r in rows], "scope": [r[1] for r in rows],
                     "history": pa.array([r[2] for r in rows], pa.list_(pa.int32())),
                     "target_domain": [r[3] for r in rows],
                     "candidates": pa.array([r[4] for r in rows], pa.list_(pa.int32()))})


ITEM_DOMAINS = np.array(["", "A", "A", "A", "B", "B", "C"], dtype=object)  # items 1..6


def test_g1_keeps_mixed_rows_whose_history_spans_domains():
    table = _examples([
        ("u1", "A", [1, 2, 3], "A", [1]),            # domain-specific: always kept
        ("u1", MIXED_SCOPE, [1, 2, 3], "B", [4]),    # mixed, history only A: dropped
        ("u1", MIXED_SCOPE, [1, 4, 2], "A", [3]),    # A and B: kept
        ("u2", MIXED_SCOPE, [6, 6, 6], "C", [6]),    # one-domain user: dropped
        ("u3", MIXED_SCOPE, [5, 6, 4, 4], "B", [5]),  # B and C: kept
    ])  # fmt: skip
    assert corpus.is_mixed(table).tolist() == [False, True, True, True, True]
    assert corpus.cross_domain_history(table, ITEM_DOMAINS).tolist() == [False, False, True, False, True]


def test_g2_names_a_row_with_candidates_outside_the_target_domain():
    good = _examples([("u", "A", [1], "A", [2, 3]), ("u", MIXED_SCOPE, [1, 4], "B", [5, 4])])
    corpus.check_target_domain_negatives(good, ITEM_DOMAINS, "d")
    bad = _examples([("u", "A", [1], "A", [2, 3]), ("u", MIXED_SCOPE, [1, 4], "B", [5, 1])])
    with pytest.raises(DataError, match=r"d: row 1 \(target domain B\) stores candidates from other domains \(item 1\)"):
        corpus.check_target_domain_negatives(bad, ITEM_DOMAINS, "d")


def test_config_refuses_what_cpt_cannot_honour():
    for train, message in [({"max_steps": 5}, "CPT is one pass"), ({"shuffle_buffer": 8}, "row order is its phases"),
                           ({"schedule": "wsa", "min_lr": 0.1, "lr": 0.01}, "the floor must be below lr")]:
        with pytest.raises(ConfigError, match=message):
            validate(cprec.Config, {"data": {"dataset": "d"}, "train": train})
    with pytest.raises(ConfigError, match="stage: sft needs init_from"):
        validate(cprec.Config, {"data": {"dataset": "d"}, "stage": "sft"})


def test_cpt_adapter_picks_the_saved_count_or_says_which_exist():
    from recplat.runs import RunSummary

    summary = RunSummary.model_validate({"recipe": "cprec", "dataset": "d", "adapter": "/a/final",
                                         "adapters_after_instances": {"100": "/a/after_100_instances"}})
    assert cprec.cpt_adapter(summary, None) == "/a/final"
    assert cprec.cpt_adapter(summary, 100) == "/a/after_100_instances"
    with pytest.raises(ConfigError, match=r"saved adapters after \[100\]"):
        cprec.cpt_adapter(summary, 200)


# --- a real 2-worker run ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_switch_data_and_schedule_on_the_same_update(cprec_dataset, tiny_llama_folder, tmp_path):
    from safetensors.torch import load_file

    from tests.train.test_schedules import wsa_equation

    trace = tmp_path / "trace"
    trace.mkdir()
    low, high = 1e-4, 1e-2
    cfg = validate(cprec.Config, {
        "data": {"dataset": str(cprec_dataset)}, "out": str(tmp_path / "cpt"),
        "model": {"name": tiny_llama_folder, "max_length": 512},
        "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "train": {"num_workers": 2, "micro_batch_size": 1, "grad_accum": 2, "lr": high, "schedule": "wsa", "min_lr": low,
                  "log_every": 1},
        "cpt": {"warmup_end": 1, "stable_end": 3, "anneal_end": 5, "valid_size": 4},
        "save_after_instances": [4, 8, 100000],  # B = 4: after updates 1 and 2; past the end = final
    })  # fmt: skip
    summary = cprec.run(cfg, trace_dir=str(trace))
    # CPRec's one run in the default set: its first losses are the recorded ones (test_every_recipe.py)
    _check_recorded({"cprec": [round(row["train_loss"], 6) for row in summary.train["train_log"]][:STEPS]})

    extra = summary.model_extra
    assert extra["phases"] == {"W": 1, "S": 3, "A": 5, "B": 4, "schedule": "wsa", "phase_ends": [1, 3], "data": "phased"}
    assert extra["corpus"]["mixed"] > 0 and extra["corpus"]["mixed_dropped_g1"] > 0
    assert extra["train_rows"] == 20 and summary.train["step"] == 5
    for rank in (0, 1):  # every micro-batch of every rank: updates 1..3 domain-specific, 4..5 mixed
        lines = [json.loads(line) for line in (trace / f"rank{rank}.jsonl").read_text().splitlines()]
        assert [(x["update"], x["micro"]) for x in lines] == [(u, m) for u in range(1, 6) for m in (0, 1)]
        assert [x["phases"] for x in lines] == [["domain_specific"]] * 6 + [["mixed"]] * 4
    # the spine logs, after update u, the LR of update u + 1: WSA(u + 1)
    logged = {row["step"]: row["lr"] for row in summary.train["train_log"]}
    assert [logged[u] for u in range(1, 5)] == pytest.approx([wsa_equation(u + 1, 1, 3, 5, low, high) for u in range(1, 5)])
    assert logged[2] == pytest.approx(high) and logged[3] == pytest.approx((low + high) / 2)  # update 4 anneals

    out = tmp_path / "cpt"
    after = extra["adapters_after_instances"]
    assert after == {"4": str(out / "after_4_instances"), "8": str(out / "after_8_instances"),
                     "100000": str(out / "adapter")}
    config = json.loads((out / "after_4_instances" / "adapter_config.json").read_text())
    assert config["r"] == 2 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    first, second = (load_file(str(out / f"after_{n}_instances" / "adapter_model.safetensors")) for n in (4, 8))
    final = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    key = next(k for k in final if "lora_B" in k)
    assert not np.allclose(first[key].numpy(), second[key].numpy())  # update 2 moved the weights
    assert not np.allclose(second[key].numpy(), final[key].numpy())
    assert summary.best_checkpoint == str(out / "adapter")


def test_sft_stages_hand_llara_its_settings_with_the_cpt_adapter(tmp_path):
    sft = {"lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, "llara": {"sasrec_dim": 16}}
    cfg = validate(cprec.Config, {"data": {"dataset": "/d/game"}, "stage": "sft", "init_from": {"run_dir": "/r"},
                                  "sft": sft})  # fmt: skip
    _, llara_cfg = cprec.llara_config(cfg, "/r/adapter", tmp_path)
    assert (llara_cfg.stage, llara_cfg.data.dataset, llara_cfg.init_from, llara_cfg.out) == \
        ("sft", "/d/game", "/r/adapter", str(tmp_path))
    assert llara_cfg.lora.rank == 4 and llara_cfg.llara.sasrec_dim == 16
    zero = cfg.model_copy(update={"stage": "evaluate"})
    assert cprec.llara_config(zero, "/r/adapter", tmp_path)[1].stage == "zero_shot"
    both = validate(cprec.Config, {"data": {"dataset": "/d/cpt"}, "stage": "cpt_then_sft", "sft": sft})
    with pytest.raises(ConfigError, match="sft.data.dataset: cpt_then_sft pre-trains on data.dataset"):
        cprec.llara_config(both, None, tmp_path)
    with pytest.raises(ConfigError, match="recipe.sft"):
        cprec.llara_config(cfg.model_copy(update={"sft": {"lora": {"rnk": 4}}}), None, tmp_path)


# --- the catalog's smoke profile on SmolLM2 -------------------------------------------------------
@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_cpt_smoke_profile_learns_and_writes_the_fig5_adapters(ray_local, tmp_path):
    """`recplat run cprec/cpt --profile smoke`: 8 updates of 2 rows on SmolLM2-135M + LoRA; the
    validation loss falls and the adapters after 4 and 8 rows (updates 2 and 4) are written."""
    from recplat.run import run_job
    from recplat.runs import RunSummary

    record = run_job("cprec/cpt", "smoke", out=tmp_path / "cprec-cpt-smoke")
    summary = RunSummary.read(tmp_path / "cprec-cpt-smoke" / "run")
    assert record["runs"]["run"]["summary"]["best_checkpoint"] == summary.best_checkpoint
    extra = summary.model_extra
    assert extra["phases"] == {"W": 1, "S": 6, "A": 8, "B": 2, "schedule": "wsa", "phase_ends": [1, 6], "data": "phased"}
    losses = [row["val_loss"] for row in summary.train["history"]]
    assert [row["step"] for row in summary.train["history"]] == [2, 4, 6, 8]
    assert losses[-1] < losses[0], losses
    for n in ("4", "8"):
        assert (tmp_path / "cprec-cpt-smoke" / "run" / f"after_{n}_instances" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "cprec-cpt-smoke" / "run" / "adapter" / "adapter_config.json").read_text())["r"] == 4


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_a_killed_cpt_run_resumes_to_the_same_adapters_and_redoes_the_export_it_missed(cprec_dataset,
                                                                                       tiny_llama_folder, tmp_path):
    """Fault drill on the CPT stage (tiny random Llama, 1 worker, B = 2, 5 updates): the run fails
    right after update 3, before the first micro-batch of update 4 exports the adapter after 6 rows,
    restarts from its step-2 checkpoint and redoes that export. Every adapter it leaves (after 2 rows,
    written before the failure; after 6 rows; final) equals an uninterrupted run's, bit for bit."""
    from safetensors.torch import load_file

    def cpt(name: str, **fault):
        cfg = validate(cprec.Config, {
            "data": {"dataset": str(cprec_dataset)}, "out": str(tmp_path / name),
            "model": {"name": tiny_llama_folder, "max_length": 512},
            "lora": {"rank": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "train": {"num_workers": 1, "micro_batch_size": 2, "grad_accum": 1, "lr": 1e-2, "schedule": "wsa",
                      "min_lr": 1e-4, "eval_every": 2, "log_every": 1, **fault},
            "cpt": {"warmup_end": 1, "stable_end": 3, "anneal_end": 5, "valid_size": 4},
            "save_after_instances": [2, 6],  # B = 2: after updates 1 and 3
        })  # fmt: skip
        return cprec.run(cfg)

    reference = cpt("clean")
    drill = cpt("drill", fail_at_step=3, max_failures=1)
    assert (tmp_path / "drill" / "checkpoints" / "cpt" / ".recplat_failed_at_step_3").exists()  # it did fail
    assert reference.train["resumed_from"] is None and drill.train["resumed_from"] == 2
    assert drill.train["history"] == reference.train["history"]  # exact floats
    for folder in ("after_2_instances", "after_6_instances", "adapter"):
        ours = load_file(str(tmp_path / "drill" / folder / "adapter_model.safetensors"))
        theirs = load_file(str(tmp_path / "clean" / folder / "adapter_model.safetensors"))
        assert ours.keys() == theirs.keys() and ours, folder
        for key in ours:
            assert np.array_equal(ours[key].numpy(), theirs[key].numpy()), (folder, key)


# --- heavy: the paper's claim on the planted corpus, SmolLM2 on CPU ----------------------------
@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_on_the_planted_corpus_cpt_initialised_llara_validates_better_than_llara_from_scratch(ray_local, tmp_path):
    """Spec §4 on the planted synthetic corpus (topics shared by every domain, data/synth.py), at
    smoke scale on CPU with SmolLM2-135M: CPT on Games and Music (60 updates under WSA), then LLaRA
    on an unseen domain (Books) from the CPT adapter (CPRec) and from scratch (LLaRA), the same 24
    fine-tuning steps, seed, SASRec and validation prompts. CPRec reaches a higher validation HR@1
    (the best of its validations at steps 12 and 24) and answers with a candidate title more often
    at each of them. The numbers of the last run are in docs/papers.md (CPRec, "on the planted
    corpus"): at this scale the gain is mostly the answer format, HR@1 stays near chance (1/20)."""
    from recplat.config import load_preset, set_dotted
    from recplat.data.config import PrepareConfig
    from recplat.recipes import llara
    from recplat.runs import prepared_dataset

    def prepare(name, domains, **keys):
        keys = {"name": name, "num_partitions": 2, **keys, "sources": [
            {"kind": "synthetic", "domains": domains, "users": 240, "items_per_domain": 60, "topics": 4,
             "mean_interactions": 12, "seed": 0}]}  # fmt: skip
        return str(prepared_dataset(validate(PrepareConfig, set_dotted(load_preset("cprec_cpt"), keys)),
                                    tmp_path / name / "data"))

    lora = {"rank": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    cpt = validate(cprec.Config, {
        "data": {"dataset": prepare("cpt", ["Games", "Music"])}, "out": str(tmp_path / "cpt"), "stage": "cpt",
        "model": {"name": "offline:smollm2", "max_length": 768}, "lora": lora,
        "train": {"num_workers": 1, "micro_batch_size": 2, "grad_accum": 1, "lr": 1e-3, "schedule": "wsa",
                  "min_lr": 1e-5, "log_every": 10},
        "cpt": {"warmup_end": 3, "stable_end": 40, "anneal_end": 60, "valid_size": 8}})  # fmt: skip
    cprec.run(cpt)

    downstream = prepare("books", ["Books"], **{"sequences.scope": "per_domain", "render.families": ["llara"]})
    history = {}
    for method, init in (("llara", None), ("cprec", {"run_dir": str(tmp_path / "cpt")})):
        cfg = validate(llara.Config, {
            "data": {"dataset": downstream}, "out": str(tmp_path / method), "stage": "sft", "init_from": init,
            "model": {"name": "offline:smollm2", "template": "llara"}, "lora": lora,
            "llara": {"sasrec_dim": 16, "projector": "mlp2", "curriculum": "linear", "candidates": 20},
            "sasrec": {"train": {"num_workers": 1, "micro_batch_size": 32, "lr": 1e-3, "max_steps": 40,
                                 "eval_every": 20, "metric": "recall@10", "mode": "max"}},
            "train": {"num_workers": 1, "micro_batch_size": 2, "grad_accum": 1, "optimizer": "adam", "lr": 1e-3,
                      "weight_decay": 1e-5, "schedule": "wsa", "warmup_ratio": 0.25, "min_lr": 1e-5,
                      "max_steps": 24, "eval_every": 12, "metric": "hr@1_x_valid_ratio", "mode": "max"},
            "eval": {"max_new_tokens": 24, "valid_size": 32, "test_size": 8, "batch_size": 8}})  # fmt: skip
        history[method] = llara.run(cfg).train["history"]
    print("\nplanted corpus, validation (32 prompts) by step: "
          + "; ".join(f"{m} " + ", ".join(f"{h['step']}: hr@1 {h['hr@1']:.3f} valid {h['valid_ratio']:.3f}"
                                         for h in rows) for m, rows in history.items()))
    assert [h["step"] for h in history["cprec"]] == [h["step"] for h in history["llara"]] == [12, 24]
    assert max(h["hr@1"] for h in history["cprec"]) > max(h["hr@1"] for h in history["llara"]), history
    assert all(c["valid_ratio"] > l["valid_ratio"] for c, l in zip(history["cprec"], history["llara"])), history
