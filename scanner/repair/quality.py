"""Sample quality without Inception weights: a Frechet distance in a small digits classifier's features.

FID needs Inception-v3 weights, which cannot be downloaded here. Instead a small CNN is
trained (seeded, a few seconds on one core) on scikit-learn's bundled digits, upsampled to
16 px exactly as the zoo's training data (scanner/data/digits.py; samples of other sizes are
resized), and its 32-d
penultimate activations play Inception's pool features. The distance is FID's formula
(Heusel et al., 2017) between Gaussians fitted to the features of model samples and of the
real digits:  ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2).
Its absolute value is not comparable with published FIDs; compare models only with the
same extractor, sample count and noise. For a real zoo, pass your own extractor:
any callable from images (B, C, H, W) in [-1, 1] to features (B, D).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


class DigitsNet(torch.nn.Module):
    """16x16 grey digits -> 10 classes; `features` is the 32-d penultimate layer."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * (size // 4) ** 2, 32)
        self.head = torch.nn.Linear(32, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@lru_cache(maxsize=4)
def digits_classifier(size: int = 16, *, epochs: int = 30, seed: int = 0) -> tuple[DigitsNet, float]:
    """(trained net, held-out accuracy) on scikit-learn's digits at `size` px; cached per process."""
    from scanner.data import load_digits_images

    if size % 4:
        raise ValueError(f"the digits feature extractor needs a size divisible by 4, got {size}")
    images, labels = load_digits_images(size=size)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)
    test, train = order[:300], order[300:]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = DigitsNet(size)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for batch in train[torch.randperm(len(train), generator=gen)].split(128):
            loss = F.cross_entropy(net(images[batch]), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval().requires_grad_(False)
    with torch.no_grad():
        accuracy = float((net(images[test]).argmax(1) == labels[test]).float().mean())
    return net, accuracy


FEATURE_SIZE = 16  # the extractor's input side; samples of any size are resized to it


def digits_features() -> FeatureFn:
    """The default extractor: the digits classifier's features of the first channel, resized to 16 px."""
    net, _ = digits_classifier(FEATURE_SIZE)
    size = FEATURE_SIZE

    def extract(images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            return net.features(images[:, :1].clamp(-1.0, 1.0).cpu())

    return extract


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """A weight-free extractor for any domain: each channel average-pooled to 8 x 8, flattened (B, 64 C).

    Much cruder than a trained network's features (it sees layout and brightness, not content); for a
    zoo that has real images of its domain but no extractor of its own (`[repair] features =
    "scanner.repair.quality:pixel_features"`, extractor.py)."""
    with torch.no_grad():
        return F.adaptive_avg_pool2d(images.float().clamp(-1.0, 1.0).cpu(), 8).flatten(1)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID's formula between Gaussian fits of feature sets a (N, D) and b (M, D)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(a)} and {len(b)}")
    x, y = a.double().numpy(), b.double().numpy()
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    r1 = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * cross)


def reference_features(features: FeatureFn) -> torch.Tensor:
    """Features of every bundled digit (the 'real' side of the distance), 16 px, one channel."""
    from scanner.data import load_digits_images

    images, _ = load_digits_images(size=FEATURE_SIZE)
    return torch.cat([features(chunk) for chunk in images.split(512)])


def paired_change(before: torch.Tensor, after: torch.Tensor, reference: torch.Tensor, *, resamples: int = 200,
                  level: float = 0.9, seed: int = 0) -> tuple[float, float, float]:
    """The relative change of the Frechet distance, after / before - 1, and its paired-bootstrap interval.

    Row i of `before` and of `after` (N, D) are the features of samples from the same noise. Each
    resample draws N rows with replacement and keeps the pairs together, so the interval is the
    uncertainty of this change from the finite sample set, not from comparing two noise draws.
    `reference` stays whole. The interval is the basic (reverse-percentile) bootstrap, 2 c - q: the
    distance's finite-sample bias adds to both sides of the ratio and pulls it towards 0 (more so
    in a resample, whose repeated rows inflate it), and the plain percentile interval then sat
    beside the estimate instead of around it. Returns (change c, low, high) at `level`.
    """
    if before.shape != after.shape:
        raise ValueError(f"paired features must have equal shapes, got {tuple(before.shape)} and {tuple(after.shape)}")
    if resamples < 10 or not 0.0 < level < 1.0:
        raise ValueError(f"need resamples >= 10 and 0 < level < 1, got {resamples} and {level}")
    change = frechet_distance(after, reference) / frechet_distance(before, reference) - 1.0
    gen = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(resamples):
        rows = torch.randint(0, len(before), (len(before),), generator=gen)
        draws.append(frechet_distance(after[rows], reference) / frechet_distance(before[rows], reference) - 1.0)
    q_low, q_high = np.quantile(draws, [(1.0 - level) / 2, (1.0 + level) / 2])
    return change, float(2 * change - q_high), float(2 * change - q_low)
