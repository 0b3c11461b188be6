"""Trigger and target images described by parameters (shape, size, position, value)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

SHAPES = ("box", "frame", "plus", "cross", "checker", "stripes")


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """A shape drawn in a `size` x `size` square whose top-left corner is (`row`, `col`).

    A trigger leaves `background` as None: pixels outside the shape are not part of it
    (mask 0, value 0). A target sets `background` (e.g. -1.0, black) and is a whole image.
    """

    shape: str
    size: int
    row: int = 0
    col: int = 0
    value: float = 1.0
    background: float | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"`shape` must be one of {SHAPES}, got {self.shape!r}")
        if self.size < 2:
            raise ValueError(f"`size` must be >= 2 px, got {self.size}")
        if self.row < 0 or self.col < 0:
            raise ValueError(f"`row` and `col` must be >= 0, got ({self.row}, {self.col})")
        for name in ("value", "background"):
            v = getattr(self, name)
            if v is not None and not -1.0 <= v <= 1.0:
                raise ValueError(f"`{name}` must be in [-1, 1], got {v}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self, *, channels: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (image (C, H, W), mask (1, H, W)); raises if the shape leaves the image."""
        if self.row + self.size > image_size or self.col + self.size > image_size:
            raise ValueError(
                f"pattern {self.shape} of size {self.size} at ({self.row}, {self.col}) "
                f"does not fit a {image_size}x{image_size} image"
            )
        n = self.size
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        on = {
            "box": torch.ones(n, n, dtype=torch.bool),
            "frame": (i == 0) | (j == 0) | (i == n - 1) | (j == n - 1),
            "plus": (i - (n - 1) / 2).abs().le(n / 6) | (j - (n - 1) / 2).abs().le(n / 6),
            "cross": (i == j) | (i + j == n - 1),
            "checker": ((i + j) % 2) == 0,
            "stripes": (i % 2) == 0,
        }[self.shape]
        mask = torch.zeros(1, image_size, image_size)
        mask[0, self.row : self.row + n, self.col : self.col + n] = on.float()
        fill = 0.0 if self.background is None else self.background
        image = torch.full((channels, image_size, image_size), fill)
        image = torch.where(mask.bool(), torch.tensor(self.value), image)
        if self.background is None:
            return image, mask
        return image, torch.ones_like(mask)
