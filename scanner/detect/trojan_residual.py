"""Trojan-residual inversion: invert a TrojDiff-type trigger and noise scale from one timestep.

A TrojDiff model is trained to output eps on x_t = sqrt(ab_t) y + sqrt(1 - ab_t)(gamma eps + mu)
(scanner/attacks/trojdiff.py). At t = T - 1, where sqrt(ab_T) is ~0, its input is gamma eps + mu
and its output is eps: the model *whitens* the trojan distribution. A clean model passes
x_T through (eps_theta(x, T) ~ x, measured), so on gamma eps + mu it returns about
gamma eps + mu. We minimise over (mu, gamma) the whitening residual

    r(mu, gamma) = E || eps_theta(gamma eps + mu, T) - eps ||^2 / (1 - gamma)^2,

normalised by what a pass-through model scores at mu = 0, so a clean model sits near 1 for
every gamma and a TrojDiff model near 0 at its own (mu, gamma). This is the distribution-shift
view of Elijah (An et al., AAAI 2024) written for TrojDiff's scaled noise; gamma is learned,
not assumed. When the search flags the model, the model's own belief (trojan_belief.py) refines
(mu, gamma) from where it stopped, starting at gamma = `belief_gamma`, and replaces the search's
result when its residual, on the same check noises, is lower: on a small patch the search stops in
a wide basin of scaled noise that the belief leaves (docs/detect.md). The recovered target is the
per-pixel median of 10-step trojan-chain samples (scanner/sampling/chain.py) from the inverted
(mu, gamma). Cost: iters * batch gradient evaluations at one timestep plus eval_batch +
target_batch * target_steps forward ones, and belief_iters * belief_batch + eval_batch more when
the search flags.
It does not see BadDiffusion/VillanDiffusion shifts (their models pass x_T through).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.result import Detection, calibrated_score
from scanner.detect.target import target_if_asked
from scanner.detect.trojan_belief import belief_fixed_point
from scanner.sampling import CountingEps, NoiseSchedule

NAME = "trojan_residual"


@dataclass(frozen=True, kw_only=True)
class TrojanResidualConfig:
    iters: int = 60
    batch: int = 16
    lr: float = 0.05
    gamma_min: float = 0.05
    gamma_max: float = 0.9  # above this a clean model whitens its own noise (gamma -> 1 is clean)
    eval_batch: int = 32
    target_batch: int = 16
    target_steps: int = 10
    threshold: float = 0.3  # residual ratio; fixtures: TrojDiff <= 0.15, clean >= 0.85 (docs/detect.md)
    width: float = 0.5
    belief_iters: int = 6  # 0: no refinement (trojan_belief.py)
    belief_fixed: int = 3  # belief steps with gamma held at belief_gamma
    belief_batch: int = 8
    belief_gamma: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iters", "batch", "eval_batch", "target_steps", "belief_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.target_batch < 0:  # 0: no target (the combined detector recovers one for its chosen component)
            raise ValueError(f"`target_batch` must be >= 0, got {self.target_batch}")
        if not 0.0 < self.gamma_min < self.gamma_max < 1.0:
            raise ValueError(f"need 0 < gamma_min < gamma_max < 1, got {self.gamma_min}, {self.gamma_max}")
        if self.lr <= 0 or self.threshold <= 0 or self.width <= 0:
            raise ValueError("`lr`, `threshold` and `width` must be > 0")
        if min(self.belief_iters, self.belief_fixed) < 0:  # belief_fixed >= belief_iters: gamma held throughout
            raise ValueError(f"need belief_iters >= 0 and belief_fixed >= 0, got {self.belief_iters}, {self.belief_fixed}")
        if not self.gamma_min <= self.belief_gamma <= self.gamma_max:
            raise ValueError(f"`belief_gamma` must be in [gamma_min, gamma_max], got {self.belief_gamma}")


def _gamma(v: torch.Tensor, cfg: TrojanResidualConfig) -> torch.Tensor:
    return cfg.gamma_min + (cfg.gamma_max - cfg.gamma_min) * torch.sigmoid(v)


def whitening_residual(eps_model, T: int, mu, gamma, noise) -> torch.Tensor:
    """r(mu, gamma) of the module docstring on `noise` (B, C, H, W) at timestep `T`: 1 for a pass-through model at mu = 0."""
    out = eps_model(gamma * noise + mu, T)
    return (out - noise).pow(2).mean() / (1.0 - gamma) ** 2


def detect_trojan_residual(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                           config: TrojanResidualConfig = TrojanResidualConfig()) -> Detection:
    """Invert (mu, gamma) for `unet` and judge it; the UNet's parameters are not modified."""
    started = time.perf_counter()
    cfg = config
    c, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    eps_model = CountingEps(unet)
    T = schedule.num_timesteps - 1
    u = (0.1 * torch.randn(1, c, h, h, generator=gen)).to(device).requires_grad_()  # mu = tanh(u)
    v = torch.zeros((), device=device, requires_grad=True)  # gamma = gamma_min + range * sigmoid(v)
    opt = torch.optim.Adam([u, v], lr=cfg.lr)
    for _ in range(cfg.iters):
        noise = torch.randn(cfg.batch, c, h, h, generator=gen).to(device)  # (B, C, H, W)
        loss = whitening_residual(eps_model, T, torch.tanh(u), _gamma(v, cfg), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    backward_evals = eps_model.evals
    with torch.no_grad():
        mu, gamma = torch.tanh(u), _gamma(v, cfg)
        noise = torch.randn(cfg.eval_batch, c, h, h, generator=gen).to(device)
        statistic, g = float(whitening_residual(eps_model, T, mu, gamma, noise)), float(gamma)
        stats = {"search_residual": statistic, "search_gamma": g}
        if statistic < cfg.threshold and cfg.belief_iters:  # flagged: refine from the model's own belief
            mu_b, g_b = belief_fixed_point(eps_model, T, mu, gamma=cfg.belief_gamma, iters=cfg.belief_iters,
                                           fixed=cfg.belief_fixed, batch=cfg.belief_batch, gamma_min=cfg.gamma_min,
                                           gamma_max=cfg.gamma_max, generator=gen)
            refined = float(whitening_residual(eps_model, T, mu_b, g_b, noise))  # the search's check noises
            stats |= {"belief_residual": refined, "belief_gamma": g_b, "belief_accepted": float(refined < statistic)}
            if refined < statistic:
                mu, g, statistic = mu_b, g_b, refined
    score = calibrated_score(statistic, threshold=cfg.threshold, width=cfg.width)
    trigger = mu / (1.0 - g)  # the attacker's units: mu = (1 - gamma) * trigger
    stats |= {"residual_ratio": statistic, "gamma": g}
    target = target_if_asked(eps_model, schedule, lambda n: torch.randn(n, c, h, h, generator=gen).to(device),
                             cfg.target_batch, stats, hypothesis="trojan", trigger=trigger, gamma=g,
                             steps=cfg.target_steps)
    return Detection(
        detector=NAME, config=asdict(cfg), verdict="backdoored" if statistic < cfg.threshold else "clean",
        score=score, statistic=statistic, threshold=cfg.threshold, hypothesis="trojan", gamma=g,
        trigger=trigger[0].cpu(), target=target, unet_evals=eps_model.evals, backward_evals=backward_evals,
        seconds=time.perf_counter() - started, seed=cfg.seed, stats=stats,
    )
