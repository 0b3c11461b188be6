"""Throughput of the scan: in-process without Ray, then the Ray engine with 1 and with 2 workers.

    .venv/bin/python benchmarks/throughput.py                  # the benchmark zoo's 13 models
    .venv/bin/python benchmarks/throughput.py --source tests/fixtures/zoo/models --repeat 2

Every mode scans the same checkpoints with the default detector into a fresh table, writing
the same Parquet rows, with one torch thread per scanning process (in-process: this process;
Ray: each actor, 1 CPU each). The clock runs from the first task to the last row. A Ray
cluster is long-lived, so `ray.init` is timed apart and not charged to a batch; starting the
actors is charged. Rows must agree across modes (same verdicts and scores): a throughput
number for different work would mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tasks_for(source: str, out: str, repeat: int) -> list:
    """The scan tasks, `repeat` times over (distinct uris by a suffix-free copy trick: same content, new key)."""
    from dataclasses import replace

    from ray_jobs.scan import ScanRequest, plan_scan
    from scanner.results import row_key

    base = plan_scan(ScanRequest(source=source, out=out))
    tasks = []
    for k in range(repeat):
        for t in base:
            key = row_key(uri=f"{t.uri}#{k}", content_version=t.checkpoint.fingerprint, job="scan", config_hash=t.config_hash)
            tasks.append(replace(t, key=key))
    return tasks


def in_process(tasks: list, out: str) -> tuple[float, list[dict]]:
    from datetime import datetime, timezone

    from scanner.jobs import scan as job
    from scanner.results import TableSink

    sink = TableSink(Path(out) / "scan", schema=job.SCHEMA)
    started = time.perf_counter()
    rows = []
    for t in tasks:
        row = {**job.run(t, cache_dir=Path(out) / "cache"), "node": "in-process", "attempts": 1,
               "finished_at": datetime.now(timezone.utc)}
        sink.write(row, key=t.key)
        rows.append(row)
    return time.perf_counter() - started, rows


def with_ray(tasks: list, out: str, workers: int) -> tuple[float, list[dict]]:
    from ray_jobs.engine import EngineConfig, run_batch
    from scanner.jobs import scan as job
    from scanner.results import TableSink

    sink = TableSink(Path(out) / "scan", schema=job.SCHEMA)
    started = time.perf_counter()
    result = run_batch(job, tasks, sink=sink, config=EngineConfig(workers=workers, cache_dir=str(Path(out) / "cache")))
    return time.perf_counter() - started, result.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=str(ROOT / "benchmarks" / "zoo" / "models"))
    ap.add_argument("--repeat", type=int, default=1, help="scan the source this many times per mode")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="zoo-audit-throughput-"))
    results = {}
    tasks = tasks_for(args.source, str(tmp / "in-process"), args.repeat)
    print(f"{len(tasks)} checkpoints from {args.source}", flush=True)
    results["in-process"] = in_process(tasks, str(tmp / "in-process"))
    print(f"in-process: {results['in-process'][0]:.1f} s", flush=True)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    for workers in (1, 2):
        name = f"ray, {workers} worker{'s' if workers > 1 else ''}"
        out = str(tmp / f"ray-{workers}")
        results[name] = with_ray(tasks_for(args.source, out, args.repeat), out, workers)
        print(f"{name}: {results[name][0]:.1f} s", flush=True)
    ray.shutdown()

    ref = {(r["uri"], r["row_key"]): (r["verdict"], round(r["score"], 6)) for r in results["in-process"][1]}
    one = len(tasks) / results["ray, 1 worker"][0]
    print(f"\nray.init (not charged to a batch): {ray_start:.1f} s; torch threads per scanning process: 1\n")
    print("| mode | checkpoints | seconds | models/hour | vs in-process | vs 1 worker | rows agree |")
    print("|---|---|---|---|---|---|---|")
    for name, (seconds, rows) in results.items():
        rate = len(rows) / seconds
        agree = sum(ref.get((r["uri"], r["row_key"])) == (r["verdict"], round(r["score"], 6)) for r in rows)
        print(f"| {name} | {len(rows)} | {seconds:.1f} | {3600 * rate:.0f} | "
              f"{rate / (len(tasks) / results['in-process'][0]):.2f} | {rate / one:.2f} | {agree}/{len(rows)} |")


if __name__ == "__main__":
    main()
