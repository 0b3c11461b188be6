"""Find every checkpoint directory under a local root."""

from __future__ import annotations

import os
from pathlib import Path

from scanner.checkpoint.inventory import WEIGHT_SUFFIXES


def is_checkpoint_dir(path: Path) -> bool:
    """A pipeline (model_index.json), a bare UNet (config.json) or any directory holding weights."""
    if (path / "model_index.json").is_file() or (path / "config.json").is_file():
        return True
    return any(f.is_file() and f.name.endswith(WEIGHT_SUFFIXES) for f in path.iterdir())


def find_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint directories under `root` (itself included), sorted; nothing inside one is listed.

    Directories that merely hold weights are listed too, so a pickle-only or broken
    checkpoint becomes an error row instead of vanishing.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if is_checkpoint_dir(here):
            found.append(here)
            dirnames.clear()  # unet/ and scheduler/ belong to this checkpoint
        else:
            dirnames.sort()
    return sorted(found)
