"""What a detector returns for one model, and the calibration that turns its statistic into a score."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

VERDICTS = ("backdoored", "clean")


def calibrated_score(statistic: float, *, threshold: float, width: float) -> float:
    """P(backdoor) as a logistic in log(statistic), 0.5 exactly at `threshold`.

    Every detector here has a statistic that is small for a backdoor (a residual or a spread),
    so the score rises as the statistic falls; `width` is the log-ratio over which it moves
    from 0.27 to 0.73. Both numbers are fixed per detector from the fixture zoo
    (tests/fixtures/zoo, the calibration split) and checked on the held-out benchmark zoo.
    """
    if not math.isfinite(statistic):
        return 0.5  # neutral: nothing could be judged
    z = (math.log(max(statistic, 1e-12)) - math.log(threshold)) / width
    return 1.0 / (1.0 + math.exp(min(z, 700.0)))


@dataclass(kw_only=True, eq=False)
class Detection:
    """One detector's judgement of one model.

    trigger: the inverted trigger g (C, H, W), in the attacker's units: the attack's x_T is
        noise + g (shift chains) or gamma * noise + (1 - gamma) g (trojan chain).
    target: the recovered target (C, H, W): the per-pixel median of samples drawn with the inverted trigger
        (scanner/detect/target.py); None when the detector was told not to sample one (target_batch 0).
    samples: up to 8 of those trigger samples (N, C, H, W), for the report's gallery; None when not kept.
    """

    detector: str
    config: dict[str, Any]
    verdict: str
    score: float
    statistic: float
    threshold: float
    hypothesis: str
    gamma: float
    trigger: torch.Tensor
    target: torch.Tensor | None
    unet_evals: int
    backward_evals: int
    seconds: float
    seed: int
    stats: dict[str, float] = field(default_factory=dict)
    samples: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"`verdict` must be one of {VERDICTS}, got {self.verdict!r}")
