"""The prepared synthetic dataset a benchmark runs on: made once with `recplat prepare`, reused."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare_command(out: Path, overrides: list[str]) -> list[str]:
    return ["recplat", "prepare", "--preset", "synthetic", "--out", str(out), *overrides]


def ensure_dataset(workdir: Path, overrides: list[str]) -> Path:
    """`workdir/dataset`, prepared with the synthetic preset and `overrides` unless already there."""
    out = workdir / "dataset"
    if not (out / "manifest.json").is_file():
        cmd = prepare_command(out, overrides)
        print("preparing:", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return out
