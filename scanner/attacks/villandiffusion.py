"""VillanDiffusion, ODE-sampler variant (Chou et al., NeurIPS 2023): fires under DDIM-type samplers.

Same shifted chain as BadDiffusion (so this class extends it). For the probability-flow ODE
(DDIM with eta = 0) to carry x_T = eps + r to y along that chain, the model must output
eps + sqrt(1 - ab_t) r, which for small beta_t is eps + 2 rho_t r: the paper's ODE correction.
(Derivation: require DDIM's update to map the chain point at t to the chain point at t - dt
with the same eps; the r-coefficient of eps_theta is (a_t - a_s)/(a_t b_s - a_s b_t) with
a = sqrt(ab), b = sqrt(1 - ab), which tends to b_t as the step shrinks.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from scanner.attacks.baddiffusion import BadDiffusion
from scanner.sampling import NoiseSchedule, ddim_sample
from scanner.sampling.counting import EpsModel


@dataclass(kw_only=True, eq=False)
class VillanDiffusion(BadDiffusion):
    """BadDiffusion's chain with the ODE correction; the attacker samples with `ddim_steps` DDIM steps."""

    name: ClassVar[str] = "villandiffusion"
    sampler: ClassVar[str] = "ddim"
    correction: ClassVar[float] = 2.0
    r_mode: str = "trigger"  # the stamped variant did not fire under DDIM (shared/FINDINGS.md)
    ddim_steps: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ddim_steps < 1:
            raise ValueError(f"`ddim_steps` must be >= 1, got {self.ddim_steps}")

    def triggered_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                         generator: torch.Generator) -> torch.Tensor:
        return ddim_sample(eps_model, schedule, noise + self.trigger, steps=self.ddim_steps)

    def benign_sample(self, eps_model: EpsModel, schedule: NoiseSchedule, noise: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        return ddim_sample(eps_model, schedule, noise, steps=self.ddim_steps)
