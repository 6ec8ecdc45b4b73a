"""Tiny, real Tasks for the training-spine tests: rating regression on planted user/item factors.

The data flow is the recipes' one: rows written as Parquet, read with `ray.data.read_parquet`,
dealt to workers as Ray Data shards, collated from numpy batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from recplat.train import Task

NUM_USERS, NUM_ITEMS, RANK = 24, 40, 3


def make_ratings(rows: int, seed: int) -> pd.DataFrame:
    """rating = b_u + b_i + 0.5 <u, v> + noise, with planted biases and factors fixed by seed 1234;
    the rows are drawn with `seed`."""
    planted = np.random.default_rng(1234)
    user_bias, item_bias = planted.normal(size=NUM_USERS), planted.normal(size=NUM_ITEMS)
    users_f = planted.normal(size=(NUM_USERS, RANK))
    items_f = planted.normal(size=(NUM_ITEMS, RANK))
    rng = np.random.default_rng(seed)
    user = rng.integers(0, NUM_USERS, rows)
    item = rng.integers(0, NUM_ITEMS, rows)
    rating = (user_bias[user] + item_bias[item] + 0.5 * (users_f[user] * items_f[item]).sum(1)
              + 0.1 * rng.normal(size=rows))
    return pd.DataFrame({"user": user.astype(np.int64), "item": item.astype(np.int64),
                         "rating": rating.astype(np.float32)})


def write_parquet_parts(directory: Path, frame: pd.DataFrame, parts: int = 4) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[chunk].to_parquet(directory / f"part-{index:03d}.parquet", index=False)
    return directory


class RatingModel(nn.Module):
    def __init__(self, dim: int = 8, dropout: float = 0.1):
        super().__init__()
        self.user = nn.Embedding(NUM_USERS, dim)
        self.item = nn.Embedding(NUM_ITEMS, dim)
        self.user_bias = nn.Embedding(NUM_USERS, 1)
        self.item_bias = nn.Embedding(NUM_ITEMS, 1)
        self.drop = nn.Dropout(dropout)  # makes the resume test depend on restored RNG state
        self.head = nn.Linear(dim, 1)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        score = self.head(self.drop(self.user(user) * self.item(item))) + self.user_bias(user) + self.item_bias(item)
        return score.squeeze(-1)


class RatingTask(Task):
    """MSE regression; validation MSE on a fixed held-out set of 256 rows."""

    def __init__(self, val_rows: int = 256):
        val = make_ratings(val_rows, seed=99)
        self.val = {key: np.array(val[key]) for key in val.columns}

    def build_model(self) -> nn.Module:
        return RatingModel()

    def training_step(self, model, batch):
        return nn.functional.mse_loss(model(batch["user"], batch["item"]), batch["rating"])

    def validate(self, model):
        device = next(model.parameters()).device
        pred = model(torch.as_tensor(self.val["user"], device=device), torch.as_tensor(self.val["item"], device=device))
        target = torch.as_tensor(self.val["rating"], device=device)
        return {"val_loss": float(nn.functional.mse_loss(pred.float(), target))}


class ScriptedMetricTask(RatingTask):
    """Trains like RatingTask, but validation returns a scripted `val_loss` sequence (one value per
    call), so early stopping can be checked exactly."""

    def __init__(self, script: list[float]):
        super().__init__()
        self.script = list(script)
        self.calls = 0

    def validate(self, model):
        value = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return {"val_loss": value}
