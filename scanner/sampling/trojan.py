"""TrojDiff's trojan sampler (Chen et al., CVPR 2023): ancestral sampling of the trojan chain.

The trojan forward chain is x_t = sqrt(ab_t) y + sqrt(1 - ab_t) (gamma eps + mu). Write
s_t = sqrt(1 - ab_t) and z_t = x_t - s_t mu: then z_t = sqrt(ab_t) y + s_t gamma eps is an
ordinary DDPM chain whose noise is scaled by gamma. Scaling every noise variance by gamma^2
leaves the Gaussian posterior mean of z_{t-1} unchanged (both variances scale alike) and
scales its variance by gamma^2. So each step is the DDPM step on z with x0_hat computed
from gamma * eps_theta(x_t, t), noise gamma * sigma_t, and x_{t-1} = z_{t-1} + s_{t-1} mu.
With gamma = 1 and mu = 0 it is exactly `ddpm_sample` (clip off).
"""

from __future__ import annotations

import torch

from scanner.sampling.counting import EpsModel
from scanner.sampling.ddpm import ddpm_step
from scanner.sampling.schedule import NoiseSchedule


def trojan_step(schedule: NoiseSchedule, x: torch.Tensor, eps: torch.Tensor, t: int, noise: torch.Tensor | None,
                *, gamma: float, mu: torch.Tensor) -> torch.Tensor:
    """x_{t-1} from x_t on the trojan chain; noise=None gives the posterior mean."""
    s_t, s_prev = (1.0 - schedule.alpha_bar(t)).sqrt(), (1.0 - schedule.alpha_bar(t - 1)).sqrt()
    z = ddpm_step(schedule, x - s_t * mu, gamma * eps, t, None if noise is None else gamma * noise)
    return z + s_prev * mu


def trojan_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    *,
    gamma: float,
    mu: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run all T trojan steps from `x_T` (the attacker draws x_T = gamma * eps + mu)."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"`gamma` must be in (0, 1], got {gamma}")
    x = x_T
    for t in range(schedule.num_timesteps - 1, -1, -1):
        eps = eps_model(x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if t > 0 else None
        x = trojan_step(schedule, x, eps, t, noise, gamma=gamma, mu=mu)
    return x
