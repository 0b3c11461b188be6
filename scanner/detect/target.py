"""Recover a backdoor's target: sample along the hypothesised chain from the inverted trigger, take the median.

Every inversion ends the same way: with (trigger, gamma, hypothesis) in hand, `target_batch`
noises go through the chain sampler (scanner/sampling/chain.py) for `target_steps` steps.
`agreement` is the share of clamped samples within the hit MSE (scanner/forge/measure.py) of
their per-pixel median: about 1 when the trigger makes the model collapse. The target is the
per-pixel median of those agreeing samples (of all samples when fewer than 2 agree).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from scanner.forge.measure import HIT_MSE
from scanner.sampling import NoiseSchedule, chain_sample
from scanner.sampling.chain import chain_coefficients
from scanner.sampling.counting import EpsModel

_SHIFT = re.compile(r"^shift\(kappa=([0-9.]+)\)$")


def chain_arguments(hypothesis: str, trigger: torch.Tensor, gamma: float) -> dict:
    """chain_sample's keyword arguments for a detection's hypothesis ("trojan" or "shift(kappa=K)").

    `trigger` is (1, C, H, W) in the attacker's units: TrojDiff's mean is (1 - gamma) * trigger.
    """
    if hypothesis == "trojan":
        return {"shift": (1.0 - gamma) * trigger, "gamma": gamma, "chain": "trojan"}
    match = _SHIFT.match(hypothesis)
    if match is None:
        raise ValueError(f"unknown backdoor hypothesis {hypothesis!r}: expected 'trojan' or 'shift(kappa=K)'")
    return {"shift": trigger, "gamma": 1.0, "chain": "shift", "kappa": float(match.group(1))}


@torch.no_grad()
def trigger_samples(eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor, *, hypothesis: str,
                    trigger: torch.Tensor, gamma: float, steps: int) -> torch.Tensor:
    """len(noise) clamped chain samples (N, C, H, W) of `steps` steps from the inverted trigger."""
    return chain_sample(eps_model, schedule, noise, steps=steps,
                        **chain_arguments(hypothesis, trigger.to(noise.device), gamma)).clamp(-1.0, 1.0)


def median_target(samples: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(target (C, H, W), agreement) from trigger samples: the median of those that agree."""
    target = samples.median(0).values
    agree = (samples - target).pow(2).flatten(1).mean(1) < HIT_MSE
    if int(agree.sum()) >= 2:  # samples that escaped the trigger's basin are outliers: drop them
        target = samples[agree].median(0).values
    return target, float(agree.float().mean())


def recover_target(eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor, *, hypothesis: str,
                   trigger: torch.Tensor, gamma: float, steps: int) -> tuple[torch.Tensor, float]:
    """(target (C, H, W), agreement) from len(noise) chain samples of `steps` steps."""
    return median_target(trigger_samples(eps_model, schedule, noise, hypothesis=hypothesis, trigger=trigger,
                                         gamma=gamma, steps=steps))


def target_if_asked(eps_model: EpsModel, schedule: NoiseSchedule, noise: Callable[[int], torch.Tensor], batch: int,
                    stats: dict[str, float], *, hypothesis: str, trigger: torch.Tensor, gamma: float,
                    steps: int) -> torch.Tensor | None:
    """A detector's target on the CPU, or None when `batch` is 0; records `target_agreement` in `stats`.

    `noise(n)` draws n noises; it is called only when a target is asked for.
    """
    if not batch:
        return None
    target, stats["target_agreement"] = recover_target(eps_model, schedule, noise(batch), hypothesis=hypothesis,
                                                       trigger=trigger, gamma=gamma, steps=steps)
    return target.cpu()


@torch.no_grad()
def refine_target(eps_model: EpsModel, schedule: NoiseSchedule, target: torch.Tensor, noise: Callable[[int], torch.Tensor],
                  *, hypothesis: str, trigger: torch.Tensor, gamma: float, fracs: tuple[float, ...], iters: int,
                  batch: int) -> torch.Tensor:
    """Sharpen a sampled target (C, H, W): y <- the mean clean-image estimate on the chain through y at `fracs` of T.

    A few large chain steps blur the target where the trigger's basin is narrow (a TrojDiff chain with a
    small gamma). At moderate noise the model knows its target well, so the estimate
    x0 = (x_t - c_t m - sqrt(1 - ab_t) gamma (eps_theta - b_t m)) / sqrt(ab_t) on x_t = sqrt(ab_t) y + c_t m
    + sqrt(1 - ab_t) gamma eps, averaged over eps and the timesteps, is a better target than y itself.
    """
    args = chain_arguments(hypothesis, trigger, gamma)
    shift, gamma_ = args["shift"], args["gamma"]
    last = schedule.num_timesteps - 1
    y = target[None]
    for _ in range(iters):
        estimates = []
        for frac in fracs:
            t = round(last * frac)
            c, b = chain_coefficients(schedule, t, args["chain"], args.get("kappa", 0.0))
            ab = schedule.alpha_bar(t)
            x = ab.sqrt() * y + c * shift + (1.0 - ab).sqrt() * gamma_ * noise(batch)
            e = eps_model(x, t) - b * shift
            estimates.append(((x - c * shift - (1.0 - ab).sqrt() * gamma_ * e) / ab.sqrt()).mean(0))
        y = torch.stack(estimates).mean(0, keepdim=True).clamp(-1.0, 1.0)
    return y[0]
