"""The ranking task's cache path and its validation across training ranks; and (`heavy`) LLM-Rec,
SASRec and popularity end to end on the planted-structure synthetic corpus (prepare -> Ray Train
with 2 workers -> best checkpoint -> stored-candidate evaluation)."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from recplat.recipes.ranking_task import RankingArrays, RankingTask


class _TableTask(RankingTask):
    """A fixed vector table: encode_users returns row `history[:, -1]` of U, encode_items rows of V."""

    def __init__(self, users, items, valid):
        super().__init__(num_items=items.shape[0] - 1, valid=valid, metric_names=["recall@1", "mrr"], eval_batch_size=2)
        self.U, self.V = users, items

    def encode_users(self, model, history):
        return self.U[history[:, -1]]

    def encode_items(self, model, item_idx):
        return self.V[item_idx]


def test_rank_uses_cache_and_ignores_padding_candidates():
    V = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.0]])
    U = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    arrays = RankingArrays(history=np.array([[0, 1], [0, 2], [0, 1]]), target=np.array([1, 2, 4]),
                           candidates=np.array([[2, 3, 0], [1, 4, 3], [1, 0, 0]]))
    task = _TableTask(U, V, arrays)
    # user 1 = (1,0): target 1 scores 1 > 0, 0.5 -> rank 1; user 2 = (0,1): target 2 scores 1 > 0, 0, 0.5 -> 1;
    # third: target 4 scores 0.9 < item 1's 1.0 -> rank 2 (padding 0s never count, though V[0] . u = 0 ties)
    ranks = task.rank(torch.nn.Linear(1, 1), arrays)
    assert ranks.tolist() == [1, 1, 2]
    assert task.validate(torch.nn.Linear(1, 1)) == {"recall@1": pytest.approx(2 / 3), "mrr": pytest.approx((1 + 1 + 0.5) / 3)}


class _CountingTask(_TableTask):
    """_TableTask that records which items it encoded."""

    def encode_items(self, model, item_idx):
        self.encoded = getattr(self, "encoded", []) + item_idx.tolist()
        return super().encode_items(model, item_idx)


def _validate_on_rank(rank: int, world: int, init_file: str, tasks, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results.put((rank, [(task.validate(torch.nn.Linear(1, 1)), sorted(task.encoded)) for task in tasks]))
    finally:
        dist.destroy_process_group()


def _tasks(examples: int) -> "_CountingTask":
    generator = torch.Generator().manual_seed(examples)
    U, V = torch.randn(12, 4, generator=generator), torch.randn(21, 4, generator=generator)
    rng = np.random.default_rng(examples)
    if examples == 0:  # one example needing 2 items: fewer than the ranks
        return _CountingTask(U, V, RankingArrays(history=np.array([[1, 2, 3]]), target=np.array([4]),
                                                 candidates=np.array([[5, 0, 0]])))
    return _CountingTask(U, V, RankingArrays(history=rng.integers(1, 12, size=(examples, 3)),
                                             target=rng.integers(1, 21, size=examples),
                                             candidates=rng.integers(0, 21, size=(examples, 6))))


def test_validation_across_three_ranks_equals_one_process(tmp_path):
    """Each rank encodes a third of the items and ranks a third of the users; every rank returns
    the metrics of all examples, as one process computes them: also with 1 example (two ranks then
    rank none), and with fewer needed items than ranks (then every rank encodes them all, and no
    rank waits in an all-reduce the others skip)."""
    import torch.multiprocessing as mp

    sizes, world = [9, 1, 0], 3
    singles = [_tasks(n) for n in sizes]
    expected = [task.validate(torch.nn.Linear(1, 1)) for task in singles]
    context = mp.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_validate_on_rank, args=(r, world, str(tmp_path / "init"),
                                                               [_tasks(n) for n in sizes], results))
               for r in range(world)]
    for worker in workers:
        worker.start()
    got = dict(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    for i, single in enumerate(singles):
        for rank in range(world):
            assert got[rank][i][0] == pytest.approx(expected[i], rel=1e-12), (sizes[i], rank)
        shares = [set(got[rank][i][1]) for rank in range(world)]
        if sizes[i] == 0:  # 2 items, 3 ranks: not shared out
            assert all(share == set(single.encoded) == {4, 5} for share in shares)
        else:  # each item encoded once, by one rank
            assert sum(len(share) for share in shares) == len(set().union(*shares)) == len(set(single.encoded))


@pytest.mark.slow
def test_train_examples_read_by_the_driver_or_by_ray_data_are_the_same_rows(tiny_dataset):
    from recplat.data.dataset import PreparedDataset
    from recplat.recipes.ranking_task import training_dataset

    prepared = PreparedDataset.open(tiny_dataset)

    def rows(driver_read_bytes: int) -> dict:
        ds = training_dataset(prepared, "per_domain", ["Books"], max_history=5, negatives=4,
                              driver_read_bytes=driver_read_bytes)
        batches = list(ds.iter_batches(batch_size=16, batch_format="numpy"))
        return {key: np.concatenate([b[key] for b in batches]) for key in ("history", "target", "negatives")}

    import ray.data

    context = ray.data.DataContext.get_current()
    ordered = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # as the training spine reads (train/launch.py)
    try:
        driver, streamed = rows(1 << 30), rows(0)
    finally:
        context.execution_options.preserve_order = ordered
    assert driver["history"].shape[1:] == (5,) and driver["negatives"].shape[1:] == (4,) and len(driver["target"]) > 20
    for key in driver:  # the same rows in the same (stored) order, the same dtypes
        assert driver[key].dtype == streamed[key].dtype and np.array_equal(driver[key], streamed[key]), key


def test_masked_logits_drop_padding_negatives():
    logits = torch.tensor([[2.0, 1.0, 5.0]])
    masked = RankingTask.masked_logits(logits, torch.tensor([[7, 0]]))
    assert masked[0, 2] < -1e30 and masked[0, :2].tolist() == [2.0, 1.0]


@pytest.fixture(scope="module")
def synthetic_dataset(ray_local, tmp_path_factory):
    from recplat.data.config import PrepareConfig
    from recplat.data.pipeline import prepare

    out = tmp_path_factory.mktemp("synth") / "data"
    cfg = PrepareConfig.model_validate({
        "name": "synth-small", "seed": 1,
        "sources": [{"kind": "synthetic", "domains": ["Books", "Movies", "Music"], "users": 400,
                     "items_per_domain": 60, "topics": 4, "mean_interactions": 16, "seed": 3}],
        "kcore": {"user": 5, "item": 3},
        "candidates": {"count": 30, "train_negatives": 5},
        "num_partitions": 2,
    })
    prepare(cfg, out, show_progress=False)
    return out


@pytest.mark.heavy  # 3.5 min on 2 cores; the default run trains every recipe in tests/recipes/test_every_recipe.py
@pytest.mark.timeout(900)
def test_llmrec_and_sasrec_beat_popularity(synthetic_dataset, tmp_path):
    from recplat.recipes import id_baseline, llmrec, popularity
    from recplat.recipes.ranking_task import RankingData, RankingEvalConfig
    from recplat.runs import RunSummary
    from recplat.train.config import TrainConfig

    data = RankingData(dataset=str(synthetic_dataset), negatives=5)
    evaluation = RankingEvalConfig(metrics=["recall@1", "recall@10", "ndcg@10"], valid_ratio=0.3)
    pop = RunSummary.coerce(popularity.run(popularity.Config(data=data, eval=evaluation, out=str(tmp_path / "pop"))))
    llm = llmrec.run(llmrec.Config(
        data=data, eval=evaluation, finetune=llmrec.Finetune(method="lora", rank=8, alpha=16, dropout=0.0),
        train=TrainConfig(num_workers=2, micro_batch_size=8, lr=1e-3, max_steps=40, eval_every=20,
                          metric="recall@10", mode="max", storage_path=str(tmp_path / "ckpt"), name="llm"),
        out=str(tmp_path / "llm")))
    sas = id_baseline.run(id_baseline.Config(
        data=data, eval=evaluation, arch="sasrec",
        train=TrainConfig(num_workers=2, micro_batch_size=32, lr=3e-3, max_steps=150, eval_every=75,
                          metric="recall@10", mode="max", storage_path=str(tmp_path / "ckpt"), name="sas"),
        out=str(tmp_path / "sas")))
    print({k: v.overall for k, v in {"pop": pop, "llm": llm, "sas": sas}.items()})
    # planted topics make the next item predictable from the history's titles and ids
    assert llm.overall["recall@10"] > pop.overall["recall@10"] + 0.05
    assert sas.overall["recall@10"] > pop.overall["recall@10"] + 0.05
    # results on disk: per-example ranks and the metrics tables
    metrics = json.loads((tmp_path / "llm" / "test" / "metrics.json").read_text())
    assert metrics and (tmp_path / "llm" / "test" / "ranks.parquet").exists()
    losses = [p["train_loss"] for p in llm.train["train_log"]]
    assert losses[-1] < losses[0]
