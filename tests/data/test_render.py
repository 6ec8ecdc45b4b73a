"""Prompt rendering (recplat/data/render.py): exact text per family, seeded shuffles, templates as data."""

import numpy as np
import pyarrow as pa
import pytest

from recplat.data import render, schema, seeded
from recplat.data.config import RenderConfig
from recplat.errors import ConfigError

TITLES = np.array([None, "Red Fox Book", "Blue Jazz Record", "Green Board Game", "Old Map", "New Lamp"], dtype=object)


def examples(rows):
    return pa.Table.from_pylist(rows, schema=schema.EXAMPLES)


def ex(user="u1", split="test", position=3, history=(1, 2), target=3, candidates=(4, 5)):
    return dict(user=user, scope="__mixed__", split=split, position=position, history=list(history),
                target=target, target_domain="Games", candidates=list(candidates))


@pytest.fixture(scope="module")
def templates():
    return render.load_templates()


def test_llmrec_user_text_concatenates_titles_with_suffix(templates):
    out = render.render_family(examples([ex()]), TITLES, "llmrec", templates, RenderConfig(), seed=1)
    assert out.column("user_text").to_pylist() == ["Red Fox Book; Blue Jazz Record; "]
    assert out.schema == render.output_schema("llmrec")


def test_shuffle_is_the_seeded_argsort_and_label_points_at_target(templates):
    out = render.render_family(examples([ex()]), TITLES, "xcross", templates, RenderConfig(title_words=2), seed=7)
    row = out.to_pylist()[0]
    keys = seeded.row_keys(7, "render:xcross", seeded.hash_strings(["u1"]), seeded.hash_strings(["__mixed__"]),
                           np.array([2]), np.array([3]))
    order = np.argsort(seeded.uniform(keys, 3)[0], kind="stable")
    want = np.array([3, 4, 5])[order].tolist()
    assert row["choice_items"] == want
    assert want[row["label"]] == 3
    assert row["history_text"] == "Red Fox; Blue Jazz"  # cut to 2 words, "; " separator
    assert row["choices"] == [" ".join(TITLES[i].split()[:2]) for i in want]


def test_shuffle_independent_of_batching(templates):
    rows = [ex(user=f"u{i}", position=i + 2) for i in range(7)]
    whole = render.render_family(examples(rows), TITLES, "cprec", templates, RenderConfig(), seed=3)
    parts = [render.render_family(examples([r]), TITLES, "cprec", templates, RenderConfig(), seed=3) for r in rows]
    assert whole == pa.concat_tables(parts)


def test_molorec_answer_is_target_then_first_negatives_in_shuffled_order(templates):
    out = render.render_family(examples([ex()]), TITLES, "molorec", templates, RenderConfig(), seed=5).to_pylist()[0]
    shuffled = out["candidate_items"]
    negs = [i for i in shuffled if i != 3]
    assert out["answer"] == "||".join(TITLES[[3] + negs[:4]])
    assert out["prompt"].startswith("Given the following purchase history of a user:[Red Fox Book||Blue Jazz Record].")
    assert "Candidates: [" + "||".join(TITLES[shuffled]) + "]" in out["prompt"]
    assert out["system"] == "You are a helpful recommendation assistant."


def test_llara_markers_follow_each_title(templates):
    out = render.render_family(examples([ex()]), TITLES, "llara", templates, RenderConfig(), seed=5).to_pylist()[0]
    assert out["prompt"].startswith("This user has bought Red Fox Book [HistoryEmb], Blue Jazz Record [HistoryEmb] in")
    assert out["prompt"].count("[CansEmb]") == 3
    assert out["answer"] == "Green Board Game"
    assert out["history_items"] == [1, 2]
    assert out["more_prompts"] == []  # one template unless llara.more_prompts lists others


def test_llara_renders_every_template_of_more_prompts(tmp_path):
    """LLaRA's three templates: `prompt` is the first (evaluation's), `more_prompts` the others, each
    filled with the same history, the same shuffled candidates and the markers."""
    override = tmp_path / "llara.yaml"
    override.write_text('llara:\n  more_prompts: ["Played {history}; pick one {domain} of {candidates}:", '
                        '"{candidates} <- which? after {history}"]\n  domain: game\n')
    out = render.render_family(examples([ex()]), TITLES, "llara", render.load_templates(override), RenderConfig(),
                               seed=5).to_pylist()[0]  # fmt: skip
    history = "Red Fox Book [HistoryEmb], Blue Jazz Record [HistoryEmb]"
    candidates = ", ".join(f"{TITLES[i]} [CansEmb]" for i in out["candidate_items"])
    assert out["more_prompts"] == [f"Played {history}; pick one game of {candidates}:",
                                   f"{candidates} <- which? after {history}"]
    assert out["prompt"].startswith(f"This user has bought {history} in the previous. Please predict the next game")


def test_braces_in_titles_are_not_placeholders(templates):
    titles = TITLES.copy()
    titles[1] = "A {history} Book"
    out = render.render_family(examples([ex()]), titles, "cprec", templates, RenderConfig(), seed=1).to_pylist()[0]
    assert "A {history} Book" in out["prompt"]


def test_template_override_and_errors(tmp_path, templates):
    good = tmp_path / "t.yaml"
    good.write_text('cprec:\n  domain: "game"\n')
    assert render.load_templates(good)["cprec"]["domain"] == "game"
    bad_key = tmp_path / "k.yaml"
    bad_key.write_text("cprec:\n  promt: x\n")
    with pytest.raises(ConfigError, match=r"cprec.promt: unknown template key"):
        render.load_templates(bad_key)
    bad_ph = tmp_path / "p.yaml"
    bad_ph.write_text('cprec:\n  prompt: "{histroy}"\n')
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \['histroy'\]"):
        render.load_templates(bad_ph)
    bad_list = tmp_path / "l.yaml"
    bad_list.write_text('llara:\n  more_prompts: "{history}"\n')
    with pytest.raises(ConfigError, match=r"llara.more_prompts: must be a list of strings"):
        render.load_templates(bad_list)
    bad_list.write_text('llara:\n  more_prompts: ["{history}", "{candidate}"]\n')
    with pytest.raises(ConfigError, match=r"llara.more_prompts: unknown placeholder\(s\) \['candidate'\]"):
        render.load_templates(bad_list)
    with pytest.raises(ConfigError, match="unknown template family"):
        bad = tmp_path / "f.yaml"
        bad.write_text("gpt:\n  prompt: x\n")
        render.load_templates(bad)
