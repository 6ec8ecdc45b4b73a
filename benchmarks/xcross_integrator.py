"""Benchmark: one X-Cross training step vs one LoRA training step on the same multiple-choice question.

X-Cross (spec §2.5): n=2 frozen source encoders (each a DeBERTa-v3-base-shaped model with its own
frozen rank-16 LoRA on query_proj/value_proj), the top 9 of 12 blocks integrated (α=β=0.5); trainable:
the integrator (9 W^(l) + 2 domain weights). Baseline: ONE such model whose LoRA trains. Both get
the same trainable multiple-choice head (DeBERTa's ContextPooler dense+GELU, then Linear(d, 1)) and
the same batch: one question = --prompts prompts of --tokens tokens (no padding), 30-way cross-entropy.
A step = forward + backward + AdamW step over the trainable parameters; the median of --steps
timed steps after --warmup untimed ones is reported, as wall time and as this process's CPU time
(user+sys of all its threads): on a shared machine the wall time depends on the neighbours, the CPU
time much less (use --threads 1 there, so that no OpenMP thread spins waiting for another).

The models are randomly initialised from a DeBERTa-v3-base config (hidden 768, 12 layers, 12 heads,
FFN 3072, relative attention with 256 log buckets); the vocabulary is cut from 128,100 to --vocab
(default 32,000) to save RAM: the embedding is a frozen lookup, so this changes memory, not step time.

Memory. CUDA: torch.cuda.max_memory_allocated over the steps, warm-up included (reset after building).
CPU: torch has no allocator statistics on CPU, so each setup runs in its own process and a thread
samples that process's resident set size (psutil RSS) every 5 ms; we report RSS once the models are
built and the peak RSS while stepping. "step memory" = peak − built: activations kept for backward,
gradients, AdamW state, plus whatever the allocator keeps cached (a sampled upper-ish bound, not
an exact tensor count; spikes shorter than 5 ms can be missed).

    python benchmarks/xcross_integrator.py --prompts 30 --tokens 32 --steps 3 --threads 1 --write  # CPU: ~2 min of CPU time
    python benchmarks/xcross_integrator.py --prompts 30 --tokens 128 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

import psutil
import torch
from torch import nn

KINDS = ("lora", "xcross")


def deberta_v3_base_config(vocab: int):
    from transformers import DebertaV2Config

    return DebertaV2Config(
        vocab_size=vocab, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=512, relative_attention=True, position_buckets=256, max_relative_positions=-1,
        norm_rel_ebd="layer_norm", pos_att_type=["p2c", "c2p"], share_att_key=True, position_biased_input=False,
        type_vocab_size=0, hidden_act="gelu",
    )  # fmt: skip


class ChoiceHead(nn.Module):
    """Spec §2.6 (Eq. 7–8): p = GELU(W_p h[CLS] + b_p), φ = w_s·p + b_s."""

    def __init__(self, hidden: int):
        super().__init__()
        self.pooler = nn.Linear(hidden, hidden)
        self.scorer = nn.Linear(hidden, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.scorer(nn.functional.gelu(self.pooler(hidden[:, 0]))).squeeze(-1)


def build(kind: str, vocab: int):
    """(encoder: (ids, mask) -> [B, T, d], modules to move/train) for `kind`."""
    from transformers import DebertaV2Model

    from recplat.adapters import apply_lora, lora_config
    from recplat.models.layer_integration import XCrossEncoder

    config = deberta_v3_base_config(vocab)

    def lora_model():
        model = DebertaV2Model(config)
        return apply_lora(model, lora_config(model, rank=16, alpha=32, dropout=0.0))  # query_proj, value_proj

    if kind == "lora":
        model = lora_model()
        return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).last_hidden_state), model
    xcross = XCrossEncoder([lora_model(), lora_model()], integrate_layers=9, alpha=0.5, beta=0.5)
    return xcross, xcross


def measure(kind: str, args) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    encoder, module = build(kind, args.vocab)
    head = ChoiceHead(768)
    module.to(device).train()
    head.to(device).train()
    trainable = [p for m in (module, head) for p in m.parameters() if p.requires_grad]
    n_head = sum(p.numel() for p in head.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(1, args.vocab, (args.prompts, args.tokens), device=device)
    mask = torch.ones_like(ids)
    label = torch.zeros(1, dtype=torch.long, device=device)

    process = psutil.Process()
    built_rss = process.memory_info().rss
    peak_rss, sampling = [built_rss], threading.Event()

    def sample():
        while not sampling.is_set():
            peak_rss[0] = max(peak_rss[0], process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if device.type == "cuda":
        torch.cuda.synchronize()
        built_cuda = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for _ in range(args.warmup + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        logits = head(encoder(ids, mask)).view(1, args.prompts)
        loss = nn.functional.cross_entropy(logits, label)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    sampling.set()
    sampler.join()
    row = {
        "kind": kind,
        "trainable": sum(p.numel() for p in trainable) - n_head,
        "head": n_head,
        "step_s": statistics.median(times[args.warmup :]),
        "cpu_s": statistics.median(cpu_times[args.warmup :]),
        "times": [round(t, 3) for t in times],
        "built_rss_gib": built_rss / 2**30,
        "peak_rss_gib": peak_rss[0] / 2**30,
    }
    if device.type == "cuda":
        row["built_cuda_gib"] = built_cuda / 2**30
        row["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def machine_line(args) -> str:
    from doc_section import machine_description  # benchmarks/doc_section.py (this script's folder is on sys.path)

    gpu = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    return (f"Machine: {machine_description()}{gpu}; torch {torch.__version__}, {args.threads} intra-op "
            f"thread(s); measured {time.strftime('%Y-%m-%d')}.")  # fmt: skip


def table(rows: dict, args) -> list[str]:
    lora, xcross = rows["lora"], rows["xcross"]
    cuda = args.device == "cuda"
    head = "| setup | trainable params (w/o head) | median step, wall (s) | CPU s / step | RSS built (GiB) | peak RSS stepping (GiB) | step memory (GiB) |"
    head += " CUDA peak allocated (GiB) |" if cuda else ""
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else "")]
    names = {"lora": "one LoRA model (r=16, q/v, trains)", "xcross": "X-Cross (2 frozen LoRA sources, top 9 of 12)"}
    for kind in KINDS:
        r = rows[kind]
        line = (f"| {names[kind]} | {r['trainable']:,} | {r['step_s']:.2f} | {r['cpu_s']:.2f} | {r['built_rss_gib']:.2f} | "
                f"{r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] - r['built_rss_gib']:.2f} |")  # fmt: skip
        lines.append(line + (f" {r['peak_cuda_gib']:.2f} |" if cuda else ""))
    step_mem = (xcross["peak_rss_gib"] - xcross["built_rss_gib"]) / max(1e-9, lora["peak_rss_gib"] - lora["built_rss_gib"])
    lines.append("")
    lines.append(f"X-Cross / LoRA: step time {xcross['step_s'] / lora['step_s']:.2f}× wall, "
                 f"{xcross['cpu_s'] / lora['cpu_s']:.2f}× CPU, "
                 f"CPU step memory {step_mem:.2f}×" + (f", CUDA peak {xcross['peak_cuda_gib'] / lora['peak_cuda_gib']:.2f}×" if cuda else "")  # fmt: skip
                 + f"; trainable parameters {xcross['trainable'] / lora['trainable']:.3f}× (the head, {lora['head']:,}, trains in both).")  # fmt: skip
    return lines


def update_doc(rows: dict, args, command: str) -> None:
    from doc_section import write_doc_section

    lines = [
        machine_line(args), "",
        f"Batch: one question of {args.prompts} prompts × {args.tokens} tokens; median of {args.steps} steps after "
        f"{args.warmup} warm-up; device {args.device}; vocabulary {args.vocab:,}. Command: `{command}`", "",
        *table(rows, args),
    ]  # fmt: skip
    write_doc_section("xcross_integrator", "X-Cross integrator vs one LoRA model (benchmarks/xcross_integrator.py)", lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=30, help="prompts per question (1 positive + negatives)")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per prompt")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=32_000, help="vocabulary (DeBERTa-v3's is 128,100)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--run", choices=KINDS, help=argparse.SUPPRESS)  # child: measure one setup, print JSON
    args = ap.parse_args()
    if args.run:
        print("RESULT " + json.dumps(measure(args.run, args)), flush=True)
        return 0
    rows = {}
    for kind in KINDS:  # one process each: a clean RSS baseline and peak per setup
        child = [sys.executable, __file__, "--run", kind, *sys.argv[1:]]
        child = [a for a in child if a != "--write"]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows[kind] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        print(f"{kind}: {rows[kind]}", flush=True)
    print("\n".join([machine_line(args), *table(rows, args)]))
    if args.write:
        update_doc(rows, args, "python benchmarks/xcross_integrator.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
