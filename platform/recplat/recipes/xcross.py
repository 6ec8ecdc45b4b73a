"""X-Cross (spec §2): per-domain LoRA experts on one encoder, integrated layer by layer for a target.

    recplat run xcross/table2_lora --profile smoke   # stage 1: one LoRA expert per domain
    recplat run xcross/table2 --profile smoke        # stage 2: X-Cross on each target domain
    recplat train xcross --config my.yaml [key=value ...]

Every example is one multiple-choice question (§2.2): the user's history titles paired with each of
the 30 stored choices (target + 29 popularity-sampled negatives, shuffled at preparation time; the
`xcross` rendering of `recplat prepare`), scored by pooler + scorer (Eq. 7-8), trained with the
30-way cross-entropy (Eq. 1). `method` picks what trains:

    lora           a fresh LoRA adapter + pooler/scorer on the target (stage 1; the "<Domain>-LoRA"
                   diagonal of Table 2; the LoRA arm of the data-limited experiment). Writes
                   out/adapter/ (peft format + head.safetensors): the expert other runs integrate.
    xcross         the `xcross.num_sources` experts of `xcross.experts` with the best zero-shot score
                   on the target's validation questions (computed, never typed: Table 1's "source
                   domains"), frozen and integrated in the top `xcross.integrate_layers` blocks
                   (Eq. 3-6, models/layer_integration.py); only the integrator and the pooler/scorer
                   (initialised from the best expert's) train. alpha = beta = 0 is "-Layers",
                   beta = 0 "-Interactions", alpha = 0 "-Experts" (Table 4).
    pooler_scorer  the best zero-shot expert with only its pooler/scorer fine-tuned (Table 2 baseline).

`xcross` and `pooler_scorer` also score every expert zero-shot on the test questions (the
off-diagonal "<Domain>-LoRA" rows and Table 3's reference line) with a paired t-test against each.
`data.train_size` + `data.repeats` give the data-limited experiment (§2.12): that many seeded random
training questions, `repeats` times (seeds 0..repeats-1), every repeat tested on the full test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import Field, model_validator

from recplat.config import StrictModel
from recplat.data.dataset import PreparedDataset
from recplat.errors import ConfigError
from recplat.recipes.settings import BackboneSettings, LoraSettings
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig
from recplat.train.task import Task

KEYS = ["user", "scope", "position"]
ADAPTER_DIR = "adapter"


# --- configuration ---------------------------------------------------------------------------
class ModelSettings(BackboneSettings):  # name: the paper's is microsoft/deberta-v3-base
    max_length: int = Field(512, ge=16)  # tokens per (history, choice) pair; the history is cut from the oldest
    dropout: float = Field(0.0, ge=0, lt=1)  # pooler/scorer dropout


class XCrossSettings(StrictModel):
    experts: list[RunRef] = []  # finished `method: lora` runs: the candidate source experts
    num_sources: int = Field(2, ge=1)  # n: the paper integrates the two best zero-shot experts
    selection_metric: str = "mrr"  # zero-shot validation metric that ranks the experts
    integrate_layers: int = Field(9, ge=1)  # top-k blocks integrated (paper: 9 of 12; Fig. 4: 1, 2, 4, 8)
    alpha: float = 0.5  # Eq. 5 weight of the other experts' states ([U]: tuned on hold-out)
    beta: float = 0.5  # Eq. 5 weight of the pairwise interactions ([U])


class XCrossData(StrictModel):
    dataset: str  # a prepared dataset with the xcross rendering (preset xcross_tools)
    domains: list[str] | None = None  # only questions whose target is in these domains; None: all
    train_size: int | None = Field(None, ge=1)  # data-limited: this many seeded random train questions
    repeats: int = Field(1, ge=1)  # data-limited: random subsets (seeds 0..repeats-1), each tested


class EvalSettings(StrictModel):
    metrics: list[str] = ["hit@1", "hit@3", "hit@10", "mrr"]  # Table 2
    valid_size: int | None = Field(None, ge=1)  # validation questions (early stopping, selection); None: all
    batch_size: int = Field(4, ge=1)  # questions per forward pass at evaluation
    compare_with: list[RunRef] = []  # other runs on the same test questions: paired t-test each
    significance: Literal["paired_t_test"] = "paired_t_test"  # two-tailed, spec §2.10


class Config(StrictModel):
    method: Literal["lora", "xcross", "pooler_scorer"] = "lora"
    data: XCrossData
    model: ModelSettings = ModelSettings()
    # spec §2.4: rank 16 (2*16*768 parameters per adapted matrix); alpha 32 ([U] in the paper); dropout 0
    lora: LoraSettings = LoraSettings(rank=16, alpha=32, dropout=0.0)
    xcross: XCrossSettings = XCrossSettings()
    eval: EvalSettings = EvalSettings()
    train: TrainConfig = TrainConfig(micro_batch_size=1, lr=1e-4, weight_decay=0.01, eval_every=50,
                                     metric="hit@1", mode="max", num_workers=1)
    out: str = "runs/xcross"

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        if self.method != "lora" and not self.xcross.experts:
            raise ValueError(f"method: {self.method} needs xcross.experts (finished `method: lora` runs)")
        if self.method == "xcross" and self.xcross.num_sources > len(self.xcross.experts):
            raise ValueError(f"xcross.num_sources: {self.xcross.num_sources} sources from "
                             f"{len(self.xcross.experts)} expert(s)")
        if self.eval.compare_with and self.data.repeats > 1:
            raise ValueError("eval.compare_with: pairs single runs; with data.repeats > 1 compare in the report")
        return self


# --- questions: the rendered text as plain data --------------------------------------------
@dataclass
class Questions:
    history: list[str]  # one history text per question
    choices: list[list[str]]  # C choice titles per question
    label: np.ndarray  # [N] index of the positive among the choices

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def from_table(cls, table: pa.Table) -> "Questions":
        return cls(table.column("history_text").to_pylist(), table.column("choices").to_pylist(),
                   table.column("label").to_numpy().astype(np.int64))

    def take(self, rows: np.ndarray) -> "Questions":
        return Questions([self.history[i] for i in rows], [self.choices[i] for i in rows], self.label[rows])


def load_questions(prepared: PreparedDataset, split: str, domains: list[str] | None) -> pa.Table:
    """The xcross rendering of one split with each question's target_domain, in key order."""
    import pyarrow.compute as pc

    rendered = prepared.rendered("xcross", split).sort_by([(k, "ascending") for k in KEYS])
    examples = prepared.examples(split).sort_by([(k, "ascending") for k in KEYS])
    if not all(rendered.column(k).equals(examples.column(k)) for k in KEYS):
        raise ConfigError(f"{prepared.path}: the xcross rendering of {split} does not match its examples; re-prepare")
    table = rendered.append_column("target_domain", examples.column("target_domain"))
    if domains is not None:
        table = table.filter(pc.is_in(table.column("target_domain"), pa.array(domains, pa.string())))
    return table


def subset_rows(n: int, size: int | None, seed: int) -> np.ndarray:
    """`size` seeded random rows of n (all of them, in order, when size is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# --- the model builders --------------------------------------------------------------------
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from recplat.models.offline import resolve_model_name

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(name))
    tokenizer.truncation_side = "left"  # a long history loses its oldest titles, never the choice
    return tokenizer


def _base_encoder(name: str):
    from transformers import AutoModel

    from recplat.models.offline import resolve_model_name

    return AutoModel.from_pretrained(resolve_model_name(name))


def load_expert(name: str, expert_dir: str | Path):
    """(encoder with the expert's LoRA merged into its weights, its head), both frozen."""
    from peft import PeftModel

    from recplat.models.multiple_choice import MultipleChoiceHead

    adapter = Path(expert_dir) / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{expert_dir}: no {ADAPTER_DIR}/adapter_config.json (is it a finished `method: lora` run?)")
    encoder = PeftModel.from_pretrained(_base_encoder(name), str(adapter)).merge_and_unload()
    head = MultipleChoiceHead(encoder.config.hidden_size).load(adapter)
    for p in [*encoder.parameters(), *head.parameters()]:
        p.requires_grad_(False)
    return encoder, head


class XCrossTask(Task):
    """One recipe method as a training-spine Task; plain data here, models built in the workers.

    `role` is the config's method, or "expert" (an expert scored as it is: zero-shot).
    """

    def __init__(self, cfg: Config, role: str, expert_dirs: list[str], valid: Questions | None):
        self.cfg, self.role, self.expert_dirs, self.valid = cfg, role, list(expert_dirs), valid
        self._tokenizer = None

    def build_model(self) -> torch.nn.Module:
        from recplat.adapters import apply_lora
        from recplat.models.layer_integration import XCrossEncoder
        from recplat.models.multiple_choice import MultipleChoiceModel

        cfg = self.cfg
        if self.role == "lora":
            base = _base_encoder(cfg.model.name)
            encoder = apply_lora(base, cfg.lora.peft_config(base))
            return MultipleChoiceModel(encoder, base.config.hidden_size, cfg.model.dropout)
        experts = [load_expert(cfg.model.name, d) for d in self.expert_dirs]
        if self.role == "xcross":
            x = cfg.xcross
            encoder = XCrossEncoder([e for e, _ in experts], x.integrate_layers, x.alpha, x.beta)
        else:  # pooler_scorer / expert: the first (best) expert's encoder, frozen
            encoder = experts[0][0]
        hidden = experts[0][0].config.hidden_size
        model = MultipleChoiceModel(encoder, hidden, cfg.model.dropout)
        model.head.load_state_dict(experts[0][1].state_dict())  # the best expert's pooler/scorer
        model.head.requires_grad_(self.role != "expert")
        return model

    def tokenize(self, history: list[str], choices: list[list[str]]) -> dict[str, torch.Tensor]:
        """[B, C, T] ids and mask for B questions of C (history, choice) pairs."""
        if self._tokenizer is None:
            self._tokenizer = _tokenizer(self.cfg.model.name)
        width = len(choices[0])
        if any(len(c) != width for c in choices):
            raise ConfigError("questions in one batch have different numbers of choices")
        firsts = [h for h in history for _ in range(width)]
        seconds = [str(c) for cs in choices for c in cs]
        enc = self._tokenizer(firsts, seconds, truncation="only_first", max_length=self.cfg.model.max_length,
                              padding="longest", return_tensors="pt")
        return {k: v.view(len(history), width, -1) for k, v in enc.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")}

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = self.tokenize([str(h) for h in batch["history_text"]], [list(c) for c in batch["choices"]])
        out["label"] = torch.as_tensor(np.asarray(batch["label"], dtype=np.int64))
        return out

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 1: cross-entropy of the positive among the question's choices."""
        inputs = {k: v for k, v in batch.items() if k != "label"}
        return torch.nn.functional.cross_entropy(model(**inputs), batch["label"])

    @torch.no_grad()
    def scores(self, model, questions: Questions) -> np.ndarray:
        """[N, C] logits."""
        device = next(model.parameters()).device
        step, out = self.cfg.eval.batch_size, []
        for i in range(0, len(questions), step):
            inputs = self.tokenize(questions.history[i : i + step], questions.choices[i : i + step])
            out.append(model(**{k: v.to(device) for k, v in inputs.items()}).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def validate(self, model) -> dict[str, float]:
        from recplat.eval.metrics import mean_metrics

        if not self.valid:
            return {}
        return mean_metrics(ranks_of(self.scores(model, self.valid), self.valid.label), self.cfg.eval.metrics)


def ranks_of(scores: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Pessimistic 1-based rank of each positive among its question's choices."""
    from recplat.eval.metrics import pessimistic_ranks

    rows = np.arange(len(label))
    others = np.ones_like(scores, dtype=bool)
    others[rows, label] = False
    return pessimistic_ranks(scores[rows, label], scores, mask=others).astype(np.int64)


# --- scoring in a Ray task (a GPU one when the job has GPUs) --------------------------------
def export_expert(directory: str):
    """After loading a `method: lora` checkpoint: write the expert other runs integrate (the peft
    adapter + the pooler/scorer) to `directory`."""
    def export(model) -> None:
        from recplat.adapters import save_adapter

        save_adapter(model.encoder, directory)
        model.head.save(directory)

    return export


def score_remote(task: XCrossTask, checkpoint: str | None, questions: Questions, use_gpu: bool = False,
                 export_to: str | None = None) -> tuple[np.ndarray, dict]:  # fmt: skip
    """[N, C] scores of the questions under the checkpoint (None: the task's model as built)."""
    from recplat.eval.checkpoints import score_checkpoint

    return score_checkpoint(task, checkpoint, lambda task, model: task.scores(model, questions), use_gpu,
                            prepare=export_expert(export_to) if export_to is not None else None)


# --- the run -------------------------------------------------------------------------------
def expert_name(ref: RunRef) -> str:
    return ref.variant or ref.job or Path(ref.run_dir).name


def rank_experts(cfg: Config, valid: Questions, test: Questions) -> list[dict]:
    """Every candidate expert scored zero-shot on the target's validation and test questions,
    best first by `xcross.selection_metric` on validation."""
    from recplat.eval.checkpoints import score_checkpoint
    from recplat.eval.metrics import mean_metrics

    metrics = list(dict.fromkeys([*cfg.eval.metrics, cfg.xcross.selection_metric]))
    rows = []
    for ref in cfg.xcross.experts:
        ref.summary("xcross.experts")  # a clear error when the expert has not finished
        task = XCrossTask(cfg, "expert", [ref.run_dir], None)
        (valid_scores, test_scores), _ = score_checkpoint(  # both splits on the model built once
            task, None, lambda task, model: (task.scores(model, valid), task.scores(model, test)), cfg.train.use_gpu)
        test_ranks = ranks_of(test_scores, test.label)
        rows.append({"expert": expert_name(ref), "dir": ref.run_dir,
                     "valid": mean_metrics(ranks_of(valid_scores, valid.label), metrics),
                     "test": mean_metrics(test_ranks, cfg.eval.metrics), "test_ranks": test_ranks})
        print(f"[xcross] zero-shot {rows[-1]['expert']}: valid {rows[-1]['valid']}", flush=True)
    return sorted(rows, key=lambda r: -r["valid"][cfg.xcross.selection_metric])


def run(cfg: Config) -> RunSummary:
    import time

    from recplat.eval.results import evaluate_ranks
    from recplat.eval.significance import compare_metric, compare_with_run
    from recplat.runtime import init_ray
    from recplat.storage import write_json_atomic
    from recplat.train.launch import checkpoint_uri, fit

    started = time.time()
    init_ray()
    out = Path(cfg.out)
    prepared = PreparedDataset.open(cfg.data.dataset)
    tables = {s: load_questions(prepared, s, cfg.data.domains) for s in ("train", "valid", "test")}
    for split, table in tables.items():
        if table.num_rows == 0:
            raise ConfigError(f"{prepared.path}: no {split} questions" + (f" in {cfg.data.domains}" if cfg.data.domains else ""))
    valid_all, test = Questions.from_table(tables["valid"]), Questions.from_table(tables["test"])
    valid = valid_all.take(subset_rows(len(valid_all), cfg.eval.valid_size, cfg.train.seed))
    summary: dict = {"recipe": "xcross", "method": cfg.method, "dataset": str(prepared.path),
                     "test_examples": len(test), "train_questions": tables["train"].num_rows}

    experts: list[str] = []
    ranked = []
    if cfg.method != "lora":
        ranked = rank_experts(cfg, valid, test)
        keep = cfg.xcross.num_sources if cfg.method == "xcross" else 1
        experts = [r["dir"] for r in ranked[:keep]]
        summary["sources"] = [r["expert"] for r in ranked[:keep]]
        summary["zero_shot"] = [{k: r[k] for k in ("expert", "valid", "test")} for r in ranked]

    metric_names = cfg.eval.metrics
    all_ranks, repeat_labels, repeats = [], [], []
    for repeat in range(cfg.data.repeats):
        rows = subset_rows(tables["train"].num_rows, cfg.data.train_size, seed=repeat)
        train_table = tables["train"].take(pa.array(rows)).select(["history_text", "choices", "label"])
        task = XCrossTask(cfg, cfg.method, experts, valid)
        name = cfg.method if cfg.data.repeats == 1 else f"{cfg.method}-repeat{repeat}"
        train = cfg.train.model_copy(update={"seed": cfg.train.seed + repeat})
        if train.storage_path == TrainConfig().storage_path:
            train = train.model_copy(update={"storage_path": str((out / "checkpoints").absolute()), "name": name})
        import ray.data

        result = fit(task, train, ray.data.from_arrow(train_table))
        checkpoint = checkpoint_uri(result.best_checkpoint)
        export = str(out / ADAPTER_DIR) if cfg.method == "lora" and repeat == 0 else None
        scores, params = score_remote(task, checkpoint, test, cfg.train.use_gpu, export_to=export)
        ranks = ranks_of(scores, test.label)
        all_ranks.append(ranks)
        repeat_labels += [str(repeat)] * len(ranks)
        repeats.append({"repeat": repeat, "train_questions": len(rows), "best_checkpoint": checkpoint,
                        "best_validation": result.best_metrics, "train": result.summary})
        summary["params"] = params

    test_table = pa.concat_tables([tables["test"]] * cfg.data.repeats)
    segments = {"repeat": repeat_labels} if cfg.data.repeats > 1 else {}
    results = evaluate_ranks(test_table, np.concatenate(all_ranks), metric_names, by=("target_domain",),
                             segments=segments)
    results.write(out / "test")
    summary.update(overall=results.overall, repeats=repeats, best_checkpoint=repeats[0]["best_checkpoint"],
                   seconds={"total": round(time.time() - started, 1)})
    if cfg.data.repeats == 1:
        summary["best_validation"] = repeats[0]["best_validation"]
        summary["train"] = repeats[0]["train"]

    # paired t-tests: this run against each zero-shot expert and each compare_with run
    tests = []
    ours = np.concatenate(all_ranks)
    for r in ranked:
        theirs = np.tile(r["test_ranks"], cfg.data.repeats)
        tests += [{"against": f"zero-shot {r['expert']}", "metric": m, **compare_metric(ours, theirs, m)}
                  for m in metric_names]
    if cfg.eval.compare_with:
        for ref in cfg.eval.compare_with:
            ref.summary("eval.compare_with")
            for row in compare_with_run(results, ref.run_dir):
                if row["group"] == "all":
                    tests += [{"against": expert_name(ref), "metric": m, **row[m]} for m in metric_names if m in row]
    summary["significance"] = tests
    write_json_atomic(out / "test" / "significance.json", tests)
    summary = RunSummary.model_validate(summary)
    summary.write(out)
    print(f"\nxcross ({cfg.method}): test results ({len(test):,} questions"
          + (f" x {cfg.data.repeats} repeats" if cfg.data.repeats > 1 else "") + f")\n{results.format_table()}",
          flush=True)
    for t in tests:
        if t["p"] is not None:
            print(f"  vs {t['against']}: {t['metric']} {t['ours']:.4f} vs {t['theirs']:.4f} (p = {t['p']:.3g})")
    return summary
