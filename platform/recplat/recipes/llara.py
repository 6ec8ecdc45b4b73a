"""LLaRA (spec §4.1), the downstream recommender CPRec fine-tunes (§4.6): a causal LM reads hybrid
prompts whose `[HistoryEmb]`/`[CansEmb]` tokens carry projected, frozen SASRec item embeddings,
learns them by curriculum (p = τ/T) with an answer-only loss and a LoRA, and answers one title.

    recplat run cprec/table3_llara --profile smoke        # LLaRA on a downstream dataset
    recplat train llara --config my.yaml [key=value ...]

`stage` picks what runs:

    sft        train (LoRA from scratch, or from `init_from`'s adapter = CPRec), then test
    zero_shot  no training (Table 4, "w/o SFT"): the LM (+ `init_from`'s adapter) with a fresh,
               seeded projector, tested as is
    evaluate   test `evaluate_from`'s trained weights again (Tables 5 and 6 with buckets / topk)

The pieces: models/hybrid_prompt.py (tokens, projector, embedding swap, curriculum), the
answer-only Task of recipes/answer_task.py (subclassed: `LlaraTask`), eval/generative.py's LLaRA
scoring (greedy, ≤ 64 new tokens, first line, valid iff exactly one candidate title; HR@1 over
valid outputs, ValidRatio; early stopping on hr@1_x_valid_ratio) on Ray Data actors.

SASRec: `sasrec_from`, a finished `sasrec` run on the same prepared dataset, or (None) trained
inline first with the existing id_baseline recipe (`sasrec:` settings) into out/sasrec; its item
table (sasrec_dim = its hidden size) is frozen and travels inside the LLaRA weights.

CPRec calls this module: `init_from` is a CPT adapter folder or a RunRef to a run whose summary
names its `adapter` (else <run_dir>/adapter); its rank and target modules must equal `lora`'s.
The optimizer's weight decay (`train.weight_decay`, 1e-5 as LLaRA's projector) applies to every
trainable parameter: the spine has one decay (LLaRA leaves its LoRA undecayed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import Field, model_validator

from recplat.config import StrictModel
from recplat.errors import ConfigError
from recplat.models.causal_lm import CausalLMSettings, LoraSettings
from recplat.recipes.answer_task import AnswerTask, FinetuneSettings
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig

WEIGHTS = "llara_weights.safetensors"  # LoRA + projector + the frozen SASRec table: a tested model


# --- configuration ---------------------------------------------------------------------------
class ModelSettings(CausalLMSettings):
    template: Literal["llara"] = "llara"  # the rendering family the prompts come from
    chat_template: bool | None = False  # LLaRA prompts the plain text ("... The answer is")
    max_length: int = Field(1024, ge=8)


class LlaraData(StrictModel):
    dataset: str  # a prepared dataset with the llara rendering (render.families: [llara])
    domains: list[str] | None = None  # only examples whose target is in these domains; None: all
    scope: str = "per_domain"  # which sequences' examples (ranking_task.scope_mask)


class LlaraSettings(StrictModel):
    sasrec_dim: int = Field(64, ge=1)  # the SASRec item-embedding size (LLaRA: 64)
    projector: Literal["mlp2"] = "mlp2"  # Linear -> GELU -> Linear
    curriculum: Literal["linear", "hybrid", "text_only"] = "linear"  # p = τ/T; always; never
    candidates: int = Field(20, ge=2)  # target + stored negatives per prompt (checked on the data)


class SasrecSettings(StrictModel):
    """The inline SASRec (no `sasrec_from`): the id_baseline recipe on the same examples."""

    train: TrainConfig = TrainConfig(num_workers=1, lr=1e-3, micro_batch_size=64, max_steps=200, eval_every=50,
                                     metric="recall@10", mode="max")
    dropout: float = Field(0.2, ge=0, lt=1)


class TopK(StrictModel):
    rounds: int = Field(5, ge=1)  # Table 6: generate, drop the answer from the candidates, again
    metrics: list[str] = ["hr@1", "hr@3", "hr@5", "ndcg@3", "ndcg@5"]


class Buckets(StrictModel):
    by: Literal["history_length"] = "history_length"
    edges: list[int] = [3, 5, 9, 11]  # Table 5: sparse [3,5), medium [5,9), dense [9,10]

    @model_validator(mode="after")
    def _three_buckets(self) -> "Buckets":
        if len(self.edges) != 4 or self.edges != sorted(self.edges):
            raise ValueError(f"edges: four increasing cut points (three buckets), got {self.edges}")
        return self


class EvalSettings(StrictModel):
    max_new_tokens: int = Field(64, ge=1)  # LLaRA: 64
    valid_size: int | None = Field(None, ge=1)  # seeded validation prompts per validation; None: all
    test_size: int | None = Field(None, ge=1)  # a seeded subset of the test prompts; None: all
    batch_size: int = Field(8, ge=1)
    num_actors: int = Field(1, ge=1)  # generation actors at test time
    seed: int = 42


class Config(StrictModel):
    data: LlaraData
    stage: Literal["sft", "zero_shot", "evaluate"] = "sft"
    model: ModelSettings = ModelSettings()
    lora: LoraSettings = LoraSettings(rank=8, alpha=32, dropout=0.1)
    llara: LlaraSettings = LlaraSettings()
    # LLaRA's Steam script: 5% linear warm-up 5e-6 -> 5e-4, cosine to 5e-6 = WSA with no stable phase
    train: TrainConfig = TrainConfig(micro_batch_size=4, grad_accum=32, optimizer="adam", lr=5e-4, weight_decay=1e-5,
                                     schedule="wsa", warmup_ratio=0.05, min_lr=5e-6, epochs=5, eval_every=100,
                                     metric="hr@1_x_valid_ratio", mode="max", patience=10)
    seeds: list[int] | None = None  # several trainings at the chosen lr, metrics averaged (paper: 4)
    lr_grid: list[float] | None = None  # lrs tried (first seed), the best validation metric wins
    init_from: RunRef | str | None = None  # CPRec: the CPT adapter (folder or run)
    evaluate_from: RunRef | None = None  # stage evaluate: a finished sft run
    sasrec_from: RunRef | None = None  # a finished sasrec run on the same dataset; None: trained inline
    sasrec: SasrecSettings = SasrecSettings()
    eval: EvalSettings = EvalSettings()
    topk: TopK | None = None
    buckets: Buckets | None = None
    out: str = "runs/llara"

    @model_validator(mode="after")
    def _stage_inputs(self) -> "Config":
        if self.stage == "evaluate" and self.evaluate_from is None:
            raise ValueError("stage: evaluate needs evaluate_from (a finished sft run)")
        if self.lr_grid and len(self.lr_grid) > 1 and self.train.metric is None:
            raise ValueError("lr_grid: choosing an lr needs train.metric (and eval_every)")
        if self.stage != "sft" and (self.lr_grid or (self.seeds and len(self.seeds) > 1)):
            raise ValueError(f"lr_grid/seeds: only stage sft trains; stage {self.stage} tests one model")
        return self


# --- data ------------------------------------------------------------------------------------
def load_rows(cfg: Config, prepared, split: str) -> pa.Table:
    """The llara rendering of one split (key order) with titles and history lengths, filtered."""
    from recplat.recipes.molorec import load_split
    from recplat.recipes.ranking_task import scope_mask

    table = load_split(prepared, split, cfg.data.domains, family="llara")
    table = table.filter(scope_mask(table.column("scope"), cfg.data.scope))
    if table.num_rows == 0:
        raise ConfigError(f"{cfg.data.dataset}: no {split} examples with scope {cfg.data.scope!r} and domains "
                          f"{cfg.data.domains}")
    sizes = set(len(c) for c in table.column("candidate_items").to_pylist())
    if sizes != {cfg.llara.candidates}:
        raise ConfigError(f"llara.candidates: {cfg.llara.candidates}, but the {split} prompts of {cfg.data.dataset} "
                          f"have {sorted(sizes)} candidates (prepare with candidates.count {cfg.llara.candidates - 1})")
    return table


def seeded_subset(table: pa.Table, size: int | None, seed: int) -> pa.Table:
    from recplat.recipes.molorec import seeded_rows

    return table.take(np.sort(seeded_rows(table.num_rows, size, seed)))


def padded_items(lists) -> torch.Tensor:
    """Item-id lists -> [B, L] int64, 0-padded at the end (models/hybrid_prompt.py's layout)."""
    lists = [np.asarray(x, dtype=np.int64) for x in lists]
    out = np.zeros((len(lists), max((len(x) for x in lists), default=0)), dtype=np.int64)
    for i, x in enumerate(lists):
        out[i, : len(x)] = x
    return torch.from_numpy(out)


# --- the task: AnswerTask + projector, item embeddings, curriculum, LLaRA validation ----------
class LlaraTask(AnswerTask):
    """Answer-only loss on hybrid / text-only prompts (curriculum); validation generates greedily
    on hybrid prompts and reports LLaRA's hr@1, valid_ratio and hr@1_x_valid_ratio."""

    def __init__(self, cfg: Config, init_from: str | None, item_embeddings: np.ndarray, valid: pa.Table | None,
                 total_steps: int):  # fmt: skip
        settings = CausalLMSettings(**cfg.model.model_dump(exclude={"template"}))
        super().__init__(settings, FinetuneSettings(method="lora", lora=cfg.lora, init_from=init_from),
                         eval_batch_size=cfg.eval.batch_size)
        self.item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        self.valid = None if valid is None else valid.select(["prompt", "target_title", "candidate_titles",
                                                             "history_items", "candidate_items"]).to_pydict()
        from recplat.models.hybrid_prompt import Curriculum

        self.curriculum = Curriculum(total_steps, cfg.train.seed, cfg.llara.curriculum)
        self.grad_accum, self.max_new_tokens = cfg.train.grad_accum, cfg.eval.max_new_tokens
        self.micro_batches_done = 0

    def build_model(self) -> torch.nn.Module:
        from recplat.models.hybrid_prompt import HybridPromptLM, add_placeholder_tokens

        lm = super().build_model()
        ids = add_placeholder_tokens(lm, self.tokenizer)
        self.micro_batches_done = _steps_done() * self.grad_accum  # a resumed run continues its draws
        return HybridPromptLM(lm, torch.tensor(self.item_embeddings), ids)  # a copy: the array may be read-only

    def collate(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """The next micro-batch, in the prompt template drawn for it (`more_prompts`: the others)."""
        from recplat.models.hybrid_prompt import template_for

        prompts, more = batch["prompt"], batch.get("more_prompts")
        if more is not None and len(more) and len(more[0]):
            which = template_for(self.curriculum.seed, *divmod(self.micro_batches_done, self.grad_accum), 1 + len(more[0]))
            prompts = prompts if which == 0 else [str(m[which - 1]) for m in more]
        out = self.tokenize(prompts, batch["answer"])
        out.update(history_items=padded_items(batch["history_items"]), candidate_items=padded_items(batch["candidate_items"]))
        return out

    def training_step(self, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        step, micro = divmod(self.micro_batches_done, self.grad_accum)
        self.micro_batches_done += 1
        return model(**batch, text_only=not self.curriculum.is_hybrid(step, micro)).loss

    def answers(self, model, prompts, history_items, candidate_items) -> tuple[list[str], np.ndarray]:
        """Greedy answers on hybrid prompts, `eval_batch_size` at a time, and their token counts."""
        from recplat.eval.generative import generate_greedy

        fmt, texts, lengths = self.model_settings.prompt_format(), [], []
        for start in range(0, len(prompts), self.eval_batch_size):
            end = start + self.eval_batch_size
            ids = [fmt.prompt_ids(self.tokenizer, str(p))[-self.model_settings.max_length :] for p in prompts[start:end]]
            out, n = generate_greedy(model, self.tokenizer, ids, self.max_new_tokens,
                                     history_items=padded_items(history_items[start:end]),
                                     candidate_items=padded_items(candidate_items[start:end]))
            texts, lengths = texts + out, lengths + n.tolist()
        return texts, np.asarray(lengths, dtype=np.int64)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        from recplat.eval.generative import llara_metrics, named_candidate
        from recplat.train.sharded_validation import sum_across_ranks, validation_shard

        if not self.valid:
            return {}
        v = self.valid
        rows = validation_shard(len(v["prompt"]))
        texts, _ = self.answers(model, [v["prompt"][i] for i in rows], [v["history_items"][i] for i in rows],
                                [v["candidate_items"][i] for i in rows])
        named = [named_candidate(t, v["candidate_titles"][i]) for t, i in zip(texts, rows)]
        counts = {"valid": sum(n is not None for n in named), "all": len(rows),
                  "correct": sum(n is not None and n.lower() == v["target_title"][i].lower() for n, i in zip(named, rows))}
        totals = sum_across_ranks(counts, next(model.parameters()).device)
        return llara_metrics(int(totals["correct"]), int(totals["valid"]), int(totals["all"]))


def _steps_done() -> int:
    """Optimizer steps already done when a Ray Train worker resumes from a checkpoint (0 outside one)."""
    try:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
    except Exception:  # not inside a Ray Train worker (export, generation actors)
        return 0
    if checkpoint is None:
        return 0
    from recplat.train.checkpoint import read_state

    with checkpoint.as_directory() as directory:
        return read_state(directory).step


class HybridGenerationActor:
    """eval/generative.py's actor for LLaRA: the task's model with `weights` loaded, LoRA merged."""

    def __init__(self, settings: dict, adapter: str | None, max_new_tokens: int, threads: int, task: LlaraTask,
                 weights: str):  # fmt: skip
        from recplat.train.checkpoint import load_weights

        torch.set_num_threads(threads)
        self.task = task
        model = task.build_model()
        load_weights(model, weights)
        model.lm = model.lm.merge_and_unload()
        self.model = (model.cuda() if torch.cuda.is_available() else model).eval()
        self.task.max_new_tokens = max_new_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from recplat.eval.generative import answers_batch

        texts, lengths = self.task.answers(self.model, list(batch["prompt"]), list(batch["history_items"]),
                                           list(batch["candidate_items"]))
        return answers_batch(batch["row"], texts, lengths)


# --- inputs: the CPT adapter, the SASRec item table --------------------------------------------
def resolve_init_from(cfg: Config) -> str | None:
    """The adapter folder `init_from` names, checked against `lora` (rank, target modules) here,
    on the driver, before anything loads: one line naming both values when they differ."""
    ref = cfg.init_from
    if ref is None:
        return None
    if isinstance(ref, RunRef):
        summary = ref.summary("init_from")
        folder = Path(summary.model_extra.get("adapter") or Path(ref.run_dir) / "adapter")
    else:
        folder = Path(ref).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise ConfigError(f"init_from: {folder} is not a saved adapter (no adapter_config.json)")
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    wrong = [f"rank {saved.get('r')} vs lora.rank {cfg.lora.rank}"] if saved.get("r") != cfg.lora.rank else []
    targets = cfg.lora.target_modules
    if targets is not None and sorted(saved.get("target_modules") or []) != sorted(targets):
        wrong.append(f"target modules {sorted(saved.get('target_modules') or [])} vs lora.target_modules {sorted(targets)}")
    if wrong:
        raise ConfigError(f"init_from: the adapter in {folder} does not fit this run's LoRA: {'; '.join(wrong)}")
    return str(folder)


def sasrec_item_table(cfg: Config, out: Path) -> tuple[np.ndarray, dict]:
    """The frozen SASRec item embeddings [num_items + 1, sasrec_dim] (row 0: padding): from
    `sasrec_from`'s best checkpoint, or from a SASRec trained here first (out/sasrec)."""
    from safetensors.numpy import load_file

    from recplat.recipes import id_baseline
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.train.checkpoint import WEIGHTS_FILE

    if cfg.sasrec_from is not None:
        summary = cfg.sasrec_from.summary("sasrec_from")
    else:
        sas = id_baseline.Config(
            data=RankingData(dataset=cfg.data.dataset, train_scope=cfg.data.scope, train_domains=cfg.data.domains,
                             negatives=cfg.llara.candidates - 1),
            model=id_baseline.IdModel(hidden_size=cfg.llara.sasrec_dim, dropout=cfg.sasrec.dropout, max_history=10),
            eval=RankingEvalConfig(metrics=list(dict.fromkeys(["hr@1", "ndcg@10", cfg.sasrec.train.metric or "hr@1"])),
                                   scope=cfg.data.scope, target_domains=cfg.data.domains, segments=[]),
            train=cfg.sasrec.train.model_copy(update={"seed": cfg.train.seed}), out=str(out / "sasrec"))
        summary = id_baseline.run(sas)
    if not summary.best_checkpoint or not Path(summary.best_checkpoint, WEIGHTS_FILE).is_file():
        raise ConfigError(f"sasrec_from: {summary.best_checkpoint} holds no local SASRec weights ({WEIGHTS_FILE})")
    table = load_file(str(Path(summary.best_checkpoint, WEIGHTS_FILE)))["item_emb.weight"]
    if table.shape[1] != cfg.llara.sasrec_dim:
        raise ConfigError(f"llara.sasrec_dim: {cfg.llara.sasrec_dim}, but the SASRec items have {table.shape[1]} dims")
    return table, {"overall": summary.overall, "best_checkpoint": summary.best_checkpoint}


# --- train, test -------------------------------------------------------------------------------
def train_once(cfg: Config, train_cfg: TrainConfig, init: str | None, items: np.ndarray, train_rows: pa.Table,
               valid_rows: pa.Table, out: Path, name: str) -> tuple[LlaraTask, Path, dict]:  # fmt: skip
    """One LLaRA fine-tuning; the best checkpoint's weights (LoRA, projector, SASRec table) -> out/<WEIGHTS>."""
    import shutil

    import ray.data

    from recplat.train.checkpoint import WEIGHTS_FILE
    from recplat.train.launch import fit, plan_total_steps

    if train_cfg.storage_path == TrainConfig().storage_path:  # default: checkpoints next to the results
        train_cfg = train_cfg.model_copy(update={"storage_path": str((out / "checkpoints").absolute()), "name": name})
    order = np.random.default_rng(train_cfg.seed).permutation(train_rows.num_rows)  # LLaRA shuffles its rows
    columns = ["prompt", "more_prompts", "answer", "history_items", "candidate_items"]
    data = train_rows.take(order).select([c for c in columns if c in train_rows.column_names])  # older data: no more_prompts
    task = LlaraTask(cfg, init, items, valid_rows, plan_total_steps(train_cfg, data.num_rows))
    result = fit(task, train_cfg, ray.data.from_arrow(data))
    with result.best_checkpoint.as_directory() as directory:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(directory) / WEIGHTS_FILE, out / f"{WEIGHTS}.partial")
    (out / f"{WEIGHTS}.partial").replace(out / WEIGHTS)
    export_adapter(cfg, out / WEIGHTS, out / "adapter")
    return task, out / WEIGHTS, {"best_validation": result.best_metrics, "train": result.summary,
                                 "train_rows": data.num_rows}


def export_adapter(cfg: Config, weights: Path, folder: Path) -> Path:
    """The LoRA of LLaRA `weights` as a plain peft adapter folder, read from the weights file (no
    model is loaded): what another run's `init_from` takes (Fig. 2's CD-LLaRA starts from it)."""
    from safetensors.torch import load_file, save_file

    from recplat.storage import atomic_dir

    tensors = {k.removeprefix("lm.").replace(".default.", "."): v for k, v in load_file(str(weights)).items()
               if k.startswith("lm.") and ".lora_" in k}
    targets = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in tensors})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.lora.rank, "lora_alpha": cfg.lora.alpha,
              "lora_dropout": cfg.lora.dropout, "target_modules": targets, "bias": "none",
              "base_model_name_or_path": cfg.model.name}
    with atomic_dir(folder, overwrite=True) as tmp:
        save_file(tensors, str(Path(tmp) / "adapter_model.safetensors"))
        (Path(tmp) / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def generate(cfg: Config, task: LlaraTask, weights: Path, rows: pa.Table):
    """Greedy answers to the hybrid prompts of `rows` (in order), their token counts and the
    actors' peak memory (eval/generative.py's `Generated`)."""
    from recplat.eval.generative import generate_sharded

    columns = {k: rows.column(k).combine_chunks() for k in ("history_items", "candidate_items")}
    return generate_sharded(task.model_settings, [str(p) for p in rows.column("prompt").to_pylist()],
                                max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                                num_actors=cfg.eval.num_actors, use_gpu=cfg.train.use_gpu, actor=HybridGenerationActor,
                                actor_kwargs={"task": task, "weights": str(weights)}, columns=columns)


def test_model(cfg: Config, task: LlaraTask, weights: Path, rows: pa.Table, out_dir: Path):
    """LLaRA's test numbers overall, per target domain and (`buckets`) per history-length bucket,
    and the generation actors' peak memory."""
    from recplat.eval.generative import generative_results
    from recplat.eval.segments import ActivityThresholds, activity_segments

    texts, lengths, peak = generate(cfg, task, weights, rows)
    segments = None
    if cfg.buckets is not None:
        lengths = [len(h) for h in rows.column("history_items").to_pylist()]
        edges = cfg.buckets.edges
        segments = {"history_length": activity_segments(lengths, ActivityThresholds(edges[1], edges[2]))}
    results = generative_results(rows, texts, rows.column("target_title").to_pylist(),
                                 rows.column("candidate_titles").to_pylist(), answer_format="single", segments=segments)
    results.per_example = results.per_example.append_column("new_tokens", pa.array(lengths))
    results.write(out_dir)
    return results, peak


def drop_candidate(prompt: str, titles: list[str], index: int, separator: str, marker: str) -> str:
    """The prompt with candidate `index` (its title and marker) taken out of the candidate list."""
    old = separator.join(t + marker for t in titles)
    if old not in prompt:
        raise ConfigError(f"topk: the candidate list {old[:60]!r}... is not in the prompt (custom llara template?)")
    return prompt.replace(old, separator.join(t + marker for j, t in enumerate(titles) if j != index), 1)


def test_topk(cfg: Config, task: LlaraTask, weights: Path, rows: pa.Table, out_dir: Path, template: dict):
    """CPRec Table 6: `topk.rounds` rounds of generate -> drop the named candidate -> generate;
    the named titles in order are the ranked list (it ends at the first invalid answer)."""
    from recplat.eval.generative import named_candidate, ranks_from_rounds
    from recplat.eval.results import evaluate_ranks

    live = rows.select(["prompt", "history_items", "candidate_items", "candidate_titles"]).to_pydict()
    rounds: list[list[str | None]] = [[] for _ in range(rows.num_rows)]
    active = list(range(rows.num_rows))
    for _ in range(cfg.topk.rounds):
        if not active:
            break
        texts, _, _ = generate(cfg, task, weights, pa.table({k: [live[k][i] for i in active] for k in live}))
        still = []
        for i, text in zip(active, texts):
            name = named_candidate(text, live["candidate_titles"][i])
            rounds[i].append(name)
            if name is None:
                continue
            j = live["candidate_titles"][i].index(name)
            live["prompt"][i] = drop_candidate(live["prompt"][i], live["candidate_titles"][i], j,
                                               template["separator"], template["candidate_marker"])
            live["candidate_titles"][i] = [t for k, t in enumerate(live["candidate_titles"][i]) if k != j]
            live["candidate_items"][i] = [t for k, t in enumerate(live["candidate_items"][i]) if k != j]
            still.append(i)
        active = still
    ranks = ranks_from_rounds(rounds, rows.column("target_title").to_pylist(), cfg.llara.candidates)
    results = evaluate_ranks(rows, ranks, cfg.topk.metrics)
    results.write(out_dir)
    return results


# --- the run ----------------------------------------------------------------------------------
def run(cfg: Config) -> RunSummary:
    from recplat.data.dataset import PreparedDataset
    from recplat.data.render import load_templates
    from recplat.eval.results import format_table
    from recplat.runtime import init_ray
    from recplat.train.checkpoint import save_weights, seed_everything

    started, out = time.time(), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    init_ray()
    prepared = PreparedDataset.open(cfg.data.dataset)
    init = resolve_init_from(cfg)
    test = seeded_subset(load_rows(cfg, prepared, "test"), cfg.eval.test_size, cfg.eval.seed)
    summary: dict = {"recipe": "llara", "dataset": str(prepared.path), "method": cfg.stage, "init_from": init}
    seconds: dict[str, float] = {}
    trained: list[tuple[int, Path, dict]] = []  # (seed, weights, training info) of the tested models

    if cfg.stage == "evaluate":
        source = cfg.evaluate_from.summary("evaluate_from")
        weights = Path(source.model_extra.get("weights") or Path(cfg.evaluate_from.run_dir) / WEIGHTS)
        # the weights carry the trained SASRec table; this one only gives the buffer its shape
        task = LlaraTask(cfg, init, np.zeros((prepared.num_items + 1, cfg.llara.sasrec_dim), np.float32), None, 1)
        trained.append((cfg.train.seed, weights, {}))
        summary["mode"] = "evaluate"
    else:
        items, summary["sasrec"] = sasrec_item_table(cfg, out)
        seconds["sasrec"] = round(time.time() - started, 1)
        if cfg.stage == "zero_shot":  # Table 4: nothing trains; the projector is the seeded initial one
            task = LlaraTask(cfg, init, items, None, 1)
            seed_everything(cfg.train.seed)
            save_weights(task.build_model(), out / f"{WEIGHTS}.partial")
            (out / f"{WEIGHTS}.partial").replace(out / WEIGHTS)
            trained.append((cfg.train.seed, out / WEIGHTS, {}))
        else:
            task, trained, summary["lr_search"] = fine_tune(cfg, prepared, init, items, out)
    seconds["train"] = round(time.time() - started - seconds.get("sasrec", 0.0), 1)

    tested = time.time()
    per_seed = []
    for i, (seed, weights, info) in enumerate(trained):
        results, peak = test_model(cfg, task, weights, test, out / ("test" if i == 0 else f"test_seed{seed}"))
        per_seed.append({"seed": seed, "weights": str(weights), "overall": results.overall, **info})
        if i == 0:
            first = results
            summary["cost"] = cost(info, round(time.time() - tested, 3), test.num_rows, peak)
    summary["overall"] = {m: float(np.mean([s["overall"][m] for s in per_seed])) for m in first.metrics}
    if len(per_seed) > 1:
        summary["seeds"] = per_seed
    if cfg.topk is not None:
        template = load_templates(prepared.manifest["config"].get("render", {}).get("templates"))["llara"]
        summary["topk"] = test_topk(cfg, task, trained[0][1], test, out / "test_topk", template).overall
    seconds["test"] = round(time.time() - tested, 1)
    adapter = trained[0][1].parent / "adapter"
    if adapter.is_dir():
        summary["adapter"] = str(adapter)  # the LoRA alone, for another run's init_from
    summary.update(weights=str(trained[0][1]), test_examples=test.num_rows, seconds=seconds,
                   best_validation=trained[0][2].get("best_validation"), train=trained[0][2].get("train"))
    summary = RunSummary.model_validate(summary)
    summary.write(out)
    print(f"\nllara ({cfg.stage}): test results ({test.num_rows:,} prompts)\n{format_table(first, percent=False)}", flush=True)
    return summary


def cost(info: dict, test_seconds: float, prompts: int, test_peak: dict) -> dict:
    """Table 7's inputs for the first tested model: its training (rows per epoch, seconds without
    validation, samples trained, peak memory of rank 0; train/loop.py) and its test generation."""
    train = {"rows_per_epoch": info["train_rows"], **info["train"]["cost"]} if "train_rows" in info else None
    return {"train": train, "test": {"seconds": test_seconds, "prompts": prompts, **test_peak}}


def fine_tune(cfg: Config, prepared, init: str | None, items: np.ndarray, out: Path):
    """Stage sft: each lr of `lr_grid` on the first seed (the best validation metric wins), then
    every seed of `seeds` at that lr. One model: out/ itself; several: out/lr<lr>_seed<seed>/."""
    train_rows = load_rows(cfg, prepared, "train")
    valid = seeded_subset(load_rows(cfg, prepared, "valid"), cfg.eval.valid_size, cfg.eval.seed)
    lrs, seeds = cfg.lr_grid or [cfg.train.lr], cfg.seeds or [cfg.train.seed]
    done: dict[tuple[float, int], tuple[Path, dict]] = {}
    task = None

    def train(lr: float, seed: int) -> tuple[Path, dict]:
        nonlocal task
        if (lr, seed) not in done:
            single = len(lrs) == 1 and len(seeds) == 1
            where = out if single else out / f"lr{lr:g}_seed{seed}"
            task, weights, info = train_once(cfg, cfg.train.model_copy(update={"lr": lr, "seed": seed}), init, items,
                                             train_rows, valid, where, "llara" if single else where.name)
            done[(lr, seed)] = (weights, info)
        return done[(lr, seed)]

    search = None
    if len(lrs) > 1:
        metric = cfg.train.metric
        scores = {lr: (train(lr, seeds[0])[1]["best_validation"] or {}).get(metric) for lr in lrs}
        best = max(lrs, key=lambda lr: -np.inf if scores[lr] is None else scores[lr])
        search = {"metric": metric, "by_lr": {f"{lr:g}": v for lr, v in scores.items()}, "lr": best}
    else:
        best = lrs[0]
    models = [(seed, *train(best, seed)) for seed in seeds]
    return task, models, search
