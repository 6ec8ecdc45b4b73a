"""Generative evaluation: parsing and scoring hand-made outputs against hand-computed numbers,
batched greedy generation, and the sharded generator against a single-process loop."""

from __future__ import annotations

import math

import numpy as np
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


# --- LLaRA's scoring (spec §4.1, calculate_hr1) and CPRec's top-k lists (Table 6) ---------------
LLARA_CANDIDATES = [["Halo", "Halo 2", "Doom"], ["Tetris", "Zelda", "Doom"], ["Tetris", "Zelda", "Doom"],
                    ["Myst", "Riven", "Doom"], ["Myst", "Riven", "Doom"], ["Myst", "Riven", "Doom"]]
LLARA_CASES = [  # (output, target): valid?, correct?  -- by hand
    ("Halo 2\nHalo", "Halo 2", False, False),  # "Halo" is inside "Halo 2": two candidates named
    ("  zelda  \nTetris", "Zelda", True, True),  # case differs; only the first line counts
    ("Tetris or Zelda", "Tetris", False, False),  # two titles
    ("I cannot say", "Myst", False, False),  # none
    ("RIVEN", "Myst", True, False),  # valid, wrong
    ("The answer is Myst.", "Myst", True, True),
]


def test_llara_rule_on_hand_made_outputs():
    from recplat.eval.generative import llara_metrics, named_candidate

    for (text, target, valid, correct), candidates in zip(LLARA_CASES, LLARA_CANDIDATES):
        score = score_output(text, target, candidates, answer_format="single")
        assert (not score.invalid, score.rank == 1) == (valid, correct), text
        assert (named_candidate(text, candidates) is not None) == valid
    assert named_candidate("  zelda  ", ["Tetris", "Zelda"]) == "Zelda"
    # 2 correct of 3 valid outputs of 6: HR@1 counts valid outputs only (LLaRA's code)
    assert llara_metrics(2, 3, 6) == {"hr@1": 2 / 3, "valid_ratio": 0.5, "hr@1_x_valid_ratio": 2 / 6}
    assert llara_metrics(0, 0, 4) == {"hr@1": 0.0, "valid_ratio": 0.0, "hr@1_x_valid_ratio": 0.0}


def test_llara_results_rows_overall_per_domain_and_per_sparsity_bucket():
    from recplat.eval.segments import activity_segments

    texts, targets = [c[0] for c in LLARA_CASES], [c[1] for c in LLARA_CASES]
    examples = pa.table({"user": list(range(6)), "scope": ["games"] * 6, "position": [3] * 6,
                         "target_domain": ["games"] * 3 + ["pc"] * 3})
    buckets = activity_segments([3, 4, 5, 8, 9, 10])  # [3,5) [3,5) [5,9) [5,9) [9,10] [9,10]
    results = generative_results(examples, texts, targets, LLARA_CANDIDATES, answer_format="single",
                                 segments={"activity": buckets})
    assert results.metrics == ["hr@1", "valid_ratio", "hr@1_x_valid_ratio"]
    assert results.overall == {"hr@1": pytest.approx(2 / 3), "valid_ratio": 0.5, "hr@1_x_valid_ratio": pytest.approx(1 / 3)}
    games, pc = results.row("target_domain", "games"), results.row("target_domain", "pc")
    assert (games["hr@1"], games["valid_ratio"]) == (1.0, pytest.approx(1 / 3))
    assert (pc["hr@1"], pc["valid_ratio"]) == (0.5, pytest.approx(2 / 3))
    sparse, medium, dense = (results.row("activity", v) for v in ("sparse", "medium", "dense"))
    assert (sparse["n"], sparse["hr@1"], sparse["valid_ratio"]) == (2, 1.0, 0.5)
    assert (medium["n"], medium["hr@1"], medium["valid_ratio"]) == (2, 0.0, 0.0)
    assert (dense["hr@1"], dense["valid_ratio"]) == (0.5, 1.0)
    assert "hit@1" not in results.row("all")


def test_topk_ranks_from_regeneration_rounds_and_their_metrics():
    from recplat.eval.generative import ranks_from_rounds
    from recplat.eval.results import evaluate_ranks

    rounds = [["Doom", "halo", "Myst"],  # target Halo named (lower-case) in round 2
              ["Halo", None, "Doom"],  # round 2 invalid: the list ends, Doom never counts
              ["Doom", "Myst", "Riven"],  # target never named
              [None]]
    ranks = ranks_from_rounds(rounds, ["Halo", "Doom", "Halo", "Halo"], num_candidates=20)
    assert ranks.tolist() == [2, 21, 21, 21]
    examples = pa.table({"user": list(range(4)), "scope": ["s"] * 4, "position": [3] * 4, "target_domain": ["g"] * 4})
    overall = evaluate_ranks(examples, np.array([1, 2, 4, 21]), ["hr@1", "hr@3", "hr@5", "ndcg@3", "ndcg@5"]).overall
    assert overall["hr@1"] == 0.25 and overall["hr@3"] == 0.5 and overall["hr@5"] == 0.75
    assert overall["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert overall["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
