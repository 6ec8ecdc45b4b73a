"""X-Cross recipe: question handling on CPU in seconds, and (heavy) the paper's direction end to end
on the planted synthetic corpus: stage-1 experts beat random on their own domain, X-Cross beats the
Pooler+Scorer baseline on the target."""

import numpy as np
import pytest

from recplat.errors import ConfigError
from recplat.recipes.xcross import Config, Questions, XCrossTask, ranks_of, subset_rows


def test_ranks_of_counts_ties_against_the_positive():
    scores = np.array([[0.1, 0.9, 0.3], [0.5, 0.5, 0.2], [0.0, -1.0, 2.0]])
    label = np.array([1, 0, 1])
    np.testing.assert_array_equal(ranks_of(scores, label), [1, 2, 3])


def test_subset_rows_is_seeded_sorted_and_whole_when_too_small():
    a, b = subset_rows(100, 10, seed=3), subset_rows(100, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 10 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, subset_rows(100, 10, seed=4))
    np.testing.assert_array_equal(subset_rows(5, 10, seed=0), np.arange(5))
    np.testing.assert_array_equal(subset_rows(5, None, seed=0), np.arange(5))


def test_tokenize_pairs_every_choice_with_the_history_and_cuts_the_oldest_titles():
    cfg = Config(data={"dataset": "unused"}, model={"max_length": 24})
    task = XCrossTask(cfg, "lora", [], None)
    history = "; ".join(f"Old Title {i}" for i in range(20)) + "; Newest Title"
    out = task.tokenize([history, "Short History"], [["Red Apple", "Blue Sky"], ["Green Tea", "Black Coffee"]])
    assert out["input_ids"].shape[:2] == (2, 2) and out["input_ids"].shape[2] <= 24
    text = task._tokenizer.decode(out["input_ids"][0, 1], skip_special_tokens=True)
    assert "newest title" in text and text.endswith("blue sky") and "old title 0 " not in text


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="needs xcross.experts"):
        Config(method="xcross", data={"dataset": "d"})
    with pytest.raises(ValueError, match="xcross.num_sources: 3 sources from 2"):
        Config(method="xcross", data={"dataset": "d"}, xcross={"num_sources": 3, "experts": [
            {"run_dir": "a"}, {"run_dir": "b"}]})


def test_questions_take_keeps_rows_together():
    q = Questions(["h0", "h1", "h2"], [["a"], ["b"], ["c"]], np.array([0, 0, 0]))
    sub = q.take(np.array([2, 0]))
    assert sub.history == ["h2", "h0"] and sub.choices == [["c"], ["a"]] and len(sub) == 2


def test_an_expert_without_an_adapter_is_a_clear_error(tmp_path):
    from recplat.recipes.xcross import load_expert

    with pytest.raises(ConfigError, match="no adapter/adapter_config.json"):
        load_expert("offline:minilm", tmp_path)


# --- heavy: the paper's direction on the planted corpus ----------------------------------------
DOMAINS = ["Books", "Movies", "Music"]


def prepare_domain(root, domain):
    from recplat.config import validate
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare

    cfg = validate(PrepareConfig, {
        "name": f"xc_{domain}", "seed": 0, "num_partitions": 2,
        "sources": [{"kind": "synthetic", "domains": [domain], "users": 500, "items_per_domain": 60, "seed": 0}],
        "kcore": {"user": 5, "item": 5, "scope": "per_domain"},
        "sequences": {"scope": "per_domain", "one_per_day": True, "min_length": 5, "max_length": 10},
        "split": {"method": "user", "ratios": [3, 1, 1], "max_history": 9, "min_history": 4},
        "candidates": {"count": 29, "train_negatives": 29, "strategy": "popularity", "pool": "target_domain",
                       "exclude": "history_and_target"},
        "render": {"families": ["xcross"], "title_words": 8},
    })  # fmt: skip
    out = root / domain.lower()
    prepare(cfg, out, overwrite=True, show_progress=False)
    return out


def recipe(method, dataset, out, steps, **extra):
    from recplat.config import validate

    cfg = {
        "method": method, "data": {"dataset": str(dataset)}, "out": str(out),
        "model": {"name": "offline:minilm", "max_length": 64},
        "lora": {"rank": 4, "alpha": 8, "target_modules": ["query", "value"]},
        "xcross": {"integrate_layers": 4, "alpha": 0.5, "beta": 0.5, "num_sources": 2},
        "eval": {"valid_size": 60, "batch_size": 8},
        "train": {"micro_batch_size": 1, "lr": 3e-3, "weight_decay": 0.01, "max_steps": steps,
                  "eval_every": 15, "metric": "mrr", "mode": "max", "num_workers": 1, "seed": 0},
    }  # fmt: skip
    for key, value in extra.items():
        section, _, name = key.partition("__")
        cfg[section][name] = value
    return validate(Config, cfg)


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(7200)  # ~45 min with one other job beside it; >90 min at load 5-10 (2026-11-23)
def test_experts_beat_random_and_xcross_beats_pooler_scorer(tmp_path):
    from recplat.recipes.xcross import run

    data = {d: prepare_domain(tmp_path, d) for d in DOMAINS}
    experts = {}
    for d in DOMAINS:
        summary = run(recipe("lora", data[d], tmp_path / f"lora_{d}", steps=60))
        experts[d] = summary
        # 30 choices: a random scorer has Hit@1 = 1/30 and MRR ~ 0.13
        assert summary.overall["hit@1"] > 3 / 30, (d, summary.overall)
        assert summary.overall["mrr"] > 0.25, (d, summary.overall)
    refs = [{"run_dir": str(tmp_path / f"lora_{d}")} for d in ("Movies", "Music")]
    # the integrator at the spec's placeholder lr 1e-4, the copied pooler/scorer at the baseline's
    # 3e-3: with W at 3e-3 too, Adam's first steps move z = W h by several units and X-Cross falls
    # below its best expert (validation MRR 0.30 vs 0.42 at step 60, session 3)
    xcross = run(recipe("xcross", data["Books"], tmp_path / "xcross", steps=60, xcross__experts=refs,
                        train__lr_overrides={"integrator": 1e-4}))
    pooler = run(recipe("pooler_scorer", data["Books"], tmp_path / "pooler", steps=60, xcross__experts=refs))
    print({"experts": {d: s.overall for d, s in experts.items()}, "xcross": xcross.overall,
           "pooler_scorer": pooler.overall, "zero_shot": xcross.zero_shot})
    assert xcross.sources and pooler.sources[0] == xcross.sources[0]  # both start from the best expert
    assert xcross.overall["mrr"] > pooler.overall["mrr"]
    assert xcross.overall["hit@1"] >= pooler.overall["hit@1"]
