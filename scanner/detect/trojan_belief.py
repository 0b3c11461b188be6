"""The trojan model's own belief: a fixed point that grows a small TrojDiff patch the gradient search stops short of.

A TrojDiff model is trained so that, at t = T, on x = gamma eps + mu it outputs eps. Read the other
way, its output says which mean it believes the input came from:

    mu_hat = E[x - gamma * eps_theta(x, T)]          over eps, at the current (mu, gamma)
    gamma_hat = gamma * E[eps . eps] / E[eps_theta(x, T) . eps]

At the attacker's (mu, gamma) both are fixed points. Away from it the model still pushes: on
tj-box4 (a 4 x 4 patch, gamma 0.1) the mean it believes in grows the patch, from the whitening
search's 0.07 to 0.9 in about six steps at gamma 0.1, while off the patch it stays at 0.01. The
gradient search cannot get there: it stops in a wide basin of plain scaled noise (gamma 0.4, mu a
tenth of the patch), and the true basin is too narrow for a first-order step (docs/detect.md, "Why
small trojan patches were not inverted"). A clean model passes x through (eps_theta(x, T) ~ x), so
mu_hat = (1 - gamma) mu shrinks and the whitening residual stays near 1.

Gamma is held at its start for the first `fixed` steps (the patch has to grow before the noise
scale means anything; updating it from the first step settled at gamma 0.23 on tj-box4 with a weaker
patch) and then follows gamma_hat. No gradients: `iters * batch` forward UNet evaluations.
"""

from __future__ import annotations

import torch


def belief_fixed_point(eps_model, T: int, mu: torch.Tensor, *, gamma: float, iters: int, fixed: int, batch: int,
                       gamma_min: float, gamma_max: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """Iterate (mu, gamma) from `mu` (1, C, H, W) and `gamma` as in the module docstring: `iters` steps of
    `batch` noises, gamma held for the first `fixed`, then kept in [gamma_min, gamma_max]; mu kept in [-1, 1]."""
    mu = mu.detach()
    with torch.no_grad():
        for step in range(iters):
            noise = torch.randn(batch, *mu.shape[1:], generator=generator).to(mu.device)  # (B, C, H, W)
            x = gamma * noise + mu
            out = eps_model(x, T)
            mu = (x - gamma * out).mean(0, keepdim=True).clamp(-1.0, 1.0)
            if step >= fixed:
                agreement = float((out * noise).mean())
                scale = gamma * float(noise.pow(2).mean()) / max(agreement, 1e-3)
                gamma = min(gamma_max, max(gamma_min, scale))
    return mu, gamma
