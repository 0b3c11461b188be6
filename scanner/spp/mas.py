"""MAS's importance (Aljundi et al., 2018): how much the output's magnitude moves with each weight, label-free.

    Omega_i = E_x[ | d ||f(x)||_2^2 / d theta_i | ]   (per sample, then averaged)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from scanner.spp.importance import Importance


def mas_importance(params: Iterable[tuple[str, nn.Parameter]], outputs_fn: Callable[[torch.Tensor], torch.Tensor],
                   inputs: torch.Tensor) -> Importance:
    named = [(n, p) for n, p in params]
    total = {n: torch.zeros_like(p) for n, p in named}
    for x in inputs.split(1):
        grads = torch.autograd.grad(outputs_fn(x).pow(2).sum(), [p for _, p in named], allow_unused=True)
        for (n, _), g in zip(named, grads):
            if g is not None:
                total[n] += g.abs()
    return {n: t / len(inputs) for n, t in total.items()}
