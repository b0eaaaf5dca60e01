"""A `reboot` typed inside a local node brings it back as a machine comes back; `poweroff`
leaves it stopped until `labctl restart`; a node rebooting in a loop is left stopped; a grade
that meets a node mid-reboot does not judge it; `down` leaves nothing behind.

The candidate's commands go through `labctl exec` (root in the node, as over SSH); nothing of
the test acts on the node from the host but `labctl`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl import locks
from labctl.grading.spec import GradingSpec
from labctl.providers import get_provider, reboots
from labctl.session import room
from labctl.state import LabState, ProcessRef, load_lab

from .conftest import DATA, lab_of, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

TOPOLOGY = DATA / "labs" / "two-inits.yml"  # h1 on systemd, h2 on the light init, one link
WAIT = 120.0  # a node's reboot takes 1-5 s here; a bound, never a timing assertion


def labctl(lab: LabState, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", *args[:1], "--lab", lab.name, *args[1:]],
                          capture_output=True, text=True, timeout=120)


def inside(lab: LabState, node: str, command: str) -> str:
    """`command` as the node's root, through `labctl exec`; its output (it must succeed)."""
    result = labctl(lab, "exec", node, "--", "sh", "-c", command)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout.strip()


def state_of(lab: LabState, node: str) -> tuple[str, ProcessRef | None]:
    current = load_lab(lab.id)
    return get_provider("local").node_states(current)[node], current.nodes[node].init


def wait_until(lab: LabState, node: str, done: Callable[[str, ProcessRef | None], bool]) -> str:
    """The node's state once `done` holds and no command (nor a reboot) holds the lab."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        state, init = state_of(lab, node)
        if done(state, init) and locks.busy(lab.directory) is None:
            return state
        time.sleep(0.2)
    raise AssertionError(f"{node} still {state_of(lab, node)[0]} after {WAIT:.0f} s")


def reboot(lab: LabState, node: str, command: str = "systemctl reboot") -> str:
    """The candidate reboots `node`; its state once it is back (or left stopped)."""
    before = state_of(lab, node)[1]
    labctl(lab, "exec", node, "--timeout", "20", "--", "sh", "-c", command)  # its session ends with the node
    return wait_until(lab, node, lambda state, init: state.startswith("stopped") or
                      (state == "running" and init != before))


def spec(node: str) -> GradingSpec:
    checks = [{"id": f"{node}-note", "criterion": "A1.2-c1", "node": node, "type": "file", "path": "/root/note",
               "contains": "^kept$", "description": {"fr": "note gardée", "en": "note kept"}},
              {"id": f"{node}-reach", "criterion": "A2.3-c1", "node": node, "type": "reach", "wait": 5,
               "target": "10.30.0.2" if node == "h1" else "10.30.0.1",
               "description": {"fr": "joint l'autre", "en": "reaches the other"}}]
    return GradingSpec.model_validate({"scenario": "reboot-inside", "checks": checks})


def outcomes(lab: LabState, node: str) -> list[str]:
    return [result.outcome.value for result in labs.grade(load_lab(lab.id), spec(node)).results]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabState]:
    yield from lab_of(tmp_path, TOPOLOGY.read_text(), "reboot-inside")  # and then down leaves nothing behind


def test_a_reboot_inside_brings_the_node_back_and_poweroff_leaves_it_off(lab: LabState) -> None:
    # labctl's own reboot and poweroff on the light node are no candidate's change to its system
    assert labs.grade(load_lab(lab.id), spec("h2")).tampering == []
    for node, command in (("h1", "systemctl reboot"), ("h2", "reboot")):  # systemd; light init
        boot_id = inside(lab, node, "echo kept > /root/note; cat /proc/sys/kernel/random/boot_id")
        assert reboot(lab, node, command) == "running"
        assert inside(lab, node, "cat /proc/sys/kernel/random/boot_id") != boot_id  # it booted again
        assert inside(lab, node, "cat /root/note") == "kept"  # its disk
        assert inside(lab, node, "cat /etc/hostname") == node  # its identity
        assert "10.30.0." in inside(lab, node, "ip -4 -o addr show dev eth1")  # the plan's address
        assert outcomes(lab, node) == ["PASS", "PASS"]
    assert "booting it again" in (lab.node_dir("h1") / reboots.LOG_FILE).read_text()

    # A grade that meets a node mid-reboot: the rebooter waits for the grade (it holds the lab's
    # lock shared, as `labctl grade` does), and the grade judges nothing of the stopped node.
    with locks.lab(lab.directory, lab.name, "grade", shared=True):
        labctl(lab, "exec", "h1", "--timeout", "20", "--", "systemctl", "reboot")
        deadline = time.monotonic() + WAIT
        while state_of(lab, "h1")[0] != "rebooting" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state_of(lab, "h1")[0] == "rebooting"
        assert room.lab_health(load_lab(lab.id))[0] == "rebooting: h1"  # what a proctor sees
        assert outcomes(lab, "h1") == ["ERROR", "ERROR"]
    assert wait_until(lab, "h1", lambda state, _: state == "running") == "running"
    assert outcomes(lab, "h1") == ["PASS", "PASS"]

    # poweroff: stopped, status says so and how to start it again; restart brings it back.
    assert reboot(lab, "h1", "poweroff") == "stopped (powered off)"
    shown = labctl(lab, "status").stdout
    assert "stopped (powered off)" in shown and "labctl restart h1" in shown
    assert room.lab_health(load_lab(lab.id))[0] == "crashed: h1 (stopped (powered off))"
    assert outcomes(lab, "h1") == ["ERROR", "ERROR"]
    restarted = labctl(lab, "restart", "h1")
    assert restarted.returncode == 0, restarted.stderr
    assert state_of(lab, "h1")[0] == "running"
    assert outcomes(lab, "h1") == ["PASS", "PASS"]


def test_a_reboot_loop_is_cut_off_and_down_leaves_nothing(lab: LabState) -> None:
    # On the light node, whose reboots are the quickest (the cut counts reboots within
    # REBOOT_WINDOW: a slow machine must still fit six in it); the rebooter is the same for both.
    states = [reboot(lab, "h2", "reboot") for _ in range(reboots.REBOOT_BURST + 1)]
    assert states == ["running"] * reboots.REBOOT_BURST + ["stopped (reboot loop)"]
    assert "labctl restart h2" in labctl(lab, "status").stdout
    assert not ProcessRef.alive(load_lab(lab.id).nodes["h2"].launcher)  # type: ignore[arg-type]
    # The systemd node reboots meanwhile; `down` (the fixture) then removes every process,
    # namespace, mount and cgroup, its rebooter's included.
    labctl(lab, "exec", "h1", "--", "systemctl", "reboot")
