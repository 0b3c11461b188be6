"""Scan a zoo on Ray: list SOURCE, skip finished keys, fan the rest out, one Parquet row per checkpoint.

Entry point (also what `ray job submit` runs):
    python -m ray_jobs.scan SOURCE --out OUT [--workers N] [--gpus-per-worker F] [--timeout S]
        [--endpoint-url URL] [--detector NAME] [--config TOML] [--seed N] [--address ADDR]
Exit codes: 0 when the batch completed (findings and per-checkpoint errors are rows in the table,
so a Ray job that scanned a zoo SUCCEEDED), 3 nothing found, 4 usage. With --strict, those of
`zoo-audit scan`: 1 when anything was flagged, 2 when any checkpoint errored or timed out.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from scanner.store import S3Options


@dataclass(frozen=True, kw_only=True)
class ScanRequest:
    source: str
    out: str
    detector: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # the detector's settings from TOML / --seed
    s3: S3Options = field(default_factory=S3Options)


def plan_scan(request: ScanRequest) -> list[Any]:
    """The scan tasks for every checkpoint under SOURCE (ValueError/FileNotFoundError name a bad input)."""
    from scanner.detect import DEFAULT_DETECTOR, make_config
    from scanner.jobs.scan import ScanTask
    from scanner.results import row_key
    from scanner.scan import config_hash
    from scanner.store import list_checkpoints

    name = request.detector or DEFAULT_DETECTOR
    config = asdict(make_config(name, request.overrides))
    chash = config_hash(name, config)
    return [ScanTask(checkpoint=c, detector=name, config=config, config_hash=chash, out=request.out,
                     key=row_key(uri=c.uri, content_version=c.fingerprint, job="scan", config_hash=chash))
            for c in list_checkpoints(request.source, s3=request.s3)]


def run_scan(request: ScanRequest, *, engine: Any, address: str | None = None,
             on_start: Callable[[int, int], None] | None = None,
             on_row: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], Any]:
    """Plan, run and read back: (the table's rows for this SOURCE and config, the BatchResult)."""
    from ray_jobs.engine import run_job
    from scanner.jobs import scan as job

    return run_job(job, plan_scan(request), out=request.out, s3=request.s3, engine=engine, address=address,
                   on_start=on_start, on_row=on_row)


def exit_code(rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 3
    if any(r["verdict"] in ("error", "timeout") for r in rows):
        return 2
    return 1 if any(r["verdict"] == "backdoored" for r in rows) else 0


def add_engine_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--workers", type=int, default=2, help="actors (one checkpoint in flight each)")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0)
    ap.add_argument("--gpus-per-worker", type=float, default=0.0, help="fractional, e.g. 0.25; 0 = CPU")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per checkpoint before a timeout row")
    ap.add_argument("--max-attempts", type=int, default=3, help="workers a checkpoint may outlive")
    ap.add_argument("--cache-dir", default="/tmp/zoo-audit-cache")
    ap.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, moto, ...); default AWS_ENDPOINT_URL")
    ap.add_argument("--address", default=None, help="Ray address; default: RAY_ADDRESS, else start a local Ray")
    ap.add_argument("--strict", action="store_true", help="exit 1 on findings, 2 on errors (the CLI's codes)")


def engine_config(args: argparse.Namespace) -> Any:
    from ray_jobs.engine import EngineConfig

    return EngineConfig(workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                        gpus_per_worker=args.gpus_per_worker, timeout_s=args.timeout, max_attempts=args.max_attempts,
                        cache_dir=args.cache_dir, s3=S3Options(endpoint_url=args.endpoint_url))


def main(argv: list[str] | None = None) -> int:
    import tomllib

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("--out", required=True)
    ap.add_argument("--detector", default=None)
    ap.add_argument("--config", type=Path, default=None, help="TOML; [detectors.<name>] overrides its settings")
    ap.add_argument("--seed", type=int, default=None)
    add_engine_arguments(ap)
    args = ap.parse_args(argv)
    from scanner.detect import DEFAULT_DETECTOR

    try:
        table = tomllib.loads(args.config.read_text()) if args.config else {}
        overrides = {**table.get("detectors", {}).get(args.detector or DEFAULT_DETECTOR, {}),
                     **({"seed": args.seed} if args.seed is not None else {})}
        request = ScanRequest(source=args.source, out=args.out, detector=args.detector, overrides=overrides,
                              s3=S3Options(endpoint_url=args.endpoint_url))
        rows, result = run_scan(request, engine=engine_config(args), address=args.address,
                                on_row=lambda r: print(json.dumps({k: r[k] for k in ("uri", "verdict", "score", "error")}),
                                                       flush=True))
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(f"{result.total} checkpoints, {result.skipped} already in the table, {len(result.rows)} written", flush=True)
    code = exit_code(rows)
    return code if args.strict or code == 3 else 0


if __name__ == "__main__":
    raise SystemExit(main())
