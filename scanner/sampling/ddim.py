"""DDIM sampling (Song et al. 2021, eq. 12) with diffusers' default "leading" step spacing."""

from __future__ import annotations

import torch

from scanner.sampling.counting import EpsModel
from scanner.sampling.schedule import NoiseSchedule


def ddim_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """diffusers' `DDIMScheduler` "leading" spacing with steps_offset 0: [k*T//n for k] reversed."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"`steps` must be in [1, {num_train_timesteps}], got {steps}")
    stride = num_train_timesteps // steps
    return [k * stride for k in range(steps)][::-1]


def ddim_step(schedule: NoiseSchedule, x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, *,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip_sample: bool = False) -> torch.Tensor:
    """x_{t_prev} from x_t; t_prev < 0 means alpha_bar = 1 (diffusers' `set_alpha_to_one=True`)."""
    ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    x0 = (x - (1.0 - ab_t).sqrt() * eps) / ab_t.sqrt()
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    sigma = eta * ((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)).sqrt()
    x = ab_prev.sqrt() * x0 + (1.0 - ab_prev - sigma**2).clamp(min=0.0).sqrt() * eps
    if eta > 0 and noise is not None and t_prev >= 0:
        x = x + sigma * noise
    return x


def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    *,
    steps: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip_sample: bool = False,
) -> torch.Tensor:
    """Run `steps` DDIM steps from `x_T` (B, C, H, W); eta = 0 is the deterministic ODE sampler."""
    stride = schedule.num_timesteps // steps
    x = x_T
    for t in ddim_timesteps(schedule.num_timesteps, steps):
        eps = eps_model(x, t)
        noise = None
        if eta > 0 and t - stride >= 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = ddim_step(schedule, x, eps, t, t - stride, eta=eta, noise=noise, clip_sample=clip_sample)
    return x
