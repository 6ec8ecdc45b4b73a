"""Generative evaluation: parsing and scoring hand-made outputs against hand-computed numbers,
batched greedy generation, and the sharded generator against a single-process loop."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
import torch

from recplat.eval.generative import (
    OutputScore,
    generate_greedy,
    generative_results,
    parse_ranked_titles,
    score_output,
    score_outputs,
)
from recplat.eval.results import load_results
from tests.models.causal_lms import smollm2_tokenizer, tiny_llama

CANDIDATES = ["A1", "B2", "C3", "D4", "E5"]
# (output, target): rank, items, valid items, unparseable, invalid -- worked out by hand
CASES = [
    ("B2||A1||C3", "A1", OutputScore(2, 3, 3, False, False)),
    ("A1||Zed||B2", "A1", OutputScore(1, 3, 2, False, True)),  # a title that is no candidate
    ("Nothing useful here", "C3", OutputScore(6, 1, 0, True, True)),  # not found: max(1, 5) + 1
    (" D4 ||  E5||D4", "E5", OutputScore(2, 3, 2, False, True)),  # stripped; D4 repeated
    ("", "B2", OutputScore(6, 0, 0, True, False)),
    ("Zed||C3", "C3", OutputScore(2, 2, 1, False, True)),  # rank counts the invalid first item
]


def test_parse_splits_on_the_separator_in_the_text():
    assert parse_ranked_titles(" Comb || Gel||||Soap ") == ["Comb", "Gel", "Soap"]
    assert parse_ranked_titles("Comb, Gel", separator=", ") == ["Comb", "Gel"]
    # "||" is merged with its neighbours by SmolLM2's tokenizer: only the decoded text finds it
    tokenizer = smollm2_tokenizer()
    bare = tokenizer.convert_tokens_to_ids("||")
    for text, titles in [("Comb || Gel", ["Comb", "Gel"]), ("Comb.||Gel", ["Comb.", "Gel"])]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert bare not in ids  # "Ġ||" and ".||" are tokens of their own
        assert parse_ranked_titles(tokenizer.decode(ids)) == titles


@pytest.mark.parametrize("text,target,expected", CASES)
def test_score_output_on_hand_made_answers(text, target, expected):
    assert score_output(text, target, CANDIDATES) == expected


def test_single_answer_format_is_llaras_first_line_rule():
    candidates = ["Blue Mug", "Red Lamp", "Oak Desk"]
    assert score_output("I pick blue mug.\nRed Lamp", "Blue Mug", candidates, answer_format="single") == \
        OutputScore(1, 1, 1, False, False)
    assert score_output("Blue Mug or Red Lamp", "Blue Mug", candidates, answer_format="single") == \
        OutputScore(4, 2, 2, False, True)
    assert score_output("Oak Desk", "Blue Mug", candidates, answer_format="single") == OutputScore(4, 1, 1, False, False)
    assert score_output("no idea", "Blue Mug", candidates, answer_format="single") == OutputScore(4, 0, 0, True, True)


def test_results_give_hand_computed_metrics_and_shares(tmp_path):
    texts, targets = [c[0] for c in CASES], [c[1] for c in CASES]
    examples = pa.table({"user": list(range(6)), "scope": ["mixed"] * 6, "position": [3] * 6,
                         "target_domain": ["beauty"] * 3 + ["toys"] * 3})
    results = generative_results(examples, texts, targets, [CANDIDATES] * 6, metrics=["hit@1", "hit@3", "ndcg@3"])
    ndcg2 = 1 / math.log2(3)  # rank 2
    overall = results.row("all")  # ranks 2, 1, 6, 2, 6, 2
    assert overall["hit@1"] == pytest.approx(1 / 6)
    assert overall["hit@3"] == pytest.approx(4 / 6)
    assert overall["ndcg@3"] == pytest.approx((3 * ndcg2 + 1) / 6)
    assert overall["unparseable"] == pytest.approx(2 / 6) and overall["invalid"] == pytest.approx(4 / 6)
    beauty, toys = results.row("target_domain", "beauty"), results.row("target_domain", "toys")
    assert beauty["ndcg@3"] == pytest.approx((ndcg2 + 1) / 3) and toys["ndcg@3"] == pytest.approx(2 * ndcg2 / 3)
    assert beauty["invalid"] == pytest.approx(2 / 3) and toys["unparseable"] == pytest.approx(1 / 3)

    results.write(tmp_path)
    back = load_results(tmp_path)
    assert back.per_example["rank"].to_pylist() == [2, 1, 6, 2, 6, 2]
    assert back.per_example["output"].to_pylist() == texts
    assert back.per_example["invalid"].to_pylist() == [False, True, True, True, False, True]
    assert back.row("all")["unparseable"] == pytest.approx(2 / 6)


def test_score_outputs_checks_lengths():
    from recplat.errors import DataError

    with pytest.raises(DataError, match="2 outputs, 1 targets"):
        score_outputs(["a", "b"], ["a"], [["a"]])
    assert score_outputs([], [], [])["rank"].shape == (0,)


def test_batched_greedy_generation_equals_one_prompt_at_a_time():
    tokenizer, model = smollm2_tokenizer(), tiny_llama(seed=1)
    torch.set_num_threads(1)
    prompts = [tokenizer(t)["input_ids"] for t in ["Hi", "A much longer prompt about lamps and mugs", "Pick one:"]]
    texts, lengths = generate_greedy(model, tokenizer, prompts, max_new_tokens=6)
    for prompt, text, length in zip(prompts, texts, lengths):
        alone = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)[0, len(prompt):]
        assert text == tokenizer.decode(alone, skip_special_tokens=True)
        ends = (alone == tokenizer.eos_token_id).nonzero()
        assert length == (int(ends[0]) + 1 if len(ends) else 6)


@pytest.mark.slow
def test_sharded_generation_over_two_actors_equals_a_single_process_loop(ray_local, tmp_path):
    """SmolLM2, 7 prompts in batches of 2 over a pool of 2 actors (1 CPU each) == the same batches
    through model.generate in this process, also on 1 thread; scored and written as results."""
    from recplat.eval.generative import generate_and_score
    from recplat.models.causal_lm import CausalLMSettings, load_causal_lm

    settings = CausalLMSettings(name="offline:smollm2", system="You are a helpful recommendation assistant.")
    things = ["lamp", "mug", "desk", "rug", "kettle", "vase", "pan"]
    prompts = [f"Recommend one {thing} for a user who liked Blue Mug||Red Lamp. Answer with a title." for thing in things]
    examples = pa.table({"user": list(range(7)), "scope": ["mixed"] * 7, "position": [2] * 7,
                         "target_domain": ["home"] * 7})
    candidates = [["Blue Mug", "Red Lamp", thing.title()] for thing in things]
    results = generate_and_score(settings, examples, prompts, [c[2] for c in candidates], candidates,
                                 out_dir=tmp_path / "test", max_new_tokens=8, batch_size=2, num_actors=2)

    torch.set_num_threads(1)
    model, tokenizer = load_causal_lm(settings)
    fmt = settings.prompt_format()
    expected, expected_tokens = [], []
    for start in range(0, len(prompts), 2):
        ids = [fmt.prompt_ids(tokenizer, p) for p in prompts[start : start + 2]]
        out, n = generate_greedy(model, tokenizer, ids, max_new_tokens=8)
        expected += out
        expected_tokens += n.tolist()
    written = load_results(tmp_path / "test").per_example
    assert written["output"].to_pylist() == expected
    assert written["new_tokens"].to_pylist() == expected_tokens
    assert all(expected) and all(1 <= n <= 8 for n in expected_tokens)
    assert written["rank"].to_pylist() == score_outputs(expected, [c[2] for c in candidates], candidates)["rank"].tolist()
