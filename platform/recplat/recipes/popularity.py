"""Most-popular baseline: score = the item's number of training interactions.

No learning; the floor any recommender must clear on the same stored candidates. Popularity is
counted over the training examples' targets (never validation or test targets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from recplat.config import StrictModel
from recplat.data.dataset import PreparedDataset, padded_lists
from recplat.recipes.ranking_task import RankingData, RankingEvalConfig, score_and_write, select_examples


class Config(StrictModel):
    data: RankingData
    max_history: int = Field(10, ge=1)  # history window of the Same/Mix/Diff segments
    eval: RankingEvalConfig = RankingEvalConfig()
    out: str = "runs/popularity"


def item_popularity(prepared: PreparedDataset) -> np.ndarray:
    """How often each item_idx is a training target."""
    train = prepared.examples("train")
    counts = np.zeros(prepared.num_items + 1, dtype=np.float64)
    np.add.at(counts, train.column("target").to_numpy().astype(np.int64), 1)
    return counts


def rank_by_popularity(popularity: np.ndarray, targets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Ranks with score = popularity, through the one ranking rule of every model
    (`rank_candidates`: padding and copies of the target among the candidates are masked)."""
    from recplat.eval.ranking import rank_candidates

    return rank_candidates(popularity[targets], popularity[candidates], targets, candidates)


def run(cfg: Config) -> dict:
    from recplat.storage import write_json_atomic

    prepared = PreparedDataset.open(cfg.data.dataset)
    popularity = item_popularity(prepared)
    test = select_examples(prepared, "test", cfg.eval.scope, cfg.eval.target_domains)
    candidates = padded_lists(test.column("candidates"), align="left")
    target = test.column("target").to_numpy().astype(np.int64)
    ranks = rank_by_popularity(popularity, target, candidates)
    results = score_and_write(prepared, test, ranks, cfg.eval.metrics, Path(cfg.out) / "test", cfg.max_history,
                              segments=cfg.eval.segments)
    summary = {"recipe": "popularity", "dataset": str(prepared.path), "overall": results.overall,
               "test_examples": test.num_rows}
    write_json_atomic(Path(cfg.out) / "summary.json", summary)
    print(f"\npopularity: test results ({test.num_rows:,} examples)\n{results.format_table()}", flush=True)
    return summary
