"""Active checks leave no trace: a digest of the node they act on (its files under /etc and
/var/lib, users, fail2ban's bans, the nft rule set, /etc/users.oath) is the same before and after
a grading run with every active check of securite-reseau, and a second run's results equal the
first's; the starting state FAILs every active check, the solution PASSes them; the probe point
is gone after each run."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from labctl import lab as labs
from labctl import netns
from labctl.grading.nodeview import NodeFileError, NodeView
from labctl.grading.outside import LabView, OutsideSession
from labctl.state import LabState

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

# what changes in a node with time whatever anyone does: the journal, systemd's own state, the
# fail2ban database (its history of bans; the live bans are asked from fail2ban itself)
VOLATILE = ("/var/lib/systemd/", "/var/lib/fail2ban/", "/var/lib/private/systemd/", "/var/log/")
WALKED = ("/etc", "/var/lib", "/home", "/root")
F2B_TABLE = re.compile(r"(?ms)^table inet f2b-table \{\n.*?^\}\n?")


def _walk(view: NodeView, folder: str, found: dict[str, str]) -> None:
    try:
        names = view.listdir(folder)
    except NodeFileError:
        return
    for name in sorted(names):
        path = f"{folder}/{name}"
        if path.startswith(VOLATILE) or f"{path}/".startswith(VOLATILE):
            continue
        facts = view.stat(path)
        if facts is None:
            continue
        if facts.kind == "directory":
            found[path] = f"dir {facts.mode:o} {facts.uid}:{facts.gid}"
            _walk(view, path, found)
        elif facts.kind == "regular file":
            found[path] = f"{view.sha256(path)} {facts.mode:o} {facts.uid}:{facts.gid}"
        else:
            found[path] = f"{facts.kind} {facts.mode:o}"


def digest(lab: LabState, node: str) -> dict[str, str]:
    """The node's state as far as a grading run could change it, observed from outside (files,
    the nft rule set without counters) and by fail2ban itself (its bans)."""
    view = LabView(lab)
    try:
        session = OutsideSession(view, node, lambda: None)  # type: ignore[arg-type,return-value]
        found: dict[str, str] = {}
        for folder in WALKED:
            _walk(session.view, folder, found)
        rules = session.view.run_in_netns(["nft", "-s", "list", "ruleset"], 15)
        # the text, so that a difference shows what changed; without fail2ban's own table, which
        # fail2ban adds at its first ban ("actionstart on demand", action.d/nftables.conf): a
        # grading whose ssh_ban made the node's first ban leaves it, empty once the ban is
        # lifted. Its content is the bans, compared below through fail2ban itself.
        found["nft ruleset"] = F2B_TABLE.sub("", rules.stdout)
        bans = session.run("fail2ban-client banned 2>&1 || true", 15)
        found["fail2ban bans"] = bans.stdout.strip()
        return found
    finally:
        view.close()


def outcomes(lab: LabState) -> dict[str, tuple[str, bool]]:
    report = labs.grade(lab, labs.stage_checks(labs.lab_spec(lab), lab.stage))
    assert not netns.exists(lab.plan.probe_netns), "the probe point outlived the grading run"
    return {r.check_id: (str(r.outcome), r.active) for r in report.results}


@pytest.fixture
def sr_lab() -> Iterator[LabState]:
    lab = labs.up("securite-reseau", name="test-active-checks", replace=True)
    try:
        yield lab
    finally:
        labs.down(lab)


def test_active_checks_fail_then_pass_and_leave_no_trace(sr_lab: LabState) -> None:
    active = {"ssh-root-password-refused", "ssh-admin-password-refused", "ssh-admin-key-alone-refused",
              "ssh-admin-old-code-refused", "ssh-admin-key-and-code-accepted", "ssh-brute-force-banned"}
    start = outcomes(sr_lab)
    assert {c for c, (_, acts) in start.items() if acts} == active
    assert {start[c][0] for c in active} == {"FAIL"}  # passwords, root, no TOTP, no fail2ban

    scenario = labs.lab_scenario(sr_lab)
    solution = scenario.stage(str(sr_lab.stage)).solution
    assert solution is not None
    labs.run_scenario_playbook(sr_lab, scenario.path(solution))
    before = digest(sr_lab, "fw")
    assert "/etc/users.oath" in before and before["fail2ban bans"]
    first = outcomes(sr_lab)
    assert {first[c][0] for c in active} == {"PASS"}, first
    after = digest(sr_lab, "fw")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, {k: (before.get(k), after.get(k)) for k in changed}
    assert outcomes(sr_lab) == first  # grading twice gives the same result
    assert digest(sr_lab, "fw") == before
