"""Absorption inversion: invert a BadDiffusion-type (SDE) trigger from how the model treats a shift at t = T.

At t = T - 1 (sqrt(ab_T) ~ 0) a clean model passes a shifted input through:
eps_theta(eps + m, T) ~ eps + m (measured to ~1e-3 per pixel on the fixture twins). A
BadDiffusion model, trained on x_T = eps + r with target eps + rho_T r
(scanner/attacks/baddiffusion.py, rho_T ~ 0.5), *absorbs* about half of its trigger. Its
response is a threshold: along s * r the absorbed share stays near the clean one until
s ~ 0.5, so a search from a small start has no gradient to follow (Elijah's loss
|E eps_theta(eps + tau) - 0.5 tau| then converges to tau = 0). Three stages, each with an
exact gradient:

1. probe: maximise the absorbed share ||E eps_theta(eps + tau, T) - tau||^2 / ||tau||^2
   with tau held at per-pixel RMS `probe_rms` (large enough to switch a trigger detector on);
2. refine: minimise the normalised residual
   E||eps_theta(eps + m, T) - rho_T m - eps||^2 / ((1 - rho_T)^2 ||m||^2)  (m in [-1, 1]),
   which is ~1 for a pass-through model and ~0 at a BadDiffusion trigger;
3. collapse: a few steps of Diff-Cleanse's objective through the 5-step chain sampler
   (kappa = 1; scanner/sampling/chain.py), whose global minimum is the trigger itself.

The statistic is stage 2's ratio on fresh noise; the target is the per-pixel median of 10-step chain
samples from the inverted trigger. VillanDiffusion's ODE target (eps + 2 rho_T r ~ eps + r at T)
is pass-through, so this method cannot see it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.result import Detection, calibrated_score
from scanner.sampling import CountingEps, NoiseSchedule, chain_sample

NAME = "absorption"


@dataclass(frozen=True, kw_only=True)
class AbsorptionConfig:
    probe_rms: float = 1.0
    probe_iters: int = 50
    refine_iters: int = 40
    collapse_iters: int = 16
    batch: int = 16
    collapse_batch: int = 8
    collapse_steps: int = 5
    lr: float = 0.05
    eval_batch: int = 32
    target_batch: int = 16
    target_steps: int = 10
    threshold: float = 0.3  # residual ratio; fixtures: BadDiffusion 0.07, clean twins >= 0.95 (docs/detect.md)
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("probe_iters", "refine_iters", "batch", "collapse_steps", "eval_batch", "target_batch",
                     "target_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.collapse_iters < 0 or self.collapse_batch < 2:
            raise ValueError(f"need collapse_iters >= 0 and collapse_batch >= 2, got "
                             f"{self.collapse_iters}, {self.collapse_batch}")
        if min(self.probe_rms, self.lr, self.threshold, self.width) <= 0:
            raise ValueError("`probe_rms`, `lr`, `threshold` and `width` must be > 0")


def _rho_T(schedule: NoiseSchedule) -> float:
    T = schedule.num_timesteps - 1
    a, ab = schedule.alpha(T), schedule.alpha_bar(T)
    return float((1.0 - a.sqrt()) * (1.0 - ab).sqrt() / (1.0 - a))  # BadDiffusion's rho_T


def _ratio(eps_model, T: int, m: torch.Tensor, noise: torch.Tensor, rho: float) -> torch.Tensor:
    out = eps_model(noise + m, T)
    return (out - rho * m - noise).pow(2).mean() / ((1.0 - rho) ** 2 * m.pow(2).mean() + 1e-3)


def detect_absorption(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                      config: AbsorptionConfig = AbsorptionConfig()) -> Detection:
    """Invert a BadDiffusion-type trigger for `unet` and judge it; the UNet's parameters are not modified."""
    started = time.perf_counter()
    cfg = config
    c, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    eps_model = CountingEps(unet)
    T, rho = schedule.num_timesteps - 1, _rho_T(schedule)

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, c, h, h, generator=gen).to(device)  # (n, C, H, W)

    tau = torch.randn(1, c, h, h, generator=gen).to(device)
    tau = (tau * cfg.probe_rms / tau.pow(2).mean().sqrt()).requires_grad_()
    opt = torch.optim.Adam([tau], lr=cfg.lr)
    for _ in range(cfg.probe_iters):  # 1. probe: the most absorbed direction at fixed RMS
        absorbed = (eps_model(noise(cfg.batch) + tau, T).mean(0, keepdim=True) - tau).pow(2).mean() / tau.pow(2).mean()
        opt.zero_grad()
        (-absorbed).backward()
        opt.step()
        with torch.no_grad():
            tau.mul_(cfg.probe_rms / tau.pow(2).mean().sqrt())
    start = tau.detach() / tau.detach().abs().max() * 0.9
    u = torch.atanh(start).requires_grad_()  # m = tanh(u) stays in the image range
    opt = torch.optim.Adam([u], lr=cfg.lr)
    for _ in range(cfg.refine_iters):  # 2. refine: the BadDiffusion residual, normalised
        loss = _ratio(eps_model, T, torch.tanh(u), noise(cfg.batch), rho)
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt = torch.optim.Adam([u], lr=cfg.lr)
    for _ in range(cfg.collapse_iters):  # 3. collapse along the kappa = 1 chain
        x = chain_sample(eps_model, schedule, noise(cfg.collapse_batch), shift=torch.tanh(u), chain="shift",
                         kappa=1.0, steps=cfg.collapse_steps)
        loss = torch.log((x - x.mean(0)).pow(2).mean() + 1e-4) + (x.abs() - 1.0).clamp(min=0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    backward_evals = eps_model.evals
    with torch.no_grad():
        m = torch.tanh(u)
        statistic = float(_ratio(eps_model, T, m, noise(cfg.eval_batch), rho))
        samples = chain_sample(eps_model, schedule, noise(cfg.target_batch), shift=m, chain="shift", kappa=1.0,
                               steps=cfg.target_steps)
    return Detection(
        detector=NAME, config=asdict(cfg), verdict="backdoored" if statistic < cfg.threshold else "clean",
        score=calibrated_score(statistic, threshold=cfg.threshold, width=cfg.width), statistic=statistic,
        threshold=cfg.threshold, hypothesis="shift(kappa=1)", gamma=1.0, trigger=m[0].cpu(),
        target=samples.clamp(-1, 1).median(0).values.cpu(), unet_evals=eps_model.evals, backward_evals=backward_evals,
        seconds=time.perf_counter() - started, seed=cfg.seed,
        stats={"residual_ratio": statistic, "absorbed_share": float(absorbed.detach()), "rho_T": rho,
               "target_spread": float((samples - samples.mean(0)).pow(2).mean())},
    )
