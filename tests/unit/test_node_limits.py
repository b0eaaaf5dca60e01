"""Per-node limits: the topology's `limits:` (defaults, sizes, clear errors) and how they
reach the node (cgroup values, tmpfs sizes, the argv that places a process in a group)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labctl import cgroups
from labctl.errors import InvalidInputError
from labctl.plan import plan_lab
from labctl.providers.local import _tmpfs_options
from labctl.topology import load_topology
from labctl.topology.model import Limits, parse_size

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yml"
    path.write_text(text)
    return path


def test_defaults_reach_every_node_of_the_plan() -> None:
    plan = plan_lab(load_topology(ROOT / "tests" / "data" / "labs" / "small.yml"), "abc123", "small")
    for node in plan.nodes:
        assert node.limits == Limits(pids=1024, memory=1 << 30, cpu_weight=100, disk=2 << 30)


@pytest.mark.parametrize(("text", "size"), [("512M", 512 << 20), ("2G", 2 << 30), ("2GiB", 2 << 30),
                                            ("64MB", 64 << 20), (1 << 30, 1 << 30), (" 1 t ", 1 << 40)])
def test_sizes_read_as_powers_of_1024(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_a_node_overrides_its_limits(tmp_path: Path) -> None:
    topology = load_topology(_write(tmp_path, "name: t\nnodes:\n  a:\n    kind: host\n"
                                    "    limits: {pids: 64, memory: 256M, cpu_weight: 50, disk: 128M}\n"))
    assert topology.nodes["a"].limits == Limits(pids=64, memory=256 << 20, cpu_weight=50, disk=128 << 20)


def test_bad_limits_are_each_named_with_their_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nnodes:\n  a:\n    kind: host\n    limits:\n      pids: 8\n"
                  "      memory: 12X\n  b:\n    kind: host\n    limits: {cpu_weight: true, disk: 99T, colour: red}\n"
                  "  s: {kind: switch, limits: {pids: 100}}\n")
    with pytest.raises(InvalidInputError) as caught:
        load_topology(path)
    text = caught.value.render()
    assert f"{path}:6: nodes.a.limits.pids: Input should be greater than or equal to 32" in text
    assert f"{path}:7: nodes.a.limits.memory: '12X' is not a size" in text
    assert "nodes.b.limits.cpu_weight: must be a whole number" in text
    assert "nodes.b.limits.disk: 108851651149824 bytes is out of range" in text
    assert "unknown key 'colour'" in text
    assert "a switch has no limits" in text


def test_tmpfs_sizes_follow_the_memory_limit() -> None:
    assert _tmpfs_options(1 << 30) == ["--tmpfs=/tmp:mode=1777,size=262144k",
                                       "--tmpfs=/dev/shm:mode=1777,size=262144k"]


def test_enter_argv_places_the_process_before_it_runs(tmp_path: Path) -> None:
    """The prefix writes the shell's own PID into every tree's group, then execs the command
    (same PID); a missing group stops it with exit 125 before the command runs."""
    layout = cgroups.Layout(unified=tmp_path, v1={})
    group = tmp_path / "labctl" / "lab" / "n"
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("")
    proc = subprocess.run(cgroups.enter_argv("labctl/lab/n", ["sh", "-c", "echo $$"], layout),
                          capture_output=True, text=True, check=True)
    assert (group / "cgroup.procs").read_text().strip() == proc.stdout.strip()
    gone = subprocess.run(cgroups.enter_argv("labctl/lab/gone", ["echo", "ran"], layout),
                          capture_output=True, text=True)
    assert gone.returncode == 125 and "ran" not in gone.stdout and "cannot join" in gone.stderr


def test_entries_join_a_leaf_below_the_node_group_on_v2(tmp_path: Path) -> None:
    """On a unified (v2) machine systemd-nspawn moves itself and the container into subgroups
    of the node's group and enables controllers there; from then on the node's group may hold
    no process (EBUSY), so whatever enters the node joins the empty leaf `enter` made with the
    group, and the node's group keeps no controller of labctl's until nspawn runs in it."""
    unified = tmp_path / "v2"
    (unified / "labctl").mkdir(parents=True)
    (unified / "cgroup.controllers").write_text("cpu io memory pids\n")
    v2 = cgroups.Layout(unified=unified, v1={})
    group = cgroups.node_group("lab1", "r1")
    node = unified / group
    node.parent.mkdir(parents=True)
    (unified / "labctl/cgroup.subtree_control").write_text("")
    (node.parent / "cgroup.subtree_control").write_text("")
    cgroups.create(group, cgroups.Limits(), v2, entry_leaf=True)
    assert (node / "enter").is_dir()
    assert not (node / "cgroup.subtree_control").exists()  # nothing enabled in the node's group
    assert cgroups.node_entry_group("lab1", "r1", v2) == f"{group}/enter"
    # v1 has no such rule: entries join the node's group itself, as the node's processes do
    v1 = cgroups.Layout(unified=None, v1={"memory": tmp_path / "memory"})
    assert cgroups.node_entry_group("lab1", "r1", v1) == group


def test_a_booting_node_is_told_from_a_stuck_one_by_its_cpu_time() -> None:
    """The readiness wait goes past 30 s only for a node whose processes still use CPU (systemd
    booting under emulation): a busy process's ticks grow, a sleeping one's do not, and the time
    of a child its parent has waited for still counts."""
    import sys
    import time

    from labctl.providers.local import _cpu_ticks

    sleeper = subprocess.Popen(["sleep", "30"])
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    # a parent that runs a busy child to its end, waits for it, then sleeps
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "subprocess.run([sys.executable, '-c', 'import time\\nt=time.time()\\n"
                               "while time.time()-t<0.5: pass'])\n"
                               "time.sleep(30)"])
    try:
        before = {p.pid: _cpu_ticks([p.pid]) for p in (sleeper, busy)}
        time.sleep(1.0)
        assert _cpu_ticks([busy.pid]) > before[busy.pid]
        assert _cpu_ticks([sleeper.pid]) == before[sleeper.pid]
        assert _cpu_ticks([parent.pid]) > 0  # the reaped child's busy half second
        assert _cpu_ticks([2**22 + 12345]) == 0  # no such process: nothing, no error
    finally:
        for proc in (sleeper, busy, parent):
            proc.kill()
            proc.wait()
