"""The compression job for one checkpoint from any source: fetch, compress, publish.

Pure library (no Ray). The compressed pipeline goes to OUT/compressed/<name>/ (uploaded when OUT is s3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.jobs.publish import engine_columns, fetch_build_publish, versioned_hash
from scanner.results import COMPRESS_SCHEMA
from scanner.store import S3Options, SourceCheckpoint

NAME = "compress"
SCHEMA = COMPRESS_SCHEMA


@dataclass(frozen=True, kw_only=True)
class CompressTask:
    checkpoint: SourceCheckpoint
    key: str
    name: str                       # folder under OUT/compressed/
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    out: str = ""

    @property
    def uri(self) -> str:
        return self.checkpoint.uri


def compress_config_hash(config: dict[str, Any]) -> str:
    """Covers the compression settings and the scanner version."""
    return versioned_hash(config=config)


def run(task: CompressTask, *, cache_dir: str | Path, s3: S3Options = S3Options(), device: str = "cpu") -> dict[str, Any]:
    from scanner.compress import CompressConfig, compress_checkpoint

    return fetch_build_publish(
        task, cache_dir=cache_dir, s3=s3, folder="compressed", uri_column="compressed_uri", failure=failure_row,
        build=lambda path, dest: compress_checkpoint(path, dest, config=CompressConfig(**task.config),
                                                     device=device, uri=task.uri))


def failure_row(task: CompressTask, category: str, message: str, *, seconds: float = 0.0) -> dict[str, Any]:
    import scanner

    return {"uri": task.uri, "error": message, "error_category": category, "seconds": seconds,
            "importance": task.config.get("importance"), "compress_config": json.dumps(task.config, sort_keys=True),
            "scanner_version": scanner.__version__, **engine_columns(task)}
