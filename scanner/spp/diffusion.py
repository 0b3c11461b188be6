"""SPP's importance for diffusion UNets: the information measure is the model's code length for its own samples.

SPP scores a classifier's parameter by how the entropy of its own predictions would change if
the parameter were zeroed. A denoising UNet has no softmax: each reverse step is a Gaussian of
fixed variance, whose entropy does not depend on theta at all. The quantity that does is the
entropy of the *generated distribution*, H(p_theta) = E_{x ~ p_theta}[-log p_theta(x)]. The
diffusion ELBO bounds -log p_theta(x) by a weighted sum over t of the denoising error, so with
x0 the model's own samples (no labels, no training set) the information measure is

    I(theta) = E_{x0 ~ p_theta, t ~ U[0, T), eps} || eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t) - eps ||^2

(DDPM's "simple" weighting, which is the ELBO up to per-t weights and constants). Zeroing a
parameter that the model needs to describe its own samples raises I. SPP's formula is kept:

    g_b = dI_b / dtheta on minibatch b,   Omega_b = max(0, g_b theta + 1/2 theta^2 g_b^2),   Omega = mean_b Omega_b

with I_b the minibatch *mean* (the batch-size-independent reduction; docs/spp.md). Each
minibatch draws its own x0, t and eps with the caller's generator, so the estimate is seeded.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from scanner.sampling import NoiseSchedule
from scanner.spp.importance import Importance


def denoising_batches(schedule: NoiseSchedule, x0: torch.Tensor, *, batches: int, batch: int,
                      generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """`batches` seeded minibatches (x_t, t, eps) of the forward process on images x0 (N, C, H, W)."""
    if batches < 1 or batch < 1 or len(x0) == 0:
        raise ValueError(f"need batches >= 1, batch >= 1 and some images; got {batches}, {batch}, {len(x0)}")
    device = x0.device
    for _ in range(batches):
        pick = torch.randint(0, len(x0), (batch,), generator=generator)
        t = torch.randint(0, schedule.num_timesteps, (batch,), generator=generator)
        eps = torch.randn((batch, *x0.shape[1:]), generator=generator).to(device)
        ab = schedule.alpha_bar(t).to(device).view(-1, 1, 1, 1)
        yield ab.sqrt() * x0[pick] + (1 - ab).sqrt() * eps, t.to(device), eps


def self_information(unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The minibatch estimate of I(theta): mean squared denoising error."""
    return (unet(x_t, t).sample - eps).pow(2).mean()


def information_gradients(unet: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, *, batches: int,
                          batch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
    """dI_b/dtheta for each seeded minibatch b, by parameter name (parameters off the path are left out)."""
    named = list(unet.named_parameters())
    flags = [p.requires_grad for _, p in named]
    unet.requires_grad_(True)
    try:
        for x_t, t, eps in denoising_batches(schedule, x0, batches=batches, batch=batch, generator=generator):
            grads = torch.autograd.grad(self_information(unet, x_t, t, eps), [p for _, p in named], allow_unused=True)
            yield {n: g for (n, _), g in zip(named, grads) if g is not None}
    finally:
        for (_, p), flag in zip(named, flags):
            p.requires_grad_(flag)


def diffusion_spp_importance(unet: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, *, batches: int = 16,
                             batch: int = 32, generator: torch.Generator) -> Importance:
    """SPP's Omega for every parameter of `unet`, from its own samples x0."""
    params = dict(unet.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for grads in information_gradients(unet, schedule, x0, batches=batches, batch=batch, generator=generator):
        for n, g in grads.items():
            theta = params[n].detach()
            total[n] += torch.clamp(g * theta + 0.5 * theta.pow(2) * g.pow(2), min=0.0)
    return {n: v / batches for n, v in total.items()}
