"""The end of a candidate's time is the end of their access: what they start in a node
after it is not in their final grade.

Two candidates hold a shell on a node of their lab through the gateway's path (the very
`ssh` command the gateway runs for them) and have typed a change that lands 4 s later;
their time runs out; `session tick` must cut both before it grades either, so the final
grade (whose check waits 10 s for the change) never sees it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from labctl.grading.results import Outcome
from labctl.session import gateway, room
from labctl.session.model import Session, load_session, sessions_dir
from labctl.session.roster import parse_roster
from labctl.state import all_labs

from .conftest import SMALL, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
SPEC = """\
scenario: small
checks:
  - id: late-change
    criterion: A1.2-c1
    description: {fr: "le fichier tardif existe", en: "the late file exists"}
    node: h1
    type: file
    path: /root/late
    wait: 10
"""


def _open_shell(session: Session, cid: str) -> subprocess.Popen[bytes]:
    """A candidate's shell on h1 through the gateway's ssh, with a change typed for later."""
    candidate = session.candidate(cid)
    env = {**os.environ, "SUDO_USER": str(candidate.login)}  # as sudo runs the gateway for them
    shell = subprocess.Popen(gateway.node_ssh_argv(session, candidate, "h1"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert shell.stdin is not None and shell.stdout is not None
    shell.stdin.write(b"echo ready; sleep 4; touch /root/late\n")
    shell.stdin.flush()
    deadline = time.monotonic() + 30
    while True:  # the message of the day comes first
        ready, _, _ = select.select([shell.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "the candidate's shell did not start"
        line = shell.stdout.readline()
        assert line, shell.stderr.read() if shell.stderr else "no shell"
        if line.strip() == b"ready":
            return shell


def test_a_change_after_the_end_time_is_not_in_the_final_grade(tmp_path: Path) -> None:
    spec = tmp_path / "late.yml"
    spec.write_text(SPEC)
    name = f"eot-{secrets.token_hex(3)}"
    roster = parse_roster("id,name,tiers_temps\nc1,Candidat 1,non\nc2,Candidat 2,non\n")
    shells: list[subprocess.Popen[bytes]] = []
    try:
        room.create(str(SMALL), roster, 3600, name, spec=str(spec), workers=2)
        session = room.start(load_session(name))

        def logged_in(fresh: Session) -> None:  # their gateway logins (no system account needed here)
            for c in fresh.candidates:
                c.login, c.access = f"lcx-{secrets.token_hex(3)}", "open"

        session = session.update(logged_in)
        shells = [_open_shell(session, c.id) for c in session.candidates]
        for c in session.candidates:
            room.extend(load_session(name), c.id, -24 * 60)  # their time is over
        assert sorted(room.tick(load_session(name))) == ["c1", "c2"]

        after = load_session(name)
        assert len({c.closed_at for c in after.candidates}) == 1  # cut together, before any grading
        for shell in shells:
            assert shell.wait(10) != 0  # their connection was ended
        store = room.results_store(after)
        try:
            for c in after.candidates:
                assert c.access == "closed" and c.final_run is not None
                run = store.latest(name, c.id)
                assert run is not None
                outcome = {r.check_id: r.outcome for r in run.report.results}["late-change"]
                assert outcome is Outcome.FAIL, f"{c.id}: a change made after the end time was graded"
                lab = room.candidate_lab(c)
                assert lab is not None and lab.nodes["h1"].init is not None
                assert not Path(f"/proc/{lab.nodes['h1'].init.pid}/root/root/late").exists()
        finally:
            store.close()
    finally:
        for shell in shells:
            with contextlib.suppress(OSError):
                shell.kill()
            shell.wait()
        with contextlib.suppress(Exception):
            room.destroy(load_session(name))
        shutil.rmtree(sessions_dir() / name, ignore_errors=True)
        assert not [lab.name for lab in all_labs() if lab.name.startswith(name)]
