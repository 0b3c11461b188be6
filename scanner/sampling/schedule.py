"""The discrete noise schedule (betas, alphas, cumulative alphas) of a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """beta_t, alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s, indexed t = 0..T-1."""

    betas: torch.Tensor  # (T,) float64

    def __post_init__(self) -> None:
        if self.betas.ndim != 1 or self.betas.numel() < 2:
            raise ValueError(f"`betas` must be a 1-D tensor of length >= 2, got shape {tuple(self.betas.shape)}")
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("`betas` must lie in (0, 1)")

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.numel())

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """alpha_bar at integer timesteps t (any shape), float32; any t < 0 gives 1 (x_0 is clean)."""
        ab = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        return ab[(torch.as_tensor(t) + 1).clamp(min=0)].float()

    def alpha(self, t: torch.Tensor | int) -> torch.Tensor:
        return self.alphas[torch.as_tensor(t)].float()

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any]) -> "NoiseSchedule":
        """Build from any diffusers scheduler config; diffusers computes the betas."""
        from diffusers import DDPMScheduler

        keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")
        sched = DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None})
        return cls(betas=sched.betas.to(torch.float64))

    @classmethod
    def linear(cls, *, num_timesteps: int, beta_start: float, beta_end: float) -> "NoiseSchedule":
        return cls(betas=torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64))
