"""A hostile node cannot make labctl's tools spend unbounded memory or time.

A candidate with root in a node writes huge outputs where probes read and makes every login
stall (/root/.bashrc is read by bash for commands sent over SSH): the grader keeps 1 MiB of
each output, a grading run ends at its budget, and `labctl exec` stops at its timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.connect import open_session
from labctl.grading.grader import GradeOptions, grade
from labctl.grading.results import Outcome
from labctl.grading.spec import GradingSpec
from labctl.providers import get_provider
from labctl.state import LabState

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
MIB = 1 << 20


def _in_node(lab: LabState, node: str, command: str) -> str:
    session = open_session(get_provider("local").access(lab, node))
    try:
        result = session.run(command, 60)
        assert result.exit_code == 0, result.stderr
        return result.stdout
    finally:
        session.close()


def _spec(tmp_path: Path, *checks: dict[str, object]) -> Path:
    full = [{"criterion": "A2.3-c1", "description": {"fr": f"vérifie {c['id']}", "en": f"checks {c['id']}"}, **c}
            for c in checks]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"scenario": "small", "checks": full}))
    return path


def _max_rss_mib(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """Run `argv`; its exit status, its peak resident memory (MiB) and its output."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read()  # the child's report, small
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, output.decode(errors="replace")


def test_huge_outputs_cost_the_grader_no_memory(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab()  # type: ignore[operator]
    _in_node(lab, "h1", "truncate -s 300M /root/notes.txt")  # 300 MB to read, no disk used
    spec = _spec(tmp_path, {"id": "notes", "node": "h1", "type": "command", "command": "cat /root/notes.txt",
                            "stdout_matches": "^never$"})
    code, rss, output = _max_rss_mib([sys.executable, "-m", "labctl", "grade", "--lab", lab.name,
                                      "--spec", str(spec), "--json"])
    print(f"grade of a 300 MB output (observed from outside): peak RSS {rss:.0f} MiB")
    assert code in (1, 10), output  # FAIL (or ERROR on a very slow machine), never a crash
    assert rss < 200, f"the grader held {rss:.0f} MiB for a 300 MB output"
    # Over SSH (other providers, and the fallback here) bash runs /root/.bashrc before every
    # command: one that writes 150 MB costs 1 MiB as well.
    _in_node(lab, "h1", "echo 'head -c 150000000 /root/notes.txt' >> /root/.bashrc")
    script = textwrap.dedent(f"""
        from labctl.connect import open_session
        from labctl.providers import get_provider
        from labctl.state import find_lab
        session = open_session(get_provider("local").access(find_lab({lab.name!r}), "h1"))
        result = session.run("true", 120)
        print(len(result.stdout), result.stdout[-80:].replace("\\n", " "))
    """)
    code, rss, output = _max_rss_mib([sys.executable, "-c", script])
    print(f".bashrc writing 150 MB over SSH: peak RSS {rss:.0f} MiB; kept: {output.strip()[:120]}")
    assert code == 0, output
    kept = int(output.split()[0])
    assert MIB <= kept < MIB + 200 and "output cut at 1 MiB: 150000000 bytes" in output
    assert rss < 150, f"the SSH session held {rss:.0f} MiB for a 150 MB output"


def test_a_stalled_login_neither_hangs_exec_nor_stretches_grading(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    _in_node(lab, "h1", "echo 'sleep 1000' >> /root/.bashrc")  # every command over SSH now stalls
    done = subprocess.run([sys.executable, "-m", "labctl", "exec", "--lab", lab.name, "--timeout", "3", "h1",
                           "--", "true"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 124, done.stderr
    assert "still running after 3 s" in done.stderr
    spec = GradingSpec.model_validate({"scenario": "small", "checks": [
        {"id": id_, "node": node, "type": "command", "command": "true", "criterion": "A2.3-c1",
         "description": {"fr": id_, "en": id_}}
        for id_, node in (("h1-a", "h1"), ("h1-b", "h1"), ("h2-a", "h2"))]})
    provider = get_provider("local")
    report = grade(spec, lambda node: open_session(provider.access(lab, node)), lab=lab.name,
                   options=GradeOptions(budget=6))  # over SSH, where .bashrc is read
    outcomes = {r.check_id: (r.outcome, r.evidence) for r in report.results}
    assert outcomes["h2-a"][0] is Outcome.PASS
    for check in ("h1-a", "h1-b"):
        assert outcomes[check][0] is Outcome.ERROR
        assert "grading budget exceeded (6 s)" in outcomes[check][1], outcomes


def test_a_login_that_never_answers_times_out_and_says_so(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    # the node's sshd replaced by a program that never speaks (its running listener stays)
    _in_node(lab, "h2", "mv /usr/sbin/sshd /usr/sbin/sshd.real && printf '#!/bin/sh\\nexec sleep 1000\\n' "
                        "> /usr/sbin/sshd && chmod 755 /usr/sbin/sshd")
    done = subprocess.run([sys.executable, "-m", "labctl", "exec", "--lab", lab.name, "h2", "--", "true"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 255, done
    assert "Connection timed out during banner exchange" in done.stderr


def test_a_router_cli_that_never_stops_is_cut(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    # the CLI user's login shell (vtysh) replaced by an endless stream
    _in_node(lab, "r1", "printf '#!/bin/sh\\nexec yes flood\\n' > /usr/bin/vtysh && chmod 755 /usr/bin/vtysh")
    script = textwrap.dedent(f"""
        from labctl.connect import open_session
        from labctl.errors import ProviderError
        from labctl.providers import get_provider
        from labctl.state import find_lab
        session = open_session(get_provider("local").access(find_lab({lab.name!r}), "r1"))
        try:
            session.cli("show ip route", 60)
            print("answered")
        except ProviderError as exc:
            print("failed:", exc)
    """)
    code, rss, output = _max_rss_mib([sys.executable, "-c", script])
    print(f"endless router CLI: peak RSS {rss:.0f} MiB; {output.strip()[-120:]}")
    assert code == 0 and "failed: the router CLI sent over 16 MiB: connection cut" in output, output
    assert rss < 250, f"the CLI held {rss:.0f} MiB"
