"""A copy of the catalog's LLM-Rec Fig. 7 entry with other `tune:` searches (tests only)."""

from pathlib import Path

import yaml

JOBS = Path(__file__).resolve().parents[2] / "jobs"
FIG7 = "llmrec/fig7_lora_rank"


def fig7_jobs_with(root: Path, tune: dict, profile: str = "smoke") -> Path:
    """A jobs/ folder under `root` holding fig7 with `tune` as `profile`'s searches."""
    data = yaml.safe_load((JOBS / f"{FIG7}.yaml").read_text())
    data["profiles"][profile]["tune"] = tune
    folder = root / "jobs" / "llmrec"
    folder.mkdir(parents=True)
    (folder / "fig7_lora_rank.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "jobs"
