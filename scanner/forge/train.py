"""The epsilon-regression training loop shared by the base model, clean twins and attacks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from scanner.sampling import NoiseSchedule


class Poisoner(Protocol):
    def poison(self, x_clean: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
               schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of one training run; recorded in the manifest next to its output."""

    steps: int
    lr: float
    batch_size: int = 64
    poison_rate: float = 0.0
    seed: int = 0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {self.steps}")
        if not 0.0 < self.lr < 1.0:
            raise ValueError(f"`lr` must be in (0, 1), got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.poison_rate <= 1.0:
            raise ValueError(f"`poison_rate` must be in [0, 1], got {self.poison_rate}")


def train_eps(
    unet: torch.nn.Module,
    schedule: NoiseSchedule,
    data: torch.Tensor,
    *,
    config: TrainConfig,
    poisoner: Poisoner | None = None,
) -> dict[str, float]:
    """Train `unet` in place on images `data` (N, C, H, W) in [-1, 1]; return loss and seconds.

    Each batch poisons exactly round(poison_rate * batch_size) examples (a fixed count keeps
    the rate exact at small batches); the rest get the DDPM loss of Ho et al. (eq. 14).
    """
    if config.poison_rate > 0 and poisoner is None:
        raise ValueError("`poison_rate` > 0 needs a `poisoner` (an attack)")
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(unet.parameters(), lr=config.lr)
    n_poison = round(config.poison_rate * config.batch_size)
    unet.train()
    started, recent = time.perf_counter(), []
    for _ in range(config.steps):
        idx = torch.randint(0, data.shape[0], (config.batch_size,), generator=gen)
        x0 = data[idx]  # (B, C, H, W)
        t = torch.randint(0, schedule.num_timesteps, (config.batch_size,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = schedule.alpha_bar(t).view(-1, 1, 1, 1)
        x_t, target = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps, eps
        if n_poison:
            px, pt = poisoner.poison(x0[:n_poison], eps[:n_poison], t[:n_poison], schedule)
            x_t = torch.cat([px, x_t[n_poison:]])
            target = torch.cat([pt, target[n_poison:]])
        loss = F.mse_loss(unet(x_t, t).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.grad_clip)
        opt.step()
        recent = (recent + [loss.item()])[-50:]
    unet.eval()
    return {"final_loss": sum(recent) / len(recent), "seconds": time.perf_counter() - started}
