"""Copies of catalog entries with other `tune:` searches (tests only)."""

from pathlib import Path

import yaml

JOBS = Path(__file__).resolve().parents[2] / "jobs"
FIG7 = "llmrec/fig7_lora_rank"


def jobs_with(root: Path, job: str, tune: dict, profile: str = "smoke") -> Path:
    """A jobs/ folder under `root` holding catalog entry `job` with `tune` as `profile`'s searches."""
    data = yaml.safe_load((JOBS / f"{job}.yaml").read_text())
    data["profiles"][profile]["tune"] = tune
    path = root / "jobs" / f"{job}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "jobs"


def fig7_jobs_with(root: Path, tune: dict, profile: str = "smoke") -> Path:
    return jobs_with(root, FIG7, tune, profile)
