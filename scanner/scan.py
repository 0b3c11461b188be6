"""Scan one checkpoint: load it safely, run a detector, save the inverted trigger and target,
and return one result row. Every failure is a row (verdict "error"), never an exception."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import scanner
from scanner.checkpoint import LoadError, Limits, load_checkpoint
from scanner.detect import DEFAULT_DETECTOR, DETECTORS, Detection, make_config


def config_hash(detector: str, config: dict[str, Any]) -> str:
    key = json.dumps({"detector": detector, "config": config, "version": scanner.__version__}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def save_image(x: torch.Tensor, path: Path) -> None:
    """(C, H, W) in [-1, 1] to an 8-bit PNG (grey for 1 channel)."""
    from PIL import Image

    arr = ((x.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)


def save_artifacts(det: Detection, out_dir: Path) -> tuple[str, str | None]:
    """Write trigger/target as safetensors and PNG (and the trigger samples as one PNG strip) under
    `out_dir`; return the safetensors paths.

    The target path is None when the detector sampled no target (its `target_batch` was 0).
    """
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, x in (("trigger", det.trigger), ("target", det.target)):
        if x is None:
            paths.append(None)
            continue
        save_file({name: x.contiguous()}, str(out_dir / f"{name}.safetensors"))
        save_image(x, out_dir / f"{name}.png")
        paths.append(str(out_dir / f"{name}.safetensors"))
    if det.samples is not None and len(det.samples):
        save_image(torch.cat(list(det.samples), dim=2), out_dir / "samples.png")  # (C, H, N*W): a strip
    return paths[0], paths[1]


def artifact_dir(root: Path, uri: str) -> Path:
    """A stable, collision-free folder per checkpoint: its name plus a hash of its uri."""
    return root / f"{Path(uri).name}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def scan_checkpoint(path: str | Path, *, detector: str = DEFAULT_DETECTOR, config: Any = None,
                    artifacts: str | Path | None = None, limits: Limits = Limits(),
                    device: str = "cpu", uri: str | None = None) -> dict[str, Any]:
    """Scan the checkpoint at `path` on `device`; return its row (scanner.results.SCAN_SCHEMA columns).

    Detectors draw their noise on the CPU and move it, so a seed gives the same noise on any device.
    `uri` is what the row and the artifact folder name (default: `path`); the batch engine passes
    the s3 uri of a checkpoint it scanned from its local cache.
    """
    started = time.perf_counter()
    cfg = config if config is not None else make_config(detector)
    cfg_dict = asdict(cfg)
    row: dict[str, Any] = {
        "uri": uri or str(path), "detector": detector, "detector_config": json.dumps(cfg_dict, sort_keys=True),
        "config_hash": config_hash(detector, cfg_dict), "seed": cfg_dict.get("seed"),
        "scanner_version": scanner.__version__, "unet_evals": 0, "backward_evals": 0,
    }
    try:
        ckpt = load_checkpoint(path, limits=limits)
        weights = [w for w in ckpt.inventory.weights if w.format == "safetensors"]
        row["weights_sha256"] = weights[0].sha256 if len(weights) == 1 else None
        det = DETECTORS[detector][1](ckpt.unet.to(device), ckpt.schedule, config=cfg)
    except LoadError as exc:
        return {**row, "verdict": "error", "score": 0.5, "error": str(exc), "error_category": exc.category,
                "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - the batch boundary: one model's failure is one error row
        return {**row, "verdict": "error", "score": 0.5,
                "error": f"{path}: detector {detector} failed: {type(exc).__name__}: {exc}",
                "error_category": "detector", "seconds": time.perf_counter() - started}
    if artifacts is not None:
        row["trigger_path"], row["target_path"] = save_artifacts(det, artifact_dir(Path(artifacts), uri or str(path)))
    return {**row, "verdict": det.verdict, "score": det.score, "statistic": det.statistic, "threshold": det.threshold,
            "hypothesis": det.hypothesis, "gamma": det.gamma, "stats": json.dumps(det.stats, sort_keys=True),
            "unet_evals": det.unet_evals, "backward_evals": det.backward_evals, "error": None, "error_category": None,
            "seconds": time.perf_counter() - started}
