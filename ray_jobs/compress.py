"""Compress every checkpoint of a zoo on Ray: list SOURCE, skip finished keys, fan the rest out.

Entry point (also what `ray job submit` runs):
    python -m ray_jobs.compress SOURCE --out OUT [--sparsity S] [--importance spp|magnitude|taylor]
        [--config TOML] [--seed N] [engine options]
Writes OUT/compressed/<name>/ (a DDPMPipeline) and one row per checkpoint in OUT/compress/.
Exit codes: 0 when the batch completed, 3 nothing found, 4 usage; with --strict, 2 when any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray_jobs.scan import add_engine_arguments, engine_config
from scanner.store import S3Options


@dataclass(frozen=True, kw_only=True)
class CompressRequest:
    source: str
    out: str
    overrides: dict[str, Any] = field(default_factory=dict)  # CompressConfig settings from TOML / flags
    s3: S3Options = field(default_factory=S3Options)


def plan_compress(request: CompressRequest) -> list[Any]:
    from scanner.compress import CompressConfig
    from scanner.jobs.compress import CompressTask, compress_config_hash
    from scanner.results import row_key
    from scanner.store import folder_names, list_checkpoints

    config = asdict(CompressConfig(**request.overrides))
    chash = compress_config_hash(config)
    listed = list_checkpoints(request.source, s3=request.s3)
    return [CompressTask(checkpoint=c, name=name, config=config, config_hash=chash, out=request.out,
                         key=row_key(uri=c.uri, content_version=c.fingerprint, job="compress", config_hash=chash))
            for c, name in zip(listed, folder_names([c.uri for c in listed]))]


def run_compress(request: CompressRequest, *, engine: Any, address: str | None = None,
                 on_start: Callable[[int, int], None] | None = None,
                 on_row: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], Any]:
    """Plan, run and read back: (the table's rows for this SOURCE and config, the BatchResult)."""
    from ray_jobs.engine import run_job
    from scanner.jobs import compress as job

    return run_job(job, plan_compress(request), out=request.out, s3=request.s3, engine=engine, address=address,
                   on_start=on_start, on_row=on_row)


def main(argv: list[str] | None = None) -> int:
    import tomllib

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sparsity", type=float, default=None)
    ap.add_argument("--importance", default=None, help="spp | magnitude | taylor")
    ap.add_argument("--config", type=Path, default=None, help="TOML; [compress] overrides the compression settings")
    ap.add_argument("--seed", type=int, default=None)
    add_engine_arguments(ap)
    args = ap.parse_args(argv)
    try:
        table = tomllib.loads(args.config.read_text()).get("compress", {}) if args.config else {}
        flags = {"sparsity": args.sparsity, "importance": args.importance, "seed": args.seed}
        overrides = {**table, **{k: v for k, v in flags.items() if v is not None}}
        rows, result = run_compress(
            CompressRequest(source=args.source, out=args.out, overrides=overrides,
                            s3=S3Options(endpoint_url=args.endpoint_url)),
            engine=engine_config(args), address=args.address,
            on_row=lambda r: print(json.dumps({k: r.get(k) for k in ("uri", "compressed_uri", "params_after",
                                                                     "quality_after", "error")}), flush=True))
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print(f"{result.total} checkpoints, {result.skipped} already compressed, {len(result.rows)} written", flush=True)
    if not rows:
        return 3
    return 2 if args.strict and any(r["error"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
