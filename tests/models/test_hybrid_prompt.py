"""LLaRA's hybrid prompt (spec §4.1) on a TINY random Llama with SmolLM2's tokenizer ("architecture
only"): which positions are replaced, by what, the text-only variant, and the curriculum p = τ/T."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recplat.errors import DataError
from recplat.models.hybrid_prompt import (CANDIDATE_TOKEN, HISTORY_TOKEN, TEXT_ONLY_TOKEN, Curriculum, HybridPromptLM,
                                          add_placeholder_tokens, marker_items, to_text_only)
from recplat.models.padding import pad_sequences
from tests.models.causal_lms import smollm2_dir, tiny_llama

PROMPTS = ["This user has bought Red Lamp [HistoryEmb], Blue Mug [HistoryEmb] in the previous. "
           "The candidates are Oak Desk [CansEmb], Red Lamp [CansEmb], Tea Pot [CansEmb]. The answer is",
           "Bought Tea Pot [HistoryEmb]. Candidates: Blue Mug [CansEmb], Oak Desk [CansEmb]. The answer is"]
HISTORY = torch.tensor([[3, 1, 0], [4, 0, 0]])  # items in prompt order, 0 = padding at the end
CANDIDATES = torch.tensor([[2, 3, 4], [1, 2, 0]])


@pytest.fixture(scope="module")
def hybrid():
    from recplat.models.causal_lm import load_tokenizer

    tokenizer = load_tokenizer(smollm2_dir())
    lm = tiny_llama(seed=3)
    vocab = lm.get_input_embeddings().weight.shape[0]
    ids = add_placeholder_tokens(lm, tokenizer)
    assert lm.get_input_embeddings().weight.shape[0] == vocab + 3 == len(tokenizer)
    torch.manual_seed(0)
    items = torch.randn(5, 8)  # 4 items + the padding row 0, sasrec_dim 8
    model = HybridPromptLM(lm, items, ids).eval()
    batch = [tokenizer(p)["input_ids"] for p in PROMPTS]
    input_ids, attention_mask = pad_sequences(batch, tokenizer.pad_token_id, "left")
    return model, tokenizer, ids, input_ids, attention_mask


def test_placeholders_are_single_tokens_with_mean_embedding_rows(hybrid):
    model, tokenizer, ids, input_ids, _ = hybrid
    for token in (HISTORY_TOKEN, CANDIDATE_TOKEN, TEXT_ONLY_TOKEN):
        assert tokenizer.convert_ids_to_tokens(ids[token]) == token
    weight = model.lm.get_input_embeddings().weight
    old = weight[: ids[HISTORY_TOKEN]]
    assert torch.allclose(weight[ids[TEXT_ONLY_TOKEN]], old.mean(0))
    assert int((input_ids == ids[HISTORY_TOKEN]).sum()) == 3 and int((input_ids == ids[CANDIDATE_TOKEN]).sum()) == 5
    # rebuilt in another process, the same rows: nothing random in the resize
    again = tiny_llama(seed=3)
    add_placeholder_tokens(again, tokenizer)
    assert torch.equal(again.get_input_embeddings().weight, weight)


def test_zero_projector_replaces_exactly_the_marker_positions(hybrid):
    model, _, ids, input_ids, _ = hybrid
    with torch.no_grad():
        for p in model.projector.parameters():
            p.zero_()
        plain = model.lm.get_input_embeddings()(input_ids)
        mixed = model.input_embeddings(input_ids, HISTORY, CANDIDATES)
    markers = (input_ids == ids[HISTORY_TOKEN]) | (input_ids == ids[CANDIDATE_TOKEN])
    assert torch.equal(mixed[~markers], plain[~markers])  # every other position: the base embedding
    assert torch.count_nonzero(mixed[markers]) == 0  # replaced: the (zero) projector output
    assert torch.count_nonzero(plain[markers]) > 0  # ... which differs from the placeholder's row
    assert torch.equal(model.input_embeddings(input_ids), plain)  # no items: nothing replaced


def test_each_marker_reads_the_projected_embedding_of_its_item(hybrid):
    model, _, ids, input_ids, _ = hybrid
    torch.manual_seed(1)
    model.projector.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    with torch.no_grad():
        mixed = model.input_embeddings(input_ids, HISTORY, CANDIDATES)
        projected = model.projector(model.item_embeddings)  # row i: item i
    rows, cols = (input_ids == ids[HISTORY_TOKEN]).nonzero(as_tuple=True)
    assert [(int(r), int(c)) for r, c in zip(rows, cols)] == sorted(zip(rows.tolist(), cols.tolist()))
    expected_history = [3, 1, 4]  # row 0: items 3, 1 in prompt order; row 1: item 4
    for (r, c), item in zip(zip(rows.tolist(), cols.tolist()), expected_history):
        assert torch.allclose(mixed[r, c], projected[item], atol=1e-6)
    rows, cols = (input_ids == ids[CANDIDATE_TOKEN]).nonzero(as_tuple=True)
    for (r, c), item in zip(zip(rows.tolist(), cols.tolist()), [2, 3, 4, 1, 2]):
        assert torch.allclose(mixed[r, c], projected[item], atol=1e-6)


def test_a_prompt_cut_at_its_start_keeps_its_last_markers_on_their_items(hybrid):
    _, _, ids, input_ids, _ = hybrid
    h = ids[HISTORY_TOKEN]
    cut = input_ids[:1, 8:]  # row 0 without its first tokens: the first history marker is gone
    assert int((cut == h).sum()) == 1
    _, _, items = marker_items(cut, h, HISTORY[:1])
    assert items.tolist() == [1]  # the remaining marker is the LAST history item
    with pytest.raises(DataError, match="row 0 has 2 .* marker tokens but 1 items"):
        marker_items(input_ids[:1], h, torch.tensor([[3, 0, 0]]))


def test_text_only_prompt_swaps_markers_for_ph_and_gives_the_same_logits_as_plain_ph_ids(hybrid):
    model, _, ids, input_ids, attention_mask = hybrid
    text_only = to_text_only(input_ids, ids)
    markers = (input_ids == ids[HISTORY_TOKEN]) | (input_ids == ids[CANDIDATE_TOKEN])
    assert torch.all(text_only[markers] == ids[TEXT_ONLY_TOKEN]) and torch.equal(text_only[~markers], input_ids[~markers])
    with torch.no_grad():
        ours = model(input_ids, attention_mask, text_only=True).logits
        plain = model.lm(input_ids=text_only, attention_mask=attention_mask).logits
    assert torch.equal(ours, plain)


def test_text_only_loss_gives_the_projector_a_zero_gradient(hybrid):
    model, _, _, input_ids, attention_mask = hybrid
    labels = input_ids.clone()
    model.zero_grad()
    model(input_ids, attention_mask, labels=labels, text_only=True).loss.backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in model.projector.parameters())
    model.zero_grad()
    model(input_ids, attention_mask, labels=labels, history_items=HISTORY, candidate_items=CANDIDATES).loss.backward()
    assert all(torch.count_nonzero(p.grad) > 0 for p in model.projector.parameters())
    model.zero_grad()


def test_generation_returns_prompt_then_greedy_tokens_without_placeholders(hybrid):
    model, tokenizer, ids, input_ids, attention_mask = hybrid
    out = model.generate(input_ids, attention_mask, HISTORY, CANDIDATES, max_new_tokens=5, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(out[:, : input_ids.shape[1]], input_ids) and out.shape[1] <= input_ids.shape[1] + 5
    assert not torch.isin(out[:, input_ids.shape[1]:], torch.tensor(list(ids.values()))).any()
    # step one by hand: the argmax of the last position's logits on the hybrid embeddings
    with torch.no_grad():
        logits = model(input_ids, attention_mask, history_items=HISTORY, candidate_items=CANDIDATES).logits[:, -1]
    logits[:, list(ids.values())] = -float("inf")
    assert out[:, input_ids.shape[1]].tolist() == logits.argmax(-1).tolist()


def test_curriculum_fraction_of_hybrid_batches_follows_tau_over_t():
    total = 400
    curriculum = Curriculum(total_steps=total, seed=7)
    draws = np.array([[curriculum.is_hybrid(step, micro) for micro in range(8)] for step in range(total)])
    assert curriculum.probability(0) == 0.0 and curriculum.probability(200) == 0.5
    assert not draws[0].any()  # p = 0 at the first step
    quarters = draws.reshape(4, total // 4, 8).mean(axis=(1, 2))  # expected p: .125, .375, .625, .875
    assert np.abs(quarters - np.array([0.125, 0.375, 0.625, 0.875])).max() < 0.03
    assert abs(draws.mean() - (total - 1) / (2 * total)) < 0.015  # mean of τ/T over τ = 0..T-1
    # seeded by (seed, τ, micro): the same draws again, in any order (a resumed run)
    assert all(curriculum.is_hybrid(s, m) == draws[s, m] for s in (399, 17, 230) for m in (7, 0, 3))
    assert Curriculum(total, kind="hybrid").is_hybrid(0) and not Curriculum(total, kind="text_only").is_hybrid(total)
