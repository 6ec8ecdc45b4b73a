"""MoLoRec (spec §3, docs/papers.md): a domain-general and a domain-specific LoRA, mixed in weight space.

    recplat run molorec/stage1_general --profile smoke   # stage 1: Θ_g on the source domains (Eq. 4)
    recplat run molorec/table1_warm --profile smoke      # stage 2 + mixture on each target (Eq. 5-10)
    recplat train molorec --config my.yaml [key=value ...]

Every example is one instruction (§3.2, the `molorec` rendering of `recplat prepare`): the history
titles and the 30 stored candidates (target + 29, shuffled at preparation time) joined by "||"; the
answer is the target followed by 4 other candidates. Training is the answer-only causal-LM loss
(Eq. 1/3) on the Ray Train spine (recipes/answer_task.py). Testing generates greedily, parses the
"||"-separated list and ranks the target exactly among the candidates (eval/generative.py, §3.7).

`stage` picks what runs:

    general          stage 1 (Eq. 4): one LoRA on the validation prompt of every user of every domain
                     of `data.dataset` (the authors' merge.py), shuffled; exported to out/adapter.
    mixture          MoLoRec: stage 2 (Eq. 5), a LoRA on the target's prompts, then the per-module
                     mixture w_g Θ_g ⊕ w_s Θ_s of `general_from`'s adapter and it (Eq. 6,
                     models/lora_mixture.py), w chosen by `mixture.coefficients`:
                       entropy  Eq. 9-10 on the first `tta_prompts` unlabeled TEST prompts
                                (models/entropy_adaptation.py); its lr picked on validation prompts
                                from `mixture.lr_grid` (the authors picked it on test labels)
                       grid     the w_g of `mixture.grid` with the best validation NDCG@1
                       fixed    `mixture.fixed`
                     MoLoRec-G and MoLoRec-S are tested alongside, with paired t-tests.
    general_only     MoLoRec-G: `general_from`'s adapter tested zero-shot on the target.
    specific_only    MoLoRec-S: stage 2 alone.
    tallrec          TALLRec-style: one LoRA from the base model on the target's training prompts
                     (same template; identical to specific_only unless its data settings differ).
    second_finetune  Θ_g fine-tuned again on the target's prompts (Table 3's collapsing baseline).

Selection (grid, lr) uses `eval.valid_size` validation prompts held out of training, never test.
`score_mixture` is the evaluation-only function a Ray Tune search over w calls.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from recplat.config import StrictModel
from recplat.models.causal_lm import CausalLMSettings, LoraSettings
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig

SYSTEM = "You are a helpful recommendation assistant."  # §3.2
KEYS = ["user", "scope", "position"]
STAGES = ("general", "mixture", "general_only", "specific_only", "tallrec", "second_finetune")


# --- configuration ---------------------------------------------------------------------------
class ModelSettings(CausalLMSettings):
    template: Literal["molorec"] = "molorec"  # the rendering family the prompts come from
    system: str | None = SYSTEM
    max_length: int = Field(1200, ge=8)  # the authors' cutoff_len


class MoLoRecData(StrictModel):
    dataset: str  # a prepared dataset with the molorec rendering (preset molorec_beauty)
    domains: list[str] | None = None  # only examples whose target is in these domains; None: all


class GeneralData(StrictModel):
    prompts: Literal["valid_per_user"] = "valid_per_user"  # the authors' merge.py: one per user


class SpecificData(StrictModel):
    train_prompts: int = Field(30000, ge=0)  # random training prompts (merge.py: 30,000)
    include_valid_prompts: bool = True  # merge.py adds the validation prompts (minus the held-out ones)
    train_fraction: float | None = Field(None, gt=0, le=1)  # few-shot (Table 3): this share of the above


class MixtureSettings(StrictModel):
    merge: Literal["product", "factor"] = "product"  # factor: the Eq. 7-8 ablation
    coefficients: Literal["entropy", "grid", "fixed"] = "entropy"
    init: tuple[float, float] = (0.5, 0.5)  # λ initialisation (authors: [.5, .5])
    fixed: tuple[float, float] = (0.5, 0.5)  # (w_g, w_s) for coefficients: fixed
    grid: list[float] = [0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0]  # w_g values tried on validation
    tta_prompts: int = Field(100, ge=1)  # unlabeled prompts (warm 100, cold 50)
    first_tokens: int = Field(3, ge=1)  # k (Beauty 5)
    batch_tokens: int = Field(60, ge=1)
    grad_accum: int = Field(4, ge=1)
    lr: float | None = Field(1.0, gt=0)  # used as is when lr_grid is empty
    lr_grid: list[float] = []  # chosen on validation (authors' warm .5-5, cold .01-.09)
    max_new_tokens: int = Field(400, ge=1)  # decoding length while adapting


class EvalSettings(StrictModel):
    metrics: list[str] = ["ndcg@1", "ndcg@3", "hit@1", "hit@3"]
    max_new_tokens: int = Field(800, ge=1)
    significance: Literal["paired_t_test"] = "paired_t_test"
    valid_size: int = Field(100, ge=2)  # validation prompts held out of training, for selection and val_loss
    test_size: int | None = Field(None, ge=2)  # a seeded subset of the test prompts; None: all
    batch_size: int = Field(8, ge=1)
    num_actors: int = Field(1, ge=1)  # generation actors (one GPU each with train.use_gpu)
    seed: int = 42


class Config(StrictModel):
    data: MoLoRecData
    stage: Literal["general", "mixture", "general_only", "specific_only", "tallrec", "second_finetune"] = "mixture"
    model: ModelSettings = ModelSettings()
    lora: LoraSettings = LoraSettings(rank=16, alpha=32, dropout=0.05)
    train: TrainConfig = TrainConfig(micro_batch_size=2, grad_accum=8, lr=2e-4, schedule="cosine", warmup_ratio=0.05,
                                     epochs=4, eval_every=30, metric="val_loss", mode="min")
    general_from: RunRef | None = None  # a finished `stage: general` run (its out/adapter)
    general: GeneralData = GeneralData()
    specific: SpecificData = SpecificData()
    mixture: MixtureSettings = MixtureSettings()
    eval: EvalSettings = EvalSettings()
    out: str = "runs/molorec"

    @model_validator(mode="after")
    def _general_from_when_needed(self) -> "Config":
        needs = self.stage in ("mixture", "general_only", "second_finetune")
        if needs and self.general_from is None:
            raise ValueError(f"stage: {self.stage} needs general_from (a finished stage: general run)")
        if self.mixture.coefficients == "entropy" and self.mixture.lr is None and not self.mixture.lr_grid:
            raise ValueError("mixture: coefficients: entropy needs lr or lr_grid")
        return self


# --- data: the rendered prompts as plain rows -------------------------------------------------
def load_split(prepared, split: str, domains: list[str] | None, family: str = "molorec") -> pa.Table:
    """One rendering `family` of one split in key order, with target_domain, target and candidate
    titles (LLaRA reads its `llara` rendering through this too)."""
    import pyarrow.compute as pc

    from recplat.errors import ConfigError

    rendered = prepared.rendered(family, split).sort_by([(k, "ascending") for k in KEYS])
    examples = prepared.examples(split).sort_by([(k, "ascending") for k in KEYS])
    if not all(rendered.column(k).equals(examples.column(k)) for k in KEYS):
        raise ConfigError(f"{prepared.path}: the {family} rendering of {split} does not match its examples; re-prepare")
    titles = prepared.titles
    table = rendered.append_column("target_domain", examples.column("target_domain")).append_column(
        "target_title", pa.array(titles[examples.column("target").to_numpy()].tolist(), pa.string()))
    table = table.append_column("candidate_titles", pa.array(
        [titles[np.asarray(c, dtype=np.int64)].tolist() for c in table.column("candidate_items").to_pylist()]))
    if domains is not None:
        table = table.filter(pc.is_in(table.column("target_domain"), pa.array(domains, pa.string())))
    return table


def seeded_rows(n: int, size: int | None, seed: int) -> np.ndarray:
    """`size` seeded random rows of n, in a seeded random order (all n when size is None or >= n)."""
    order = np.random.default_rng(seed).permutation(n)
    return order if size is None else order[: min(size, n)]


def strings(table: pa.Table, column: str) -> list[str]:
    return [str(v) for v in table.column(column).to_pylist()]


# --- training: one LoRA on (prompt, answer) rows -----------------------------------------------
def train_adapter(cfg: Config, name: str, train_rows: pa.Table, valid_rows: pa.Table, out: Path,
                  init_from: str | None = None) -> tuple[Path, dict]:  # fmt: skip
    """Eq. 3: a LoRA on the answer tokens of `train_rows`, best checkpoint by val_loss on
    `valid_rows`, exported as a plain peft adapter to out/<name>."""
    from recplat.recipes.answer_task import AnswerTask, FinetuneSettings, finetune, instruction_dataset

    train = cfg.train
    if train.storage_path == TrainConfig().storage_path:  # default: checkpoints next to the results
        train = train.model_copy(update={"storage_path": str((out / "checkpoints").absolute()), "name": name})
    task = AnswerTask(cfg.model, FinetuneSettings(method="lora", lora=cfg.lora, init_from=init_from),
                      strings(valid_rows, "prompt"), strings(valid_rows, "answer"))
    data = instruction_dataset(strings(train_rows, "prompt"), strings(train_rows, "answer"))
    result, exported = finetune(task, train, data, out / name)
    return exported, {"train_prompts": train_rows.num_rows, "best_validation": result.best_metrics,
                      "train": result.summary}


def target_training_rows(cfg: Config, train: pa.Table, held_in_valid: pa.Table) -> pa.Table:
    """Stage 2's data (§3.3): the validation prompts not held out + `train_prompts` random training
    prompts, then (few-shot) `train_fraction` of them, in a seeded order."""
    picked = train.take(seeded_rows(train.num_rows, cfg.specific.train_prompts, cfg.train.seed))
    rows = pa.concat_tables([held_in_valid, picked]) if cfg.specific.include_valid_prompts else picked
    keep = rows.num_rows if cfg.specific.train_fraction is None else max(1, round(cfg.specific.train_fraction * rows.num_rows))
    return rows.take(seeded_rows(rows.num_rows, keep, cfg.train.seed + 1))


# --- evaluation -------------------------------------------------------------------------------
def evaluate_adapter(cfg: Config, rows: pa.Table, adapter: Path, out_dir: Path | None):
    """Greedy answers of base + `adapter` to `rows`, scored (HR/NDCG, unparseable/invalid shares)."""
    from recplat.eval.generative import generate_and_score

    settings = CausalLMSettings(**cfg.model.model_dump(exclude={"template"}))
    return generate_and_score(settings, rows, strings(rows, "prompt"), strings(rows, "target_title"),
                              rows.column("candidate_titles").to_pylist(), out_dir=out_dir, adapter=adapter,
                              metrics=cfg.eval.metrics, max_new_tokens=cfg.eval.max_new_tokens,
                              batch_size=cfg.eval.batch_size, num_actors=cfg.eval.num_actors,
                              use_gpu=cfg.train.use_gpu)  # fmt: skip


class MixtureContext:
    """The base model with Θ_g and Θ_s side by side (in this process) and the mixture over them."""

    def __init__(self, cfg: Config, general: Path, specific: Path):
        from recplat.models.causal_lm import load_causal_lm
        from recplat.models.lora_mixture import LoraMixture, load_adapter_pair

        base, self.tokenizer = load_causal_lm(CausalLMSettings(**cfg.model.model_dump(exclude={"template"})))
        self.cfg = cfg
        self.mixture = LoraMixture(load_adapter_pair(base, general, specific), init=cfg.mixture.init)
        self.fmt = cfg.model.prompt_format()

    def prompt_ids(self, rows: pa.Table) -> list[list[int]]:
        return [self.fmt.prompt_ids(self.tokenizer, p)[-self.cfg.model.max_length :] for p in strings(rows, "prompt")]

    def export(self, directory: Path) -> Path:
        from recplat.models.lora_mixture import export_cat_adapter, export_factor_adapter

        export = export_cat_adapter if self.cfg.mixture.merge == "product" else export_factor_adapter
        return export(self.mixture, directory)


def score_mixture(ctx: MixtureContext, weights: tuple[float, float], rows: pa.Table, scratch: Path,
                  metric: str = "ndcg@1") -> float:  # fmt: skip
    """Evaluation only: `metric` of the mixture with every module at (w_g, w_s) on `rows` (validation)."""
    ctx.mixture.set_weights(weights)
    adapter = ctx.export(scratch / f"mix_{weights[0]:.4f}")
    return float(evaluate_adapter(ctx.cfg, rows, adapter, None).overall[metric])


def adapt_by_entropy(ctx: MixtureContext, rows: pa.Table, m, lr: float) -> dict:
    """λ reset to `m.init` (`m`: the run's mixture settings), then one Eq. 10 pass at `lr` over the
    first `m.tta_prompts` prompts of `rows`, unlabeled. Returns the pass's report."""
    from recplat.models.entropy_adaptation import EntropySettings, adapt_mixture_by_entropy

    settings = EntropySettings(lr=lr, first_tokens=m.first_tokens, batch_tokens=m.batch_tokens,
                               grad_accum=m.grad_accum, max_new_tokens=m.max_new_tokens)  # fmt: skip
    ctx.mixture.reset(m.init)
    return adapt_mixture_by_entropy(ctx.mixture, ctx.tokenizer, ctx.prompt_ids(rows.slice(0, m.tta_prompts)), settings)


def entropy_mixture(ctx: MixtureContext, valid: pa.Table, test: pa.Table, scratch: Path) -> dict:
    """Eq. 10 with its lr chosen on validation: for each lr, adapt on unlabeled validation prompts and
    score on their labels; then adapt with the best lr on the first `tta_prompts` test prompts."""
    m = ctx.cfg.mixture
    grid = m.lr_grid or [m.lr]
    by_lr = {}
    for lr in grid if len(grid) > 1 else []:
        adapt_by_entropy(ctx, valid, m, lr)
        by_lr[lr] = float(evaluate_adapter(ctx.cfg, valid, ctx.export(scratch / f"lr_{lr}"), None).overall["ndcg@1"])
    best_lr = max(by_lr, key=by_lr.get) if by_lr else grid[0]
    report = adapt_by_entropy(ctx, test, m, best_lr)
    # keys as text: summary.json must read back equal to what run() returned
    return {"lr": best_lr, "valid_ndcg@1_by_lr": {f"{lr:g}": v for lr, v in by_lr.items()}, **report}


def grid_mixture(ctx: MixtureContext, valid: pa.Table, scratch: Path) -> dict:
    """The non-adaptive MoLoRec: the w_g of `mixture.grid` with the best validation NDCG@1."""
    scores = {w: score_mixture(ctx, (w, 1.0 - w), valid, scratch) for w in ctx.cfg.mixture.grid}
    best = max(scores, key=scores.get)
    ctx.mixture.set_weights((best, 1.0 - best))
    return {"valid_ndcg@1_by_w_g": scores, "w_g": best}


# --- the run ----------------------------------------------------------------------------------
def run(cfg: Config) -> RunSummary:
    import shutil

    from recplat.data.dataset import PreparedDataset
    from recplat.errors import ConfigError
    from recplat.eval.significance import compare_metric
    from recplat.storage import write_json_atomic

    started, out = time.time(), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = PreparedDataset.open(cfg.data.dataset)
    valid_all = load_split(prepared, "valid", cfg.data.domains)
    valid_order = seeded_rows(valid_all.num_rows, None, cfg.eval.seed)
    held_out = valid_all.take(valid_order[: cfg.eval.valid_size])  # selection + val_loss, never trained on
    held_in = valid_all.take(valid_order[cfg.eval.valid_size :])
    if held_out.num_rows < 2:
        raise ConfigError(f"{cfg.data.dataset}: {valid_all.num_rows} validation prompt(s); need at least 2")
    summary: dict = {"recipe": "molorec", "dataset": str(cfg.data.dataset), "method": cfg.stage}

    if cfg.stage == "general":  # Eq. 4: the validation prompt of every user, all domains mixed
        adapter, info = train_adapter(cfg, "adapter", held_in, held_out, out)
        summary.update(best_validation=info["best_validation"], train=info["train"], train_prompts=info["train_prompts"],
                       adapter=str(adapter), seconds={"total": round(time.time() - started, 1)})
        summary = RunSummary.model_validate(summary)
        summary.write(out)
        return summary

    test = load_split(prepared, "test", cfg.data.domains)
    test = test.take(np.sort(seeded_rows(test.num_rows, cfg.eval.test_size, cfg.eval.seed)))
    general = None
    if cfg.general_from is not None:
        general = Path(cfg.general_from.summary("general_from").model_extra.get("adapter")
                       or Path(cfg.general_from.run_dir) / "adapter")
    target_rows = target_training_rows(cfg, load_split(prepared, "train", cfg.data.domains), held_in)
    trained: dict = {}
    if cfg.stage in ("mixture", "specific_only", "tallrec"):  # Eq. 5 (tallrec: the same single LoRA)
        specific, trained = train_adapter(cfg, "adapter", target_rows, held_out, out)
    elif cfg.stage == "second_finetune":  # Θ_g trained again on the target
        specific, trained = train_adapter(cfg, "adapter", target_rows, held_out, out, init_from=str(general))
    summary.update(best_validation=trained.get("best_validation"), train=trained.get("train"),
                   train_prompts=trained.get("train_prompts"))

    tested: dict[str, Path] = {}  # method name -> adapter tested
    if cfg.stage == "general_only":
        tested["molorec_g"] = general
    elif cfg.stage != "mixture":
        tested[cfg.stage] = specific
    else:
        scratch = out / "mixture_scratch"
        ctx = MixtureContext(cfg, general, specific)
        chosen = {"fixed": lambda: ctx.mixture.set_weights(cfg.mixture.fixed) or {},
                  "grid": lambda: grid_mixture(ctx, held_out, scratch),
                  "entropy": lambda: entropy_mixture(ctx, held_out, test, scratch)}[cfg.mixture.coefficients]()
        weights = {name: w.tolist() for name, w in ctx.mixture.module_weights().items()}
        summary["mixture"] = {**{k: v for k, v in chosen.items() if k != "mean_weights"},
                              "coefficients": cfg.mixture.coefficients, "merge": cfg.mixture.merge,
                              "mean_weights": ctx.mixture.mean_weights()}  # Fig. 4
        write_json_atomic(out / "mixture_weights.json", {"mean": ctx.mixture.mean_weights(), "per_module": weights})
        merged = ctx.export(out / "merged_adapter.partial")
        shutil.rmtree(out / "merged_adapter", ignore_errors=True)
        merged.rename(out / "merged_adapter")
        shutil.rmtree(scratch, ignore_errors=True)
        del ctx
        tested.update(molorec=out / "merged_adapter", molorec_g=general, molorec_s=specific)

    results, ranks = {}, {}
    for method, adapter in tested.items():
        sub = "test" if method == next(iter(tested)) else f"test_{method}"
        results[method] = evaluate_adapter(cfg, test, adapter, out / sub)
        ranks[method] = results[method].per_example.column("rank").to_numpy()
    main = next(iter(tested))
    tests = [{"against": other, "metric": m, **compare_metric(ranks[main], ranks[other], m)}
             for other in list(tested)[1:] for m in cfg.eval.metrics]
    write_json_atomic(out / "test" / "significance.json", tests)
    overall = results[main].overall
    summary.update(overall=overall, test_examples=test.num_rows, significance=tests,
                   baselines={m: results[m].overall for m in list(tested)[1:]},
                   adapter=str(tested[main]), seconds={"total": round(time.time() - started, 1)})
    summary = RunSummary.model_validate(summary)
    summary.write(out)
    print(f"\nmolorec ({cfg.stage}): test results ({test.num_rows:,} prompts)\n{results[main].format_table()}", flush=True)
    for t in tests:
        if t["p"] is not None:
            print(f"  vs {t['against']}: {t['metric']} {t['ours']:.4f} vs {t['theirs']:.4f} (p = {t['p']:.3g})")
    return summary
