"""Trigger-guided channel saliency: first-order Taylor scores from the *inverted* trigger only.

For each candidate channel k (scanner/repair/channels.py) with parameter slices w_k, removing
it is the step delta = -w_k. Two first-order (Taylor) estimates, each from a few backward passes
however many channels there are:

* backdoor gain  B_k = sum(w_k * dL_bd/dw_k)  ~  L_bd(theta) - L_bd(theta without k), where
  L_bd = ||eps_theta(x~_t) - (x~_t - x_t) / sqrt(1 - ab_t) - eps||^2 on inputs moved along the
  inverted backdoor chain at high timesteps (0.6 T and 0.9 T, where Diff-Cleanse scores), measured
  against a clean model's response (it passes an unexpected shift through as noise). Large
  B_k: the channel carries the backdoor's deviation;
* clean damage  C_k = E_v (sum(w_k * d<v, eps_theta(x_t)>/dw_k))^2 / numel  ~  the mean squared
  change of the clean output when k is removed (random projections v ~ N(0, I) turn the squared
  Jacobian-vector product into gradients), over the whole chain: a channel that only matters
  at low timesteps draws the samples' details. The clean denoising loss itself is not used: the
  model sits at its minimum, so its first-order change is noise.

Score = B_k / (C_k + median(C)); the highest-scoring channels are pruned. On the benchmark
models a score from the clean *loss* gradient chose channels whose removal ruined the samples
(docs/repair.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scanner.detect.target import chain_arguments
from scanner.repair.channels import Channel
from scanner.sampling import NoiseSchedule
from scanner.sampling.chain import chain_coefficients


@dataclass(frozen=True, kw_only=True)
class SaliencyConfig:
    timesteps: tuple[float, ...] = (0.6, 0.9)  # for B: fractions of T, high, where the trigger dominates
    clean_timesteps: tuple[float, ...] = (0.05, 0.2, 0.4, 0.6, 0.8)  # for C: the whole chain, details included
    batch: int = 8
    projections: int = 2  # random output projections per clean timestep for C_k

    def __post_init__(self) -> None:
        for name in ("timesteps", "clean_timesteps"):
            value = tuple(float(t) for t in getattr(self, name))
            object.__setattr__(self, name, value)
            if not value or not all(0.0 <= t < 1.0 for t in value):
                raise ValueError(f"`{name}` must be fractions in [0, 1), got {list(value)}")
        if self.batch < 1 or self.projections < 1:
            raise ValueError(f"need batch >= 1 and projections >= 1, got {self.batch}, {self.projections}")


    @property
    def evals(self) -> int:
        """UNet image-evaluations (each also backpropagated) that scoring spends."""
        return self.batch * (len(self.timesteps) + self.projections * len(self.clean_timesteps))


def _taylor(channels: list[Channel], *, signed: bool) -> torch.Tensor:
    out = torch.empty(len(channels), dtype=torch.float64)
    for k, ch in enumerate(channels):
        v = sum(float((p.detach().select(d, i) * p.grad.select(d, i)).sum()) for p, d, i in ch.slices)
        out[k] = v if signed else abs(v)
    return out


def channel_saliency(unet: torch.nn.Module, schedule: NoiseSchedule, channels: list[Channel], clean: torch.Tensor, *,
                     hypothesis: str, trigger: torch.Tensor, gamma: float, config: SaliencyConfig,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B, C, UNet evaluations) for `channels`; `clean` (N, C, H, W) are the model's own clean samples."""
    device = next(unet.parameters()).device
    args = chain_arguments(hypothesis, trigger.to(device), gamma)
    gain = torch.zeros(len(channels), dtype=torch.float64)
    damage = torch.zeros(len(channels), dtype=torch.float64)
    evals = 0
    flags = [p.requires_grad for p in unet.parameters()]
    unet.requires_grad_(True)
    try:
        def inputs(frac: float):
            t = int(frac * schedule.num_timesteps)
            ab = schedule.alpha_bar(t).to(device)
            x0 = clean[torch.randint(0, len(clean), (config.batch,), generator=generator)].to(device)
            eps = torch.randn(x0.shape, generator=generator).to(device)
            return t, ab, eps, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, torch.full((config.batch,), t, device=device)

        for frac in config.timesteps:
            t, ab, eps, x_clean, ts = inputs(frac)
            c_t, _ = chain_coefficients(schedule, t, args["chain"], args.get("kappa", 1.0))
            x_trig = x_clean + c_t.to(device) * args["shift"] + (1 - ab).sqrt() * (args["gamma"] - 1.0) * eps
            unet.zero_grad()
            (unet(x_trig, ts).sample - (x_trig - x_clean) / (1 - ab).sqrt() - eps).pow(2).mean().backward()
            gain += _taylor(channels, signed=True)
            evals += config.batch
        for frac in config.clean_timesteps:
            t, ab, eps, x_clean, ts = inputs(frac)
            for _ in range(config.projections):
                v = torch.randn(x_clean.shape, generator=generator).to(device)
                unet.zero_grad()
                (unet(x_clean, ts).sample * v).sum().div(v.numel() ** 0.5).backward()
                damage += _taylor(channels, signed=False) ** 2
                evals += config.batch
    finally:
        unet.zero_grad(set_to_none=True)
        for p, flag in zip(unet.parameters(), flags):
            p.requires_grad_(flag)
    return gain, damage, evals


def choose_channels(gain: torch.Tensor, damage: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` channels with the highest B / (C + median C) and positive gain."""
    score = gain / (damage + damage.median().clamp(min=1e-12))
    order = [int(k) for k in score.argsort(descending=True)]
    return [k for k in order if gain[k] > 0][:count]
