"""The scan job for one checkpoint from any source: fetch, scan, publish artifacts, evict.

Pure library (no Ray): the batch engine runs `run` inside a worker, the throughput benchmark
runs it in-process. Every failure comes back as a row.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.results import SCAN_SCHEMA
from scanner.store import FetchError, S3Options, SourceCheckpoint, evict, fetch, parse_uri, put_dir

NAME = "scan"
SCHEMA = SCAN_SCHEMA


@dataclass(frozen=True, kw_only=True)
class ScanTask:
    """One checkpoint to scan. `out` is the run's OUT (local path or s3 uri); artifacts go to OUT/artifacts/."""

    checkpoint: SourceCheckpoint
    key: str
    detector: str
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    out: str = ""

    @property
    def uri(self) -> str:
        return self.checkpoint.uri


def run(task: ScanTask, *, cache_dir: str | Path, s3: S3Options = S3Options(), device: str = "cpu") -> dict[str, Any]:
    """Scan `task`'s checkpoint; return its SCAN_SCHEMA row (engine columns node/attempts/finished_at excepted)."""
    from scanner.detect import make_config
    from scanner.scan import artifact_dir, scan_checkpoint

    started = time.perf_counter()
    try:
        fetched = fetch(task.checkpoint, cache_dir=cache_dir, s3=s3)
    except FetchError as exc:
        return failure_row(task, "fetch", str(exc), seconds=time.perf_counter() - started)
    try:
        out = parse_uri(task.out)
        with tempfile.TemporaryDirectory(prefix="zoo-audit-artifacts-") as tmp:
            local_artifacts = Path(tmp) if out.is_s3 else Path(out.path) / "artifacts"
            row = scan_checkpoint(fetched.path, detector=task.detector, config=make_config(task.detector, task.config),
                                  artifacts=local_artifacts, device=device, uri=task.uri)
            if out.is_s3 and row.get("trigger_path"):
                folder = artifact_dir(local_artifacts, task.uri)
                uris = put_dir(folder, out.child("artifacts", folder.name), s3=s3)
                row["trigger_path"] = uris.get("trigger.safetensors")
                row["target_path"] = uris.get("target.safetensors")
    finally:
        evict(fetched)
    if row.get("error") and task.checkpoint.is_s3:
        row["error"] = row["error"].replace(str(fetched.path), task.uri)  # name the object, not our cache
    return {**row, **_engine(task), "content_sha256": fetched.sha256, "seconds": time.perf_counter() - started}


def failure_row(task: ScanTask, category: str, message: str, *, seconds: float = 0.0) -> dict[str, Any]:
    """The row for a checkpoint that produced no judgement (fetch failure, timeout, lost worker)."""
    import json

    import scanner

    return {"uri": task.uri, "verdict": "timeout" if category == "timeout" else "error", "score": 0.5,
            "unet_evals": 0, "backward_evals": 0, "seconds": seconds, "error": message, "error_category": category,
            "detector": task.detector, "detector_config": json.dumps(task.config, sort_keys=True),
            "config_hash": task.config_hash, "seed": task.config.get("seed"), "scanner_version": scanner.__version__,
            **_engine(task)}


def _engine(task: ScanTask) -> dict[str, Any]:
    return {"row_key": task.key, "content_version": task.checkpoint.fingerprint, "content_bytes": task.checkpoint.size}
