"""LLM-Rec, SASRec and popularity end to end on the planted-structure synthetic corpus (Ray Data ->
Ray Train with 2 workers -> best checkpoint -> stored-candidate evaluation)."""

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


@pytest.mark.slow
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
