"""The labctl command as a user runs it: exit codes, messages, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labctl.state import all_labs

from .conftest import DATA, SMALL, kernel_objects, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
LABCTL = [sys.executable, "-m", "labctl"]


def labctl(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, check=check,
                          env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])})


def _lab_ids(name: str | None = None) -> set[str]:
    """Ids of the labs on this machine; with `name`, only the labs of that name or its numbered
    copies (other work on the machine may start or end labs meanwhile)."""
    return {lab.id for lab in all_labs() if name is None or lab.name == name or lab.name.startswith(f"{name}-")}


def test_up_status_exec_grade_down_through_the_cli() -> None:
    before = _lab_ids("cli-walk")
    up = labctl("up", str(SMALL), "--name", "cli-walk")
    assert up.returncode == 0, up.stderr
    try:
        status = json.loads(labctl("status", "--lab", "cli-walk", "--json", check=True).stdout)
        assert {row["node"]: row["state"] for row in status} == {"r1": "running", "h1": "running", "h2": "running"}
        routes = labctl("exec", "--lab", "cli-walk", "h1", "--", "ip", "route")
        assert routes.returncode == 0 and "default via 10.10.0.1" in routes.stdout
        failing = labctl("exec", "--lab", "cli-walk", "h1", "--", "false")
        assert failing.returncode == 1
        grade = labctl("grade", "--lab", "cli-walk", "--spec", str(DATA / "labs" / "small-grading.yml"), "--json")
        results = json.loads(grade.stdout)["results"]
        assert [(r["id"], r["outcome"], r["evidence"]) for r in results if r["outcome"] != "PASS"] == []
        assert grade.returncode == 0, grade.stderr
        # practising: the hint of a check that does not pass, only when asked
        labctl("exec", "--lab", "cli-walk", "h1", "--", "rm", "/etc/hostname", check=True)
        spec = str(DATA / "labs" / "small-grading.yml")
        hinted = labctl("grade", "--lab", "cli-walk", "--spec", spec, "--hints", "--lang", "en")
        assert hinted.returncode == 1, hinted.stderr
        assert "h1-hostname-file" in hinted.stdout and "? Hint: The host's name is in /etc/hostname." in hinted.stdout
        assert "Hint" not in labctl("grade", "--lab", "cli-walk", "--spec", spec).stdout
    finally:
        down = labctl("down", "--lab", "cli-walk")
    assert down.returncode == 0, down.stderr
    assert _lab_ids("cli-walk") == before


def test_bad_topology_exits_2_lists_every_problem_and_builds_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\nnodes:\n  r1: {kind: router, rotes: []}\n  h1: {kind: host}\n"
                   "links:\n  - endpoints: [r1:eth1, h9:eth1]\n")
    before = _lab_ids("bad")
    result = labctl("up", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: unknown key 'rotes'" in result.stderr and "did you mean 'routes'" in result.stderr
    assert f"{bad}:6:" in result.stderr and "h9" in result.stderr
    assert "Traceback" not in result.stderr
    assert _lab_ids("bad") == before


def test_not_root_says_so_and_why() -> None:
    # Load the modules first (the interpreter may live where nobody cannot read), then
    # become nobody for real and run the command.
    # The topology where nobody can read it, and where it cannot: the repository may lie under
    # a folder only root enters (/root on a fresh machine, pytest's own tmp_path); that says so
    # too, without a traceback.
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        readable, hidden = Path(scratch) / "readable", Path(scratch) / "hidden"
        Path(scratch).chmod(0o755)
        readable.mkdir(mode=0o755)
        hidden.mkdir(mode=0o700)
        for folder in (readable, hidden):
            shutil.copy(SMALL, folder / SMALL.name)
        code = ("import os, sys, labctl.cli, labctl.lab, labctl.providers.local, labctl.topology.loader, "
                "labctl.grading.loader; os.setgroups([]); os.setgid(65534); os.setuid(65534); "
                "labctl.cli.main(['up', sys.argv[1]])")
        env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])}
        result = subprocess.run([sys.executable, "-c", code, str(readable / SMALL.name)], capture_output=True,
                                text=True, cwd=readable, env=env)
        assert result.returncode == 4, result.stderr
        assert "needs root" in result.stderr and "Traceback" not in result.stderr

        result = subprocess.run([sys.executable, "-c", code, str(hidden / SMALL.name)], capture_output=True,
                                text=True, cwd=readable, env=env)
        assert result.returncode == 2, result.stderr
        assert "cannot read: Permission denied" in result.stderr and "Traceback" not in result.stderr


def test_failed_setup_removes_the_lab_and_names_host_and_task() -> None:
    before = _lab_ids("broken-setup")
    result = labctl("up", str(DATA / "scenarios" / "broken-setup"))
    assert result.returncode == 7, result.stderr
    assert "h2: task 'Fail on h2 only'" in result.stderr
    assert _lab_ids("broken-setup") == before
    known = _lab_ids()  # every lab namespace left must belong to a lab on record: none orphaned
    assert not [n for n in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split()
                if n.startswith("lc-") and n.split("-")[1] not in known]


def test_down_cleans_up_after_a_killed_up() -> None:
    before = _lab_ids("killed")
    proc = subprocess.Popen([*LABCTL, "up", str(SMALL), "--name", "killed"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    new: set[str] = set()
    while time.monotonic() < deadline and not new:
        new = _lab_ids("killed") - before
        time.sleep(0.01)
    # Let it get some nodes started, then kill it without any chance to clean up.
    time.sleep(0.15)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert new, "up did not record the lab before building it"
    (lab_id,) = new
    down = labctl("down", "--lab", "killed")
    assert down.returncode == 0, down.stderr
    assert kernel_objects(lab_id, "killed") == {"netns": [], "links": [], "mounts": [], "processes": []}
    assert labctl("down", "--lab", "killed").returncode == 3  # gone: a clear "no lab" error


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = ("import sys, time; t = time.monotonic(); from labctl.cli import cli; "
            "heavy = [m for m in ('paramiko', 'ansible_runner', 'netmiko', 'pydantic') if m in sys.modules]; "
            "print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_scenario_verify_builds_its_labs_under_the_name_given(make_lab: object) -> None:
    taken = make_lab(SMALL, name="trainer-verify-taken")  # type: ignore[operator]
    before = _lab_ids()
    result = labctl("scenario", "verify", str(DATA / "scenarios" / "variants"), "--name", taken.name)
    assert result.returncode == 2, result.stderr  # the name given is the name used: refused, nothing built
    assert f"a lab named {taken.name} exists" in result.stderr
    assert _lab_ids() == before
