"""The grading engine against real local sessions: real shell commands on this machine.

A "node" here is a live process: its session runs commands with /bin/sh while the process
lives, and raises NodeUnreachable once it has exited (as an SSH session to a destroyed
container would). Nothing is faked: files appear, processes end, commands take time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from labctl.grading.grader import GradeOptions, grade
from labctl.grading.results import CheckResult, Outcome
from labctl.grading.session import CommandResult, CommandTimeout, NodeSession, NodeUnreachable
from labctl.grading.spec import GradingSpec

FAST = GradeOptions(command_timeout=10, retry_interval=0.2, retry_max_interval=0.2)


class LocalSession:
    """Runs commands on this machine while the node's process is alive."""

    def __init__(self, node: str, process: subprocess.Popen[bytes]) -> None:
        self.node, self.process, self.closed = node, process, False

    def _alive(self) -> None:
        if self.process.poll() is not None:
            raise NodeUnreachable(f"{self.node}: connection reset (node process exited)")

    def run(self, command: str, timeout: float) -> CommandResult:
        self._alive()
        try:
            proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"`{command}` still running after {timeout:g} s") from None
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def cli(self, command: str, timeout: float) -> str:
        """vtysh of a router pathspace no FRR serves: raises, as netmiko does on failure."""
        self._alive()
        proc = subprocess.run(["vtysh", "-N", "labctl-test-none", "-c", command],
                              capture_output=True, text=True, timeout=timeout, check=True)
        return proc.stdout

    def close(self) -> None:
        self.closed = True


class Lab:
    """Nodes as processes (`sleep N`); connect() opens a LocalSession to a live node."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.sessions: list[LocalSession] = []
        self.connects: Counter[str] = Counter()
        self.lock = threading.Lock()

    def start(self, node: str, lifetime: float = 60) -> None:
        self.processes[node] = subprocess.Popen(["sleep", str(lifetime)])

    def connect(self, node: str) -> NodeSession:
        with self.lock:
            self.connects[node] += 1
        process = self.processes.get(node)
        if process is None or process.poll() is not None:
            raise NodeUnreachable(f"ssh: connect to host {node} port 22: No route to host")
        session = LocalSession(node, process)
        self.sessions.append(session)
        return session

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
            process.wait()


@pytest.fixture
def lab() -> Any:
    nodes = Lab()
    yield nodes
    nodes.stop()


def spec(*checks: dict[str, Any]) -> GradingSpec:
    """A spec from short check dicts (id, node, type and type keys)."""
    full = [{"criterion": "A2.3-c1", "description": {"fr": f"vérifie {c['id']}",
                                                     "en": f"checks {c['id']}"}, **c}
            for c in checks]
    return GradingSpec.model_validate({"scenario": "engine", "checks": full})


def file_check(check_id: str, node: str, path: Path, wait: float = 0, **keys: Any) -> dict[str, Any]:
    return {"id": check_id, "node": node, "type": "file", "path": str(path), "wait": wait, **keys}


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check_id: r for r in results}


def test_a_failing_check_is_retried_until_it_passes_within_its_wait(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    target = tmp_path / "ready.flag"
    writer = subprocess.Popen(["sh", "-c", f"sleep 1; touch {target}"])
    report = grade(spec(file_check("flag", "n1", target, wait=10)), lab.connect, lab="t",
                   options=FAST)
    writer.wait()
    result = report.results[0]
    assert result.outcome is Outcome.PASS, result.evidence
    assert result.attempts > 2 and 0.9 < result.duration_s < 5
    assert report.exit_code == 0


def test_a_check_still_failing_at_its_deadline_fails_with_its_last_evidence(
    lab: Lab, tmp_path: Path
) -> None:
    lab.start("n1")
    started = time.monotonic()
    report = grade(spec(file_check("never", "n1", tmp_path / "never", wait=1.2),
                        file_check("no-wait", "n1", tmp_path / "missing")),
                   lab.connect, lab="t", options=FAST)
    results = by_id(report.results)
    assert results["never"].outcome is Outcome.FAIL
    assert "does not exist, expected it to exist" in results["never"].evidence
    assert results["never"].attempts >= 5 and time.monotonic() - started >= 1.2
    assert results["no-wait"].attempts == 1  # only checks with a wait are retried
    assert report.exit_code == 1


def test_retries_back_off_yet_see_a_late_change_within_the_longest_interval(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    options = GradeOptions(command_timeout=10, retry_interval=0.2, retry_max_interval=0.8)
    assert [options.next_retry(n) for n in range(1, 6)] == [0.2, 0.4, 0.8, 0.8, 0.8]
    target = tmp_path / "late.flag"
    writer = subprocess.Popen(["sh", "-c", f"sleep 2; touch {target}"])
    begun = time.monotonic()
    report = grade(spec(file_check("never", "n1", tmp_path / "never", wait=3),
                        file_check("late", "n1", target, wait=10)), lab.connect, lab="t", options=options)
    writer.wait()
    results = by_id(report.results)
    # probes at 0, 0.2, 0.6, 1.4, 2.2, 3.0 (the deadline): 6, not the 16 of a fixed 0.2 s period
    assert results["never"].outcome is Outcome.FAIL and 5 <= results["never"].attempts <= 7
    # the deadline counts from the grading run's start; the check's own clock starts a few
    # milliseconds later, so its duration may read 2.998 while the run itself lasted 3 s
    assert time.monotonic() - begun >= 3 and results["never"].duration_s >= 2.9
    assert results["late"].outcome is Outcome.PASS and results["late"].duration_s < 2 + 0.8 + 0.5


def test_passing_checks_run_once(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    report = grade(spec(file_check("here", "n1", tmp_path, wait=30)), lab.connect, lab="t")
    assert (report.results[0].outcome, report.results[0].attempts) == (Outcome.PASS, 1)


def test_an_unreachable_node_makes_its_checks_error_and_others_go_on(
    lab: Lab, tmp_path: Path
) -> None:
    lab.start("n1")
    report = grade(spec(file_check("up", "n1", tmp_path),
                        file_check("down-1", "ghost", tmp_path),
                        file_check("down-2", "ghost", tmp_path, wait=5)),
                   lab.connect, lab="t", options=FAST)
    results = by_id(report.results)
    assert results["up"].outcome is Outcome.PASS
    for check_id in ("down-1", "down-2"):
        assert results[check_id].outcome is Outcome.ERROR
        assert re.fullmatch(r"cannot connect to ghost: no answer for \d+\.\d s \(2 tries\): "
                            r"ssh: connect to host ghost port 22: No route to host", results[check_id].evidence)
        assert results[check_id].attempts == 0
    assert report.exit_code == 10 and lab.connects["ghost"] == 2  # tried again once, not per check


def test_a_node_that_answers_at_the_second_connection_is_graded(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")

    def busy_then_fine(node: str) -> NodeSession:
        if lab.connects[node] == 0:  # e.g. a key exchange that overran its step on a busy machine
            lab.connects[node] += 1
            raise NodeUnreachable(f"{node}: timed out during the key exchange")
        return lab.connect(node)

    report = grade(spec(file_check("here", "n1", tmp_path)), busy_then_fine, lab="t", options=FAST)
    assert report.results[0].outcome is Outcome.PASS and lab.connects["n1"] == 2


def test_an_unreachable_node_is_never_a_pass_even_when_unreachability_is_expected(
    lab: Lab,
) -> None:
    report = grade(spec({"id": "isolated", "node": "ghost", "type": "reach",
                         "target": "10.9.0.1", "expect": "unreachable"}), lab.connect, lab="t")
    assert report.results[0].outcome is Outcome.ERROR


def test_a_node_dying_mid_grading_errors_its_remaining_checks_only(
    lab: Lab, tmp_path: Path
) -> None:
    lab.start("n1")
    lab.start("n2", lifetime=0.6)
    checks = [file_check("n2-first", "n2", tmp_path),
              {"id": "n2-slow", "node": "n2", "type": "command", "command": "sleep 1"},
              file_check("n2-after", "n2", tmp_path),
              file_check("n2-waiting", "n2", tmp_path / "never", wait=5),
              {"id": "n1-slow", "node": "n1", "type": "command", "command": "sleep 1.2"},
              file_check("n1-after", "n1", tmp_path)]
    report = grade(spec(*checks), lab.connect, lab="t", options=FAST)
    results = by_id(report.results)
    assert [results[i].outcome for i in ("n2-first", "n2-slow")] == [Outcome.PASS] * 2
    for check_id in ("n2-after", "n2-waiting"):
        assert results[check_id].outcome is Outcome.ERROR
        assert results[check_id].evidence.startswith(
            "n2 became unreachable: n2: connection reset (node process exited)")
    assert results["n1-slow"].outcome is Outcome.PASS
    assert results["n1-after"].outcome is Outcome.PASS
    assert all(s.closed for s in lab.sessions)


def test_a_node_dying_while_a_check_waits_keeps_the_last_attempt(
    lab: Lab, tmp_path: Path
) -> None:
    lab.start("n1", lifetime=0.8)
    report = grade(spec(file_check("waiting", "n1", tmp_path / "never", wait=5)), lab.connect,
                   lab="t", options=FAST)
    result = report.results[0]
    assert result.outcome is Outcome.ERROR and result.attempts >= 2
    assert "(last attempt: FAIL: " in result.evidence


def test_nodes_are_graded_concurrently_with_one_session_each(lab: Lab) -> None:
    for node in ("a", "b", "c"):
        lab.start(node)
    checks = [{"id": f"{node}-{i}", "node": node, "type": "command", "command": "sleep 0.5"}
              for node in ("a", "b", "c") for i in (1, 2)]
    started = time.monotonic()
    report = grade(spec(*checks), lab.connect, lab="t")
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s: nodes were graded one after the other (3 s)"
    assert [r.check_id for r in report.results] == [c["id"] for c in checks]
    assert {r.outcome for r in report.results} == {Outcome.PASS}
    assert lab.connects == Counter({"a": 1, "b": 1, "c": 1})
    assert len(lab.sessions) == 3 and all(s.closed for s in lab.sessions)


def test_checks_of_a_node_run_in_spec_order(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    log = tmp_path / "order.log"
    checks = [{"id": f"step-{i}", "node": "n1", "type": "command",
               "command": f"echo {i} >> {log}"} for i in range(5)]
    grade(spec(*checks), lab.connect, lab="t")
    assert log.read_text().split() == ["0", "1", "2", "3", "4"]


def test_a_command_timeout_is_an_error_once_a_second_probe_confirms_it(lab: Lab) -> None:
    lab.start("n1")
    report = grade(spec({"id": "slow", "node": "n1", "type": "command", "command": "sleep 5"}),
                   lab.connect, lab="t", options=GradeOptions(command_timeout=0.3, retry_interval=0.1))
    assert report.results[0].outcome is Outcome.ERROR and report.results[0].attempts == 2
    assert report.results[0].evidence == "timed out after 0.3 s: sleep 5"


def test_a_probe_that_errors_once_is_no_verdict(lab: Lab, tmp_path: Path) -> None:
    """A probe that timed out on a busy machine, then concluded: the jury gets the conclusion."""
    lab.start("n1")
    once = tmp_path / "slow-once"
    slow_once = "test -e {0} || {{ touch {0}; sleep 5; }}"
    checks = [{"id": "ok", "node": "n1", "type": "command", "command": slow_once.format(once)},
              {"id": "wrong", "node": "n1", "type": "command", "command": slow_once.format(f"{once}.2") + "; exit 3"}]
    report = grade(spec(*checks), lab.connect, lab="t", options=GradeOptions(command_timeout=0.3, retry_interval=0.1))
    results = by_id(report.results)
    assert (results["ok"].outcome, results["ok"].attempts) == (Outcome.PASS, 2)
    assert (results["wrong"].outcome, results["wrong"].attempts) == (Outcome.FAIL, 2)
    assert results["wrong"].evidence.startswith("exit code 3")


def test_a_check_may_bound_its_own_probe_time(lab: Lab) -> None:
    lab.start("n1")
    checks = [{"id": "slow", "node": "n1", "type": "command", "command": "sleep 5", "timeout": 0.3},
              {"id": "patient", "node": "n1", "type": "command", "command": "sleep 1.5", "timeout": 3}]
    report = grade(spec(*checks), lab.connect, lab="t", options=GradeOptions(command_timeout=1))
    outcomes = {r.check_id: (r.outcome, r.evidence) for r in report.results}
    assert outcomes["slow"] == (Outcome.ERROR, "timed out after 0.3 s: sleep 5")
    assert outcomes["patient"][0] is Outcome.PASS


def test_router_cli_failure_is_an_error(lab: Lab) -> None:
    lab.start("r1")
    report = grade(spec({"id": "ospf", "node": "r1", "type": "ospf_neighbor",
                         "neighbor": "10.255.255.2"}), lab.connect, lab="t")
    result = report.results[0]
    assert result.outcome is Outcome.ERROR
    assert result.evidence.startswith("router CLI failed (")
    assert result.evidence.endswith("): show ip ospf neighbor json")


def test_progress_reports_every_result_once(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    lab.start("n2")
    seen: list[str] = []
    report = grade(spec(file_check("a", "n1", tmp_path), file_check("b", "n2", tmp_path),
                        file_check("c", "ghost", tmp_path)),
                   lab.connect, lab="exam-1", progress=lambda r: seen.append(r.check_id))
    assert sorted(seen) == ["a", "b", "c"]
    assert (report.lab, report.scenario) == ("exam-1", "engine")
    assert report.started.endswith("Z") and report.started <= report.finished


def test_checks_never_change_the_node(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    target = tmp_path / "config"
    target.write_text("PermitRootLogin no\n")
    os.chmod(target, 0o640)
    before = (target.stat().st_mtime_ns, target.stat().st_mode, target.read_text())
    report = grade(spec(file_check("cfg", "n1", target, mode="0600", contains="^Permit")),
                   lab.connect, lab="t")
    assert report.results[0].outcome is Outcome.FAIL
    assert (target.stat().st_mtime_ns, target.stat().st_mode, target.read_text()) == before


def test_a_run_past_its_budget_errors_the_checks_not_judged_yet(lab: Lab, tmp_path: Path) -> None:
    """A node that stalls every command (a sleeping .bashrc) cannot stretch a run past its budget."""
    lab.start("slow")
    lab.start("quick")
    checks = [{"id": "stalls", "node": "slow", "type": "command", "command": "sleep 30"},
              {"id": "after", "node": "slow", "type": "command", "command": "true"},
              {"id": "waits", "node": "quick", "type": "command", "command": "false", "wait": 60},
              {"id": "fine", "node": "quick", "type": "command", "command": "true"}]
    report = grade(spec(*checks), lab.connect, lab="t",
                   options=GradeOptions(command_timeout=20, retry_interval=0.2, budget=3.0))
    results = by_id(report.results)
    assert results["fine"].outcome is Outcome.PASS
    for late in ("stalls", "after"):
        assert results[late].outcome is Outcome.ERROR, results[late]
        assert results[late].evidence.startswith("budget de notation dépassé / grading budget exceeded (3 s)")
    assert results["stalls"].attempts == 1  # its one probe was cut at the budget, not at 20 s
    assert results["waits"].outcome is Outcome.ERROR and "last attempt: FAIL" in results["waits"].evidence


def test_the_budget_comes_from_the_options_the_environment_or_the_longest_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.errors import InvalidInputError

    waiting = spec({"id": "a", "node": "n1", "type": "command", "command": "true", "wait": 40},
                   {"id": "b", "node": "n1", "type": "command", "command": "true"})
    monkeypatch.delenv("LABCTL_GRADE_BUDGET", raising=False)
    assert GradeOptions().budget_for(waiting) == 160
    monkeypatch.setenv("LABCTL_GRADE_BUDGET", "75")
    assert GradeOptions().budget_for(waiting) == 75 and GradeOptions(budget=5).budget_for(waiting) == 5
    for wrong in ("soon", "0", "-3", "nan"):
        monkeypatch.setenv("LABCTL_GRADE_BUDGET", wrong)
        with pytest.raises(InvalidInputError):
            GradeOptions().budget_for(waiting)


def test_probe_output_is_kept_up_to_a_cap_and_says_it_was_cut() -> None:
    from labctl.grading.session import MAX_OUTPUT, Capped, communicate_capped

    kept = Capped(limit=10)
    kept.add(b"0123456789abc")
    kept.add(b"def")
    assert kept.text() == "0123456789\n[sortie coupée à 1 Mio / output cut at 1 MiB: 16 bytes]"
    writer = "import sys; sys.stdout.write('x' * 50_000_000); sys.stderr.write('err\\n')"
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = communicate_capped(proc, 60)
    assert out.startswith("x" * MAX_OUTPUT) and out.endswith("50000000 bytes]") and len(out) < MAX_OUTPUT + 100
    assert err == "err\n" and proc.returncode == 0
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        communicate_capped(stuck, 0.2)
    stuck.kill()
    stuck.wait()


def test_a_check_that_must_survive_a_reboot_is_judged_only_after_one(lab: Lab, tmp_path: Path) -> None:
    lab.start("n1")
    present, missing = tmp_path / "present", tmp_path / "missing"
    present.write_text("x")
    checks = spec(file_check("now", "n1", present), file_check("kept", "n1", present, persist="reboot"),
                  file_check("lost", "n1", missing, persist="reboot"))
    without = by_id(grade(checks, lab.connect, lab="t", options=FAST).results)
    assert without["now"].outcome is Outcome.PASS
    for check_id in ("kept", "lost"):  # never judged on a state a reboot could still undo
        assert without[check_id].outcome is Outcome.ERROR
        assert "labctl grade --reboot" in without[check_id].evidence and without[check_id].attempts == 1
    after = grade(checks, lab.connect, lab="t", options=GradeOptions(
        command_timeout=10, retry_interval=0.2, retry_max_interval=0.2, after_reboot=True))
    assert [r.check_id for r in after.results] == ["now", "kept", "lost"]  # spec order
    assert [r.outcome for r in after.results] == [Outcome.PASS, Outcome.PASS, Outcome.FAIL]
    assert after.exit_code == 1
