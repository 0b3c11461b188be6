"""Fan `describe_checkpoint` out over Ray workers: one row per checkpoint, errors included.

Entry point: python -m ray_jobs.inventory SOURCE [--workers N] [--address ADDR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import ray

from ray_jobs.engine import ensure_ray


@ray.remote(num_cpus=1, max_retries=1)
def _describe(path: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # one core per task: oversubscribed OpenMP threads ran 6-17x slower
    from scanner.checkpoint import describe_checkpoint

    return describe_checkpoint(path)


def run_inventory(paths: list[Path], *, workers: int = 2, address: str | None = None) -> list[dict[str, Any]]:
    """Describe every checkpoint with at most `workers` tasks in flight; rows come back in input order."""
    ensure_ray(address=address, num_cpus=workers)
    pending, rows, queue = {}, {}, list(enumerate(paths))
    while queue or pending:
        while queue and len(pending) < workers:
            i, p = queue.pop(0)
            pending[_describe.remote(str(p))] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            rows[pending.pop(ref)] = ray.get(ref)
    return [rows[i] for i in range(len(paths))]


def main(argv: list[str] | None = None) -> int:
    from scanner.checkpoint import find_checkpoints

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--address", default=None)
    args = ap.parse_args(argv)
    rows = run_inventory(find_checkpoints(args.source), workers=args.workers, address=args.address)
    for row in rows:
        print(json.dumps(row))
    return 2 if any(r["status"] == "error" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
