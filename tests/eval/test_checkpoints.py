"""Scoring a checkpoint in a Ray task: how many CPUs (and torch threads) a run's test may take."""

from recplat.eval.checkpoints import score_checkpoint, scoring_cpus
from recplat.train.config import TrainConfig


class _ThreadTask:
    def build_model(self):
        import torch

        return torch.nn.Linear(1, 1)


def test_a_run_scores_on_the_cpus_its_training_held_within_one_node(ray_local):
    assert scoring_cpus(TrainConfig(num_workers=2)) == 2
    (node,) = ray_local.nodes()  # the local Ray: one node, 4 logical CPUs per test process
    assert node["Resources"]["CPU"] >= 4
    assert scoring_cpus(TrainConfig(num_workers=64, cpus_per_worker=2)) == node["Resources"]["CPU"]  # one node's
    assert scoring_cpus(TrainConfig(num_workers=2, use_gpu=True)) == 1  # the GPU does the work
    import torch

    threads, params = score_checkpoint(_ThreadTask(), None, lambda task, model: torch.get_num_threads(), num_cpus=2)
    assert threads == 2 and params == {"trainable": 2, "total": 2}
    threads, _ = score_checkpoint(_ThreadTask(), None, lambda task, model: torch.get_num_threads())
    assert threads == 1
