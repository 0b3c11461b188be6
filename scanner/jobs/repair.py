"""The repair job for one flagged checkpoint from any source: fetch, read the scan's finding, repair, publish.

Pure library (no Ray). The repaired pipeline goes to OUT/repaired/<name>/ (uploaded when OUT is s3).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.results import REPAIR_SCHEMA
from scanner.store import FetchError, S3Options, SourceCheckpoint, evict, fetch, parse_uri, put_dir

NAME = "repair"
SCHEMA = REPAIR_SCHEMA


@dataclass(frozen=True, kw_only=True)
class RepairTask:
    checkpoint: SourceCheckpoint
    scan_row: dict[str, Any]        # the scan's row: hypothesis, gamma, trigger_path, target_path, row_key
    key: str
    name: str                       # folder under OUT/repaired/
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    out: str = ""

    @property
    def uri(self) -> str:
        return self.checkpoint.uri


def repair_config_hash(config: dict[str, Any], scan_key: str) -> str:
    """Covers the repair settings, the finding it repairs (the scan row's key) and the scanner version."""
    import scanner

    text = json.dumps({"config": config, "scan": scan_key, "version": scanner.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(task: RepairTask, *, cache_dir: str | Path, s3: S3Options = S3Options(), device: str = "cpu") -> dict[str, Any]:
    from scanner.repair import Finding, RepairConfig, repair_checkpoint

    started = time.perf_counter()
    try:
        finding = Finding.from_scan_row(task.scan_row, s3=s3)
    except (OSError, ValueError, KeyError) as exc:
        return failure_row(task, "finding", f"{task.uri}: cannot read the scan's finding: {exc}")
    try:
        fetched = fetch(task.checkpoint, cache_dir=cache_dir, s3=s3)
    except FetchError as exc:
        return failure_row(task, "fetch", str(exc), seconds=time.perf_counter() - started)
    out = parse_uri(task.out)
    try:
        with tempfile.TemporaryDirectory(prefix="zoo-audit-repaired-") as tmp:
            dest = Path(tmp, task.name) if out.is_s3 else Path(out.path, "repaired", task.name)
            row = repair_checkpoint(fetched.path, finding, dest, config=RepairConfig(**task.config), device=device,
                                    uri=task.uri)
            if out.is_s3 and row.get("repaired_uri"):
                put_dir(dest, out.child("repaired", task.name), s3=s3)
                row["repaired_uri"] = str(out.child("repaired", task.name))
    finally:
        evict(fetched)
    if row.get("error") and task.checkpoint.is_s3:
        row["error"] = row["error"].replace(str(fetched.path), task.uri)
    return {**row, **_engine(task), "content_sha256": fetched.sha256, "seconds": time.perf_counter() - started}


def failure_row(task: RepairTask, category: str, message: str, *, seconds: float = 0.0) -> dict[str, Any]:
    import scanner

    return {"uri": task.uri, "error": message, "error_category": category, "seconds": seconds,
            "hypothesis": task.scan_row.get("hypothesis"), "repair_config": json.dumps(task.config, sort_keys=True),
            "scanner_version": scanner.__version__, **_engine(task)}


def _engine(task: RepairTask) -> dict[str, Any]:
    return {"row_key": task.key, "config_hash": task.config_hash, "content_version": task.checkpoint.fingerprint,
            "content_bytes": task.checkpoint.size}
