"""Combined: the trojan-residual and absorption inversions, the over-response probe and the chain fixed point, in one budget.

Each of the first three judges one backdoor chain (TrojDiff's scaled noise; BadDiffusion's SDE shift;
VillanDiffusion's ODE shift), so the combined verdict is "backdoored" when any of them has its
statistic under its own threshold. The reported statistic is min_i(statistic_i / threshold_i)
with threshold 1. Trigger, gamma and hypothesis come from the flagged inversion (trojan_residual
or absorption) with the smallest statistic_i / threshold_i, else from the component with the
smallest one, and that component's target is sampled (16 chain samples of 10 steps,
scanner/detect/target.py). A flagged inversion's target is then sharpened by refine_target
(6 x 2 x 8 evaluations). The over-response probe detects but does not invert: when it is the
only component that flags a model, the chain fixed point (fixed_point.py, kappa = 2) inverts
trigger and target, first from the probe's direction and sampled target, then from seeded
random starts, and replaces them when its residual is under `accept`.

Budget. The components sample no target; the trojan and over-response ones run trimmed settings
(smaller batches, a 30-step probe). Every model costs trojan 80 x 6 + 32, absorption 2,016,
over-response 30 x 8 + 24 and the target 160: 512 + 2,016 + 264 + 160 = 2,952 UNet evaluations.
A flagged inversion adds 96 (the target's refinement); one the trojan search flags 80 more (the
model's belief, 6 x 8, and its check on the search's 32 noises); a model only the probe flags adds
408 to 456 per fixed-point start, and 80 for the gallery's 8 samples from an accepted trigger
(docs/detect.md gives the measured averages).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.absorption import AbsorptionConfig, detect_absorption
from scanner.detect.fixed_point import FixedPointConfig, chain_fixed_point
from scanner.detect.result import Detection, calibrated_score
from scanner.detect.overresponse import OverResponseConfig, detect_overresponse
from scanner.detect.trojan_residual import TrojanResidualConfig, detect_trojan_residual
from scanner.detect.target import median_target, refine_target, trigger_samples
from scanner.sampling import CountingEps, NoiseSchedule

NAME = "combined"


DEFAULT_PARTS = {  # components sample no target: the combined detector samples one for the chosen component
    "trojan": TrojanResidualConfig(iters=80, batch=6, target_batch=0),
    "absorption": AbsorptionConfig(target_batch=0),
    "overresponse": OverResponseConfig(iters=30, batch=8, eval_batch=24, target_batch=0),
    "fixed_point": FixedPointConfig(),
}


@dataclass(frozen=True, kw_only=True)
class CombinedConfig:
    trojan: TrojanResidualConfig = DEFAULT_PARTS["trojan"]
    absorption: AbsorptionConfig = DEFAULT_PARTS["absorption"]
    overresponse: OverResponseConfig = DEFAULT_PARTS["overresponse"]
    fixed_point: FixedPointConfig = DEFAULT_PARTS["fixed_point"]
    target_batch: int = 16
    target_steps: int = 10
    refine_fracs: tuple[float, ...] = (0.2, 0.4)
    refine_iters: int = 6
    refine_batch: int = 8
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_batch < 1 or self.target_steps < 1:
            raise ValueError(f"need target_batch >= 1 and target_steps >= 1, got {self.target_batch}, {self.target_steps}")
        for name, cls in (("trojan", TrojanResidualConfig), ("absorption", AbsorptionConfig),
                          ("overresponse", OverResponseConfig), ("fixed_point", FixedPointConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # from TOML: [detectors.combined.trojan], applied over the defaults
                object.__setattr__(self, name, cls(**{**asdict(DEFAULT_PARTS[name]), **value}))
            elif not isinstance(value, cls):
                raise ValueError(f"`{name}` must be a {cls.__name__} or a table of its settings, got {type(value).__name__}")
        object.__setattr__(self, "refine_fracs", tuple(self.refine_fracs))
        if not self.refine_fracs or not all(0.0 < f < 1.0 for f in self.refine_fracs):
            raise ValueError(f"`refine_fracs` must be fractions of T in (0, 1), got {self.refine_fracs}")
        if self.refine_iters < 0 or self.refine_batch < 1:
            raise ValueError(f"need refine_iters >= 0 and refine_batch >= 1, got {self.refine_iters}, {self.refine_batch}")
        if self.width <= 0:
            raise ValueError(f"`width` must be > 0, got {self.width}")


def _fixed_point_inversion(unet: torch.nn.Module, schedule: NoiseSchedule, probe: Detection, probe_target: torch.Tensor,
                           config: CombinedConfig) -> tuple[Detection | None, dict[str, float], int]:
    """Invert from the over-response probe and its sampled target: (a Detection when accepted, stats, evals)."""
    started = time.perf_counter()
    cfg = config.fixed_point
    eps_model = CountingEps(unet)
    device = next(unet.parameters()).device
    fp = chain_fixed_point(eps_model, schedule, first=probe.trigger[None].to(device), first_target=probe_target[None],
                           generator=torch.Generator().manual_seed(config.seed + 2), config=cfg)
    stats = {"fixed_point.residual": fp.residual, "fixed_point.starts_run": float(fp.starts_run),
             "fixed_point.start": float(fp.start)}
    if fp.residual >= cfg.accept:
        return None, stats, eps_model.evals
    return Detection(
        detector="chain_fixed_point", config=asdict(cfg), verdict="backdoored",
        score=calibrated_score(fp.residual, threshold=cfg.accept, width=config.width), statistic=fp.residual,
        threshold=cfg.accept, hypothesis=f"shift(kappa={cfg.kappa:g})", gamma=1.0, trigger=fp.trigger[0].cpu(),
        target=fp.target[0].cpu(), unet_evals=eps_model.evals, backward_evals=0,
        seconds=time.perf_counter() - started, seed=config.seed, stats=stats,
    ), stats, eps_model.evals


def detect_combined(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                    config: CombinedConfig = CombinedConfig()) -> Detection:
    """Run every component with this config's seed; the UNet's parameters are not modified."""
    started = time.perf_counter()
    runs = ((detect_trojan_residual, TrojanResidualConfig, config.trojan), (detect_absorption, AbsorptionConfig, config.absorption),
            (detect_overresponse, OverResponseConfig, config.overresponse))
    parts = [detect(unet, schedule, config=cls(**{**asdict(cfg), "seed": config.seed})) for detect, cls, cfg in runs]
    inversions = [d for d in parts[:2] if d.verdict == "backdoored"]  # they recover triggers; the probe detects
    best = min(inversions or parts, key=lambda d: d.statistic / d.threshold)
    statistic = min(d.statistic / d.threshold for d in parts)
    stats = {f"{d.detector}.{k}": v for d in parts for k, v in d.stats.items()}
    eps_model = CountingEps(unet)
    c, h = unet.config.in_channels, unet.config.sample_size
    noise = torch.randn(config.target_batch, c, h, h, generator=torch.Generator().manual_seed(config.seed + 1))
    device = next(unet.parameters()).device
    samples = trigger_samples(eps_model, schedule, noise.to(device), hypothesis=best.hypothesis,
                              trigger=best.trigger[None].to(device), gamma=best.gamma, steps=config.target_steps)
    target, stats["target_agreement"] = median_target(samples)
    trigger, hypothesis, gamma, samples, fixed_evals = best.trigger, best.hypothesis, best.gamma, samples[:8].cpu(), 0
    if inversions:  # a flagged inversion's sampled target, sharpened at moderate noise (target.py)
        gen = torch.Generator().manual_seed(config.seed + 3)
        target = refine_target(eps_model, schedule, target, lambda n: torch.randn(n, c, h, h, generator=gen).to(device),
                               hypothesis=hypothesis, trigger=trigger[None].to(device), gamma=gamma,
                               fracs=config.refine_fracs, iters=config.refine_iters, batch=config.refine_batch)
    if not inversions and best is parts[2] and best.verdict == "backdoored":  # only the probe flagged: invert from it
        fixed, fixed_stats, fixed_evals = _fixed_point_inversion(unet, schedule, best, target, config)
        stats |= fixed_stats
        if fixed is not None:  # its target is the model's own belief; 8 samples from its trigger for the gallery
            trigger, hypothesis, gamma, target = fixed.trigger, fixed.hypothesis, 1.0, fixed.target
            samples = trigger_samples(eps_model, schedule, noise[:8].to(device), hypothesis=hypothesis,
                                      trigger=trigger[None].to(device), gamma=gamma, steps=config.target_steps).cpu()
    return Detection(
        detector=NAME, config=asdict(config), verdict="backdoored" if statistic < 1.0 else "clean",
        score=calibrated_score(statistic, threshold=1.0, width=config.width), statistic=statistic, threshold=1.0,
        hypothesis=hypothesis, gamma=gamma, trigger=trigger, target=target.cpu(), samples=samples,
        unet_evals=sum(d.unet_evals for d in parts) + eps_model.evals + fixed_evals,
        backward_evals=sum(d.backward_evals for d in parts), seconds=time.perf_counter() - started,
        seed=config.seed, stats=stats,
    )
