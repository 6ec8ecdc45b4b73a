"""What every "score a user against stored candidates" recipe shares (LLM-Rec, SASRec, GRU4Rec).

- the stored examples as fixed-width arrays: history [N, L] (right-aligned, 0 = padding),
  target [N], candidates [N, C] (0 = padding when fewer were available);
- the training data as a Ray Dataset of those arrays (the stored train negatives are the S
  negatives of LLM-Rec Eq. 6: nothing is sampled at load time);
- `RankingTask`: a training-spine Task whose validation and test evaluation are the same code,
  the item-tower cache path (encode each needed item once, then gather; spec §1.7);
- `evaluate_checkpoint`: the best checkpoint's ranks on a split (eval/checkpoints.py's Ray task),
  written as Parquet + JSON results; `train_and_evaluate`: the whole run, returning a RunSummary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import Field

from recplat.config import StrictModel
from recplat.data.dataset import PreparedDataset, padded_lists
from recplat.runs import RunRef, RunSummary
from recplat.train.config import TrainConfig
from recplat.train.task import Task

__all__ = ["RankingArrays", "RankingData", "RankingEvalConfig", "RankingTask", "RunRef", "evaluate_checkpoint",
           "filter_examples", "score_and_write", "select_examples", "train_and_evaluate", "training_dataset"]


@dataclass
class RankingArrays:
    """Examples as plain numpy (picklable into Ray Train workers)."""

    history: np.ndarray  # [N, L] int64, most recent item in the last column, 0 = padding
    target: np.ndarray  # [N] int64
    candidates: np.ndarray  # [N, C] int64 negatives, 0 = padding

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def from_table(cls, table: pa.Table, max_history: int, max_candidates: int | None = None) -> "RankingArrays":
        return cls(
            history=padded_lists(table.column("history"), max_history, align="right"),
            target=table.column("target").to_numpy().astype(np.int64),
            candidates=padded_lists(table.column("candidates"), max_candidates, align="left"),
        )


def select_examples(prepared: PreparedDataset, split: str, scope: str, target_domains: list[str] | None,
                    fraction: float = 1.0, seed: int = 0) -> pa.Table:  # fmt: skip
    """One split's examples, filtered; `fraction` < 1 keeps a fixed seeded subset (LLM-Rec's 10% of
    validation users for early stopping, spec §1.7), in stored order."""
    table = filter_examples(prepared.examples(split), scope, target_domains)
    limit = max(1, math.ceil(fraction * table.num_rows))
    if limit < table.num_rows:
        keep = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=limit, replace=False))
        table = table.take(pa.array(keep))
    return table


# Train examples up to this much Parquet are read by the driver and handed to Ray Train as one
# in-memory dataset, as X-Cross, LLaRA and CPRec hand theirs: a Ray Data read + map costs a fresh
# run 15-20 s of task start-up on a 2-core machine, whatever the input's size. Larger inputs stream
# through read_parquet + map_batches, sharded over the cluster, never whole in one process.
DRIVER_READ_BYTES = 256 * 2**20
TRAIN_COLUMNS = ["scope", "history", "target", "target_domain", "candidates"]


def training_dataset(prepared: PreparedDataset, scope: str, target_domains: list[str] | None,
                     max_history: int, negatives: int, driver_read_bytes: int = DRIVER_READ_BYTES):  # fmt: skip
    """The train examples as a Ray Dataset with fixed-width columns history, target, negatives,
    in stored order (read by the driver up to `driver_read_bytes` of Parquet, else by Ray Data)."""
    import ray.data

    directory = prepared.path / "examples" / "train"
    widths = dict(scope=scope, target_domains=target_domains, max_history=max_history, negatives=negatives)
    if sum(p.stat().st_size for p in directory.glob("part-*.parquet")) <= driver_read_bytes:
        from ray.data.extensions import ArrowTensorArray

        from recplat.data.writer import read_table_dir

        table = read_table_dir(directory)
        columns = _fixed_width(table.select(TRAIN_COLUMNS) if table.num_columns else table, **widths)
        return ray.data.from_arrow(pa.table({key: ArrowTensorArray.from_numpy(value) if value.ndim > 1 else value
                                             for key, value in columns.items()}))
    ds = ray.data.read_parquet(str(directory), columns=TRAIN_COLUMNS)
    return ds.map_batches(_fixed_width, batch_format="pyarrow", fn_kwargs=widths)


def scope_mask(scopes: pa.ChunkedArray | pa.Array, scope: str) -> pa.Array:
    """Which example rows belong to the sequences a model trains/evaluates on: "mixed" (one
    all-domain sequence per user, SPIAO), "per_domain" (one sequence per user and domain, S²PIAO),
    "any", or one scope name (a domain)."""
    from recplat.data.schema import MIXED_SCOPE

    if scope == "any":
        return pa.array([True] * len(scopes))
    if scope == "mixed":
        return pc.equal(scopes, MIXED_SCOPE)
    if scope == "per_domain":
        return pc.not_equal(scopes, MIXED_SCOPE)
    return pc.equal(scopes, scope)


def filter_examples(table: pa.Table, scope: str, target_domains: list[str] | None) -> pa.Table:
    """Examples of the sequences `scope` selects (see scope_mask) whose target is in `target_domains`."""
    table = table.filter(scope_mask(table.column("scope"), scope))
    if target_domains is not None:
        table = table.filter(pc.is_in(table.column("target_domain"), pa.array(target_domains, pa.string())))
    return table


def _fixed_width(batch: pa.Table, scope, target_domains, max_history: int, negatives: int) -> dict:
    # candidates are padded (with item 0) or cut to exactly `negatives` columns
    arrays = RankingArrays.from_table(filter_examples(batch, scope, target_domains), max_history, negatives)
    return {"history": arrays.history, "target": arrays.target, "negatives": arrays.candidates}


class RankingTask(Task):
    """A Task scored by `encode_users` . `encode_items`; subclasses add build_model/training_step.

    `valid` is the fixed validation subset; `metric_names` are reported by `validate`.
    """

    def __init__(self, num_items: int, valid: RankingArrays | None, metric_names: list[str], eval_batch_size: int = 64):
        self.num_items = num_items
        self.valid = valid
        self.metric_names = list(metric_names)
        self.eval_batch_size = eval_batch_size

    # -- what a subclass implements besides build_model / training_step -----------------------
    def encode_users(self, model: torch.nn.Module, history: torch.Tensor) -> torch.Tensor:
        """[B, L] histories -> [B, d] user vectors."""
        raise NotImplementedError

    def encode_items(self, model: torch.nn.Module, item_idx: torch.Tensor) -> torch.Tensor:
        """[k] item indices -> [k, d] item vectors."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    @staticmethod
    def masked_logits(logits: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Padding negatives (item 0) must not count in the softmax of Eq. 6."""
        pad = torch.cat([torch.zeros_like(negatives[:, :1], dtype=torch.bool), negatives == 0], dim=1)
        return logits.masked_fill(pad, torch.finfo(logits.dtype).min)

    @torch.no_grad()
    def rank(self, model: torch.nn.Module, arrays: RankingArrays, items: np.ndarray | None = None) -> np.ndarray:
        """Pessimistic ranks of each target among its candidates, via the item-tower cache.

        `items`: the examples' needed items (default) or a larger set this call must encode the
        same way on every training rank (`validate` shares the encoding out across ranks)."""
        from recplat.eval.ranking import build_item_cache, needed_items, rank_with_item_cache
        from recplat.train.sharded_validation import sum_tensor_across_ranks, validation_shard, world_size

        device = next(model.parameters()).device
        items = needed_items(arrays.target, arrays.candidates) if items is None else items
        # decided alike on every rank (each joins the all-reduce or none does): more than one rank,
        # and an item for each
        shared = 1 < world_size() <= len(items)
        cache = build_item_cache(lambda ids: self.encode_items(model, ids.to(device)),
                                 items[validation_shard(len(items))] if shared else items, self.num_items,
                                 batch_size=self.eval_batch_size * 4)
        if shared:  # each rank filled its own rows, the others are zero: the sum is the whole cache
            cache = sum_tensor_across_ranks(cache)
        # torch.tensor copies: arrays that came through Ray's object store are read-only, and
        # torch.as_tensor would warn about each slice
        users = [self.encode_users(model, torch.tensor(arrays.history[i : i + self.eval_batch_size], device=device))
                 for i in range(0, len(arrays), self.eval_batch_size)]
        user_vectors = torch.cat(users) if users else torch.zeros(0, cache.shape[1], device=device)
        return rank_with_item_cache(user_vectors.float(), cache.float(), arrays.target, arrays.candidates,
                                    mask=arrays.candidates != 0)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """The metrics' means over `valid`, computed once across the training ranks: each rank
        encodes a share of the items and ranks a share of the users (train/sharded_validation.py)."""
        from recplat.eval.metrics import metric_values
        from recplat.eval.ranking import needed_items
        from recplat.train.sharded_validation import sum_across_ranks, validation_shard

        if self.valid is None or not len(self.valid):
            return {}
        valid = self.valid
        rows = validation_shard(len(valid))
        mine = RankingArrays(history=valid.history[rows], target=valid.target[rows], candidates=valid.candidates[rows])
        ranks = self.rank(model, mine, items=needed_items(valid.target, valid.candidates))
        sums = {name: float(v.sum()) for name, v in metric_values(ranks, self.metric_names).items()}
        totals = sum_across_ranks({**sums, "examples": len(rows)}, next(model.parameters()).device)
        return {name: totals[name] / totals["examples"] for name in sums}


def evaluate_checkpoint(task: RankingTask, checkpoint, examples: pa.Table, max_history: int,
                        use_gpu: bool = False, num_cpus: float = 1) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Ranks of `examples` under the checkpoint's weights and the model's parameter counts
    ({"trainable", "total"}), computed in a Ray task."""
    from recplat.eval.checkpoints import score_checkpoint

    arrays = RankingArrays.from_table(examples, max_history)
    return score_checkpoint(task, checkpoint, lambda task, model: task.rank(model, arrays), use_gpu, num_cpus)


SEGMENTS = ("same_mix_diff",)


def score_and_write(prepared: PreparedDataset, examples: pa.Table, ranks: np.ndarray, metrics: list[str],
                    out_dir: str | Path, window: int, segments=SEGMENTS):  # fmt: skip
    """Metrics overall, per target domain and per segment (same_mix_diff: LLM-Rec Fig. 5's
    Same/Mix/Diff history domains), written as ranks.parquet + metrics.json under out_dir."""
    from recplat.eval.results import evaluate_ranks
    from recplat.eval.segments import history_domain_segments

    labels = {}
    if "same_mix_diff" in segments:
        labels["same_mix_diff"] = history_domain_segments(examples, prepared.items, window=window)
    results = evaluate_ranks(examples, ranks, metrics, by=("target_domain",), segments=labels)
    results.write(out_dir)
    return results


# --- the configs shared by the ranking recipes ----------------------------------------------
class RankingEvalConfig(StrictModel):
    metrics: list[str] = ["recall@1", "recall@10", "ndcg@10"]  # LLM-Rec Table 4
    # a fixed seeded fraction of the validation examples, for early stopping (spec §1.7: 10% of users)
    valid_ratio: float = Field(0.1, gt=0, le=1)
    batch_size: int = Field(64, ge=1)  # users per encoder forward at evaluation
    scope: str = "mixed"  # test examples of the mixed sequences (SPIAO), see scope_mask
    target_domains: list[str] | None = None  # None: every domain
    # rows besides overall and per target domain (always written): same_mix_diff = LLM-Rec Fig. 5
    segments: list[Literal["same_mix_diff"]] = ["same_mix_diff"]
    # another run on the same test examples: relative difference and paired t-test per row
    compare_with: RunRef | None = None


class RankingData(StrictModel):
    dataset: str  # a prepared dataset directory (`recplat prepare --out ...`)
    train_scope: str = "mixed"  # mixed (SPIAO) | per_domain (S²PIAO) | any | one domain's scope
    train_domains: list[str] | None = None  # only train examples whose target is in these domains
    negatives: int = Field(10, ge=1)  # S of Eq. 6: the first S stored train negatives


# --- the run shared by the ranking recipes: train -> best checkpoint -> test -> files ---------
def train_and_evaluate(name: str, task_factory, data: RankingData, evaluation: RankingEvalConfig,
                       train: TrainConfig, out: str | Path, max_history: int,
                       checkpoint: str | None = None) -> RunSummary:  # fmt: skip
    """The whole run of a ranking recipe; writes out/{test/, summary.json} and returns the summary.

    `task_factory(prepared, valid_arrays)` builds the recipe's RankingTask. With `checkpoint`
    nothing trains: that checkpoint is tested (evaluate mode).
    """
    import time

    from recplat.eval.checkpoints import scoring_cpus
    from recplat.eval.significance import compare_with_run
    from recplat.runtime import init_ray
    from recplat.storage import write_json_atomic
    from recplat.train.launch import checkpoint_uri, fit

    started = time.time()
    init_ray()
    out = Path(out)
    prepared = PreparedDataset.open(data.dataset)
    summary: dict = {"recipe": name, "dataset": str(prepared.path)}
    if checkpoint is None:
        valid = select_examples(prepared, "valid", evaluation.scope, evaluation.target_domains,
                                fraction=evaluation.valid_ratio, seed=train.seed)
        task = task_factory(prepared, RankingArrays.from_table(valid, max_history))
        train_ds = training_dataset(prepared, data.train_scope, data.train_domains, max_history, data.negatives)
        if train.storage_path == TrainConfig().storage_path:  # default: checkpoints next to the results
            train = train.model_copy(update={"storage_path": str((out / "checkpoints").absolute()), "name": name})
        result = fit(task, train, train_ds)
        checkpoint = checkpoint_uri(result.best_checkpoint)
        summary.update(best_validation=result.best_metrics, train=result.summary)
    else:
        task = task_factory(prepared, None)
        summary["mode"] = "evaluate"
    trained = time.time()

    test = select_examples(prepared, "test", evaluation.scope, evaluation.target_domains)
    ranks, params = evaluate_checkpoint(task, checkpoint, test, max_history, use_gpu=train.use_gpu,
                                        num_cpus=scoring_cpus(train))
    results = score_and_write(prepared, test, ranks, evaluation.metrics, out / "test", window=max_history,
                              segments=evaluation.segments)
    summary.update(overall=results.overall, best_checkpoint=checkpoint, params=params,
                   seconds={"train": round(trained - started, 1), "test": round(time.time() - trained, 1)},
                   test_examples=test.num_rows)
    if evaluation.compare_with is not None:
        evaluation.compare_with.summary("eval.compare_with")  # a clear error when it is not there
        summary["comparison"] = compare_with_run(results, evaluation.compare_with.run_dir)
        write_json_atomic(out / "test" / "comparison.json", summary["comparison"])
    summary = RunSummary.model_validate(summary)
    summary.write(out)
    print(f"\n{name}: test results ({test.num_rows:,} examples)\n{results.format_table()}", flush=True)
    return summary
