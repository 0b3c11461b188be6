"""Inventory a checkpoint directory: what it is, which weight files it holds, their sha256."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanner.checkpoint.errors import LoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES


@dataclass(frozen=True, kw_only=True)
class WeightFile:
    path: str  # relative to the checkpoint root
    size: int
    sha256: str
    format: str  # "safetensors" | "pickle"


@dataclass(frozen=True, kw_only=True)
class Inventory:
    """What a checkpoint directory holds; computed without reading any tensor."""

    root: str
    kind: str  # "pipeline" (model_index.json) | "unet" (bare UNet directory)
    unet_dir: str
    scheduler_config_path: str | None
    weights: tuple[WeightFile, ...] = field(default_factory=tuple)

    @property
    def safetensors(self) -> list[Path]:
        return [Path(self.root) / w.path for w in self.weights if w.format == "safetensors"]

    @property
    def pickles(self) -> list[str]:
        return [w.path for w in self.weights if w.format == "pickle"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path, *, category: str = "bad_config") -> Any:
    """Parse a JSON file or raise LoadError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadError("missing_file", str(path), "file does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(category, str(path), f"not valid JSON ({exc})") from None


def inventory(path: str | Path) -> Inventory:
    """Classify `path` as a diffusers pipeline or a bare UNet directory and list its weights."""
    root = Path(path)
    if not root.is_dir():
        raise LoadError("not_a_model", str(root), "not a directory")
    if (root / "model_index.json").is_file():
        index = read_json(root / "model_index.json")
        entry = index.get("unet") if isinstance(index, dict) else None
        if not (isinstance(entry, list) and len(entry) == 2):
            raise LoadError("bad_config", str(root / "model_index.json"), "has no `unet` component "
                            f"(expected [library, class]), got {entry!r}")
        kind, unet_dir = "pipeline", root / "unet"
        sched = root / "scheduler" / "scheduler_config.json"
        if "scheduler" in index and not sched.is_file():
            raise LoadError("missing_file", str(sched), "model_index.json lists a scheduler but its config is missing")
        scheduler_config = sched if sched.is_file() else None
    elif (root / "config.json").is_file():
        kind, unet_dir, scheduler_config = "unet", root, None
    else:
        pickles = sorted(f.name for f in root.iterdir() if f.is_file() and f.name.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise LoadError("unsafe_format", str(root / pickles[0]), "a pickle checkpoint with no diffusers "
                            "config; zoo-audit loads safetensors only and never unpickles")
        raise LoadError("not_a_model", str(root), "has neither model_index.json (a diffusers pipeline) "
                        "nor config.json (a bare UNet directory)")
    if not (unet_dir / "config.json").is_file():
        raise LoadError("missing_file", str(unet_dir / "config.json"), "the UNet config is missing")
    weights = []
    for f in sorted(unet_dir.iterdir()):
        if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES):
            fmt = "safetensors" if f.suffix == ".safetensors" else "pickle"
            weights.append(WeightFile(path=str(f.relative_to(root)), size=f.stat().st_size,
                                      sha256=sha256_file(f), format=fmt))
    inv = Inventory(root=str(root), kind=kind, unet_dir=str(unet_dir),
                    scheduler_config_path=str(scheduler_config) if scheduler_config else None,
                    weights=tuple(weights))
    if not inv.safetensors:
        if inv.pickles:
            raise LoadError("unsafe_format", str(root / inv.pickles[0]), "weights are only in a pickle "
                            "format; zoo-audit loads safetensors and never unpickles")
        raise LoadError("missing_file", str(unet_dir), "no weight file (*.safetensors) in the UNet directory")
    return inv
