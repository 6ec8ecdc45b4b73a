"""Benchmark: greedy generation throughput, the sharded evaluator vs a plain single-process loop.

Both generate the same MoLoRec-shaped prompts (history + 30 candidate titles, spec §3.2) with the
same model, batch size and `max_new_tokens`, greedily with the KV cache:
- loop: `model.generate` over the batches in this process (all of its threads / its one GPU);
- sharded: `recplat.eval.generative.generate_sharded`, a Ray Data `map_batches` pool of --actors
  model actors (1 CPU thread each, or one GPU each with --gpu).
Reported per path: wall seconds including model loading (what an evaluation costs), examples/s
and generated tokens/s over that wall time, and for the loop also the generation-only rate. The
two paths' answers are compared: they must be identical.

    python benchmarks/generation.py --examples 16 --max-new-tokens 16 --write      # CPU
    python benchmarks/generation.py --gpu --actors 1 --examples 256 --write         # one GPU
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_section import machine_description, shared_machine_note, write_doc_section  # noqa: E402

WORDS = ["Red", "Blue", "Oak", "Steel", "Wool", "Glass", "Iron", "Silk", "Lamp", "Mug", "Desk", "Kettle", "Rug",
         "Vase", "Pan", "Chair", "Soap", "Brush", "Comb", "Gel", "Set", "Pack", "Deluxe", "Mini"]
SYSTEM = "You are a helpful recommendation assistant."


def prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)

    def title() -> str:
        return " ".join(rng.sample(WORDS, 3))

    out = []
    for _ in range(n):
        history, candidates = [title() for _ in range(5)], [title() for _ in range(30)]
        out.append(f"Given the following purchase history of a user:[{'||'.join(history)}]. Please select the top 5 "
                   "most likely products to be purchased by the user based on the user's purchase history. And sort "
                   "them from highest to lowest likelihood of purchasing.Candidates: [" + "||".join(candidates)
                   + "]. The top 5 most likely products to be purchased by the user are:")
    return out


def run_loop(settings, texts: list[str], args) -> dict:
    import torch

    from recplat.eval.generative import generate_greedy
    from recplat.models.causal_lm import load_causal_lm

    started = time.perf_counter()
    model, tokenizer = load_causal_lm(settings)
    if args.gpu:
        model.cuda()
    fmt = settings.prompt_format()
    generating = time.perf_counter()
    outputs, tokens = [], 0
    for start in range(0, len(texts), args.batch_size):
        ids = [fmt.prompt_ids(tokenizer, p) for p in texts[start : start + args.batch_size]]
        answers, lengths = generate_greedy(model, tokenizer, ids, args.max_new_tokens)
        outputs += answers
        tokens += int(lengths.sum())
    if args.gpu:
        torch.cuda.synchronize()
    end = time.perf_counter()
    return {"path": "loop", "wall_s": end - started, "generate_s": end - generating, "tokens": tokens,
            "outputs": outputs}


def run_sharded(settings, texts: list[str], args) -> dict:
    from recplat.eval.generative import generate_sharded

    started = time.perf_counter()  # Ray is up already (main): its start-up is not part of an evaluation
    outputs, lengths, _ = generate_sharded(settings, texts, max_new_tokens=args.max_new_tokens,
                                           batch_size=args.batch_size, num_actors=args.actors, use_gpu=args.gpu)
    return {"path": f"sharded ({args.actors} actor{'s' if args.actors > 1 else ''})",
            "wall_s": time.perf_counter() - started, "generate_s": None, "tokens": int(lengths.sum()),
            "outputs": outputs}


def table(results: list[dict], n: int) -> list[str]:
    lines = ["| path | wall s (incl. model load) | examples/s | tokens/s | generation-only tokens/s |",
             "|---|---|---|---|---|"]
    for r in results:
        only = "-" if r["generate_s"] is None else f"{r['tokens'] / r['generate_s']:.1f}"
        lines.append(f"| {r['path']} | {r['wall_s']:.1f} | {n / r['wall_s']:.2f} | {r['tokens'] / r['wall_s']:.1f} "
                     f"| {only} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="offline:smollm2")
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--gpu", action="store_true", help="the loop on one GPU, one GPU per actor")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--out", type=Path, default=Path("runs") / "bench_generation.json")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import psutil

    from recplat.models.causal_lm import CausalLMSettings
    from recplat.runtime import init_ray

    init_ray()
    settings = CausalLMSettings(name=args.model, dtype=args.dtype, system=SYSTEM)
    texts = prompts(args.examples)
    loads = [os.getloadavg()[0]]
    results = [run_loop(settings, texts, args)]
    loads.append(os.getloadavg()[0])
    results.append(run_sharded(settings, texts, args))
    loads.append(os.getloadavg()[0])
    same = results[0]["outputs"] == results[1]["outputs"]
    print("\n".join(table(results, len(texts))), f"\nidentical answers: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "identical": same, "loads": loads}, indent=2))
    if args.write:
        device = f"CPU ({psutil.cpu_count()} logical CPUs; actors 1 thread each)"
        if args.gpu:
            import torch

            device = f"{torch.cuda.get_device_name(0)} (loop on one GPU, one GPU per actor)"
        lines = [f"Machine: {machine_description()}; {device}; model {args.model} ({args.dtype}); {len(texts)} "
                 f"MoLoRec-shaped prompts (~{len(texts[0]) // 4} characters/4), batch {args.batch_size}, "
                 f"{args.max_new_tokens} new tokens at most; measured {time.strftime('%Y-%m-%d')}.", "",
                 *table(results, len(texts)), "",
                 f"Identical answers on both paths: {'yes' if same else 'NO'}. Load average during the run: "
                 f"{', '.join(f'{x:.1f}' for x in loads)}.",
                 *shared_machine_note(loads, "absolute rates are low and noisy; the comparison is the point."), "",
                 "Command: `python benchmarks/generation.py " + " ".join(sys.argv[1:]) + "`"]
        write_doc_section("generation", "Generation throughput: sharded evaluator vs a single-process loop", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
