"""EWC's importance (Kirkpatrick et al., 2017): the diagonal empirical Fisher, from labelled data.

    Omega_i = E_(x,y)[ (d log p(y | x) / d theta_i)^2 ]   (per sample, then averaged)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from scanner.spp.importance import Importance


def ewc_importance(params: Iterable[tuple[str, nn.Parameter]], logits_fn: Callable[[torch.Tensor], torch.Tensor],
                   inputs: torch.Tensor, labels: torch.Tensor) -> Importance:
    named = [(n, p) for n, p in params]
    total = {n: torch.zeros_like(p) for n, p in named}
    for x, y in zip(inputs.split(1), labels.split(1)):
        grads = torch.autograd.grad(F.cross_entropy(logits_fn(x), y), [p for _, p in named], allow_unused=True)
        for (n, _), g in zip(named, grads):
            if g is not None:
                total[n] += g.pow(2)
    return {n: t / len(inputs) for n, t in total.items()}
