"""Submit a zoo-audit entry point to a Ray cluster with the Ray Jobs SDK, as `ray job submit` does.

The working directory is uploaded without weights, fixtures, the venv or git metadata (Ray's
`excludes` use .gitignore syntax); the cluster's image must already have the dependencies
(infra/ installs them).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Callable

JOBS = ("scan", "repair", "compress")
EXCLUDES = [".venv/", ".git/", "tests/fixtures/", "benchmarks/zoo/", "benchmarks/holdout/", "*.safetensors",
            "*.bin", "*.ckpt", "*.pt", "*.pth", "*.parquet", "__pycache__/"]
AGENT_RETRIES = 30
RUNTIME_ENV = {"excludes": EXCLUDES, "env_vars": {"OMP_NUM_THREADS": "1"}}


def runtime_env(working_dir: Path) -> dict:
    return {**RUNTIME_ENV, "working_dir": str(working_dir)}


def submit_job(job: str, args: list[str], *, address: str, working_dir: Path, wait: bool,
               log: Callable[[str], None] = print) -> tuple[str, int]:
    """(final status, exit code: 0 when the job succeeded, 2 when it failed or was stopped)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    entrypoint = shlex.join(["python", "-m", f"ray_jobs.{job}", *args])
    for attempt in range(AGENT_RETRIES):
        try:
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(working_dir))
            break
        except RuntimeError as exc:  # a freshly started cluster answers 500 until a node's job agent is up
            if "No available agent" not in str(exc) or attempt == AGENT_RETRIES - 1:
                raise
            log(f"waiting for the cluster's job agent ({exc})")
            time.sleep(2.0)
    log(f"submitted {job_id}: {entrypoint}")
    if not wait:
        return "SUBMITTED", 0
    seen = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > seen:
            log(logs[seen:].rstrip("\n"))
            seen = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status), 0 if status == JobStatus.SUCCEEDED else 2
        time.sleep(1.0)
