"""What the repair and compress jobs share: fetch a checkpoint, build a new one beside it, publish it under OUT.

The new pipeline is written to OUT/<folder>/<name>/ directly when OUT is local, or into a
temporary directory and uploaded when OUT is s3. The fetched copy is evicted afterwards.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from scanner.store import FetchError, S3Options, evict, fetch, parse_uri, put_dir


def versioned_hash(**parts: Any) -> str:
    """sha256[:16] over `parts` (JSON, sorted keys) and the scanner version: a job's config hash."""
    import hashlib
    import json

    import scanner

    text = json.dumps({**parts, "version": scanner.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_columns(task: Any) -> dict[str, Any]:
    """The engine's columns every row of a task carries (scanner.results.table.ENGINE_COLUMNS)."""
    return {"row_key": task.key, "config_hash": task.config_hash, "content_version": task.checkpoint.fingerprint,
            "content_bytes": task.checkpoint.size}


def fetch_build_publish(task: Any, *, cache_dir: str | Path, s3: S3Options, folder: str, uri_column: str,
                        build: Callable[[Path, Path], dict[str, Any]],
                        failure: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """build(local checkpoint, destination) -> row; the row's `uri_column` is rewritten to the published uri."""
    started = time.perf_counter()
    try:
        fetched = fetch(task.checkpoint, cache_dir=cache_dir, s3=s3)
    except FetchError as exc:
        return failure(task, "fetch", str(exc), seconds=time.perf_counter() - started)
    out = parse_uri(task.out)
    try:
        with tempfile.TemporaryDirectory(prefix=f"zoo-audit-{folder}-") as tmp:
            dest = Path(tmp, task.name) if out.is_s3 else Path(out.path, folder, task.name)
            row = build(fetched.path, dest)
            if out.is_s3 and row.get(uri_column):
                put_dir(dest, out.child(folder, task.name), s3=s3)
                row[uri_column] = str(out.child(folder, task.name))
    finally:
        evict(fetched)
    if row.get("error") and task.checkpoint.is_s3:
        row["error"] = row["error"].replace(str(fetched.path), task.uri)
    return {**row, **engine_columns(task), "content_sha256": fetched.sha256, "seconds": time.perf_counter() - started}
