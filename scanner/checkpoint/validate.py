"""Validate a UNet and scheduler config before anything is allocated from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scanner.checkpoint.errors import LoadError

DOWN_BLOCKS = {"DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D",
               "AttnSkipDownBlock2D", "AttnDownEncoderBlock2D", "DownEncoderBlock2D"}
UP_BLOCKS = {"UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SkipUpBlock2D",
             "AttnSkipUpBlock2D", "AttnUpDecoderBlock2D", "UpDecoderBlock2D"}
BETA_SCHEDULES = {"linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Bounds a config must respect before zoo-audit builds a model from it."""

    min_sample_size: int = 8
    max_sample_size: int = 1024
    max_image_channels: int = 4
    max_block_channels: int = 4096
    max_blocks: int = 8
    max_layers_per_block: int = 8
    max_timesteps: int = 10_000
    max_weight_bytes: int = 4 * 1024**3


def _int_in(cfg: dict, key: str, lo: int, hi: int, source: str) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise LoadError("bad_config", source, f"`{key}` must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def validate_unet_config(cfg: Any, *, source: str, limits: Limits = Limits()) -> None:
    """Raise LoadError("bad_config") unless `cfg` describes a bounded diffusers `UNet2DModel`."""
    if not isinstance(cfg, dict):
        raise LoadError("bad_config", source, "config is not a JSON object")
    if cfg.get("_class_name") != "UNet2DModel":
        raise LoadError("bad_config", source, f"`_class_name` is {cfg.get('_class_name')!r}; "
                        "zoo-audit scans diffusers UNet2DModel checkpoints")
    size = cfg.get("sample_size")
    sizes = size if isinstance(size, list) else [size]
    for s in sizes:
        if not isinstance(s, int) or isinstance(s, bool) or not limits.min_sample_size <= s <= limits.max_sample_size:
            raise LoadError("bad_config", source, f"`sample_size` must be an integer in "
                            f"[{limits.min_sample_size}, {limits.max_sample_size}], got {size!r}")
    for key in ("in_channels", "out_channels"):
        _int_in(cfg, key, 1, limits.max_image_channels, source)
    _int_in(cfg, "layers_per_block", 1, limits.max_layers_per_block, source)
    widths, down, up = cfg.get("block_out_channels"), cfg.get("down_block_types"), cfg.get("up_block_types")
    if not isinstance(widths, list) or not 1 <= len(widths) <= limits.max_blocks:
        raise LoadError("bad_config", source, f"`block_out_channels` must be a list of 1 to "
                        f"{limits.max_blocks} integers, got {widths!r}")
    for w in widths:
        if not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= limits.max_block_channels:
            raise LoadError("bad_config", source, f"`block_out_channels` entries must be integers in "
                            f"[1, {limits.max_block_channels}], got {widths!r}")
    for key, blocks, known in (("down_block_types", down, DOWN_BLOCKS), ("up_block_types", up, UP_BLOCKS)):
        if not isinstance(blocks, list) or len(blocks) != len(widths):
            raise LoadError("bad_config", source, f"`{key}` must list {len(widths)} blocks (one per "
                            f"`block_out_channels` entry), got {blocks!r}")
        unknown = [b for b in blocks if b not in known]
        if unknown:
            raise LoadError("bad_config", source, f"`{key}` has unknown block types {unknown}; known: {sorted(known)}")
    groups = cfg.get("norm_num_groups", 32)
    if not isinstance(groups, int) or groups < 1 or any(w % groups for w in widths):
        raise LoadError("bad_config", source, f"`norm_num_groups` ({groups!r}) must divide every "
                        f"`block_out_channels` entry {widths}")


def validate_scheduler_config(cfg: Any, *, source: str, limits: Limits = Limits()) -> None:
    """Raise LoadError("bad_config") unless `cfg` holds a bounded, known noise schedule."""
    if not isinstance(cfg, dict):
        raise LoadError("bad_config", source, "scheduler config is not a JSON object")
    _int_in(cfg, "num_train_timesteps", 2, limits.max_timesteps, source)
    if cfg.get("trained_betas") is None:
        schedule = cfg.get("beta_schedule", "linear")
        if schedule not in BETA_SCHEDULES:
            raise LoadError("bad_config", source, f"`beta_schedule` {schedule!r} is not one of {sorted(BETA_SCHEDULES)}")
        for key in ("beta_start", "beta_end"):
            v = cfg.get(key, 0.0001 if key == "beta_start" else 0.02)
            if not isinstance(v, (int, float)) or not 0.0 < v < 1.0:
                raise LoadError("bad_config", source, f"`{key}` must be a number in (0, 1), got {v!r}")
