"""A toy next-item task for the ID baselines: item n is always followed by item n+1 (cyclic).

A model that learns the rule ranks the true next item first; random ranking does so 1/N of the
time. Histories have random lengths and are padded on a chosen side, so both conventions train.
"""

from __future__ import annotations

import torch

from recplat.models.losses import candidate_cross_entropy

NUM_ITEMS = 20


def toy_batch(generator: torch.Generator, batch: int, max_len: int = 6, padding_side: str = "left"):
    """(history [B, max_len] 0-padded, next item [B])."""
    starts = torch.randint(1, NUM_ITEMS + 1, (batch,), generator=generator)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=generator)
    history = torch.zeros(batch, max_len, dtype=torch.long)
    for row in range(batch):
        n = int(lengths[row])
        items = (starts[row] - 1 + torch.arange(n)) % NUM_ITEMS + 1
        if padding_side == "right":
            history[row, :n] = items
        else:
            history[row, max_len - n :] = items
    target = (starts - 1 + lengths) % NUM_ITEMS + 1
    return history, target


def train_toy(model, steps: int = 60, negatives: int = 5, seed: int = 0) -> list[float]:
    """Adam steps of the LLM-Rec loss (Eq. 6) over [positive, uniform negatives]; the loss curve."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    model.train()
    for step in range(steps):
        history, target = toy_batch(generator, 64, padding_side="left" if step % 2 else "right")
        negs = torch.randint(1, NUM_ITEMS + 1, (64, negatives), generator=generator)
        candidates = torch.cat([target[:, None], negs], dim=1)
        loss = candidate_cross_entropy(model.score(model(history), candidates))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def hit_rate_at_1(model, seed: int = 1) -> float:
    """Share of toy histories whose true next item scores highest among all items."""
    history, target = toy_batch(torch.Generator().manual_seed(seed), 200)
    all_items = torch.arange(1, NUM_ITEMS + 1).expand(len(target), NUM_ITEMS)
    with torch.no_grad():
        best = model.score(model(history), all_items).argmax(dim=1) + 1
    return (best == target).float().mean().item()
