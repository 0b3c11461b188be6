"""Fan tasks out to a fixed pool of Ray actors; write one keyed row per task, as it finishes.

- Bounded: one task in flight per actor, at most `workers` at once (`ray.wait`, never a
  future per checkpoint).
- Per-task timeout: the actor is killed, the task gets a `timeout` row, a fresh actor replaces it.
- Worker death (SIGKILL, OOM, node loss): the task is retried on a fresh actor, up to
  `max_attempts` workers in all, then gets a `worker_lost` row.
- Resume: tasks whose key the sink already holds are never submitted; the sink's write-once
  parts make a row written twice land once (scanner/results/sink.py).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import ray

from ray_jobs.worker import JobWorker
from scanner.results import TableSink
from scanner.store import S3Options


STARTUP_WAIT_S = 120.0  # a worker not up by then (no free resources yet) is used anyway; Ray queues its tasks


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    timeout_s: float = 3600.0
    max_attempts: int = 3
    cache_dir: str = "/tmp/zoo-audit-cache"
    s3: S3Options = field(default_factory=S3Options)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"`workers` must be >= 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ValueError(f"`cpus_per_worker` must be > 0, got {self.cpus_per_worker}")
        if not 0 <= self.gpus_per_worker <= 8:
            raise ValueError(f"`gpus_per_worker` must be in [0, 8] (0.25 packs four workers on a GPU), "
                             f"got {self.gpus_per_worker}")
        if self.timeout_s <= 0 or self.max_attempts < 1:
            raise ValueError(f"need timeout_s > 0 and max_attempts >= 1, got {self.timeout_s}, {self.max_attempts}")


@dataclass(kw_only=True)
class BatchResult:
    total: int
    skipped: int
    rows: list[dict[str, Any]]


def ensure_ray(*, address: str | None, num_cpus: int) -> None:
    """Attach to `address` (or RAY_ADDRESS, which `ray job submit` sets for its entry point), or start
    a local Ray with a fixed CPU count (never the host's)."""
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def check_resources(config: EngineConfig) -> None:
    """Refuse a pool the cluster can never place (it would wait forever), naming what is missing."""
    have = ray.cluster_resources()
    if config.gpus_per_worker > 0 and have.get("GPU", 0) < config.gpus_per_worker:
        raise ValueError(f"--gpus-per-worker {config.gpus_per_worker}: the Ray cluster has {have.get('GPU', 0)} GPUs")
    if have.get("CPU", 0) < config.cpus_per_worker:
        raise ValueError(f"--cpus-per-worker {config.cpus_per_worker}: the Ray cluster has {have.get('CPU', 0)} CPUs")


def run_batch(job: Any, tasks: list[Any], *, sink: TableSink, config: EngineConfig,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> BatchResult:
    """Run `job` (a scanner.jobs module) on every task whose key `sink` lacks; return what was written."""
    done_keys = sink.keys()
    todo = deque(t for t in tasks if t.key not in done_keys)
    result = BatchResult(total=len(tasks), skipped=len(tasks) - len(todo), rows=[])
    if not todo:
        return result
    check_resources(config)

    def new_workers(n: int) -> list[Any]:
        """n started actors; waits (bounded) until they are up, so start-up never counts against a task's timeout."""
        actors = [JobWorker.options(num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker).remote(
            threads=max(1, int(config.cpus_per_worker)), cache_dir=config.cache_dir, s3=config.s3) for _ in range(n)]
        ray.wait([a.info.remote() for a in actors], num_returns=n, timeout=STARTUP_WAIT_S)
        return actors

    def finish(task: Any, row: dict[str, Any]) -> None:
        row = {**row, "attempts": attempts[task.key], "finished_at": datetime.now(timezone.utc)}
        if sink.write(row, key=task.key):
            result.rows.append(row)
            if on_row:
                on_row(row)

    idle = new_workers(min(config.workers, len(todo)))
    pending: dict[Any, tuple[Any, Any, float]] = {}  # ref -> (actor, task, started)
    attempts: dict[str, int] = {}
    while todo or pending:
        while todo and idle:
            actor, task = idle.pop(), todo.popleft()
            attempts[task.key] = attempts.get(task.key, 0) + 1
            pending[actor.run.remote(job.NAME, task)] = (actor, task, time.monotonic())
        deadline = min(started for _, _, started in pending.values()) + config.timeout_s
        wait_s = min(1.0, max(0.05, deadline - time.monotonic()))
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
        for ref in ready:
            actor, task, started = pending.pop(ref)
            try:
                row = ray.get(ref)
                idle.append(actor)
            except ray.exceptions.RayTaskError as exc:  # a bug: jobs turn every expected failure into a row
                idle.append(actor)
                row = job.failure_row(task, "internal", f"{task.uri}: {exc.cause!r}", seconds=time.monotonic() - started)
            except ray.exceptions.RayError as exc:  # the worker is gone: SIGKILL, OOM kill, node lost, object lost
                ray.kill(actor)
                idle += new_workers(1)
                if attempts[task.key] < config.max_attempts:
                    todo.appendleft(task)
                    continue
                row = job.failure_row(task, "worker_lost", f"{task.uri}: its worker died on each of {attempts[task.key]} "
                                      f"attempts (--max-attempts); last: {type(exc).__name__}",
                                      seconds=time.monotonic() - started)
            finish(task, row)
        now = time.monotonic()
        for ref, (actor, task, started) in list(pending.items()):
            if now - started > config.timeout_s:
                pending.pop(ref)
                ray.kill(actor)
                idle += new_workers(1)
                finish(task, job.failure_row(task, "timeout", f"{task.uri}: not finished after {config.timeout_s:g} s "
                                             f"(--timeout); the worker was stopped", seconds=now - started))
    for actor in idle:
        ray.kill(actor)
    return result


def run_job(job: Any, tasks: list[Any], *, out: str, s3: S3Options, engine: EngineConfig, address: str | None,
            on_start: Callable[[int, int], None] | None = None,
            on_row: Callable[[dict[str, Any]], None] | None = None,
            problems: list[dict[str, Any]] | tuple = ()) -> tuple[list[dict[str, Any]], BatchResult]:
    """Run `tasks` of `job` into OUT/<job.NAME>/ and read back this run's rows (plus `problems`, rows written as
    they are: tasks the planner refused)."""
    from scanner.store import parse_uri

    sink = TableSink(parse_uri(out).child(job.NAME), schema=job.SCHEMA, s3=s3)
    for row in problems:
        sink.write(row, key=row["row_key"])
    if on_start:
        done = sink.keys()
        on_start(len(tasks), sum(t.key in done for t in tasks))
    ensure_ray(address=address, num_cpus=max(1, int(engine.workers * engine.cpus_per_worker)))
    result = run_batch(job, tasks, sink=sink, config=engine, on_row=on_row)
    return sink.read(keys={t.key for t in tasks} | {p["row_key"] for p in problems}).to_pylist(), result
