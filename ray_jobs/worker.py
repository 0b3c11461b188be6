"""The Ray actor that runs job kinds (scanner/jobs/) one task at a time."""

from __future__ import annotations

import os
from typing import Any

import ray


@ray.remote(max_restarts=0, max_task_retries=0)
class JobWorker:
    """Holds a warm torch and runs `scanner.jobs.JOBS[job].run` on one task per call.

    Its CPU threads are set to the CPUs Ray gave it: two workers each spinning OpenMP threads
    over the host's cores ran 6-17x slower here (../shared/FINDINGS.md). With `num_gpus` > 0
    Ray sets CUDA_VISIBLE_DEVICES, and the job runs on that device; fractional GPUs share it.
    """

    def __init__(self, *, threads: int, cache_dir: str, s3: Any) -> None:
        import diffusers  # noqa: F401 - warm imports here, so a task's timeout measures the task
        import torch

        import scanner.jobs  # noqa: F401
        import scanner.scan  # noqa: F401

        torch.set_num_threads(threads)
        self.cache_dir, self.s3 = cache_dir, s3
        self.device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        self.node = ray.get_runtime_context().get_node_id()

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "node": self.node, "device": self.device}

    def run(self, job: str, task: Any) -> dict[str, Any]:
        from scanner.jobs import JOBS

        row = JOBS[job].run(task, cache_dir=self.cache_dir, s3=self.s3, device=self.device)
        return {**row, "node": self.node}
