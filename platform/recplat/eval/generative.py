"""Generative evaluation: greedy answers, parsed into titles, matched exactly against the stored
candidates, scored as ranks (MoLoRec spec §3.7; LLaRA/CPRec §4.1 with `answer_format="single"`).

Scoring is pure, so it is tested on hand-made outputs:

    score_output("Comb||Gel||Soap", target="Gel", candidates=["Comb", "Gel", "Soap"])
    # -> OutputScore(rank=2, items=3, valid_items=3, unparseable=False, invalid=False)

- `ranked_list` (MoLoRec): the decoded text split on the separator ("||"), each piece stripped;
  the separator is found in the TEXT, never as a token id (tokenizers merge "||" with neighbours).
  rank = 1-based position of the target's first occurrence in that list (the authors' metrics.py);
- `single` (LLaRA's calculate_hr1): the first line; valid iff exactly one candidate title occurs
  in it, case-insensitively; rank 1 when that title is the target.

A target not found gets rank `max(len(items), len(candidates)) + 1`: HR@k and NDCG@k are 0 for
every k up to the candidate count. An output is *unparseable* when none of its items is a
candidate (nothing to rank), *invalid* when any item is not a candidate or repeats one (ranked
list) or when it does not name exactly one candidate (single).

`generative_results` turns the scores into the ranking evaluator's results (eval/results.py:
ranks.parquet with the outputs beside the ranks, metrics.json), each result row carrying the
shares of unparseable and invalid outputs.

Generation is greedy with the KV cache (`model.generate(do_sample=False)`) on left-padded batches
(`generate_greedy`); `generate_sharded` spreads the prompts over a pool of model actors with Ray
Data `map_batches` (one GPU each on a cluster, CPUs locally), so a test split is generated once,
not on every rank. `generate_and_score` is the whole evaluation of a split:

    results = generate_and_score(CausalLMSettings(name="offline:smollm2", system=...), examples, prompts,
                                 target_titles, candidate_titles, out_dir=run / "test", adapter=run / "adapter")
    results.overall, results.row("all")["unparseable"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import torch

from recplat.errors import DataError

AnswerFormat = Literal["ranked_list", "single"]
OUTPUT_COLUMNS = ("output", "items", "valid_items", "unparseable", "invalid")


@dataclass(frozen=True)
class OutputScore:
    rank: int  # 1-based; max(items, candidates) + 1 when the target was not named
    items: int  # titles parsed from the output
    valid_items: int  # of which distinct stored candidates
    unparseable: bool  # no candidate named at all
    invalid: bool  # a non-candidate or repeated title (ranked_list); not exactly one candidate (single)


def parse_ranked_titles(text: str, separator: str = "||") -> list[str]:
    """The non-empty, stripped pieces of `text` between separators, in order."""
    return [piece.strip() for piece in text.split(separator) if piece.strip()]


def score_output(text: str, target: str, candidates: Sequence[str], separator: str = "||",
                 answer_format: AnswerFormat = "ranked_list") -> OutputScore:  # fmt: skip
    """Score one generated answer against its target and stored candidate titles (target included)."""
    if answer_format == "single":
        return _score_single(text, target, candidates)
    items = parse_ranked_titles(text, separator)
    pool = set(candidates)
    distinct = list(dict.fromkeys(item for item in items if item in pool))
    rank = items.index(target) + 1 if target in items else max(len(items), len(candidates)) + 1
    return OutputScore(rank=rank, items=len(items), valid_items=len(distinct), unparseable=not distinct,
                       invalid=len(distinct) != len(items))


def _score_single(text: str, target: str, candidates: Sequence[str]) -> OutputScore:
    """LLaRA's calculate_hr1, line for line: the first line of the stripped output; every candidate
    whose lower-cased title occurs in it (a title listed twice counts twice); a hit iff exactly one
    did and it is the target, compared lower-cased."""
    named = _named_candidates(text, candidates)
    hit = len(named) == 1 and named[0].lower() == target.lower()
    return OutputScore(rank=1 if hit else len(candidates) + 1, items=len(named), valid_items=len(named),
                       unparseable=not named, invalid=len(named) != 1)


def score_outputs(texts: Sequence[str], targets: Sequence[str], candidates: Sequence[Sequence[str]],
                  separator: str = "||", answer_format: AnswerFormat = "ranked_list") -> dict[str, np.ndarray]:  # fmt: skip
    """Column arrays (rank, items, valid_items, unparseable, invalid) for many outputs."""
    if not len(texts) == len(targets) == len(candidates):
        raise DataError(f"{len(texts)} outputs, {len(targets)} targets and {len(candidates)} candidate lists")
    scores = [score_output(t, g, c, separator, answer_format) for t, g, c in zip(texts, targets, candidates)]
    return {
        "rank": np.array([s.rank for s in scores], dtype=np.int64),
        "items": np.array([s.items for s in scores], dtype=np.int64),
        "valid_items": np.array([s.valid_items for s in scores], dtype=np.int64),
        "unparseable": np.array([s.unparseable for s in scores], dtype=bool),
        "invalid": np.array([s.invalid for s in scores], dtype=bool),
    }


def generative_results(examples: pa.Table, texts: Sequence[str], targets: Sequence[str],
                       candidates: Sequence[Sequence[str]], metrics: Iterable[str] = ("ndcg@1", "ndcg@3"),
                       separator: str = "||", answer_format: AnswerFormat = "ranked_list",
                       by: Iterable[str] = ("target_domain",), segments=None):  # fmt: skip
    """EvalResults of the outputs (one per `examples` row, same order): metric means overall and
    per `by` column (and `segments`, name -> labels, e.g. sparse/medium/dense), each row with
    `unparseable` and `invalid` shares; the per-example table holds the ranks, the outputs and
    their parse counts (write it with `.write(directory)`).

    `single` answers are scored as LLaRA reports them (`llara_metrics`): `metrics` is replaced by
    hr@1 (over VALID outputs), valid_ratio and hr@1_x_valid_ratio (the early-stopping metric)."""
    from recplat.eval.results import OVERALL, evaluate_ranks

    scores = score_outputs(texts, targets, candidates, separator, answer_format)
    results = evaluate_ranks(examples, scores["rank"], ("hit@1",) if answer_format == "single" else metrics,
                             by=by, segments=segments)
    table = results.per_example.append_column("output", pa.array(list(texts), pa.string()))
    for name in OUTPUT_COLUMNS[1:]:
        table = table.append_column(name, pa.array(scores[name]))
    results.per_example = table
    for row in results.rows:
        select = (np.ones(len(texts), dtype=bool) if row["group"] == OVERALL
                  else np.asarray(table[row["group"]].to_pylist(), dtype=object).astype(str) == row["value"])
        for name in ("unparseable", "invalid"):
            row[name] = float(scores[name][select].mean()) if select.any() else None
        if answer_format == "single":
            hits = scores["rank"][select] == 1
            row.update(llara_metrics(int(hits.sum()), int((~scores["invalid"][select]).sum()), int(select.sum())))
            del row["hit@1"]
    if answer_format == "single":
        results.metrics = list(LLARA_METRICS)
    return results


LLARA_METRICS = ("hr@1", "valid_ratio", "hr@1_x_valid_ratio")


def llara_metrics(correct: int, valid: int, total: int) -> dict[str, float | None]:
    """LLaRA's numbers (spec §4.1): HR@1 = correct / valid outputs (not / all), ValidRatio =
    valid / all, and their product (= correct / all), the early-stopping metric. None: no output."""
    if total == 0:
        return dict.fromkeys(LLARA_METRICS)
    return {"hr@1": correct / valid if valid else 0.0, "valid_ratio": valid / total,
            "hr@1_x_valid_ratio": correct / total}


def _named_candidates(text: str, candidates: Sequence[str]) -> list[str]:
    first = text.strip().split("\n")[0].lower()
    return [c for c in candidates if c.lower() in first]


def named_candidate(text: str, candidates: Sequence[str]) -> str | None:
    """The one candidate a `single` answer names (LLaRA's validity rule), else None."""
    named = _named_candidates(text, candidates)
    return named[0] if len(named) == 1 else None


def ranks_from_rounds(named: Sequence[Sequence[str | None]], targets: Sequence[str], num_candidates: int) -> np.ndarray:
    """CPRec Table 6's top-k list: round r's named candidate is rank r; the list ends at the first
    round without a valid answer. A target never named gets rank num_candidates + 1."""
    ranks = np.full(len(targets), num_candidates + 1, dtype=np.int64)
    for i, (rounds, target) in enumerate(zip(named, targets)):
        for r, title in enumerate(rounds):
            if title is None:
                break
            if title.lower() == target.lower():
                ranks[i] = r + 1
                break
    return ranks


# --- generation ------------------------------------------------------------------------------


@torch.no_grad()
def generate_greedy(model, tokenizer, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
                    **model_inputs) -> tuple[list[str], np.ndarray]:  # fmt: skip
    """Greedy answers (special tokens dropped) to tokenized prompts, as one left-padded batch with
    the KV cache; also how many tokens each answer took (up to and including its EOS).
    `model_inputs` go to `model.generate` as well (LLaRA's item ids, models/hybrid_prompt.py)."""
    from recplat.models.padding import pad_sequences

    device = next(model.parameters()).device
    input_ids, attention_mask = pad_sequences(prompt_ids, tokenizer.pad_token_id, "left")
    out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                         max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         **{k: v.to(device) for k, v in model_inputs.items()})
    new = out[:, input_ids.shape[1]:].cpu()
    ended = new == tokenizer.eos_token_id
    lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, new.shape[1])  # through the first EOS
    texts = [tokenizer.decode(row[:n], skip_special_tokens=True) for row, n in zip(new, lengths.tolist())]
    return texts, lengths.numpy()


PEAK_COLUMNS = ("peak_rss_gib", "peak_gpu_gib")


class Generated(NamedTuple):
    texts: list[str]  # the answers, in prompt order
    new_tokens: np.ndarray  # tokens each answer took
    peak_memory: dict[str, float]  # the largest actor peak: peak_rss_gib, and peak_gpu_gib with a GPU


def answers_batch(rows: np.ndarray, texts: Sequence[str], lengths: np.ndarray) -> dict[str, np.ndarray]:
    """An actor's output batch: each row's answer and token count, and the actor's peak memory so
    far (GiB; `peak_gpu_gib` is NaN without a GPU), which `generate_sharded` reduces to one peak."""
    from recplat.peak_memory import peak_memory_gib

    peak = peak_memory_gib()
    return {"row": rows, "output": np.array(texts, dtype=object), "new_tokens": lengths,
            **{k: np.full(len(rows), peak.get(k, np.nan)) for k in PEAK_COLUMNS}}


class GenerationActor:
    """One model per Ray actor; a `map_batches` callable: {row, prompt} -> `answers_batch`."""

    def __init__(self, settings: dict, adapter: str | None, max_new_tokens: int, threads: int):
        from recplat.models.causal_lm import CausalLMSettings, load_causal_lm

        torch.set_num_threads(threads)
        self.settings = CausalLMSettings.model_validate(settings)
        self.model, self.tokenizer = load_causal_lm(self.settings, adapter)
        if torch.cuda.is_available():
            self.model.cuda()
        self.fmt, self.max_new_tokens = self.settings.prompt_format(), max_new_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [self.fmt.prompt_ids(self.tokenizer, str(p))[-self.settings.max_length :] for p in batch["prompt"]]
        texts, lengths = generate_greedy(self.model, self.tokenizer, ids, self.max_new_tokens)
        return answers_batch(batch["row"], texts, lengths)


def generate_sharded(settings, prompts: Sequence[str], adapter: str | Path | None = None, max_new_tokens: int = 64,
                     batch_size: int = 8, num_actors: int = 2, use_gpu: bool = False,
                     cpus_per_actor: float = 1, actor=GenerationActor, actor_kwargs: dict | None = None,
                     columns: dict[str, pa.Array] | None = None) -> Generated:  # fmt: skip
    """Greedy answers to `prompts` (in order) from a pool of `num_actors` model actors (at most one
    per batch), the tokens each took, and the actors' peak memory. `settings` is a
    CausalLMSettings, `adapter` an optional peft folder merged in.

    The prompts travel in blocks of `batch_size` rows, one generate call each, so a batch holds
    the same prompts as `batch_size` slices of the list would (and gives the same answers).
    Another `actor` class (same constructor keywords plus `actor_kwargs`) may read more per-prompt
    `columns` (e.g. LLaRA's item ids, recipes/llara.py); it returns `answers_batch`."""
    import ray.data

    from recplat.runtime import init_ray

    init_ray()
    table = pa.table({"row": pa.array(np.arange(len(prompts), dtype=np.int64)),
                      "prompt": pa.array(list(prompts), pa.string()), **(columns or {})})
    blocks = [table.slice(start, batch_size) for start in range(0, len(prompts), batch_size)]
    if not blocks:
        return Generated([], np.zeros(0, dtype=np.int64), {})
    generated = ray.data.from_arrow(blocks).map_batches(
        actor,
        fn_constructor_kwargs=dict(settings=settings.model_dump(), adapter=None if adapter is None else str(adapter),
                                   max_new_tokens=max_new_tokens, threads=max(1, int(cpus_per_actor)),
                                   **(actor_kwargs or {})),
        batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(num_actors, len(blocks))),  # no actor loads a model for nothing
        num_cpus=cpus_per_actor, num_gpus=1 if use_gpu else 0,
    ).to_arrow_refs()
    out = pa.concat_tables(ray.get(generated)).sort_by("row")
    if out.num_rows != len(prompts):
        raise DataError(f"generation returned {out.num_rows} answers for {len(prompts)} prompts")
    peaks = {k: float(np.nanmax(v)) for k in PEAK_COLUMNS if not np.isnan(v := out[k].to_numpy()).all()}
    return Generated(out["output"].to_pylist(), out["new_tokens"].to_numpy(), peaks)


def generate_and_score(settings, examples: pa.Table, prompts: Sequence[str], targets: Sequence[str],
                       candidates: Sequence[Sequence[str]], out_dir: str | Path | None = None,
                       adapter: str | Path | None = None, metrics: Iterable[str] = ("ndcg@1", "ndcg@3"),
                       separator: str = "||", answer_format: AnswerFormat = "ranked_list", max_new_tokens: int = 64,
                       batch_size: int = 8, num_actors: int = 2, use_gpu: bool = False):  # fmt: skip
    """The whole generative evaluation of one split: `generate_sharded`, then `generative_results`
    (plus each answer's `new_tokens`), written to `out_dir` (ranks.parquet, metrics.json) when given.

    One row of `examples` (the stored examples: user, scope, position, target_domain) per prompt,
    with its target title and its candidate titles (target included) in the same order."""
    texts, tokens, _ = generate_sharded(settings, prompts, adapter, max_new_tokens, batch_size, num_actors, use_gpu)
    results = generative_results(examples, texts, targets, candidates, metrics, separator, answer_format)
    results.per_example = results.per_example.append_column("new_tokens", pa.array(tokens))
    if out_dir is not None:
        results.write(out_dir)
    return results
