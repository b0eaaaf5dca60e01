"""CPU accounting for benchmarks: every process a run starts, nodes' included.

Labs are CPU-bound on small machines, and wall time depends on whatever else runs: CPU
seconds, read from a cgroup holding the benchmark and all it starts, say how many labs a
machine of N idle cores handles.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CGROUP_V1 = Path("/sys/fs/cgroup/cpuacct")
CGROUP_V2 = Path("/sys/fs/cgroup")


@contextmanager
def cpu_accounting() -> Iterator[Callable[[], float]]:
    """Put this process (and so everything it starts) in a fresh cgroup; yields a CPU-seconds reader."""
    v1 = (CGROUP_V1 / "cpuacct.usage").exists()
    group = (CGROUP_V1 if v1 else CGROUP_V2) / f"labctl-bench-{os.getpid()}"
    parent = group.parent
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(os.getpid()))

        def used() -> float:
            if v1:
                return int((group / "cpuacct.usage").read_text()) / 1e9
            usage = next(line for line in (group / "cpu.stat").read_text().splitlines()
                         if line.startswith("usage_usec"))
            return int(usage.split()[1]) / 1e6

        yield used
    finally:
        (parent / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(50):  # the last processes of a run may take a moment to leave
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def measure(work: Callable[[], T], cpu: Callable[[], float]) -> tuple[float, float, T]:
    """Wall and CPU seconds of one call, and what it returned."""
    wall, used = time.monotonic(), cpu()
    result = work()
    return time.monotonic() - wall, cpu() - used, result
