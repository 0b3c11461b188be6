"""SPP's parameter importance: how much the entropy of the model's own predictions depends on each weight.

Soft Parameters Pruning scores a parameter by a second-order Taylor estimate of how the
output entropy would change if the parameter were zeroed, with no labels:

    I_b     = -sum_{x in batch b} sum_k p_k(x) log p_k(x)       (entropy of the task head's softmax)
    g_b     = dI_b / dtheta
    Omega_b = max(0, g_b * theta + 1/2 * theta^2 * g_b^2)        (elementwise)
    Omega   = mean over the task's minibatches of Omega_b

This is the released code's formula, kept exactly (`reduction="sum"`). Its entropy is summed
over the minibatch, so Omega grows with the batch size and the regularization strength is tied
to it; `reduction="mean"` averages instead (the batch-size-independent variant). A parameter
with Omega = 0 is "freed": the next task may move it at no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

Importance = dict[str, torch.Tensor]


def prediction_entropy(logits: torch.Tensor, *, reduction: str = "sum", temperature: float = 1.0) -> torch.Tensor:
    """Entropy of softmax(logits / temperature), summed (SPP) or averaged over the batch."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}")
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}")
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, K)
    per_sample = -(logp.exp() * logp).sum(-1)  # (B,)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def spp_importance(params: Iterable[tuple[str, nn.Parameter]], logits_fn: Callable[[torch.Tensor], torch.Tensor],
                   batches: Iterable[torch.Tensor], *, reduction: str = "sum", temperature: float = 1.0) -> Importance:
    """Omega per parameter (same shapes), averaged over `batches` of unlabeled inputs.

    Args:
        params: (name, parameter) pairs to score, e.g. the shared trunk's `named_parameters()`.
        logits_fn: inputs -> the current task head's logits (B, K).
        batches: the task's unlabeled inputs, one tensor per minibatch.
        reduction: "sum" is SPP's released formula; "mean" makes Omega independent of batch size.
        temperature: softmax temperature of the entropy (1 is SPP's).
    """
    named = [(n, p) for n, p in params]
    if not named:
        raise ValueError("no parameters to score")
    total = {n: torch.zeros_like(p) for n, p in named}
    count = 0
    for x in batches:
        entropy = prediction_entropy(logits_fn(x), reduction=reduction, temperature=temperature)
        grads = torch.autograd.grad(entropy, [p for _, p in named], allow_unused=True)
        for (n, p), g in zip(named, grads):
            if g is None:  # not on this head's path: no influence on its entropy
                continue
            theta = p.detach()
            total[n] += torch.clamp(g * theta + 0.5 * theta.pow(2) * g.pow(2), min=0.0)
        count += 1
    if count == 0:
        raise ValueError("no batches to score")
    return {n: t / count for n, t in total.items()}


def freed(omega: Importance) -> dict[str, torch.Tensor]:
    """Boolean masks of the freed parameters: exactly those with Omega == 0."""
    return {n: o == 0 for n, o in omega.items()}


def accumulate(old: Importance | None, new: Importance, *, mode: str = "sum") -> Importance:
    """Combine tasks' importances: elementwise sum (SPP's split/5-dataset runs) or max (its Caltech runs)."""
    if mode not in ("sum", "max"):
        raise ValueError(f"`mode` must be 'sum' or 'max', got {mode!r}")
    if old is None:
        return {n: o.clone() for n, o in new.items()}
    if set(old) != set(new):
        raise ValueError(f"importances cover different parameters: {sorted(set(old) ^ set(new))[:3]}")
    return {n: old[n] + new[n] if mode == "sum" else torch.maximum(old[n], new[n]) for n in new}


def channel_importance(omega: torch.Tensor, *, dim: int = 0) -> torch.Tensor:
    """A weight's Omega summed over every axis but `dim`: one number per output (dim 0) or input channel."""
    return omega.transpose(0, dim).reshape(omega.shape[dim], -1).sum(1)
