"""The importances SPP is compared with: weight magnitude, and first-order Taylor as in Diff-Pruning.

- magnitude: theta^2 per element, so a channel's score is the squared L2 norm of all its coupled
  slices (torch-pruning's MagnitudeImportance, p = 2, group-summed).
- taylor (Diff-Pruning, Fang et al., NeurIPS 2023): |theta * sum_b g_b|, the gradient of the
  denoising loss accumulated over minibatches and then multiplied by the weight. Diff-Pruning
  takes it on the training set; with no training set here it gets the same self-generated
  samples, timesteps and noise as SPP (scanner/spp/diffusion.py), so only the formula differs.
"""

from __future__ import annotations

import torch

from scanner.sampling import NoiseSchedule
from scanner.spp.diffusion import information_gradients
from scanner.spp.importance import Importance


def magnitude_importance(unet: torch.nn.Module) -> Importance:
    return {n: p.detach().pow(2) for n, p in unet.named_parameters()}


def taylor_importance(unet: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, *, batches: int = 16,
                      batch: int = 32, generator: torch.Generator) -> Importance:
    params = dict(unet.named_parameters())
    grad = {n: torch.zeros_like(p) for n, p in params.items()}
    for grads in information_gradients(unet, schedule, x0, batches=batches, batch=batch, generator=generator):
        for n, g in grads.items():
            grad[n] += g
    return {n: (p.detach() * grad[n]).abs() for n, p in params.items()}
