"""A node's launcher keeps nspawn's exit status and, on a reboot (133), becomes its rebooter,
which counts reboots, cuts a loop and acts only while it is still the node's launcher.

The launcher is run for real (a shell) around a command that exits as nspawn does; the node
itself is the integration tests' (tests/integration/test_node_reboot.py)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.plan import plan_lab
from labctl.providers import reboots
from labctl.state import LabState, NodeState
from labctl.topology import load_topology

SMALL = Path(__file__).resolve().parents[2] / "tests" / "data" / "labs" / "small.yml"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    yield tmp_path


def launch(directory: Path, lab_id: str, status: int) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    argv = reboots.launcher_argv(lab_id, "h1", directory, ["/bin/sh", "-c", f"exit {status}"])
    return subprocess.run(argv, timeout=60).returncode


def test_a_power_off_is_recorded_and_the_launcher_ends(tmp_path: Path) -> None:
    node = tmp_path / "node"
    assert launch(node, "nolab", 0) == 0
    assert reboots.exit_status(node) == 0
    assert reboots.stopped_state(node, launcher_alive=False) == "stopped (powered off)"
    assert not (node / reboots.LOG_FILE).exists()  # no rebooter ran
    assert launch(node, "nolab", 1) == 1  # killed, failed: stopped, no reason given
    assert reboots.stopped_state(node, launcher_alive=False) == "stopped"


def test_a_reboot_hands_over_to_the_rebooter(tmp_path: Path) -> None:
    node = tmp_path / "node"
    assert launch(node, "nolab", reboots.REBOOT) == 0  # the rebooter: no such lab, nothing to do
    assert reboots.exit_status(node) == reboots.REBOOT
    assert (node / reboots.LOG_FILE).exists()
    assert reboots.stopped_state(node, launcher_alive=True) == "rebooting"
    reboots.clear_exit(node)  # a new start
    assert reboots.exit_status(node) is None
    assert reboots.stopped_state(node, launcher_alive=True) == "stopping"


def _lab() -> LabState:
    lab = LabState(id="rbt001", name="small", provider="local", status="running",
                   plan=plan_lab(load_topology(SMALL), "rbt001", "small"))
    for node in lab.plan.nodes:
        lab.nodes[node.name] = NodeState(host_key="ssh-ed25519 AAAA")
        lab.node_dir(node.name).mkdir(parents=True)
    lab.save()
    return lab


def test_a_reboot_loop_is_left_stopped() -> None:
    lab = _lab()
    node = lab.node_dir("h1")
    now = time.time()
    (node / reboots.COUNT_FILE).write_text(json.dumps([now - i for i in range(reboots.REBOOT_BURST)]))
    assert reboots.main(lab.id, "h1") == 0
    assert reboots.stopped_state(node, launcher_alive=False) == "stopped (reboot loop)"
    assert (node / reboots.LOOP_FILE).read_text().startswith(f"{reboots.REBOOT_BURST + 1} reboots within")


def test_old_reboots_do_not_count_and_a_rebooter_that_is_not_the_launcher_does_nothing() -> None:
    lab = _lab()
    node = lab.node_dir("h1")
    long_ago = time.time() - reboots.REBOOT_WINDOW - 10
    (node / reboots.COUNT_FILE).write_text(json.dumps([long_ago] * 10))
    # This process is not h1's recorded launcher (none is): it takes the lock, sees that, and stops.
    assert reboots.main(lab.id, "h1") == 0
    assert not (node / reboots.LOOP_FILE).exists()
    assert len(json.loads((node / reboots.COUNT_FILE).read_text())) == 1  # only this reboot
    reboots.forget(node)
    assert not (node / reboots.COUNT_FILE).exists()
