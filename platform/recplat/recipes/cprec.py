"""CPRec (spec §4, docs/papers.md): all-domain continual pre-training (CPT) of a causal LM's LoRA
under the Warmup-Stable-Annealing schedule, whose adapter then starts LLaRA's fine-tuning.

    recplat run cprec/cpt --profile smoke            # the CPT stage
    recplat train cprec --config my.yaml [key=value ...]

`stage` picks what runs:

    cpt           the CPT LoRA on the `cprec` rendering (§4.3 unified prompt, target + 19 stored
                  candidates, answer-only loss) of a `cprec_cpt` dataset; exported to out/adapter
                  (a plain peft folder: adapter_config.json shows its rank and targets), and to
                  out/after_<n>_instances for every n of `save_after_instances` (Fig. 5).
    sft           LLaRA fine-tuning (recipes/llara.py, its settings under `sft:`) on data.dataset,
                  whose LoRA starts from `init_from`'s CPT adapter (the final one, or the one
                  after `init_after_instances`); llara checks that rank and targets match.
    evaluate      the same, zero-shot (llara stage zero_shot; Table 4, CPRec w/o SFT).
    cpt_then_sft  cpt on data.dataset, then sft on `sft.data.dataset` from its own adapter
                  (written to out/sft).

CPT data order and schedule (data/behaviour_corpus.py): updates 1..S read the domain-specific
rows, S+1..A the mixed rows, and the LR follows WSA(s) (train/schedules.py), so the data switch
and the annealing start on the same update on every worker. Fig. 4 ablations: `cpt.data` in
{phased, shuffled, domain_specific} x `cpt.schedule` in {wsa, warmup_stable, cosine, wsa_over_ds}.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from recplat.config import StrictModel
from recplat.models.causal_lm import CausalLMSettings, LoraSettings
from recplat.recipes.answer_task import AnswerTask
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig

KEYS = ["user", "scope", "position"]
STAGES = ("cpt", "sft", "evaluate", "cpt_then_sft")


# --- configuration ---------------------------------------------------------------------------
class ModelSettings(CausalLMSettings):
    template: Literal["cprec", "llara"] = "cprec"  # the rendering family the prompts come from
    chat_template: bool | None = False  # LLaRA prompts a base LM with the raw text


class CprecData(StrictModel):
    dataset: str  # a prepared dataset with the cprec rendering (preset cprec_cpt)


class Guidelines(StrictModel):
    """The two reconstructed corpus guidelines of §4.4 (data/behaviour_corpus.py)."""

    cross_domain_only: bool = True  # G1: mixed rows whose history spans more than one domain
    target_domain_negatives: bool = True  # G2: candidates from the target's domain (checked)


class CptSettings(StrictModel):
    data: Literal["phased", "shuffled", "domain_specific"] = "phased"  # Fig. 4: A, S / N / DS
    schedule: Literal["wsa", "warmup_stable", "cosine", "wsa_over_ds"] = "wsa"
    warmup_frac: float = Field(0.05, ge=0, lt=1)  # W = ceil(frac * N_DS / B)
    # phase ends in optimizer updates (W, S, A of Eq. 2-3); None: from the row counts
    warmup_end: int | None = Field(None, ge=0)
    stable_end: int | None = Field(None, ge=1)
    anneal_end: int | None = Field(None, ge=1)
    valid_size: int = Field(64, ge=0)  # validation rows (valid split) for val_loss; 0: none


class Config(StrictModel):
    data: CprecData
    stage: Literal["cpt", "sft", "evaluate", "cpt_then_sft"] = "cpt"
    model: ModelSettings = ModelSettings()
    lora: LoraSettings = LoraSettings(rank=8, alpha=32, dropout=0.1)  # LLaRA's: CPRec's SFT starts from it
    # CPT: train.schedule, phase_ends and max_steps are set from cpt (plan_cpt); lr is eta_h, min_lr eta_l
    # (TrainConfig accepts min_lr with schedule: wsa only, so a job file states that schedule)
    train: TrainConfig = TrainConfig(micro_batch_size=4, grad_accum=32, optimizer="adam", lr=5e-4, schedule="wsa",
                                     min_lr=5e-6, log_every=10)  # fmt: skip
    cpt: CptSettings = CptSettings()
    guidelines: Guidelines = Guidelines()
    save_after_instances: list[int] = []  # Fig. 5: adapters after these many training rows
    init_from: RunRef | None = None  # sft / evaluate: a finished cpt run
    init_after_instances: int | None = Field(None, ge=1)  # its adapter after this many rows; None: final
    sft: dict[str, Any] = {}  # sft stages: the llara recipe's settings (recipes/llara.py Config)
    out: str = "runs/cprec"

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.stage in ("sft", "evaluate") and self.init_from is None:
            raise ValueError(f"stage: {self.stage} needs init_from (a finished stage: cpt run)")
        if self.cpt.schedule == "wsa_over_ds" and self.cpt.data != "domain_specific":
            raise ValueError("cpt.schedule: wsa_over_ds anneals over domain-specific rows; "
                             "set cpt.data: domain_specific")
        if self.stage in ("cpt", "cpt_then_sft"):
            if self.train.max_steps is not None or self.train.epochs != 1:
                raise ValueError("train.max_steps, train.epochs: CPT is one pass whose length the data sets "
                                 "(set cpt.anneal_end for fewer updates)")
            if self.train.shuffle_buffer:
                raise ValueError("train.shuffle_buffer: must be 0 for CPT, whose row order is its phases")
        if any(n < 1 for n in self.save_after_instances):
            raise ValueError(f"save_after_instances: counts must be positive, got {self.save_after_instances}")
        return self


# --- data --------------------------------------------------------------------------------------
def load_corpus(prepared, split: str) -> pa.Table:
    """The cprec rendering of one split in key order, joined with its examples' history, target
    domain and stored candidates."""
    from recplat.errors import ConfigError

    rendered = prepared.rendered("cprec", split).sort_by([(k, "ascending") for k in KEYS])
    examples = prepared.examples(split).sort_by([(k, "ascending") for k in KEYS])
    if not all(rendered.column(k).equals(examples.column(k)) for k in KEYS):
        raise ConfigError(f"{prepared.path}: the cprec rendering of {split} does not match its examples; re-prepare")
    for name in ("history", "target_domain", "candidates"):
        rendered = rendered.append_column(name, examples.column(name))
    return rendered


def select_corpus(cfg: Config, prepared, table: pa.Table) -> tuple[np.ndarray, np.ndarray, dict]:
    """(domain-specific row ids, mixed row ids, counts) after the guidelines."""
    from recplat.data import behaviour_corpus as corpus
    from recplat.errors import ConfigError

    if cfg.guidelines.target_domain_negatives:
        pool = prepared.manifest["config"].get("candidates", {}).get("pool")
        if pool != "target_domain":
            raise ConfigError(f"{prepared.path}: guidelines.target_domain_negatives needs a dataset prepared with "
                              f"candidates.pool: target_domain, not {pool!r}")
        corpus.check_target_domain_negatives(table, prepared.item_domains, str(prepared.path))
    mixed = corpus.is_mixed(table)
    keep = ~mixed | corpus.cross_domain_history(table, prepared.item_domains) if cfg.guidelines.cross_domain_only \
        else np.ones(table.num_rows, dtype=bool)  # fmt: skip
    ds, mix = np.flatnonzero(~mixed), np.flatnonzero(mixed & keep)
    return ds, mix, {"domain_specific": len(ds), "mixed": len(mix), "mixed_dropped_g1": int((mixed & ~keep).sum())}


def plan_cpt(cfg: Config, n_ds: int, n_mix: int, workers: int):
    """The phase plan and the TrainConfig updates of `cpt.data` x `cpt.schedule`."""
    from recplat.data.behaviour_corpus import phase_plan

    c, batch = cfg.cpt, cfg.train.micro_batch_size * cfg.train.grad_accum * workers
    ends = {"warmup_end": c.warmup_end, "stable_end": c.stable_end, "anneal_end": c.anneal_end}
    plan = phase_plan(n_ds, 0 if c.data == "domain_specific" else n_mix, batch, c.warmup_frac, **ends)
    W, S, A = plan.warmup_end, plan.stable_end, plan.anneal_end
    if c.schedule == "wsa_over_ds" and c.stable_end is None:
        # [D] the DS ablation's schedule is not stated: anneal over the same share of the run as
        # the full corpus would (A - S)/A, on domain-specific rows
        full = phase_plan(n_ds, n_mix, batch, c.warmup_frac)
        S = max(W, round(A * full.stable_end / full.anneal_end))
    name, phase_ends = {"wsa": ("wsa", (W, S)), "wsa_over_ds": ("wsa", (W, S)),
                        "warmup_stable": ("warmup_stable", (W, S)), "cosine": ("wsa", (W, W))}[c.schedule]
    plan = type(plan)(W, S, A, batch)
    return plan, {"schedule": name, "phase_ends": phase_ends, "max_steps": A}


# --- training ------------------------------------------------------------------------------------
class PhasedAnswerTask(AnswerTask):
    """AnswerTask on rows laid out by behaviour_corpus.worker_layout. Each micro-batch is checked
    against the update, rank and micro-batch its rows were laid out for (a spine that shards
    otherwise fails here, not silently); at the first micro-batch of update u + 1 rank 0 exports
    the adapter as it stands after update u when u is a save point (Fig. 5): a resumed run redoes
    an export it had not reached. `trace_dir`: one JSON line per micro-batch (tests)."""

    def __init__(self, *args, grad_accum: int, exports: dict[int, str], trace_dir: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.grad_accum, self.exports, self.trace_dir = grad_accum, exports, trace_dir
        self._next: tuple[int, int] | None = None

    @staticmethod
    def _rank() -> int:
        import ray.train

        return ray.train.get_context().get_world_rank()

    def collate(self, batch):
        import torch

        from recplat.errors import RecplatError

        rank, u, m = self._rank(), int(batch["update"][0]), int(batch["micro"][0])
        same = (batch["update"] == u).all() and (batch["micro"] == m).all() and (batch["rank"] == rank).all()
        if not same or (self._next is not None and (u, m) != self._next):
            updates = sorted(set(batch["update"].tolist()))
            raise RecplatError(f"cprec: rank {rank} read rows laid out for updates {updates}, "
                               f"ranks {sorted(set(batch['rank'].tolist()))}, micro-batch {m} (expected {self._next}): "
                               "the spine's data split no longer matches data/behaviour_corpus.worker_layout")
        self._next = (u, m + 1) if m + 1 < self.grad_accum else (u + 1, 0)
        if self.trace_dir is not None:
            import json

            with open(Path(self.trace_dir) / f"rank{rank}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"update": u, "micro": m, "phases": sorted(set(batch["phase"].tolist()))}) + "\n")
        out = super().collate(batch)
        out["cpt_update"], out["cpt_micro"] = torch.tensor(u), torch.tensor(m)
        return out

    def training_step(self, model, batch):
        u, m = int(batch.pop("cpt_update")), int(batch.pop("cpt_micro"))
        if m == 0 and (u - 1) in self.exports and self._rank() == 0:
            from peft import PeftModel

            from recplat.storage import atomic_dir

            module = model if isinstance(model, PeftModel) else model.module  # DDP / DeepSpeed engine
            with atomic_dir(self.exports[u - 1], overwrite=True) as tmp:
                module.save_pretrained(str(tmp))
        return super().training_step(model, batch)


def train_cpt(cfg: Config, out: Path, trace_dir: str | None = None) -> dict:
    """The CPT stage: corpus -> phased layout -> LoRA under WSA -> out/adapter (+ Fig. 5 adapters)."""
    import math

    import ray.data

    from recplat.data import behaviour_corpus as corpus
    from recplat.data.dataset import PreparedDataset
    from recplat.recipes.answer_task import FinetuneSettings, finetune
    from recplat.recipes.molorec import seeded_rows, strings

    prepared = PreparedDataset.open(cfg.data.dataset)
    table = load_corpus(prepared, "train")
    ds, mix, counts = select_corpus(cfg, prepared, table)
    train = cfg.train
    plan, schedule = plan_cpt(cfg, len(ds), len(mix), train.num_workers)
    rows, phases = corpus.consumption_order(ds, mix, plan, cfg.cpt.data, train.seed)
    layout = corpus.worker_layout(rows, phases, train.num_workers, train.micro_batch_size, train.grad_accum)
    picked = table.select(["prompt", "answer"]).take(layout.column("row"))
    columns = layout.drop_columns(["row"])
    data = ray.data.from_arrow(pa.Table.from_arrays(  # one block: the spine splits it contiguously
        [*picked.columns, *columns.columns], names=[*picked.column_names, *columns.column_names]))

    valid = load_corpus(prepared, "valid")
    valid = valid.take(np.sort(seeded_rows(valid.num_rows, cfg.cpt.valid_size, train.seed)))
    exports = {}  # update -> folder; a count at or past the end is the final adapter
    for n in sorted(set(cfg.save_after_instances)):
        update = math.ceil(n / plan.batch)
        if update < plan.anneal_end:
            exports[update] = str((out / f"after_{n}_instances").absolute())
    updates = dict(schedule)
    if train.storage_path == TrainConfig().storage_path:  # default: checkpoints next to the results
        updates.update(storage_path=str((out / "checkpoints").absolute()), name="cpt")
    train = train.model_copy(update=updates)
    task = PhasedAnswerTask(cfg.model, FinetuneSettings(method="lora", lora=cfg.lora), strings(valid, "prompt"),
                            strings(valid, "answer"), grad_accum=train.grad_accum, exports=exports, trace_dir=trace_dir)
    result, adapter = finetune(task, train, data, out / "adapter", best=False)
    # a run branched from a trunk (train.branch_from: a Tune search, tune/branch.py) exports only after it
    branched = (result.summary.get("branched_from") or {}).get("step", 0)
    after = {str(n): exports.get(math.ceil(n / plan.batch), str(adapter.absolute())) for n in cfg.save_after_instances
             if math.ceil(n / plan.batch) > branched}  # fmt: skip
    return {"adapter": str(adapter.absolute()), "adapters_after_instances": after, "corpus": counts,
            "phases": {"W": plan.warmup_end, "S": plan.stable_end, "A": plan.anneal_end, "B": plan.batch,
                       "schedule": schedule["schedule"], "phase_ends": list(schedule["phase_ends"]),
                       "data": cfg.cpt.data},
            "train_rows": layout.num_rows, "result": result}


# --- fine-tuning: LLaRA's recipe from a CPT adapter ------------------------------------------
def cpt_adapter(summary: RunSummary, after_instances: int | None, key: str = "init_from") -> str:
    """The adapter folder a finished cpt run exported (after `after_instances` rows, or final)."""
    from recplat.errors import ConfigError

    extra = summary.model_extra or {}
    if after_instances is None:
        return extra["adapter"]
    saved = extra.get("adapters_after_instances", {})
    if str(after_instances) not in saved:
        raise ConfigError(f"init_after_instances: {after_instances}: the {key} run saved adapters after "
                          f"{sorted(map(int, saved)) or 'no counts'} (its save_after_instances)")
    return saved[str(after_instances)]


def llara_config(cfg: Config, adapter: str | None, out: Path):
    """recipes/llara.py's Config from `sft` (its keys), with the dataset, out and `init_from`
    filled: `data.dataset` for sft/evaluate, `sft.data.dataset` after CPT (cpt_then_sft)."""
    from recplat.config import validate
    from recplat.errors import ConfigError

    try:
        from recplat.recipes import llara
    except ImportError:
        raise ConfigError(f"stage: {cfg.stage} needs the llara recipe (recplat.recipes.llara)") from None
    data = dict(cfg.sft.get("data") or {})
    if cfg.stage != "cpt_then_sft":
        data["dataset"] = cfg.data.dataset
    elif "dataset" not in data:
        raise ConfigError("sft.data.dataset: cpt_then_sft pre-trains on data.dataset and fine-tunes on this one")
    # what is set on this recipe's train section (`recplat run` fills the job's resources there)
    # applies to LLaRA's as well, but for a CPT branch's starting checkpoint
    inherited = cfg.train.model_fields_set - {"branch_from"}
    train = {**cfg.train.model_dump(include=inherited), **(cfg.sft.get("train") or {})}
    settings = {**cfg.sft, "data": data, "train": train, "out": str(out), "init_from": adapter}
    if cfg.stage == "evaluate":
        settings["stage"] = "zero_shot"  # Table 4: CPRec w/o SFT
    return llara, validate(llara.Config, settings, source="recipe.sft")


def run_llara(cfg: Config, adapter: str, out: Path) -> RunSummary:
    """LLaRA fine-tuning (or zero-shot testing) whose LoRA starts from the CPT `adapter`."""
    llara, llara_cfg = llara_config(cfg, adapter, out)
    summary = llara.run(llara_cfg)
    extra = {"cpt_adapter": adapter, "init_after_instances": cfg.init_after_instances}
    summary = RunSummary.model_validate({**summary.to_json(), "recipe": "cprec", **extra})
    summary.write(out)
    return summary


# --- the run -----------------------------------------------------------------------------------
def run(cfg: Config, trace_dir: str | None = None) -> RunSummary:
    started, out = time.time(), Path(cfg.out)
    if cfg.stage in ("sft", "evaluate"):
        return run_llara(cfg, cpt_adapter(cfg.init_from.summary("init_from"), cfg.init_after_instances), out)
    if cfg.stage == "cpt_then_sft":
        llara_config(cfg, None, out / "sft")  # a bad sft section fails before the CPT, not after
    out.mkdir(parents=True, exist_ok=True)
    info = train_cpt(cfg, out, trace_dir)
    result = info.pop("result")
    summary = RunSummary.model_validate({
        "recipe": "cprec", "dataset": str(cfg.data.dataset), "method": f"cpt:{cfg.cpt.data}+{cfg.cpt.schedule}",
        "best_validation": result.best_metrics, "best_checkpoint": info["adapter"], "train": result.summary,
        "seconds": {"total": round(time.time() - started, 1)}, **info})  # fmt: skip
    summary.write(out)
    print(f"\ncprec (cpt): {info['train_rows']:,} rows over {info['phases']['A']} updates "
          f"(W={info['phases']['W']}, S={info['phases']['S']}); adapter in {info['adapter']}", flush=True)
    if cfg.stage == "cpt_then_sft":
        return run_llara(cfg, info["adapter"], out / "sft")
    return summary
