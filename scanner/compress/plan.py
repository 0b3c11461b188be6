"""How wide the compressed UNet is: every channel space loses the same number of GroupNorm groups.

A stock `UNet2DModel` config has one width per resolution level (`block_out_channels`) and one
`norm_num_groups` G for every GroupNorm; a ResNet block's hidden width equals its level's
width, and attention has width / `attention_head_dim` heads. So a compressed UNet that stock
diffusers can load must shrink every level by the same rule. Ours: remove k of the G groups
from every channel space, keeping G - k groups of the original group size. Then

    new width_i = width_i * (G - k) / G,   new norm_num_groups = G - k,

and a GroupNorm over a stream whose removed channels were whole groups normalizes the kept
groups exactly as before (docs/compress.md). k is the feasible value nearest to sparsity * G
(ties to the smaller k): attention levels need a whole number of heads. The achieved channel
sparsity k / G is reported; with G = 8 it moves in steps of 12.5 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WidthPlan:
    norm_groups: int                 # G, the original norm_num_groups
    removed_groups: int              # k, removed from every channel space
    widths: tuple[int, ...]          # original block_out_channels
    new_widths: tuple[int, ...]

    @property
    def sparsity(self) -> float:
        """Share of every channel space removed: k / G."""
        return self.removed_groups / self.norm_groups

    def new_width(self, width: int) -> int:
        return width * (self.norm_groups - self.removed_groups) // self.norm_groups


def attention_levels(config: dict[str, Any]) -> set[int]:
    """Levels (indices into block_out_channels) whose blocks hold attention."""
    n = len(config["block_out_channels"])
    levels = {i for i, kind in enumerate(config["down_block_types"]) if "Attn" in kind}
    levels |= {n - 1 - i for i, kind in enumerate(config["up_block_types"]) if "Attn" in kind}
    if config.get("add_attention", True) and config.get("mid_block_type", "UNetMidBlock2D") is not None:
        levels.add(n - 1)
    return levels


def width_plan(config: dict[str, Any], sparsity: float) -> WidthPlan:
    """The feasible plan nearest to `sparsity` for a UNet2DModel `config` (ValueError names what does not fit)."""
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"`sparsity` must be in (0, 1), got {sparsity}")
    if config.get("attn_norm_num_groups") not in (None, config.get("norm_num_groups")):
        raise ValueError("attn_norm_num_groups differs from norm_num_groups: not supported by this compressor")
    if config.get("resnet_time_scale_shift", "default") != "default":
        raise ValueError(f"resnet_time_scale_shift={config['resnet_time_scale_shift']!r} is not supported (only 'default')")
    if config.get("time_embedding_type", "positional") not in ("positional", "learned"):
        raise ValueError(f"time_embedding_type={config['time_embedding_type']!r} is not supported")
    G = int(config.get("norm_num_groups") or 32)
    widths = tuple(int(w) for w in config["block_out_channels"])
    if any(w % G for w in widths):
        raise ValueError(f"block_out_channels {list(widths)} are not all multiples of norm_num_groups {G}")
    head_dim = config.get("attention_head_dim")
    attn = attention_levels(config)

    def feasible(k: int) -> bool:
        return head_dim is None or all((widths[i] * (G - k) // G) % head_dim == 0 for i in attn)

    options = [k for k in range(1, G) if feasible(k)]
    if not options:
        raise ValueError(f"no width keeps a whole number of {head_dim}-channel attention heads for widths {list(widths)}")
    k = min(options, key=lambda k: (abs(k / G - sparsity), k))
    return WidthPlan(norm_groups=G, removed_groups=k, widths=widths,
                     new_widths=tuple(w * (G - k) // G for w in widths))
