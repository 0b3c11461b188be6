"""A zoo's own quality metric, named in the repair settings so the CLI and every Ray worker can build it.

The default metric is the digits classifier's Frechet distance (quality.py), which says little about
a zoo that is not digits. Two `[repair]` settings replace it:

    features  = "package.module:function"    a function from images (B, C, H, W) in [-1, 1] to features (B, D)
    reference = "real.safetensors"            (or s3://...) a safetensors file whose tensor `images`
                                              (N, C, H, W) in [-1, 1] holds real images of the zoo's domain

The function is imported by name in the process that repairs, so its module must be importable there
(installed, or shipped in the Ray job's runtime_env); no code or object is ever unpickled. The
reference is read as safetensors, which holds tensors only. `scanner.repair.quality:pixel_features`
is a weight-free extractor that fits any domain. Both settings are part of the repair config, so
they are in every row's `repair_config`, in `repair_plan.json` and in the resume hash (a changed
file under the same name is not noticed).
"""

from __future__ import annotations

import importlib
import re

import torch

from scanner.repair.quality import FeatureFn
from scanner.store import S3Options, read_bytes

SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_features(spec: str) -> FeatureFn:
    """The function `spec` ("package.module:function") names; ValueError naming the spec and the reason."""
    if not SPEC.match(spec):
        raise ValueError(f"features {spec!r}: expected 'package.module:function'")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"features {spec!r}: cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"features {spec!r}: {module_name} has no function {attr}")
    return fn


def load_reference(location: str, features: FeatureFn, *, s3: S3Options = S3Options()) -> torch.Tensor:
    """`features` of the real images in the safetensors file at `location` (local or s3), (N, D)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(read_bytes(location, s3=s3))
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"reference {location}: cannot read a safetensors file: {exc}") from None
    images = tensors.get("images")
    if images is None or images.ndim != 4 or len(images) < 2 or not images.is_floating_point():
        shape = None if images is None else (tuple(images.shape), str(images.dtype))
        raise ValueError(f"reference {location}: needs a float tensor 'images' (N >= 2, C, H, W), got {shape}")
    if images.min() < -1.0 or images.max() > 1.0:
        raise ValueError(f"reference {location}: images must lie in [-1, 1], got [{images.min():.3g}, {images.max():.3g}]")
    with torch.no_grad():
        out = torch.cat([features(chunk) for chunk in images.float().split(512)])
    if out.ndim != 2:
        raise ValueError(f"reference {location}: the features must be (N, D), got {tuple(out.shape)}")
    return out


def check_named_metric(features: str, reference: str, *, s3: S3Options = S3Options()) -> None:
    """Load the extractor and the reference the settings name (ValueError if either fails), so that a
    run stops before any work instead of failing every checkpoint the same way."""
    from scanner.repair.quality import digits_features

    if reference:
        load_reference(reference, load_features(features) if features else digits_features(), s3=s3)
