"""Train one task with an importance-weighted anchor: the loop SPP, EWC and MAS share.

    L = CE(new task) + lam * sum_i Omega_i * (theta_i - theta*_i)^2

theta* are the weights when the task starts; only the parameters named in Omega (the shared
trunk) are anchored, never the task heads. With lam = 0, or Omega all zero, this is plain
fine-tuning, to the bit: the same seed gives the same weights (tests/test_spp.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scanner.spp.importance import Importance


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = 10
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.lr <= 0:
            raise ValueError(f"need epochs >= 1, batch >= 1, lr > 0; got {self.epochs}, {self.batch}, {self.lr}")


def anchor_penalty(model: nn.Module, omega: Importance, anchors: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_i Omega_i (theta_i - theta*_i)^2 over the parameters named in `omega`."""
    params = dict(model.named_parameters())
    missing = set(omega) - set(params)
    if missing:
        raise ValueError(f"importance names parameters the model lacks: {sorted(missing)[:3]}")
    return sum(((params[n] - anchors[n]).pow(2) * o).sum() for n, o in omega.items())


def train_task(model: nn.Module, logits_fn, x: torch.Tensor, y: torch.Tensor, *, config: TrainConfig = TrainConfig(),
               omega: Importance | None = None, lam: float = 0.0) -> list[float]:
    """Adam on cross-entropy (+ the anchor penalty); returns the mean loss per epoch.

    `logits_fn(x)` gives this task's logits (a task head, or the shared head).
    """
    if lam < 0:
        raise ValueError(f"`lam` must be >= 0, got {lam}")
    anchors = {n: p.detach().clone() for n, p in model.named_parameters()} if omega else {}
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    history = []
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for idx in order.split(config.batch):
            loss = F.cross_entropy(logits_fn(x[idx]), y[idx])
            if omega:
                loss = loss + lam * anchor_penalty(model, omega, anchors)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    return history
