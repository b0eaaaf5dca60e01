"""Per-node limits hold: one node fork-bombs (bounded), fills its memory, its shared memory and
its disk while a neighbour lab is graded; the storming node suffers alone (its cgroup and disk
stop it), the neighbour's grading and SSH stay normal. Latencies are printed side by side with
a quiet run (pytest -s); the assertions are on outcomes only."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from labctl import cgroups
from labctl import lab as labs
from labctl.connect import open_session
from labctl.grading.loader import load_grading_spec
from labctl.providers import get_provider
from labctl.state import LabState
from labctl.topology import load_topology

from .conftest import SMALL, SMALL_SPEC, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
PIDS, MEMORY_MB, DISK_MB = 96, 192, 128
STORM = (
    # disk, then shared memory, then a memory hog, then a bounded fork loop that stays (sleeps)
    "dd if=/dev/zero of=/root/fill bs=1M count=400 2>/tmp/dd.err; echo $? > /tmp/dd.rc; "
    "head -c 400M /dev/zero > /dev/shm/fill 2>/tmp/shm.err; echo $? > /tmp/shm.rc; "
    "tail /dev/zero; echo $? > /tmp/hog.rc; "
    "i=0; while [ $i -lt 1500 ]; do sleep 90 & i=$((i+1)); done 2>/tmp/bomb.err; echo done > /tmp/bomb.rc"
)


def _group_file(lab: LabState, node: str, *names: str) -> int | None:
    """The first of `names` found in the node's groups, as a number."""
    for directory in cgroups.layout().dirs(cgroups.node_group(lab.id, node)):
        for name in names:
            if (directory / name).exists():
                return int((directory / name).read_text().split()[0])
    return None


def _ssh_latency(lab: LabState, node: str) -> float:
    started = time.monotonic()
    session = open_session(get_provider("local").access(lab, node))
    try:
        assert session.run("true", 10).exit_code == 0
    finally:
        session.close()
    return time.monotonic() - started


def _grade(lab: LabState) -> tuple[float, set[str]]:
    spec = load_grading_spec(SMALL_SPEC, load_topology(SMALL))
    started = time.monotonic()
    report = labs.grade(lab, spec)
    return time.monotonic() - started, {r.outcome.value for r in report.results}


def test_a_storming_node_suffers_alone(make_lab: object, tmp_path: Path) -> None:
    topology = tmp_path / "storm.yml"
    topology.write_text(SMALL.read_text().replace(
        "  h1:\n    kind: host\n",
        f"  h1:\n    kind: host\n    limits: {{pids: {PIDS}, memory: {MEMORY_MB}M, disk: {DISK_MB}M}}\n"))
    stormy = make_lab(topology, name="limits-storm")  # type: ignore[operator]
    neighbour = make_lab(SMALL, name="limits-neighbour")  # type: ignore[operator]

    quiet_grade, quiet_outcomes = _grade(neighbour)
    quiet_ssh = _ssh_latency(neighbour, "h1")
    assert quiet_outcomes == {"PASS"}

    session = open_session(get_provider("local").access(stormy, "h1"))
    try:
        session.run(f"nohup sh -c '{STORM}' >/dev/null 2>&1 &", 10)
    finally:
        session.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (_group_file(stormy, "h1", "pids.current") or 0) < PIDS - 2:
        time.sleep(0.5)
    pids_now = _group_file(stormy, "h1", "pids.current")

    storm_grade, storm_outcomes = _grade(neighbour)
    storm_ssh = _ssh_latency(neighbour, "h1")
    print(f"\nneighbour grading: quiet {quiet_grade:.2f} s, during the storm {storm_grade:.2f} s; "
          f"SSH login+command: quiet {quiet_ssh:.2f} s, during the storm {storm_ssh:.2f} s; "
          f"storming node: {pids_now} processes (limit {PIDS})")
    assert storm_outcomes == {"PASS"}  # the neighbour is graded as before

    # The storming node hit each of its limits, and no more.
    assert pids_now is not None and PIDS - 2 <= pids_now <= PIDS
    peak = _group_file(stormy, "h1", "memory.max_usage_in_bytes", "memory.peak")
    assert peak is not None and peak <= MEMORY_MB << 20
    root = Path(f"/proc/{stormy.nodes['h1'].init.pid}/root")  # type: ignore[union-attr]
    assert (root / "tmp/dd.rc").read_text().strip() != "0"  # dd: No space left on device
    assert "No space left" in (root / "tmp/dd.err").read_text()
    assert (root / "tmp/shm.rc").read_text().strip() != "0"  # /dev/shm is a quarter of the memory
    assert (root / "tmp/hog.rc").read_text().strip() == "137"  # the memory hog was killed (OOM)
    disk = stormy.node_dir("h1") / "layer.img"
    assert os.stat(disk).st_blocks * 512 <= (DISK_MB + 8) << 20  # the machine's disk: the node's size at most

    # Its own lab's other nodes are untouched.
    assert _ssh_latency(stormy, "r1") < 30
