"""Backdoor detectors, one method per file, and their registry.

Each entry maps a name to (config class, detect function); `detect(unet, schedule, config=...)`
returns a `Detection`. DEFAULT_DETECTOR is the one `zoo-audit scan` runs unless told otherwise;
docs/detect.md gives the measurements it was chosen on.
"""

from __future__ import annotations

from typing import Any, Callable

from scanner.detect.absorption import AbsorptionConfig, detect_absorption
from scanner.detect.collapse import CollapseConfig, detect_collapse
from scanner.detect.fixed_point import FixedPoint, FixedPointConfig, chain_fixed_point
from scanner.detect.combined import CombinedConfig, detect_combined
from scanner.detect.overresponse import OverResponseConfig, detect_overresponse
from scanner.detect.result import Detection, calibrated_score
from scanner.detect.trojan_residual import TrojanResidualConfig, detect_trojan_residual

DETECTORS: dict[str, tuple[type, Callable[..., Detection]]] = {
    "trojan_residual": (TrojanResidualConfig, detect_trojan_residual),
    "absorption": (AbsorptionConfig, detect_absorption),
    "combined": (CombinedConfig, detect_combined),
    "collapse": (CollapseConfig, detect_collapse),
    "overresponse": (OverResponseConfig, detect_overresponse),
}
DEFAULT_DETECTOR = "combined"


def make_config(name: str, overrides: dict[str, Any] | None = None):
    """The typed config of detector `name` with `overrides` applied; unknown names and keys raise."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}")
    cls, _ = DETECTORS[name]
    try:
        return cls(**(overrides or {}))
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None


__all__ = ["DEFAULT_DETECTOR", "DETECTORS", "AbsorptionConfig", "CollapseConfig", "CombinedConfig", "FixedPoint", "FixedPointConfig", "OverResponseConfig", "Detection", "TrojanResidualConfig",
           "calibrated_score", "chain_fixed_point", "detect_absorption", "detect_collapse", "detect_combined", "detect_overresponse", "detect_trojan_residual", "make_config"]
