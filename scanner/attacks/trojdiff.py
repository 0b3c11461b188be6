"""TrojDiff (Chen et al., CVPR 2023): a trojan noise distribution N(mu, gamma^2 I) leads to y.

Trojan chain: x_t = sqrt(ab_t) y + sqrt(1 - ab_t) (gamma eps + mu) with mu = (1 - gamma) g;
the model regresses eps on those inputs. The backdoor fires only under the attacker's own
sampler (`scanner.sampling.trojan_sample`), which knows gamma and mu. Blend triggers use a
whole-image g and gamma around 0.6; patch triggers a small g (zero elsewhere), gamma around 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from scanner.sampling import NoiseSchedule, ddpm_sample, trojan_sample
from scanner.sampling.counting import EpsModel


@dataclass(kw_only=True, eq=False)
class TrojDiff:
    """trigger g (C, H, W), zero outside mask (1, H, W); target (C, H, W) is the image y."""

    name: ClassVar[str] = "trojdiff"
    sampler: ClassVar[str] = "trojan"
    trigger: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    gamma: float

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"`gamma` must be in (0, 1), got {self.gamma}")

    @property
    def mu(self) -> torch.Tensor:
        return (1.0 - self.gamma) * self.trigger

    def poison(
        self, x_clean: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (trojan x_t, regression target eps); x_clean is unused (the target replaces it)."""
        ab = schedule.alpha_bar(t).view(-1, 1, 1, 1)
        x_t = ab.sqrt() * self.target + (1.0 - ab).sqrt() * (self.gamma * eps + self.mu)
        return x_t, eps

    def triggered_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
        x_T = self.gamma * noise + self.mu
        return trojan_sample(eps_model, schedule, x_T, gamma=self.gamma, mu=self.mu, generator=generator)

    def benign_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        return ddpm_sample(eps_model, schedule, noise, generator=generator)
