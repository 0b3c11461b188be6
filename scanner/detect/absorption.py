"""Absorption inversion: invert a BadDiffusion-type (SDE) trigger from how the model treats a shift at t = T.

A BadDiffusion model is trained on x_T = eps + r with regression target eps + rho_T r
(scanner/attacks/baddiffusion.py, rho_T ~ 0.51): it *absorbs* (1 - rho_T) of its trigger. So
the trigger solves  E_eps[eps_theta(eps + m, T)] = eps + rho_T m,  and the normalised residual

    ratio(m) = E||P(eps_theta(eps + m, T) - rho_T m - eps)||^2 / ((1 - rho_T)^2 ||P m||^2)

is ~0 there. P removes each channel's spatial mean. Without it every digits model we measured
(clean twins included) absorbs a uniform dark shift at ratio ~0.06, and searches fell into that
generic minimum instead of the trigger; with it clean twins score 0.27-0.49 and BadDiffusion
triggers 0.006-0.047 on the three zoos of docs/detect.md. Four stages, all at t = T:

1. probe (forward only): a fixed-point iteration m <- -P(E eps_theta(eps + m) - eps - m), the
   absorbed part of the response with its uniform part removed, at per-pixel RMS `probe_rms`.
   At a trigger the absorbed part is (1 - rho_T) r, so r (less its mean) is a fixed point. Each
   of `restarts` runs is deflated against the earlier ones so they settle on different modes;
2. refine each probe: minimise ratio(m) with m = tanh(u) held at RMS `refine_rms`;
3. search sign and amplitude of every refined direction on common noise; keep the best;
4. polish: minimise ratio(tanh(u)) with free amplitude from there.

The statistic is ratio(m) on fresh noise; the target comes from kappa = 1 chain samples from the
inverted trigger (scanner/detect/target.py), none when `target_batch` is 0. VillanDiffusion's
ODE target (eps + 2 rho_T r ~ eps + r at T) is pass-through, so this method cannot see it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.result import Detection, calibrated_score
from scanner.detect.target import target_if_asked
from scanner.sampling import CountingEps, NoiseSchedule

NAME = "absorption"
HYPOTHESIS = "shift(kappa=1)"


@dataclass(frozen=True, kw_only=True)
class AbsorptionConfig:
    restarts: int = 4
    probe_iters: int = 20
    probe_batch: int = 8
    probe_rms: float = 0.6
    refine_iters: int = 16
    refine_batch: int = 12
    refine_rms: float = 0.6
    amplitudes: tuple[float, ...] = (0.4, 0.6, 0.8, 1.0)
    search_batch: int = 8
    polish_iters: int = 20
    polish_batch: int = 16
    lr: float = 0.05
    polish_lr: float = 0.03
    eval_batch: int = 32
    target_batch: int = 16
    target_steps: int = 10
    threshold: float = 0.06  # fixture + benchmark zoos: BadDiffusion <= 0.013, clean twins >= 0.27 (docs/detect.md)
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitudes", tuple(float(a) for a in self.amplitudes))  # TOML gives a list
        for name in ("restarts", "probe_batch", "refine_batch", "search_batch", "polish_batch", "eval_batch",
                     "target_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("probe_iters", "refine_iters", "polish_iters", "target_batch"):  # target_batch 0: no target
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if not self.amplitudes or min(self.amplitudes) <= 0:
            raise ValueError(f"`amplitudes` must be a non-empty list of values > 0, got {list(self.amplitudes)}")
        if min(self.probe_rms, self.refine_rms, self.lr, self.polish_lr, self.threshold, self.width) <= 0:
            raise ValueError("`probe_rms`, `refine_rms`, `lr`, `polish_lr`, `threshold` and `width` must be > 0")


def _rho_T(schedule: NoiseSchedule) -> float:
    T = schedule.num_timesteps - 1
    a, ab = schedule.alpha(T), schedule.alpha_bar(T)
    return float((1.0 - a.sqrt()) * (1.0 - ab).sqrt() / (1.0 - a))  # BadDiffusion's rho_T


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=(-2, -1), keepdim=True)


def _at_rms(x: torch.Tensor, rms: float) -> torch.Tensor:
    return x * rms / x.pow(2).flatten(1).mean(1).sqrt().clamp(min=1e-8).view(-1, *[1] * (x.dim() - 1))


def _ratios(eps_model, T: int, m: torch.Tensor, noise: torch.Tensor, rho: float) -> torch.Tensor:
    """ratio(m_k) for candidates m (K, C, H, W), each on all of noise (n, C, H, W); returns (K,)."""
    k, n = m.shape[0], noise.shape[0]
    shifts = m.repeat_interleave(n, 0)
    eps = noise.repeat(k, 1, 1, 1)
    res = _centre(eps_model(eps + shifts, T) - rho * shifts - eps).pow(2).flatten(1).mean(1).view(k, n).mean(1)
    return res / ((1.0 - rho) ** 2 * _centre(m).pow(2).flatten(1).mean(1) + 1e-3)


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

    found, directions = [], []
    for _ in range(cfg.restarts):
        m = _at_rms(noise(1), cfg.probe_rms)
        with torch.no_grad():
            for _ in range(cfg.probe_iters):  # 1. probe
                eps = noise(cfg.probe_batch)
                m = -_centre((eps_model(eps + m, T) - eps).mean(0, keepdim=True) - m)
                for q in directions:
                    m = m - (m * q).sum() * q
                m = _at_rms(m, cfg.probe_rms)
        directions.append(m / m.norm().clamp(min=1e-8))
        u = torch.atanh(m / m.abs().max().clamp(min=1e-8) * 0.9).requires_grad_()
        opt = torch.optim.Adam([u], lr=cfg.lr)
        for _ in range(cfg.refine_iters):  # 2. refine at fixed RMS
            loss = _ratios(eps_model, T, _at_rms(torch.tanh(u), cfg.refine_rms), noise(cfg.refine_batch), rho).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        found.append(_at_rms(torch.tanh(u).detach(), 1.0))
    with torch.no_grad():  # 3. sign and amplitude, all candidates on the same noise, one direction per forward
        per_direction = 2 * len(cfg.amplitudes)
        cands = torch.cat([(s * a * d).clamp(-1.0, 1.0) for d in found for s in (1.0, -1.0) for a in cfg.amplitudes])
        eps = noise(cfg.search_batch)
        search = torch.cat([_ratios(eps_model, T, cands[i:i + per_direction], eps, rho)
                            for i in range(0, len(cands), per_direction)])
        best = int(search.argmin())
    u = torch.atanh(cands[best:best + 1].clamp(-0.95, 0.95)).requires_grad_()
    opt = torch.optim.Adam([u], lr=cfg.polish_lr)
    for _ in range(cfg.polish_iters):  # 4. polish with free amplitude
        loss = _ratios(eps_model, T, torch.tanh(u), noise(cfg.polish_batch), rho).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    backward_evals = eps_model.evals
    with torch.no_grad():
        m = torch.tanh(u).detach()
        statistic = float(_ratios(eps_model, T, m, noise(cfg.eval_batch), rho)[0])
    stats = {"residual_ratio": statistic, "search_ratio": float(search[best]),
             "restart": float(best // per_direction), "rho_T": rho}
    target = target_if_asked(eps_model, schedule, noise, cfg.target_batch, stats, hypothesis=HYPOTHESIS, trigger=m,
                             gamma=1.0, steps=cfg.target_steps)
    return Detection(
        detector=NAME, config=asdict(cfg), verdict="backdoored" if statistic < cfg.threshold else "clean",
        score=calibrated_score(statistic, threshold=cfg.threshold, width=cfg.width), statistic=statistic,
        threshold=cfg.threshold, hypothesis=HYPOTHESIS, gamma=1.0, trigger=m[0].cpu(), target=target,
        unet_evals=eps_model.evals, backward_evals=backward_evals, seconds=time.perf_counter() - started, seed=cfg.seed,
        stats=stats,
    )
