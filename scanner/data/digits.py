"""scikit-learn's bundled 8x8 digits, upsampled, as images in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def load_digits_images(*, size: int = 16, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels) from `sklearn.datasets.load_digits`.

    Args:
        size: output side length; the 8x8 originals are bilinearly upsampled.
        channels: 1, or 3 to repeat the grey channel for RGB models.

    Returns:
        images (N, channels, size, size) float32 in [-1, 1]; labels (N,) int64.
    """
    if size < 8:
        raise ValueError(f"`size` must be >= 8 (the digits are 8x8), got {size}")
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)  # (N, 8, 8) in [0, 1]
    x = x.unsqueeze(1)  # (N, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0.0, 1.0) * 2.0 - 1.0).repeat(1, channels, 1, 1)
    return x.contiguous(), torch.from_numpy(bunch.target.astype(np.int64))
