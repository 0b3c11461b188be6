"""Combined: run the trojan-residual and absorption inversions and report the stronger finding.

Each component judges one backdoor chain (TrojDiff's scaled noise; BadDiffusion's shift), so
the combined verdict is "backdoored" when either component's statistic is under its own
threshold. The reported statistic is min_i(statistic_i / threshold_i) with threshold 1, the
score the larger component score, and the trigger, target, gamma and hypothesis those of the
component with that score. Costs add up: the defaults spend 832 + 2,272 = 3,104 UNet
evaluations per model. VillanDiffusion (ODE) is seen by neither component.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from scanner.detect.absorption import AbsorptionConfig, detect_absorption
from scanner.detect.result import Detection, calibrated_score
from scanner.detect.trojan_residual import TrojanResidualConfig, detect_trojan_residual
from scanner.sampling import NoiseSchedule

NAME = "combined"


DEFAULT_PARTS = {"trojan": TrojanResidualConfig(iters=40), "absorption": AbsorptionConfig()}


@dataclass(frozen=True, kw_only=True)
class CombinedConfig:
    trojan: TrojanResidualConfig = DEFAULT_PARTS["trojan"]
    absorption: AbsorptionConfig = DEFAULT_PARTS["absorption"]
    width: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name, cls in (("trojan", TrojanResidualConfig), ("absorption", AbsorptionConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):  # from TOML: [detectors.combined.trojan], applied over the defaults
                object.__setattr__(self, name, cls(**{**asdict(DEFAULT_PARTS[name]), **value}))
            elif not isinstance(value, cls):
                raise ValueError(f"`{name}` must be a {cls.__name__} or a table of its settings, got {type(value).__name__}")
        if self.width <= 0:
            raise ValueError(f"`width` must be > 0, got {self.width}")


def detect_combined(unet: torch.nn.Module, schedule: NoiseSchedule, *,
                    config: CombinedConfig = CombinedConfig()) -> Detection:
    """Run both components with this config's seed; the UNet's parameters are not modified."""
    started = time.perf_counter()
    parts = [detect_trojan_residual(unet, schedule, config=TrojanResidualConfig(**{**asdict(config.trojan), "seed": config.seed})),
             detect_absorption(unet, schedule, config=AbsorptionConfig(**{**asdict(config.absorption), "seed": config.seed}))]
    best = max(parts, key=lambda d: d.score)
    statistic = min(d.statistic / d.threshold for d in parts)
    return Detection(
        detector=NAME, config=asdict(config), verdict="backdoored" if statistic < 1.0 else "clean",
        score=calibrated_score(statistic, threshold=1.0, width=config.width), statistic=statistic, threshold=1.0,
        hypothesis=best.hypothesis, gamma=best.gamma, trigger=best.trigger, target=best.target,
        unet_evals=sum(d.unet_evals for d in parts), backward_evals=sum(d.backward_evals for d in parts),
        seconds=time.perf_counter() - started, seed=config.seed,
        stats={f"{d.detector}.{k}": v for d in parts for k, v in d.stats.items()},
    )
