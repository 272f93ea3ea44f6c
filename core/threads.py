"""How many CPU threads hcm's torch work uses, and how those threads wait.

On a shared machine (a cluster node, a container with a CPU quota, a laptop running other
work) the host's core count overstates what this process may use:

- ``os.sched_getaffinity`` gives the CPUs the scheduler lets this process run on (taskset,
  SLURM's cgroup cpuset, ``docker --cpuset-cpus``);
- a cgroup CPU quota (``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
  in v1; ``docker --cpus``, Kubernetes CPU limits) caps the CPU time per period; more threads
  than the quota only queue up.

:func:`usable_cpus` is the smaller of the two; torch's intra-op pool gets that many threads
unless ``--threads`` says otherwise. :func:`passive_waits` sets ``OMP_WAIT_POLICY=PASSIVE``
(unless the user set it): OpenMP threads then sleep when they run out of work instead of
spinning, which costs nothing on an idle machine and stops hcm from burning the CPU time other
processes are waiting for. It must run before torch loads its OpenMP runtime, so the command
line calls it when it starts.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from hcm.core.errors import UsageError

log = logging.getLogger(__name__)
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = Path("/sys/fs/cgroup/cpu")


def passive_waits() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless already set (call before torch is imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cgroup_cpu_limit(v2: Path = CGROUP_V2, v1: Path = CGROUP_V1) -> float | None:
    """CPUs' worth of time the cgroup quota allows (e.g. 1.5), or None without a quota."""
    try:
        quota, period = v2.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota, period = (int((v1 / name).read_text()) for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity set, capped by the cgroup quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)


def set_threads(threads: int | None = None) -> int:
    """Give torch's intra-op pool ``threads`` threads (default :func:`usable_cpus`); returns the count."""
    import torch

    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    count = threads or usable_cpus()
    torch.set_num_threads(count)
    log.debug("torch uses %d intra-op threads (OMP_WAIT_POLICY=%s)", count, os.environ.get("OMP_WAIT_POLICY"))
    return count
