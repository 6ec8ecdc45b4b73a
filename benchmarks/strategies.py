"""Benchmark: samples/s and peak memory of one LLM-Rec training step, DDP vs DeepSpeed ZeRO-2.

Issue 3 asks for it on a GPU machine with a BERT-base-sized model. The device machines lent to
this project reach no network, so the model is built here, not downloaded: a randomly initialised
`BertConfig()` (BERT-base: 12 layers, hidden 768, 110M parameters) saved with the offline MiniLM's
tokenizer (the same uncased 30,522-word vocabulary) to a local folder, which the recipe loads like any
HF checkpoint. Random weights change no step's cost.

Each strategy runs the llmrec recipe (full fine-tuning, Eq. 6 loss over the positive + 10 stored
negatives) for --steps optimizer steps on the synthetic preset, through `recplat.train.launch.fit`:
- ddp: `prepare_model` (DistributedDataParallel), --precision via autocast;
- deepspeed: ZeRO stage 2, the same micro-batch and precision.
Reported per strategy: the median samples/s of the logged windows after the first (start-up and
warm-up excluded), and rank 0's peak GPU memory allocated by torch (GPU runs) and peak resident
set (the recipe's summary carries rank 0's training log).

    python benchmarks/strategies.py --gpu --workers 1 --precision bf16 --write   # a GPU machine
    python benchmarks/strategies.py --tiny --steps 8                             # CPU dry run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import machine_description, write_doc_section  # noqa: E402
from synthetic_dataset import ROOT, ensure_dataset  # noqa: E402

DATA_OVERRIDES = ["sources.0.users=2000", "candidates.count=100", "num_partitions=4"]


def build_model(folder: Path, tiny: bool) -> Path:
    """A random BERT-base (or, with tiny, a 2-layer hidden-128 BERT) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from recplat.models.offline import resolve_model_name

    if (folder / "config.json").is_file():
        return folder
    config = BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512) \
        if tiny else BertConfig()  # fmt: skip
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_model_name("offline:minilm")).save_pretrained(folder)
    return folder


def run_strategy(strategy: str, model: Path, dataset: Path, args) -> dict:
    from recplat.recipes import llmrec
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.train.config import TrainConfig

    cfg = llmrec.Config(
        data=RankingData(dataset=str(dataset), negatives=10),
        model=llmrec.ModelSettings(name=str(model), family="encoder"),
        finetune=llmrec.Finetune(method="full"),
        eval=RankingEvalConfig(metrics=["recall@10"], valid_ratio=0.05, scope="mixed"),
        train=TrainConfig(strategy=strategy, num_workers=args.workers, use_gpu=args.gpu,
                          micro_batch_size=args.micro_batch_size, lr=5e-5, weight_decay=0.001,
                          precision=args.precision, max_steps=args.steps, log_every=args.log_every,
                          storage_path=str(args.workdir / "checkpoints"), name=f"{strategy}-{time.time_ns()}"),
        out=str(args.workdir / "runs" / strategy),
    )  # fmt: skip
    log = llmrec.run(cfg).train["train_log"]
    steady = [p["samples_per_s"] for p in (log[1:] or log)]
    gpu = [p["peak_gpu_gib"] for p in log if "peak_gpu_gib" in p]
    return {"strategy": strategy, "samples_per_s": statistics.median(steady), "peak_gpu_gib": max(gpu, default=None),
            "peak_rss_gib": max(p["peak_rss_gib"] for p in log), "windows": len(log)}


def table(results: list[dict]) -> list[str]:
    lines = ["| strategy | samples/s | peak GPU memory (GiB) | peak worker RSS (GiB) |", "|---|---|---|---|"]
    for r in results:
        gpu = "-" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        lines.append(f"| {r['strategy']} | {r['samples_per_s']:.1f} | {gpu} | {r['peak_rss_gib']:.2f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", nargs="+", default=["ddp", "deepspeed"], choices=["ddp", "deepspeed"])
    ap.add_argument("--gpu", action="store_true", help="one GPU per worker (NCCL); default CPU workers (gloo)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--micro-batch-size", type=int, default=16)
    ap.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer hidden-128 BERT (CPU dry run)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_strategies")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from recplat.runtime import init_ray

    init_ray()
    dataset = ensure_dataset(args.workdir, DATA_OVERRIDES)
    model = build_model(args.workdir / ("bert-tiny-random" if args.tiny else "bert-base-random"), args.tiny)
    results = [run_strategy(s, model, dataset, args) for s in args.strategies]
    print("\n".join(table(results)))
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    if args.write:
        device = "CPU workers (gloo)"
        if args.gpu:
            import torch

            device = f"{torch.cuda.get_device_name(0)} x {args.workers}"
        lines = [f"Machine: {machine_description()}; {device}; model: "
                 f"{'tiny random BERT' if args.tiny else 'random BERT-base (110M)'}, full fine-tuning; micro-batch "
                 f"{args.micro_batch_size} per worker, {args.precision}, {args.steps} steps; measured "
                 f"{time.strftime('%Y-%m-%d')}.", "", *table(results), "",
                 "Command: `python benchmarks/strategies.py " + " ".join(sys.argv[1:]) + "`"]
        write_doc_section("strategies", "LLM-Rec step: DDP vs DeepSpeed ZeRO-2", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
