"""Repair every flagged checkpoint of a zoo on Ray: read (or first run) the scan, fan the repairs out.

Entry point (also what `ray job submit` runs):
    python -m ray_jobs.repair SOURCE --out OUT [--scan-table TABLE] [--config TOML] [--seed N] [engine options]
Clean models are never written. Exit codes: 0 when the batch completed, 4 usage; with --strict,
2 when any repair failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray_jobs.scan import ScanRequest, add_engine_arguments, engine_config, run_scan
from scanner.store import S3Options


@dataclass(frozen=True, kw_only=True)
class RepairRequest:
    source: str
    out: str
    scan_table: str | None = None    # default: OUT/scan, scanned first
    overrides: dict[str, Any] = field(default_factory=dict)  # RepairConfig settings from TOML / --seed
    scan: ScanRequest | None = None  # how to scan first when there is no table yet
    s3: S3Options = field(default_factory=S3Options)


def plan_repair(request: RepairRequest, scanned: list[dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """(repair tasks, error rows for flagged checkpoints that cannot be repaired as they stand)."""
    from datetime import datetime, timezone

    import scanner
    from scanner.jobs.repair import RepairTask, repair_config_hash
    from scanner.repair import RepairConfig
    from scanner.results import row_key
    from scanner.store import folder_names, list_checkpoints

    config = asdict(RepairConfig(**request.overrides))
    listed = {c.uri: c for c in list_checkpoints(request.source, s3=request.s3)}
    flagged = [r for r in scanned if r["verdict"] == "backdoored"]
    tasks, problems = [], []
    for r, name in zip(flagged, folder_names([r["uri"] for r in flagged])):
        ckpt = listed.get(r["uri"])
        chash = repair_config_hash(config, r.get("row_key") or "")
        if ckpt is None or (r.get("content_version") and r["content_version"] != ckpt.fingerprint):
            why = "is not under SOURCE" if ckpt is None else "changed since it was scanned; scan it again"
            version = r.get("content_version") or ""
            problems.append({"uri": r["uri"], "error": f"{r['uri']}: {why}", "error_category": "finding",
                             "hypothesis": r.get("hypothesis"), "repair_config": json.dumps(config, sort_keys=True),
                             "config_hash": chash, "scanner_version": scanner.__version__, "content_version": version,
                             "attempts": 0, "finished_at": datetime.now(timezone.utc),
                             "row_key": row_key(uri=r["uri"], content_version=version, job="repair", config_hash=chash)})
            continue
        tasks.append(RepairTask(checkpoint=ckpt, scan_row=r, name=name, config=config, config_hash=chash,
                                out=request.out, key=row_key(uri=ckpt.uri, content_version=ckpt.fingerprint,
                                                             job="repair", config_hash=chash)))
    return tasks, problems


def run_repair(request: RepairRequest, *, engine: Any, address: str | None = None,
               on_start: Callable[[int, int], None] | None = None,
               on_row: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], Any]:
    """(the repair table's rows for this run's flagged checkpoints, BatchResult); scans first without a table.

    A flagged checkpoint that is gone or changed since its scan gets an error row, not a repair. Settings
    that are invalid, or name a quality metric that does not load, raise ValueError before any work.
    """
    from ray_jobs.engine import run_job
    from scanner.jobs import repair as job
    from scanner.repair import RepairConfig
    from scanner.repair.extractor import check_named_metric
    from scanner.results import SCAN_SCHEMA, TableSink

    config = RepairConfig(**request.overrides)
    check_named_metric(config.features, config.reference, s3=request.s3)
    if request.scan_table is None:
        scanned, _ = run_scan(request.scan or ScanRequest(source=request.source, out=request.out, s3=request.s3),
                              engine=engine, address=address)
    else:
        scanned = TableSink(request.scan_table, schema=SCAN_SCHEMA, s3=request.s3).read().to_pylist()
    tasks, problems = plan_repair(request, scanned)
    return run_job(job, tasks, out=request.out, s3=request.s3, engine=engine, address=address, on_start=on_start,
                   on_row=on_row, problems=problems)


def main(argv: list[str] | None = None) -> int:
    import tomllib

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("--out", required=True)
    ap.add_argument("--scan-table", default=None)
    ap.add_argument("--config", type=Path, default=None, help="TOML; [repair] overrides the repair settings")
    ap.add_argument("--seed", type=int, default=None)
    add_engine_arguments(ap)
    args = ap.parse_args(argv)
    try:
        table = tomllib.loads(args.config.read_text()).get("repair", {}) if args.config else {}
        overrides = {**table, **({"seed": args.seed} if args.seed is not None else {})}
        s3 = S3Options(endpoint_url=args.endpoint_url)
        rows, result = run_repair(
            RepairRequest(source=args.source, out=args.out, scan_table=args.scan_table, overrides=overrides, s3=s3),
            engine=engine_config(args), address=args.address,
            on_row=lambda r: print(json.dumps({k: r.get(k) for k in ("uri", "repaired_uri", "asr_before", "asr_after",
                                                                     "error")}), flush=True))
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(f"{result.total} flagged, {result.skipped} already repaired, {len(result.rows)} written", flush=True)
    return 2 if args.strict and any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
