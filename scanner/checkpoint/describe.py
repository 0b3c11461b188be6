"""One inventory row per checkpoint: what loaded, or the typed error that stopped it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from scanner.checkpoint.errors import LoadError
from scanner.checkpoint.load import load_checkpoint
from scanner.checkpoint.validate import Limits

ROW_FIELDS = ("uri", "status", "error_category", "error", "kind", "parameters", "sample_size",
              "channels", "num_train_timesteps", "weights_sha256", "weights_bytes", "seconds")


def describe_checkpoint(path: str | Path, *, limits: Limits = Limits()) -> dict[str, Any]:
    """Load `path` and summarise it; a refusal is returned as data (status "error"), never raised."""
    started = time.perf_counter()
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row["uri"] = str(path)
    try:
        ckpt = load_checkpoint(path, limits=limits)
    except LoadError as exc:
        row.update(status="error", error_category=exc.category, error=str(exc))
    else:
        safetensors = [w for w in ckpt.inventory.weights if w.format == "safetensors"]
        cfg = ckpt.unet.config
        row.update(status="ok", kind=ckpt.inventory.kind,
                   parameters=sum(p.numel() for p in ckpt.unet.parameters()),
                   sample_size=cfg.sample_size, channels=cfg.in_channels,
                   num_train_timesteps=ckpt.schedule.num_timesteps,
                   weights_sha256=safetensors[0].sha256 if len(safetensors) == 1 else None,
                   weights_bytes=sum(w.size for w in safetensors))
    row["seconds"] = time.perf_counter() - started
    return row
