"""Load a checkpoint's UNet and noise schedule with stock diffusers, offline, safetensors only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scanner.checkpoint.errors import LoadError
from scanner.checkpoint.inventory import Inventory, inventory, read_json
from scanner.checkpoint.safetensors_header import read_safetensors_header
from scanner.checkpoint.validate import Limits, validate_scheduler_config, validate_unet_config
from scanner.sampling import NoiseSchedule

# diffusers' DDPMScheduler defaults, used for a bare UNet directory that ships no scheduler.
DEFAULT_SCHEDULER_CONFIG = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000,
                            "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}


@dataclass(eq=False)
class LoadedCheckpoint:
    inventory: Inventory
    unet: torch.nn.Module
    scheduler_config: dict[str, Any]
    schedule: NoiseSchedule
    warnings: list[str] = field(default_factory=list)


def load_checkpoint(path: str | Path, *, limits: Limits = Limits()) -> LoadedCheckpoint:
    """Inventory, validate, then load; raise LoadError with a category for every refusal.

    Order matters: configs and safetensors headers are checked before diffusers allocates
    anything, and pickle files are never opened.
    """
    inv = inventory(path)
    unet_config_path = Path(inv.unet_dir) / "config.json"
    validate_unet_config(read_json(unet_config_path), source=str(unet_config_path), limits=limits)
    if inv.scheduler_config_path:
        scheduler_config = read_json(Path(inv.scheduler_config_path))
        validate_scheduler_config(scheduler_config, source=inv.scheduler_config_path, limits=limits)
    else:
        scheduler_config = dict(DEFAULT_SCHEDULER_CONFIG)
    total = sum(w.size for w in inv.weights if w.format == "safetensors")
    if total > limits.max_weight_bytes:
        raise LoadError("bad_config", inv.unet_dir, f"weights total {total} bytes, over the "
                        f"{limits.max_weight_bytes}-byte limit")
    names: set[str] = set()
    for f in inv.safetensors:
        names |= set(read_safetensors_header(f))
    warnings = [f"ignored pickle file {p} (never unpickled)" for p in inv.pickles]
    unet = _from_pretrained(inv.unet_dir)
    expected = set(unet.state_dict())
    if names != expected:
        missing, extra = sorted(expected - names), sorted(names - expected)
        raise LoadError("corrupt", inv.unet_dir, f"weights do not match the config: missing {missing[:3]}"
                        f"{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
    unet.eval().requires_grad_(False)
    return LoadedCheckpoint(inventory=inv, unet=unet, scheduler_config=scheduler_config,
                            schedule=NoiseSchedule.from_scheduler_config(scheduler_config), warnings=warnings)


def _from_pretrained(unet_dir: str) -> torch.nn.Module:
    from diffusers import UNet2DModel

    try:  # a local directory and local_files_only: diffusers never touches the network here
        return UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, local_files_only=True,
                                           low_cpu_mem_usage=False)
    except Exception as exc:  # diffusers raises many types; all mean the same to a zoo
        raise LoadError("corrupt", unet_dir, f"diffusers could not load the UNet: {exc}") from None
