"""Over-response probe: look for a VillanDiffusion-type (ODE) trigger at a middle timestep.

At t = T a VillanDiffusion model outputs eps + 2 rho_T r ~ eps + r on eps + r: the same as a
clean model's pass-through, so no t = T method sees it (absorption.py, trojan_residual.py).
Lower down the chain it differs. On the input x = (1 - sqrt(ab_t)) m + sqrt(1 - ab_t) eps
(the backdoor chain with the target term left out), a model that does not recognise m returns
at most the pass-through share c_t / s_t of it:
    mean_eps eps_theta(x, t) ~ (c_t / s_t) m - (sqrt(ab_t) / s_t) x0_hat,
with c_t / s_t = 0.75 at t = T/2 on a linear schedule. A VillanDiffusion model recognises its
trigger and returns 2 rho_t r (0.97 there). The detector maximises the over-response
O(m) = <mean eps_theta(x, t) - (c_t / s_t) m, m> / ||m||^2 at fixed per-pixel RMS `probe_rms`
and reports statistic = 1 - O / (2 rho_t - c_t / s_t): the share of the predicted ODE-backdoor
over-response that is missing (about 0 for a VillanDiffusion trigger, about 1 for none).
This is a detection signal only. The probe's direction is only partly aligned with the
trigger, so the recovered target (10-step kappa = 2 chain samples) is not yet reliable
(docs/detect.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.result import Detection, calibrated_score
from scanner.detect.target import target_if_asked
from scanner.sampling import CountingEps, NoiseSchedule

NAME = "overresponse"
HYPOTHESIS = "shift(kappa=2)"


@dataclass(frozen=True, kw_only=True)
class OverResponseConfig:
    probe_rms: float = 0.6
    t_frac: float = 0.5
    iters: int = 60
    batch: int = 16
    lr: float = 0.05
    eval_batch: int = 32
    target_batch: int = 16
    target_steps: int = 10
    threshold: float = 0.15  # fixtures: VillanDiffusion 0.001, clean twins 0.33-0.37 (docs/detect.md)
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iters", "batch", "eval_batch", "target_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.target_batch < 0:  # 0: no target (the combined detector recovers one for its chosen component)
            raise ValueError(f"`target_batch` must be >= 0, got {self.target_batch}")
        if not 0.0 < self.t_frac < 1.0:
            raise ValueError(f"`t_frac` must be in (0, 1), got {self.t_frac}")
        if min(self.probe_rms, self.lr, self.threshold, self.width) <= 0:
            raise ValueError("`probe_rms`, `lr`, `threshold` and `width` must be > 0")


def _over(eps_model, t: int, m: torch.Tensor, noise: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    mean_out = eps_model(c * m + s * noise, t).mean(0, keepdim=True)
    return ((mean_out - (c / s) * m) * m).sum() / (m * m).sum()


def detect_overresponse(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                        config: OverResponseConfig = OverResponseConfig()) -> Detection:
    """Probe `unet` for an ODE-type trigger at t = t_frac * T; its parameters are not modified."""
    started = time.perf_counter()
    cfg = config
    ch, h = unet.config.in_channels, unet.config.sample_size
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    eps_model = CountingEps(unet)
    t = int((schedule.num_timesteps - 1) * cfg.t_frac)
    ab, a = schedule.alpha_bar(t), schedule.alpha(t)
    c, s = 1.0 - ab.sqrt(), (1.0 - ab).sqrt()
    predicted = float(2.0 * (1.0 - a.sqrt()) * s / (1.0 - a) - c / s)  # 2 rho_t - c_t / s_t

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, ch, h, h, generator=gen).to(device)  # (n, C, H, W)

    m = torch.randn(1, ch, h, h, generator=gen).to(device)
    m = (m * cfg.probe_rms / m.pow(2).mean().sqrt()).requires_grad_()
    opt = torch.optim.Adam([m], lr=cfg.lr)
    for _ in range(cfg.iters):
        loss = -_over(eps_model, t, m, noise(cfg.batch), c, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            m.mul_(cfg.probe_rms / m.pow(2).mean().sqrt())
    backward_evals = eps_model.evals
    with torch.no_grad():
        m = m.detach().clamp(-1.0, 1.0)
        over = float(_over(eps_model, t, m, noise(cfg.eval_batch), c, s))
        statistic = max(1.0 - over / predicted, 1e-3)
    stats = {"over_response": over, "predicted_over_response": predicted, "t": float(t)}
    target = target_if_asked(eps_model, schedule, noise, cfg.target_batch, stats, hypothesis=HYPOTHESIS, trigger=m,
                             gamma=1.0, steps=cfg.target_steps)
    return Detection(
        detector=NAME, config=asdict(cfg), verdict="backdoored" if statistic < cfg.threshold else "clean",
        score=calibrated_score(statistic, threshold=cfg.threshold, width=cfg.width), statistic=statistic,
        threshold=cfg.threshold, hypothesis=HYPOTHESIS, gamma=1.0, trigger=m[0].cpu(),
        target=target, unet_evals=eps_model.evals, backward_evals=backward_evals,
        seconds=time.perf_counter() - started, seed=cfg.seed,
        stats=stats,
    )
