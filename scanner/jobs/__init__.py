"""Job kinds the batch engine runs, one module each: `run(task, ...)` -> row, `failure_row`, `SCHEMA`.

Pure library: ray_jobs/ decides where they run; benchmarks/throughput.py runs them in-process.
"""

from types import ModuleType

from scanner.jobs import compress, repair, scan

JOBS: dict[str, ModuleType] = {"scan": scan, "repair": repair, "compress": compress}

__all__ = ["JOBS", "compress", "repair", "scan"]
