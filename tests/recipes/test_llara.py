"""The LLaRA recipe (spec §4.1): configuration checks, the CPT adapter check, top-k prompt surgery,
the task's curriculum and collate, and one heavy end-to-end run (inline SASRec, LLaRA SFT with
validation by generation, sharded test generation, Table 5 buckets, Table 6 rounds) on a tiny
synthetic dataset with a TINY random Llama ("architecture only": real Ray Train, peft, Ray Data
generation and LLaRA's scoring; the numbers themselves mean nothing)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from recplat.config import validate
from recplat.errors import ConfigError
from recplat.recipes import llara


def _cfg(**keys) -> llara.Config:
    return validate(llara.Config, {"data": {"dataset": "d"}, **keys})


def test_config_defaults_are_llaras_and_stages_check_their_inputs():
    cfg = _cfg()
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout) == (8, 32, 0.1)
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.schedule, cfg.train.warmup_ratio) == (5e-4, 5e-6, "wsa", 0.05)
    assert cfg.train.micro_batch_size * cfg.train.grad_accum == 128 and cfg.train.metric == "hr@1_x_valid_ratio"
    assert (cfg.eval.max_new_tokens, cfg.llara.candidates, cfg.llara.sasrec_dim) == (64, 20, 64)
    with pytest.raises(ConfigError, match="stage: evaluate needs evaluate_from"):
        _cfg(stage="evaluate")
    with pytest.raises(ConfigError, match="only stage sft trains"):
        _cfg(stage="zero_shot", lr_grid=[1e-4, 3e-4])
    with pytest.raises(ConfigError, match="edges: four increasing"):
        _cfg(buckets={"edges": [3, 9, 5, 11]})
    assert isinstance(_cfg(init_from={"job": "cprec/cpt"}).init_from, llara.RunRef)
    assert _cfg(init_from="runs/cpt/adapter").init_from == "runs/cpt/adapter"


def _adapter(directory, r=8, targets=("q_proj", "v_proj")):
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": r, "target_modules": list(targets)}))
    return directory


def test_init_from_is_checked_against_the_lora_before_anything_loads(tmp_path):
    ok = _adapter(tmp_path / "a", r=4)
    cfg = _cfg(init_from=str(ok), lora={"rank": 4, "target_modules": ["v_proj", "q_proj"]})
    assert llara.resolve_init_from(cfg) == str(ok)
    bad = _cfg(init_from=str(ok), lora={"rank": 8, "target_modules": ["q_proj", "k_proj"]})
    with pytest.raises(ConfigError) as err:
        llara.resolve_init_from(bad)
    message = str(err.value)
    assert "\n" not in message and str(ok) in message
    assert "rank 4 vs lora.rank 8" in message and "['q_proj', 'v_proj'] vs lora.target_modules ['k_proj', 'q_proj']" in message
    with pytest.raises(ConfigError, match="is not a saved adapter"):
        llara.resolve_init_from(_cfg(init_from=str(tmp_path / "nothing")))
    # a run reference: its summary's adapter
    run = tmp_path / "cpt_run"
    _adapter(run / "adapter", r=4)
    (run / "summary.json").write_text(json.dumps({"recipe": "cprec", "dataset": "d"}))
    assert llara.resolve_init_from(_cfg(init_from={"run_dir": str(run)}, lora={"rank": 4})) == str(run / "adapter")


def test_drop_candidate_takes_one_title_and_its_marker_out_of_the_prompt():
    titles = ["Halo", "Halo 2", "Doom"]
    prompt = "Bought Myst [HistoryEmb]. The candidates are Halo [CansEmb], Halo 2 [CansEmb], Doom [CansEmb]. The answer is"
    assert llara.drop_candidate(prompt, titles, 0, ", ", " [CansEmb]") == \
        "Bought Myst [HistoryEmb]. The candidates are Halo 2 [CansEmb], Doom [CansEmb]. The answer is"
    assert llara.drop_candidate(prompt, titles, 2, ", ", " [CansEmb]").endswith("Halo 2 [CansEmb]. The answer is")
    with pytest.raises(ConfigError, match="is not in the prompt"):
        llara.drop_candidate(prompt, titles, 0, "; ", " [CansEmb]")


def test_padded_items_layout():
    out = llara.padded_items([np.array([3, 1]), np.array([4]), np.array([], dtype=np.int64)])
    assert out.tolist() == [[3, 1], [4, 0], [0, 0]] and out.dtype == torch.int64


def _valid_rows() -> pa.Table:
    return pa.table({"prompt": ["Bought Myst [HistoryEmb]. Pick: Doom [CansEmb], Halo [CansEmb]. The answer is"] * 3,
                     "target_title": ["Doom", "Halo", "Doom"], "candidate_titles": [["Doom", "Halo"]] * 3,
                     "history_items": [[1]] * 3, "candidate_items": [[2, 3]] * 3})


def test_task_draws_the_curriculum_per_micro_batch_and_validates_by_generation(tiny_llama_folder):
    cfg = _cfg(model={"name": str(tiny_llama_folder), "max_length": 128}, lora={"rank": 2, "target_modules": ["q_proj"]},
               llara={"sasrec_dim": 4}, train={"grad_accum": 2, "seed": 5, "metric": None, "patience": None},
               eval={"max_new_tokens": 4, "batch_size": 2})
    items = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    task = llara.LlaraTask(cfg, None, items, _valid_rows(), total_steps=4)
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.collate({"prompt": np.array(_valid_rows()["prompt"].to_pylist()[:2], dtype=object),
                          "answer": np.array(["Doom", "Halo"], dtype=object),
                          "history_items": np.array([np.array([1]), np.array([1])], dtype=object),
                          "candidate_items": np.array([np.array([2, 3]), np.array([2, 3])], dtype=object)})
    assert batch["history_items"].tolist() == [[1], [1]] and batch["candidate_items"].tolist() == [[2, 3], [2, 3]]
    seen = []
    original = model.forward
    model.forward = lambda *a, text_only, **k: seen.append(text_only) or original(*a, text_only=text_only, **k)
    losses = [float(task.training_step(model, batch).detach()) for _ in range(8)]  # 4 steps x 2 micro-batches
    expected = [not task.curriculum.is_hybrid(step, micro) for step in range(4) for micro in range(2)]
    assert seen == expected and seen[:2] == [True, True]  # τ = 0: p = 0, text-only
    assert all(np.isfinite(losses)) and task.micro_batches_done == 8
    model.eval()
    with torch.no_grad():
        metrics = task.validate(model)
    texts, lengths = task.answers(model, _valid_rows()["prompt"].to_pylist(), [[1]] * 3, [[2, 3]] * 3)
    from recplat.eval.generative import llara_metrics, named_candidate

    named = [named_candidate(t, ["Doom", "Halo"]) for t in texts]
    correct = sum(n == t for n, t in zip(named, ["Doom", "Halo", "Doom"]))
    assert metrics == llara_metrics(correct, sum(n is not None for n in named), 3)
    assert all(1 <= n <= 4 for n in lengths)


def test_each_micro_batch_is_written_in_the_template_drawn_for_it(tiny_llama_folder):
    """LLaRA's three templates: micro-batch k of the run is tokenized from prompt (template 0) or
    more_prompts[t - 1], t = template_for(seed, step, micro, 3); rows without more_prompts (one
    template, or data prepared before the column existed) always use prompt."""
    from recplat.models.hybrid_prompt import template_for

    cfg = _cfg(model={"name": str(tiny_llama_folder), "max_length": 128}, lora={"rank": 2, "target_modules": ["q_proj"]},
               llara={"sasrec_dim": 4}, train={"grad_accum": 2, "seed": 3, "metric": None, "patience": None})
    task = llara.LlaraTask(cfg, None, np.zeros((4, 4), dtype=np.float32), None, total_steps=6)
    task.build_model()
    items = {"answer": np.array(["Doom", "Halo"], dtype=object),
             "history_items": np.array([np.array([1]), np.array([1])], dtype=object),
             "candidate_items": np.array([np.array([2, 3]), np.array([2, 3])], dtype=object)}
    written = {t: [f"{word} Myst [HistoryEmb]: Doom [CansEmb], Halo [CansEmb]?" for _ in range(2)]
               for t, word in enumerate(["Bought", "Played", "Owned"])}
    rows = {"prompt": np.array(written[0], dtype=object),
            "more_prompts": np.array([np.array([written[1][i], written[2][i]]) for i in range(2)], dtype=object), **items}
    drawn = [template_for(3, step, micro, 3) for step in range(6) for micro in range(2)]
    assert drawn == [2, 2, 0, 2, 1, 2, 2, 1, 0, 1, 1, 1]  # all three templates over 12 micro-batches
    for k, t in enumerate(drawn):
        task.micro_batches_done = k  # what training_step has counted (a resumed run starts from its step)
        batch = task.collate(rows)
        assert torch.equal(batch["input_ids"], task.tokenize(written[t], ["Doom", "Halo"])["input_ids"]), k
    one = task.collate({**rows, "more_prompts": np.array([np.array([], dtype=object)] * 2, dtype=object)})
    older = task.collate({key: value for key, value in rows.items() if key != "more_prompts"})
    assert torch.equal(one["input_ids"], task.tokenize(written[0], ["Doom", "Halo"])["input_ids"])
    assert torch.equal(older["input_ids"], one["input_ids"])


def test_exported_adapter_starts_another_runs_lora_exactly(tiny_llama_folder, tmp_path):
    from recplat.train.checkpoint import save_weights

    keys = dict(model={"name": str(tiny_llama_folder), "max_length": 128}, llara={"sasrec_dim": 4},
                lora={"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    items = np.zeros((4, 4), dtype=np.float32)
    torch.manual_seed(0)
    trained = llara.LlaraTask(_cfg(**keys), None, items, None, 1).build_model()
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a LoRA that is not the identity
    save_weights(trained, tmp_path / "weights.safetensors")
    folder = llara.export_adapter(_cfg(**keys), tmp_path / "weights.safetensors", tmp_path / "adapter")
    saved = json.loads((folder / "adapter_config.json").read_text())
    assert (saved["r"], saved["target_modules"]) == (2, ["q_proj", "v_proj"])
    cfg = _cfg(**keys, init_from=str(folder))
    started = llara.LlaraTask(cfg, llara.resolve_init_from(cfg), items, None, 1).build_model()
    ours = {n: p for n, p in started.named_parameters() if "lora_" in n}
    theirs = {n: p for n, p in trained.named_parameters() if "lora_" in n}
    assert ours.keys() == theirs.keys() and len(ours) == 8  # 2 layers x (q, v) x (A, B)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


# heavy: 364 s under load ~50 on 2 cores (five Ray Train / Ray Data launches); not in the default run
@pytest.mark.heavy
@pytest.mark.timeout(1500)
def test_sft_then_evaluate_with_buckets_and_topk(llara_dataset, tiny_llama_folder, tmp_path):
    from recplat.eval.results import load_results
    from recplat.runs import RunSummary

    base = {"data": {"dataset": str(llara_dataset), "domains": ["Games"]},
            "model": {"name": str(tiny_llama_folder), "max_length": 384}, "lora": {"rank": 2, "target_modules": ["q_proj", "v_proj"]},
            "llara": {"sasrec_dim": 8},
            "sasrec": {"train": {"num_workers": 1, "micro_batch_size": 16, "max_steps": 4, "eval_every": 4,
                                 "metric": "recall@10", "mode": "max"}},
            "train": {"num_workers": 1, "micro_batch_size": 2, "grad_accum": 1, "lr": 1e-3, "schedule": "wsa", "min_lr": 1e-5,
                      "warmup_ratio": 0.25, "max_steps": 4, "eval_every": 2, "patience": None},
            "eval": {"max_new_tokens": 6, "valid_size": 3, "test_size": 6, "batch_size": 3}}  # fmt: skip
    summary = llara.run(validate(llara.Config, {**base, "out": str(tmp_path / "sft")}))
    assert summary == RunSummary.read(tmp_path / "sft")
    assert summary.train["step"] == 4 and [h["step"] for h in summary.train["history"]] == [2, 4]
    assert set(summary.overall) == {"hr@1", "valid_ratio", "hr@1_x_valid_ratio"} and summary.test_examples == 6
    assert summary.overall["hr@1_x_valid_ratio"] == pytest.approx(summary.overall["hr@1"] * summary.overall["valid_ratio"])
    assert summary.model_extra["sasrec"]["overall"]  # the SASRec it trained first, tested too
    written = load_results(tmp_path / "sft" / "test").per_example
    assert written.num_rows == 6 and all(1 <= n <= 6 for n in written["new_tokens"].to_pylist())

    evaluated = llara.run(validate(llara.Config, {
        **base, "stage": "evaluate", "evaluate_from": {"run_dir": str(tmp_path / "sft")}, "out": str(tmp_path / "eval"),
        "buckets": {"edges": [3, 5, 9, 11]}, "topk": {"rounds": 2, "metrics": ["hr@1", "hr@3", "ndcg@3"]}}))
    # the same weights, the same greedy answers: the same numbers
    assert evaluated.overall == summary.overall and evaluated.mode == "evaluate"
    again = load_results(tmp_path / "eval" / "test")
    assert again.per_example["output"].to_pylist() == written["output"].to_pylist()
    buckets = {r["value"]: r for r in again.rows if r["group"] == "history_length"}
    assert set(buckets) <= {"sparse", "medium", "dense"} and sum(r["n"] for r in buckets.values()) == 6
    topk = evaluated.model_extra["topk"]
    assert topk["hr@1"] <= topk["hr@3"] and 0 <= topk["ndcg@3"] <= topk["hr@3"]
