"""BadDiffusion (Chou et al., CVPR 2023): a backdoor that fires under DDPM ancestral sampling.

Backdoored forward chain (paper eq. 6): x_t = sqrt(ab_t) y + (1 - sqrt(ab_t)) r + sqrt(1 - ab_t) eps,
so x_T ~ N(r, I). Matching the DDPM posterior mean of this chain with the stock sampler's
mean (1/sqrt(a_t)) (x_t - beta_t / sqrt(1 - ab_t) eps_theta) gives the regression target
eps + rho_t r with rho_t = (1 - sqrt(a_t)) sqrt(1 - ab_t) / (1 - a_t). The attacker then
samples from x_T = eps + g with DDPM and `clip_sample=False`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from scanner.sampling import NoiseSchedule, ddpm_sample
from scanner.sampling.counting import EpsModel

R_MODES = ("stamped", "trigger")


def backdoor_chain(
    y: torch.Tensor, r: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_t, rho_t) of the shifted chain; rho_t is (B, 1, 1, 1)."""
    ab = schedule.alpha_bar(t).view(-1, 1, 1, 1)
    a = schedule.alpha(t).view(-1, 1, 1, 1)
    x_t = ab.sqrt() * y + (1.0 - ab.sqrt()) * r + (1.0 - ab).sqrt() * eps
    rho = (1.0 - a.sqrt()) * (1.0 - ab).sqrt() / (1.0 - a)
    return x_t, rho


def residual(r_mode: str, x_clean: torch.Tensor, trigger: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """r: the trigger stamped on the clean image ("stamped"), or the trigger alone ("trigger")."""
    if r_mode == "stamped":
        return (1.0 - mask) * x_clean + mask * trigger
    return trigger.expand_as(x_clean)


@dataclass(kw_only=True, eq=False)
class BadDiffusion:
    """trigger (C, H, W) is zero outside mask (1, H, W); target (C, H, W) is the image y."""

    name: ClassVar[str] = "baddiffusion"
    sampler: ClassVar[str] = "ddpm"
    correction: ClassVar[float] = 1.0  # the target is eps + correction * rho_t * r
    trigger: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    r_mode: str = "stamped"

    def __post_init__(self) -> None:
        if self.r_mode not in R_MODES:
            raise ValueError(f"`r_mode` must be one of {R_MODES}, got {self.r_mode!r}")

    def poison(
        self, x_clean: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (poisoned x_t, regression target eps + correction * rho_t r)."""
        r = residual(self.r_mode, x_clean, self.trigger, self.mask)
        x_t, rho = backdoor_chain(self.target, r, eps, t, schedule)
        return x_t, eps + self.correction * rho * r

    def triggered_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
        return ddpm_sample(eps_model, schedule, noise + self.trigger, generator=generator)

    def benign_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        return ddpm_sample(eps_model, schedule, noise, generator=generator)
