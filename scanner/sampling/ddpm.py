"""DDPM ancestral sampling (Ho et al. 2020, Alg. 2), diffusers' `DDPMScheduler` arithmetic.

Written out (not `DDPMScheduler.step`) so the same code serves gradient-based detectors;
tests check it step for step against diffusers with the same noise.
"""

from __future__ import annotations

import torch

from scanner.sampling.counting import EpsModel
from scanner.sampling.schedule import NoiseSchedule


def ddpm_step(schedule: NoiseSchedule, x: torch.Tensor, eps: torch.Tensor, t: int, noise: torch.Tensor | None,
              *, clip_sample: bool = False) -> torch.Tensor:
    """x_{t-1} from x_t and the model output eps; noise=None gives the posterior mean.

    x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), optionally clipped to [-1, 1];
    x_{t-1} = c0 x0_hat + c1 x_t + sigma_t z with "fixed_small" variance (Ho et al. eqs. 6-7).
    """
    ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    beta_t = 1.0 - ab_t / ab_prev
    x0 = (x - (1.0 - ab_t).sqrt() * eps) / ab_t.sqrt()
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    c0 = ab_prev.sqrt() * beta_t / (1.0 - ab_t)
    c1 = (1.0 - beta_t).sqrt() * (1.0 - ab_prev) / (1.0 - ab_t)
    mean = c0 * x0 + c1 * x
    if noise is None or t == 0:
        return mean
    var = (1.0 - ab_prev) / (1.0 - ab_t) * beta_t
    return mean + var.clamp(min=1e-20).sqrt() * noise


def ddpm_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    clip_sample: bool = False,
) -> torch.Tensor:
    """Run all T ancestral steps from `x_T` (B, C, H, W); return x_0, unclamped.

    `clip_sample=True` is diffusers' default and breaks BadDiffusion-type trajectories.
    """
    x = x_T
    for t in range(schedule.num_timesteps - 1, -1, -1):
        eps = eps_model(x, t)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) if t > 0 else None
        x = ddpm_step(schedule, x, eps, t, noise, clip_sample=clip_sample)
    return x
