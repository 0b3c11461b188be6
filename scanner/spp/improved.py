"""SPP+, our variant of SPP's importance, fixing three defects of the released one (docs to come, issue 6).

    Omega+_i = E_x[ |g_i(x) theta_i| + 1/2 theta_i^2 g_i(x)^2 ],   g(x) = d H_T(x) / d theta

- per sample, then averaged: independent of the batch size (SPP sums the entropy over the
  batch) and free of sign cancellation between samples (a batch gradient can sum to ~0);
- the absolute first-order term: zeroing a weight that would make predictions *more* confident
  also changes the function; SPP clamps that estimate to 0 and frees the weight;
- H_T is the entropy of softmax(logits / T) with T > 1: on data the model already fits, the
  T = 1 entropy and its gradient vanish, so SPP's protection fades exactly when a task is learnt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from scanner.spp.importance import Importance, prediction_entropy


def spp_plus_importance(params: Iterable[tuple[str, nn.Parameter]], logits_fn: Callable[[torch.Tensor], torch.Tensor],
                        inputs: torch.Tensor, *, temperature: float = 2.0) -> Importance:
    named = [(n, p) for n, p in params]
    if len(inputs) == 0:
        raise ValueError("no inputs to score")
    total = {n: torch.zeros_like(p) for n, p in named}
    for x in inputs.split(1):
        grads = torch.autograd.grad(prediction_entropy(logits_fn(x), reduction="mean", temperature=temperature),
                                    [p for _, p in named], allow_unused=True)
        for (n, p), g in zip(named, grads):
            if g is not None:
                theta = p.detach()
                total[n] += (g * theta).abs() + 0.5 * theta.pow(2) * g.pow(2)
    return {n: t / len(inputs) for n, t in total.items()}
