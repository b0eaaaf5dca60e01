"""One command at a time per lab: concurrent commands wait or refuse (exit 12), never corrupt;
`up --name X` refuses an existing X unless --replace; concurrent `exec` all pass host key checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labctl import locks
from labctl.state import all_labs, find_lab

from .conftest import SMALL, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
LABCTL = [sys.executable, "-m", "labctl"]


def labctl(*args: str, wait: float | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])}
    if wait is not None:
        env["LABCTL_LOCK_WAIT"] = str(wait)
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def named_lab() -> object:
    """A small lab built through the CLI, named for this test; removed afterwards."""
    names: list[str] = []

    def build(name: str) -> str:
        result = labctl("up", str(SMALL), "--name", name)
        assert result.returncode == 0, result.stderr
        names.append(name)
        return name

    yield build
    for lab in all_labs():
        if any(lab.name == n or lab.name.startswith(f"{n}-") for n in names):
            labctl("down", "--lab", lab.id)


def _states(name: str) -> tuple[str, set[str]]:
    rows = json.loads(labctl("status", "--lab", name, "--json").stdout)
    return rows[0]["lab_status"], {row["state"] for row in rows}


def test_concurrent_resets_take_turns_and_leave_the_lab_running(named_lab: object) -> None:
    name = named_lab("locks-reset")  # type: ignore[operator]
    assert labctl("snapshot", "--lab", name).returncode == 0
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: labctl("reset", "--lab", name, wait=60), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert _states(name) == ("running", {"running"})


def test_a_held_lab_refuses_with_exit_12_naming_the_holder(named_lab: object) -> None:
    name = named_lab("locks-busy")  # type: ignore[operator]
    lab = find_lab(name)
    with locks.lab(lab.directory, lab.name, "reset"):
        refused = labctl("reset", "--lab", name, wait=0.5)
        status = json.loads(labctl("status", "--lab", name, "--json").stdout)
        removed = labctl("down", "--lab", name, wait=0.2)
    assert refused.returncode == 12, refused.stderr
    assert f"lab {name} ({lab.id}) is busy: `labctl reset` (process {os.getpid()}) holds it" in refused.stderr
    assert status[0]["lab_status"].startswith("running (`labctl reset`")
    assert removed.returncode == 12
    assert _states(name) == ("running", {"running"})  # the refused commands changed nothing


def test_up_with_a_taken_name_refuses_unless_replace() -> None:
    name = "locks-name"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: labctl("up", str(SMALL), "--name", name, wait=60), range(2)))
    try:
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 2], [r.stderr for r in results]
        refused = next(r for r in results if r.returncode == 2)
        assert f"a lab named {name} exists" in refused.stderr and "--replace" in refused.stderr
        assert [lab.name for lab in all_labs() if lab.name.startswith(name)] == [name]  # no locks-name-2
        first = find_lab(name).id
        replaced = labctl("up", str(SMALL), "--name", name, "--replace")
        assert replaced.returncode == 0, replaced.stderr
        assert [lab.id for lab in all_labs() if lab.name.startswith(name)] != [first]
        assert len([lab for lab in all_labs() if lab.name.startswith(name)]) == 1
    finally:
        for lab in all_labs():
            if lab.name.startswith(name):
                labctl("down", "--lab", lab.id)


def test_concurrent_exec_never_fails_host_key_verification(named_lab: object) -> None:
    name = named_lab("locks-exec")  # type: ignore[operator]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: labctl("exec", "--lab", name, ["h1", "h2", "r1"][i % 3], "--",
                                                  "true"), range(24)))
    failures = [r.stderr for r in results if r.returncode != 0]
    assert failures == []


def test_status_tells_a_lab_with_a_stopped_node_from_a_running_one(named_lab: object) -> None:
    name = named_lab("locks-truth")  # type: ignore[operator]
    assert _states(name) == ("running", {"running"})
    init = find_lab(name).nodes["h1"].init
    assert init is not None
    os.kill(init.pid, signal.SIGKILL)  # the node's PID 1: the whole node stops
    deadline = time.monotonic() + 10
    while init.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    status, states = _states(name)
    assert status == "degraded (2 of 3 nodes running)" and states == {"running", "stopped"}
