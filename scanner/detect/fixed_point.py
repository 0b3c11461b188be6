"""Chain fixed point: invert a shift-chain (VillanDiffusion, BadDiffusion) trigger and its target.

A shift-chain backdoor is trained on x_t = sqrt(ab_t) y + c_t m + s_t eps (c_t = 1 - sqrt(ab_t),
s_t = sqrt(1 - ab_t)) to output eps + b_t m, b_t = kappa rho_t (chain.py). Read the model's
output on any point of a hypothesised chain (m, y) as its *belief* (m', y'): it returns what
that chain would require, eps' = (x - sqrt(ab_t) y' - c_t m') / s_t + b_t m'. With the noise eps
known, the mean of eps_theta(x, t) - eps over a batch is, per pixel,
    d_t = A_t (y - y') + B_t m + C_t m',   A_t = sqrt(ab_t) / s_t, B_t = c_t / s_t, C_t = b_t - B_t,
one linear equation per timestep in the two unknowns (y', m'). Three timesteps give a per-pixel
least-squares solve, and (m, y) <- (m', y') is a forward-only fixed-point iteration. The trigger
and its target are a fixed point (the model's belief is the chain it was trained on). A clean
model has none: it reads the shift as image or noise, and its belief does not reproduce the
input chain, so the chain residual stays large.

Two phases. The first runs at high noise (t = 0.5 T to 0.95 T), where the backdoor dominates
what the model believes about y, and finds the target. The second runs at lower noise
(0.1 T to 0.5 T), where C_t is larger and m' is well determined, and settles the trigger.
The trigger is held at a fixed RMS while it is found, then let free for the last `free_iters`
iterations so that its amplitude is the model's own. Where the belief's y is read matters:
at low noise the model's y' just copies the y it is shown, so the target must be found in the
first phase; read only from high noise, y' stays too coarse for the residual to settle. The result is judged by the normalised
chain residual, the mean over the second phase's upper two timesteps of
    E||eps_theta(x_t, t) - eps - b_t m||^2 / (C_t^2 ||m||^2 / n),
which is small only when (m, y) is a chain the model was trained on: 0.03 to 0.10 at the true
trigger of every VillanDiffusion model we have, 2.4 to 4.5 wherever clean twins settle
(docs/detect.md). A start stops early once a free state holds under `accept`. Starts run in
turn (the caller's first, e.g. a probe's direction with its sampled target, then seeded random
ones) and stop at the first whose residual is under `accept`; the best start is returned
either way. Random starts matter: from one start the iteration settles on the trigger about
half of the time, elsewhere on a wrong target that it does not leave. Forward passes only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scanner.sampling import NoiseSchedule
from scanner.sampling.counting import EpsModel


@dataclass(frozen=True, kw_only=True)
class FixedPointConfig:
    kappa: float = 2.0
    high_fracs: tuple[float, ...] = (0.5, 0.75, 0.95)
    low_fracs: tuple[float, ...] = (0.1, 0.25, 0.5)
    high_iters: int = 6
    low_iters: int = 12
    free_iters: int = 4
    batch: int = 8
    rms: float = 0.6
    random_starts: int = 7
    accept: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "high_fracs", tuple(self.high_fracs))
        object.__setattr__(self, "low_fracs", tuple(self.low_fracs))
        for name in ("high_fracs", "low_fracs"):
            fracs = getattr(self, name)
            if len(fracs) < 2 or not all(0.0 < f < 1.0 for f in fracs):
                raise ValueError(f"`{name}` needs >= 2 fractions of T in (0, 1), got {fracs}")
        if self.low_iters < 1 or self.batch < 1 or self.high_iters < 0 or self.random_starts < 0:
            raise ValueError("need low_iters >= 1, batch >= 1, high_iters >= 0 and random_starts >= 0")
        if not 0 <= self.free_iters <= self.low_iters:
            raise ValueError(f"`free_iters` must be in [0, low_iters], got {self.free_iters}")
        if min(self.kappa, self.rms, self.accept) <= 0:
            raise ValueError("`kappa`, `rms` and `accept` must be > 0")


@dataclass(frozen=True)
class FixedPoint:
    trigger: torch.Tensor  # (1, C, H, W)
    target: torch.Tensor  # (1, C, H, W)
    residual: float
    start: int  # which start it came from (0: the caller's)
    starts_run: int


def _coefficients(schedule: NoiseSchedule, t: int, kappa: float) -> tuple[float, ...]:
    ab, a = schedule.alpha_bar(t), schedule.alpha(t)
    s = (1.0 - ab).sqrt()
    b = kappa * (1.0 - a.sqrt()) * s / (1.0 - a)  # kappa rho_t
    return float(ab.sqrt()), float(1.0 - ab.sqrt()), float(s), float(b)


def _beliefs(eps_model: EpsModel, schedule: NoiseSchedule, m: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
             ts: list[int], kappa: float) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(y', m') by per-pixel least squares over `ts`, and the normalised residual at each t."""
    rows, rhs, residuals = [], [], []
    for t in ts:
        sa, c, s, b = _coefficients(schedule, t, kappa)
        out = eps_model(sa * y + c * m + s * noise, t)
        rows.append([-sa / s, b - c / s])
        rhs.append((out - noise).mean(0) - (sa / s) * y[0] - (c / s) * m[0])
        residuals.append(float((out - noise - b * m).pow(2).mean() / ((b - c / s) ** 2 * m.pow(2).mean() + 1e-12)))
    lhs = torch.tensor(rows, dtype=m.dtype, device=m.device)
    sol = torch.linalg.lstsq(lhs, torch.stack(rhs).reshape(len(ts), -1)).solution  # (2, C*H*W)
    return sol[0].reshape(y.shape), sol[1].reshape(m.shape), residuals


def _run(eps_model: EpsModel, schedule: NoiseSchedule, m: torch.Tensor, y: torch.Tensor, cfg: FixedPointConfig,
         noise, *, hold_trigger: bool = False) -> tuple[torch.Tensor, torch.Tensor, float]:
    last = schedule.num_timesteps - 1
    high = [round(last * f) for f in cfg.high_fracs]
    low = [round(last * f) for f in cfg.low_fracs]

    def fix_rms(v: torch.Tensor) -> torch.Tensor:
        return (v * cfg.rms / v.pow(2).mean().sqrt().clamp_min(1e-8)).clamp(-1.0, 1.0)

    for _ in range(cfg.high_iters):
        y_new, m_new, _ = _beliefs(eps_model, schedule, m, y, noise(cfg.batch), high, cfg.kappa)
        y, m = y_new.clamp(-1.0, 1.0), (m if hold_trigger else fix_rms(m_new))
    for k in range(cfg.low_iters + 1):
        y_new, m_new, residuals = _beliefs(eps_model, schedule, m, y, noise(cfg.batch), low, cfg.kappa)
        residual = sum(residuals[1:]) / len(residuals[1:])
        settled = k >= cfg.low_iters - cfg.free_iters + 2 and residual < cfg.accept  # a free state that holds
        if settled or k == cfg.low_iters:  # this pass only measured the state it was given
            return m, y, residual
        free = k >= cfg.low_iters - cfg.free_iters
        y, m = y_new.clamp(-1.0, 1.0), m_new.clamp(-1.0, 1.0) if free else fix_rms(m_new)
    raise AssertionError("unreachable")


@torch.no_grad()
def chain_fixed_point(eps_model: EpsModel, schedule: NoiseSchedule, *, first: torch.Tensor, generator: torch.Generator,
                      config: FixedPointConfig = FixedPointConfig(),
                      first_target: torch.Tensor | None = None) -> FixedPoint:
    """Run the fixed point from `first` (1, C, H, W) and then from seeded random starts, in turn.

    With `first_target` (1, C, H, W), the first start keeps `first` fixed through the high-noise
    phase and moves only the target from it (a probe's direction and its sampled target);
    random starts begin at target 0 and move both.
    """
    cfg = config
    shape, device = first.shape, first.device

    def noise(n: int) -> torch.Tensor:
        return torch.randn(n, *shape[1:], generator=generator).to(device)

    best: FixedPoint | None = None
    starts = [first] + [noise(1) for _ in range(cfg.random_starts)]
    for i, m0 in enumerate(starts):
        m0 = (m0 * cfg.rms / m0.pow(2).mean().sqrt().clamp_min(1e-8)).clamp(-1.0, 1.0)
        held = i == 0 and first_target is not None  # a probe with its sampled target: refine y before m moves
        y0 = first_target.to(device) if held else torch.zeros_like(m0)
        m, y, residual = _run(eps_model, schedule, m0, y0, cfg, noise, hold_trigger=held)
        if best is None or residual < best.residual:
            best = FixedPoint(trigger=m, target=y, residual=residual, start=i, starts_run=i + 1)
        if residual < cfg.accept:
            break
    return FixedPoint(trigger=best.trigger, target=best.target, residual=best.residual, start=best.start,
                      starts_run=i + 1)
