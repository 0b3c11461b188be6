"""Deterministic (DDIM-type) sampling along a hypothesised backdoor chain.

Every attack we know shifts the forward chain: x_t = sqrt(ab_t) y + c_t m + sqrt(1 - ab_t) gamma eps,
and trains the model to output eps + b_t m on it. Knowing (c, b, gamma) and m, the clean-image
estimate x0 = (x_t - c_t m - sqrt(1 - ab_t) gamma (eps_theta - b_t m)) / sqrt(ab_t) equals y at
every step, so a few large steps reach the target:
    "shift"  (BadDiffusion, VillanDiffusion): c_t = 1 - sqrt(ab_t), gamma = 1, b_t = kappa rho_t
             (kappa = 1 for BadDiffusion's SDE target, 2 for VillanDiffusion's ODE target);
    "trojan" (TrojDiff): c_t = sqrt(1 - ab_t), b_t = 0, m = mu.
With m = 0, gamma = 1 it is plain DDIM. Differentiable in m and gamma (detectors backpropagate).
"""

from __future__ import annotations

import torch

from scanner.sampling.counting import EpsModel
from scanner.sampling.schedule import NoiseSchedule

CHAINS = ("shift", "trojan")


def chain_coefficients(schedule: NoiseSchedule, t: int, chain: str, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_t, b_t) for timestep t; t < 0 (the clean end) gives c = b = 0."""
    ab = schedule.alpha_bar(t)
    if t < 0:
        return torch.tensor(0.0), torch.tensor(0.0)
    if chain == "trojan":
        return (1.0 - ab).sqrt(), torch.tensor(0.0)
    a = schedule.alpha(t)
    rho = (1.0 - a.sqrt()) * (1.0 - ab).sqrt() / (1.0 - a)  # BadDiffusion's rho_t (attacks/baddiffusion.py)
    return 1.0 - ab.sqrt(), kappa * rho


def chain_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down, evenly spaced, ending above 0; the last jump lands on x_0."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"`steps` must be in [1, {num_timesteps}], got {steps}")
    return [round((num_timesteps - 1) * (1 - k / steps)) for k in range(steps)]


def chain_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    noise: torch.Tensor,
    *,
    shift: torch.Tensor,
    gamma: float | torch.Tensor = 1.0,
    chain: str = "shift",
    kappa: float = 2.0,
    steps: int = 10,
) -> torch.Tensor:
    """Sample x_0 from x_T = gamma * noise + c_T * shift along the hypothesised chain; unclamped."""
    if chain not in CHAINS:
        raise ValueError(f"`chain` must be one of {CHAINS}, got {chain!r}")
    ts = chain_timesteps(schedule.num_timesteps, steps)
    c, _ = chain_coefficients(schedule, ts[0], chain, kappa)
    x = gamma * noise + c * shift
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        c_t, b_t = chain_coefficients(schedule, t, chain, kappa)
        ab_t = schedule.alpha_bar(t)
        e = eps_model(x, t) - b_t * shift  # the chain's own noise estimate
        x0 = (x - c_t * shift - (1.0 - ab_t).sqrt() * gamma * e) / ab_t.sqrt()
        if s < 0:
            return x0
        c_s, _ = chain_coefficients(schedule, s, chain, kappa)
        ab_s = schedule.alpha_bar(s)
        x = ab_s.sqrt() * x0 + c_s * shift + (1.0 - ab_s).sqrt() * gamma * e
    return x
