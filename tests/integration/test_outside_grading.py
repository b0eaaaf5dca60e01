"""Grading observed from outside the node (local provider): what a root candidate plants in a
node does not make a check PASS, and does not make the controller read or follow anything
outside that node."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.results import Outcome
from labctl.topology import load_topology

from .conftest import SMALL, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


def _check(check_id: str, node: str, kind: str, **keys: object) -> str:
    lines = [f"  - id: {check_id}", "    criterion: A2.1-c1",
             f"    description: {{fr: {check_id}, en: {check_id}}}", f"    node: {node}", f"    type: {kind}"]
    lines += [f"    {key}: {value!r}" if isinstance(value, str) else f"    {key}: {str(value).lower()}"
              for key, value in keys.items()]
    return "\n".join(lines)


def _inside(lab: object, node: str, command: str) -> None:
    """Run a command as the node's root (as the candidate would), with a clean shell."""
    view = LabView(lab)
    try:
        session = OutsideSession(view, node, lambda: None)  # type: ignore[arg-type,return-value]
        result = session.run(command, 20)
    finally:
        view.close()
    assert result.exit_code == 0, (command, result)


HOSTILE = {
    # path -> (check keys, outcomes accepted)
    "loop": ("/etc/loop-a", {"contains": "x"}, {"ERROR"}),
    "fifo": ("/etc/planted-fifo", {"contains": "x"}, {"FAIL", "ERROR"}),
    "device": ("/dev/zero", {"contains": "x"}, {"FAIL", "ERROR"}),
    "random": ("/dev/urandom", {"sha256": "0" * 64}, {"FAIL", "ERROR"}),
    "sparse-content": ("/var/tmp/ten-gigabytes", {"contains": "never there"}, {"FAIL"}),
    "sparse-sha": ("/var/tmp/ten-gigabytes", {"sha256": "0" * 64}, {"FAIL", "ERROR"}),
    "escape-absolute": ("/root/escape-absolute", {"contains": "HOST-SECRET"}, {"FAIL"}),
    "escape-dotdot": ("/root/escape-dotdot", {"contains": "HOST-SECRET"}, {"FAIL"}),
    "escape-proc": ("/root/escape-proc", {"contains": "HOST-SECRET"}, {"FAIL", "ERROR"}),
}


def test_planted_files_are_read_bounded_and_never_outside_the_node(make_lab: object, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET\n")
    lab = make_lab()  # type: ignore[operator]
    _inside(lab, "h1", " && ".join([
        "ln -s /etc/loop-b /etc/loop-a", "ln -s /etc/loop-a /etc/loop-b", "mkfifo /etc/planted-fifo",
        "truncate -s 10G /var/tmp/ten-gigabytes",
        f"ln -s {secret} /root/escape-absolute",
        f"ln -s ../../../../../../..{secret} /root/escape-dotdot",
        f"ln -s /proc/1/root{secret} /root/escape-proc",
    ]))
    spec_file = tmp_path / "hostile.yml"
    spec_file.write_text("scenario: small\nchecks:\n" + "\n".join(
        _check(f"file-{name}", "h1", "file", path=path, timeout=10, **keys)
        for name, (path, keys, _) in HOSTILE.items()) + "\n")
    spec = load_grading_spec(spec_file, load_topology(SMALL))
    started = time.monotonic()
    report = labs.grade(lab, spec)
    took = time.monotonic() - started
    got = {r.check_id: r for r in report.results}
    for name, (_, _, accepted) in HOSTILE.items():
        result = got[f"file-{name}"]
        assert result.outcome.value in accepted, (name, result.outcome, result.evidence)
        assert "HOST-SECRET" not in result.evidence
        assert result.observed == "outside"
    assert "symbolic links" in got["file-loop"].evidence
    assert "it is a fifo" in got["file-fifo"].evidence
    print(f"9 hostile file checks graded in {took:.2f} s")


def test_a_solved_lab_passes_every_check_mostly_observed_from_outside(make_lab: object) -> None:
    lab = make_lab("multi-site-routing", name="outside-solved")  # type: ignore[operator]
    scenario = labs.load_scenario("multi-site-routing")
    labs.run_scenario_playbook(lab, scenario.solution)
    report = labs.grade(lab, labs.lab_spec(lab))
    assert report.exit_code == 0, [(r.check_id, r.evidence) for r in report.results if r.outcome is not Outcome.PASS]
    inside = {r.check_id for r in report.results if r.observed == "inside"}
    assert inside <= {"r1-ospf-r2-full", "r1-ospf-r3-full", "wan-mtu-persistent", "ospf-timers-saved"}, inside
