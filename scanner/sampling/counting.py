"""An epsilon-model wrapper that counts UNet image-evaluations (images x forward passes)."""

from __future__ import annotations

from typing import Protocol

import torch


class EpsModel(Protocol):
    """Predicts the model output (epsilon) for images x_t at integer timestep t."""

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor: ...


class CountingEps:
    """Calls a diffusers `UNet2DModel` and adds the batch size to `evals` on every call.

    Every job reports `unet_evals` from this counter, so cost is measured, not estimated.
    """

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.evals = 0

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.evals += int(x.shape[0])
        timesteps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        return self.unet(x, timesteps).sample
