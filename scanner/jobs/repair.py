"""The repair job for one flagged checkpoint from any source: fetch, read the scan's finding, repair, publish.

Pure library (no Ray). The repaired pipeline goes to OUT/repaired/<name>/ (uploaded when OUT is s3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.jobs.publish import engine_columns, fetch_build_publish, versioned_hash
from scanner.results import REPAIR_SCHEMA
from scanner.store import S3Options, SourceCheckpoint

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
    return versioned_hash(config=config, scan=scan_key)


def run(task: RepairTask, *, cache_dir: str | Path, s3: S3Options = S3Options(), device: str = "cpu") -> dict[str, Any]:
    from scanner.repair import Finding, RepairConfig, repair_checkpoint

    try:
        finding = Finding.from_scan_row(task.scan_row, s3=s3)
    except (OSError, ValueError, KeyError) as exc:
        return failure_row(task, "finding", f"{task.uri}: cannot read the scan's finding: {exc}")
    return fetch_build_publish(
        task, cache_dir=cache_dir, s3=s3, folder="repaired", uri_column="repaired_uri", failure=failure_row,
        build=lambda path, dest: repair_checkpoint(path, finding, dest, config=RepairConfig(**task.config),
                                                   device=device, uri=task.uri, s3=s3))


def failure_row(task: RepairTask, category: str, message: str, *, seconds: float = 0.0) -> dict[str, Any]:
    import scanner

    return {"uri": task.uri, "error": message, "error_category": category, "seconds": seconds,
            "hypothesis": task.scan_row.get("hypothesis"), "repair_config": json.dumps(task.config, sort_keys=True),
            "scanner_version": scanner.__version__, **engine_columns(task)}
