"""`recplat demo`: the embedded default, end to end on one CPU machine with no network.

1. prepare MovieLens-100K from the installed `recbole` package (or, with --synthetic, the seeded
   multi-domain corpus) on Ray Data: 5-core, leave-one-out, 100 stored candidates per test user;
2. train LLM-Rec (LoRA on the offline MiniLM encoder) with 2 Ray Train workers;
3. train SASRec with the same spine, data and stored candidates; score the popularity baseline;
4. print the comparison table and write a report directory (Markdown + PNG plots).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from recplat.errors import RecplatError
from recplat.runs import RunSummary


def _prepare(out: Path, synthetic: bool, fresh: bool) -> Path:
    from recplat.config import load_config, preset_file
    from recplat.data.config import PrepareConfig
    from recplat.runs import prepared_dataset

    overrides = ["candidates.count=100", "candidates.train_negatives=10", "render.families=[]"]
    if synthetic:
        overrides += ["sources.0.users=1500", "sources.0.items_per_domain=150"]
    cfg = load_config(PrepareConfig, preset_file("synthetic" if synthetic else "ml100k"), overrides,
                      relative_to_file=False)
    return prepared_dataset(cfg, out / "data", fresh=fresh, label="demo")


# 90 LLM-Rec steps (SASRec 4x), validated 3 times: 7.4 min on a quiet 2-core machine (README)
DEFAULT_STEPS = 90
SHUFFLE_ROWS = 60_000  # >= one worker's share of ML-100K's ~96k training rows: a shuffle of all of it


def _configs(data: Path, out: Path, steps: int, workers: int):
    from recplat.recipes import id_baseline, llmrec, popularity
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.train.config import TrainConfig

    ranking = RankingData(dataset=str(data), negatives=10)
    # a fifth of the validation users (~190 on MovieLens-100K) for early stopping
    evaluation = RankingEvalConfig(metrics=["recall@1", "recall@10", "ndcg@10", "mrr"], valid_ratio=0.2)
    # Settings that differ from the paper's (README, "What the demo changes"): cosine scores at
    # MiniLM's pretraining temperature 0.05 (its raw [CLS] dot products are ~36 units large: the
    # loss started far above chance and training collapsed the scores), and shuffled rows (stored
    # order is user by user: 90 steps would see ~15 users' prefixes).
    llm = llmrec.Config(
        data=ranking, eval=evaluation, model=llmrec.ModelSettings(score="cosine", temperature=0.05),
        finetune=llmrec.Finetune(method="lora", rank=8, alpha=16, dropout=0.05),
        train=TrainConfig(num_workers=workers, micro_batch_size=8, lr=5e-4, warmup_ratio=0.05, max_steps=steps,
                          eval_every=max(steps // 3, 1), metric="recall@10", mode="max", log_every=10,
                          shuffle_buffer=SHUFFLE_ROWS, storage_path=str((out / "checkpoints").absolute()),
                          name="llmrec"),
        out=str(out / "llmrec"),
    )
    sas = id_baseline.Config(
        data=ranking, eval=evaluation, arch="sasrec",
        train=TrainConfig(num_workers=workers, micro_batch_size=64, lr=2e-3, max_steps=4 * steps,
                          eval_every=steps, metric="recall@10", mode="max", log_every=50,
                          storage_path=str((out / "checkpoints").absolute()), name="sasrec"),
        out=str(out / "sasrec"),
    )
    pop = popularity.Config(data=ranking, eval=evaluation, out=str(out / "popularity"))
    return llm, sas, pop


def run_demo(out: str | Path = "runs/demo", synthetic: bool = False, steps: int = DEFAULT_STEPS,
             workers: int = 2, fresh: bool = False) -> dict[str, RunSummary]:  # fmt: skip
    from recplat.recipes import id_baseline, llmrec, popularity
    from recplat.runtime import init_ray

    started = time.time()
    out = Path(out)
    from recplat.preflight import check_run

    check_run(out, [out / "data"], [], where="demo")  # before Ray starts: the data folder is new or recplat's
    init_ray(num_cpus=max(4, workers + 2), quiet=False)
    print(f"[demo] 1/4 preparing {'the synthetic corpus' if synthetic else 'MovieLens-100K (recbole)'}", flush=True)
    data = _prepare(out, synthetic, fresh)
    llm_cfg, sas_cfg, pop_cfg = _configs(data, out, steps, workers)
    print(f"[demo] 2/4 training LLM-Rec (LoRA, offline MiniLM) on {workers} Ray Train workers", flush=True)
    baselines = validation_baselines(llm_cfg)
    print("[demo] validation recall@10 before training: " + ", ".join(f"{k} {v:.3f}" for k, v in baselines.items()),
          flush=True)
    summaries = {"LLM-Rec (MiniLM+LoRA)": llmrec.run(llm_cfg)}
    print(f"[demo] 3/4 training SASRec on {workers} Ray Train workers; scoring popularity", flush=True)
    summaries["SASRec"] = id_baseline.run(sas_cfg)
    summaries["Popularity"] = RunSummary.coerce(popularity.run(pop_cfg))
    print("[demo] 4/4 writing the report", flush=True)
    report = write_report(out / "report", summaries, dataset=data, seconds=time.time() - started,
                          baselines=baselines, negatives=llm_cfg.data.negatives)
    print("\n" + comparison_table(summaries))
    print(f"\n[demo] done in {time.time() - started:.0f}s; report: {report}")
    return summaries


def validation_baselines(cfg) -> dict[str, float]:
    """Recall@10 on LLM-Rec's validation subset of a random ranking (expected value), of popularity,
    and of LLM-Rec as built, before any training: what its validation curve must rise above."""
    from recplat.data.dataset import PreparedDataset, padded_lists
    from recplat.eval.checkpoints import score_checkpoint, scoring_cpus
    from recplat.eval.metrics import mean_metrics
    from recplat.recipes.llmrec import LlmRecTask
    from recplat.recipes.popularity import item_popularity, rank_by_popularity
    from recplat.recipes.ranking_task import RankingArrays, select_examples

    prepared = PreparedDataset.open(cfg.data.dataset)
    valid = select_examples(prepared, "valid", cfg.eval.scope, cfg.eval.target_domains,
                            fraction=cfg.eval.valid_ratio, seed=cfg.train.seed)  # the subset training validates on
    candidates = padded_lists(valid.column("candidates"), align="left")
    targets = valid.column("target").to_numpy().astype(np.int64)
    pool = (candidates != 0).sum(axis=1) + 1  # the target and its stored candidates
    popular = rank_by_popularity(item_popularity(prepared), targets, candidates)
    task = LlmRecTask(cfg, prepared.titles, prepared.num_items, RankingArrays.from_table(valid, cfg.model.max_history))
    untrained, _ = score_checkpoint(task, None, lambda task, model: task.validate(model),
                                    num_cpus=scoring_cpus(cfg.train))
    return {"random ranking": float(np.mean(np.minimum(10, pool) / pool)),
            "popularity": mean_metrics(popular, ["recall@10"])["recall@10"],
            "LLM-Rec untrained": untrained["recall@10"]}


def comparison_table(summaries: dict[str, RunSummary]) -> str:
    metrics = list(next(iter(summaries.values())).overall)
    header = f"{'model':<24}" + "".join(f"{m:>12}" for m in metrics)
    lines = [header, "-" * len(header)]
    for name, summary in summaries.items():
        lines.append(f"{name:<24}" + "".join(f"{100 * summary.overall[m]:>11.2f}%" for m in metrics))
    return "\n".join(lines)


def write_report(directory: Path, summaries: dict[str, RunSummary], dataset: Path, seconds: float,
                 baselines: dict[str, float] | None = None, negatives: int = 10) -> Path:  # fmt: skip
    """README.md with the table, and PNGs: training loss, validation metric, test metric bars;
    `baselines` (validation_baselines) -> validation.json and the validation plot's reference lines."""
    import math

    from recplat.report.plots import curves, grouped_bars
    from recplat.storage import write_bytes_atomic, write_json_atomic

    directory.mkdir(parents=True, exist_ok=True)
    baselines = dict(baselines or {})
    trained = {n: s.train for n, s in summaries.items() if s.train is not None}
    losses = {n: [(p["step"], p["train_loss"]) for p in train.get("train_log", [])] for n, train in trained.items()}
    valid = {n: [(p["step"], p.get("recall@10")) for p in train.get("history", []) if "recall@10" in p]
             for n, train in trained.items()}
    start = baselines.pop("LLM-Rec untrained", None)
    llm = next(iter(valid), None)
    if start is not None and llm is not None:
        valid[llm] = [(0, start), *valid[llm]]  # the curve starts where the untrained encoder stands
        write_json_atomic(directory / "validation.json", {"recall@10": {"untrained": start, **baselines}})
    curves(losses, directory / "loss.png", f"Training loss: softmax over the positive and {negatives} negatives",
           ylabel="cross-entropy", references={f"chance level ln(1+{negatives})": math.log(1 + negatives)})
    curves(valid, directory / "validation.png", "Validation recall@10 while training", ylabel="recall@10",
           references=baselines)
    grouped_bars({n: s.overall for n, s in summaries.items()}, directory / "test_metrics.png",
                 "Test metrics over the stored candidates")
    manifest = json.loads((dataset / "manifest.json").read_text())
    lines = [
        "# recplat demo report", "",
        f"Dataset: `{dataset}` ({manifest['name']}); total time {seconds:.0f} s.", "",
        "```", comparison_table(summaries), "```", "",
        "![test metrics](test_metrics.png)", "", "![training loss](loss.png)", "",
        "![validation](validation.png)", "",
        "Per-example ranks and per-domain / Same-Mix-Diff tables: `<run>/test/ranks.parquet`, `metrics.json`.",
    ]
    write_bytes_atomic(directory / "README.md", ("\n".join(lines) + "\n").encode())
    return directory


def main(args) -> int:
    if args.steps < 1:
        raise RecplatError("--steps must be at least 1")
    run_demo(args.out, synthetic=args.synthetic, steps=args.steps, workers=args.workers, fresh=args.fresh)
    return 0
