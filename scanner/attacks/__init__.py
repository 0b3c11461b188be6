"""Backdoor attacks used to build test zoos, one published method per file.

Each attack exposes `poison(x_clean, eps, t, schedule) -> (x_t, target)` (its training
objective), `triggered_sample` (the attacker's sampler from a triggered x_T) and
`benign_sample` (the same sampler family from plain noise).
"""

from scanner.attacks.baddiffusion import BadDiffusion
from scanner.attacks.patterns import Pattern
from scanner.attacks.trojdiff import TrojDiff
from scanner.attacks.villandiffusion import VillanDiffusion

ATTACKS = {cls.name: cls for cls in (BadDiffusion, VillanDiffusion, TrojDiff)}

__all__ = ["ATTACKS", "BadDiffusion", "Pattern", "TrojDiff", "VillanDiffusion"]
