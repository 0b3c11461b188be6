"""zoo-audit's pure library: loading, attacks, samplers, detection, repair, SPP.

Nothing in this package imports Ray; `ray_jobs` schedules it.
"""

__version__ = "0.1.0"
