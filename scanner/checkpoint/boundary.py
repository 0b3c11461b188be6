"""The batch boundary of a job that rewrites a checkpoint: load it, run the work, always return a row.

A load failure keeps its category (corrupt, unsafe_format, ...); anything else the work raises
becomes `<path>: <what> failed: <type>: <message>` in the row's `error`, with `category`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from scanner.checkpoint.errors import LoadError
from scanner.checkpoint.load import LoadedCheckpoint, load_checkpoint


def row_from_checkpoint(path: str | Path, row: dict[str, Any], work: Callable[[LoadedCheckpoint], dict[str, Any]], *,
                        device: str, what: str, category: str) -> dict[str, Any]:
    """`row` updated with work(loaded checkpoint on `device`), `error`, `error_category` and `seconds`."""
    started = time.perf_counter()
    try:
        ckpt = load_checkpoint(path)
        ckpt.unet.to(device)
        row = {**row, **work(ckpt)}
    except LoadError as exc:
        return {**row, "error": str(exc), "error_category": exc.category, "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - the batch boundary: one model's failure is one error row
        return {**row, "error": f"{path}: {what} failed: {type(exc).__name__}: {exc}", "error_category": category,
                "seconds": time.perf_counter() - started}
    return {**row, "error": None, "error_category": None, "seconds": time.perf_counter() - started}
