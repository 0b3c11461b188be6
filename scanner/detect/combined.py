"""Combined: the trojan-residual and absorption inversions and the over-response probe, in one budget.

Each component judges one backdoor chain (TrojDiff's scaled noise; BadDiffusion's SDE shift;
VillanDiffusion's ODE shift), so the combined verdict is "backdoored" when any component's
statistic is under its own threshold. The reported statistic is min_i(statistic_i / threshold_i)
with threshold 1. Trigger, target, gamma and hypothesis come from the first flagged component
in the order above: the two inversions recover triggers, the probe only detects. When none is
flagged they come from the highest-scoring one. The component settings are trimmed from their
standalone defaults (fewer iterations, smaller batches) so the three together spend
592 + 2,160 + 424 = 3,176 UNet evaluations per model, under the 3,200 budget.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.absorption import AbsorptionConfig, detect_absorption
from scanner.detect.result import Detection, calibrated_score
from scanner.detect.overresponse import OverResponseConfig, detect_overresponse
from scanner.detect.trojan_residual import TrojanResidualConfig, detect_trojan_residual
from scanner.sampling import NoiseSchedule

NAME = "combined"


DEFAULT_PARTS = {
    "trojan": TrojanResidualConfig(iters=30, target_batch=8),
    "absorption": AbsorptionConfig(refine_iters=38, target_batch=8),  # its probe needs batch 16 (fixtures)
    "overresponse": OverResponseConfig(iters=40, batch=8, eval_batch=24, target_batch=8),
}


@dataclass(frozen=True, kw_only=True)
class CombinedConfig:
    trojan: TrojanResidualConfig = DEFAULT_PARTS["trojan"]
    absorption: AbsorptionConfig = DEFAULT_PARTS["absorption"]
    overresponse: OverResponseConfig = DEFAULT_PARTS["overresponse"]
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
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
    flagged = [d for d in parts if d.verdict == "backdoored"]
    best = flagged[0] if flagged else max(parts, key=lambda d: d.score)
    statistic = min(d.statistic / d.threshold for d in parts)
    return Detection(
        detector=NAME, config=asdict(config), verdict="backdoored" if statistic < 1.0 else "clean",
        score=calibrated_score(statistic, threshold=1.0, width=config.width), statistic=statistic, threshold=1.0,
        hypothesis=best.hypothesis, gamma=best.gamma, trigger=best.trigger, target=best.target,
        unet_evals=sum(d.unet_evals for d in parts), backward_evals=sum(d.backward_evals for d in parts),
        seconds=time.perf_counter() - started, seed=config.seed,
        stats={f"{d.detector}.{k}": v for d in parts for k, v in d.stats.items()},
    )
