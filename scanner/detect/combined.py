"""Combined: the trojan-residual and absorption inversions and the over-response probe, in one budget.

Each component judges one backdoor chain (TrojDiff's scaled noise; BadDiffusion's SDE shift;
VillanDiffusion's ODE shift), so the combined verdict is "backdoored" when any component's
statistic is under its own threshold. The reported statistic is min_i(statistic_i / threshold_i)
with threshold 1. Trigger, target, gamma and hypothesis come from the flagged inversion
(trojan_residual or absorption) with the smallest statistic_i / threshold_i, else from the
component with the smallest one: the probe detects but does not invert reliably. Only that
component's target is sampled (16 chain samples of 10 steps, scanner/detect/target.py). The
components sample none, the trojan and over-response ones run trimmed settings (smaller
batches), so per model: trojan 80 x 6 + 32, absorption 2,016, over-response 60 x 8 + 24, and
the target 160: 512 + 2,016 + 504 + 160 = 3,192 UNet evaluations, under the 3,200 budget.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.absorption import AbsorptionConfig, detect_absorption
from scanner.detect.result import Detection, calibrated_score
from scanner.detect.overresponse import OverResponseConfig, detect_overresponse
from scanner.detect.trojan_residual import TrojanResidualConfig, detect_trojan_residual
from scanner.detect.target import median_target, trigger_samples
from scanner.sampling import CountingEps, NoiseSchedule

NAME = "combined"


DEFAULT_PARTS = {  # components sample no target: the combined detector samples one for the chosen component
    "trojan": TrojanResidualConfig(iters=80, batch=6, target_batch=0),
    "absorption": AbsorptionConfig(target_batch=0),
    "overresponse": OverResponseConfig(iters=60, batch=8, eval_batch=24, target_batch=0),
}


@dataclass(frozen=True, kw_only=True)
class CombinedConfig:
    trojan: TrojanResidualConfig = DEFAULT_PARTS["trojan"]
    absorption: AbsorptionConfig = DEFAULT_PARTS["absorption"]
    overresponse: OverResponseConfig = DEFAULT_PARTS["overresponse"]
    target_batch: int = 16
    target_steps: int = 10
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target_batch < 1 or self.target_steps < 1:
            raise ValueError(f"need target_batch >= 1 and target_steps >= 1, got {self.target_batch}, {self.target_steps}")
        for name, cls in (("trojan", TrojanResidualConfig), ("absorption", AbsorptionConfig),
                          ("overresponse", OverResponseConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # from TOML: [detectors.combined.trojan], applied over the defaults
                object.__setattr__(self, name, cls(**{**asdict(DEFAULT_PARTS[name]), **value}))
            elif not isinstance(value, cls):
                raise ValueError(f"`{name}` must be a {cls.__name__} or a table of its settings, got {type(value).__name__}")
        if self.width <= 0:
            raise ValueError(f"`width` must be > 0, got {self.width}")


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
    eps_model = CountingEps(unet)
    c, h = unet.config.in_channels, unet.config.sample_size
    noise = torch.randn(config.target_batch, c, h, h, generator=torch.Generator().manual_seed(config.seed + 1))
    device = next(unet.parameters()).device
    samples = trigger_samples(eps_model, schedule, noise.to(device), hypothesis=best.hypothesis,
                              trigger=best.trigger[None].to(device), gamma=best.gamma, steps=config.target_steps)
    target, agreement = median_target(samples)
    stats = {f"{d.detector}.{k}": v for d in parts for k, v in d.stats.items()}
    stats["target_agreement"] = agreement
    return Detection(
        detector=NAME, config=asdict(config), verdict="backdoored" if statistic < 1.0 else "clean",
        score=calibrated_score(statistic, threshold=1.0, width=config.width), statistic=statistic, threshold=1.0,
        hypothesis=best.hypothesis, gamma=best.gamma, trigger=best.trigger, target=target.cpu(), samples=samples[:8].cpu(),
        unet_evals=sum(d.unet_evals for d in parts) + eps_model.evals, backward_evals=sum(d.backward_evals for d in parts),
        seconds=time.perf_counter() - started, seed=config.seed, stats=stats,
    )
