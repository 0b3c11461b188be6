"""Diffusion-model compression: SPP-scored channel pruning with torch-pruning, recovery, stock output; docs/compress.md."""

from scanner.compress.compress import IMPORTANCES, CompressConfig, compress_checkpoint, count
from scanner.compress.plan import WidthPlan, width_plan
from scanner.compress.prune import prune_unet
from scanner.compress.recover import RecoverConfig, recover

__all__ = ["IMPORTANCES", "CompressConfig", "RecoverConfig", "WidthPlan", "compress_checkpoint", "count",
           "prune_unet", "recover", "width_plan"]
