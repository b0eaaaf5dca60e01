"""Active checks: the spec says which checks act (`acts: true`, only for types that can act),
the grader runs them alone after the node's other checks, reports mark them; the SSH checks'
pure parts (RFC 6238 codes, the judgement on what the server answered)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.grading.checks.ssh import evaluate_ban, evaluate_login, totp, wrong_code
from labctl.grading.grader import grade
from labctl.grading.report import from_json, render_table, to_json
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, GradingSpec, SshBanCheck, SshLoginCheck

BASE = {"id": "t", "criterion": "A3.3-c2", "description": {"fr": "f", "en": "e"}, "node": "fw"}
PROBE = {"switch": "outside", "addresses": "10.70.4.128/25"}
LOGIN = {**BASE, "type": "ssh_login", "acts": True, "probe": PROBE, "user": "root", "methods": "password",
         "password": "x", "expect": "refused"}
BAN = {**BASE, "type": "ssh_ban", "acts": True, "probe": PROBE, "undo": "fail2ban-client unban {address}"}
RFC_SECRET = "3132333435363738393031323334353637383930"  # RFC 6238's SHA-1 key, "12345678901234567890"


@pytest.mark.parametrize(("when", "code"), [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"),
                                            (2000000000, "69279037"), (20000000000, "65353130")])
def test_totp_matches_rfc_6238_vectors(when: int, code: str) -> None:
    assert totp(RFC_SECRET, when, 8) == code


def test_wrong_code_is_an_hour_old_and_none_of_the_near_codes() -> None:
    now = time.time()
    code = wrong_code(RFC_SECRET, now)
    assert len(code) == 6
    assert code not in {totp(RFC_SECRET, now + k * 30) for k in range(-5, 6)}


def test_acts_is_required_by_acting_types_and_refused_elsewhere() -> None:
    CHECK_MODELS["ssh_login"].model_validate(LOGIN)
    CHECK_MODELS["ssh_ban"].model_validate(BAN)
    with pytest.raises(ValidationError, match="acts on the node: say so with `acts: true`"):
        CHECK_MODELS["ssh_login"].model_validate({**LOGIN, "acts": False})
    with pytest.raises(ValidationError, match="only observes"):
        CHECK_MODELS["file"].model_validate({**BASE, "type": "file", "path": "/etc/x", "acts": True})
    with pytest.raises(ValidationError, match="not retried"):
        CHECK_MODELS["ssh_ban"].model_validate({**BAN, "wait": 10})


@pytest.mark.parametrize(("keys", "message"), [
    ({"methods": "password", "password": None}, "needs `password`"),
    ({"methods": "key"}, "needs `key`"),
    ({"methods": "key+code", "key": "k"}, "needs `totp_secret`"),
    ({"probe": {"switch": "outside", "addresses": "10.70.4.1/32"}}, "a few addresses at least"),
    ({"probe": {"switch": "outside", "addresses": "nowhere"}}, "not an IPv4 network"),
])
def test_login_keys_are_checked(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CHECK_MODELS["ssh_login"].model_validate({**LOGIN, **keys})


def test_a_command_of_scope_probe_names_its_probe_point_and_runs_nowhere_else() -> None:
    """`scope: probe` runs the controller's programs in the grader's probe point: the two keys go
    together, and a provider that has no probe point gets a refusal (ERROR), never the command
    run by the node's own programs."""
    from labctl.grading.checks import evaluate, probe

    command = {**BASE, "type": "command", "command": "ssh-keyscan 10.70.4.1"}
    check = CHECK_MODELS["command"].model_validate({**command, "scope": "probe", "probe": PROBE})
    with pytest.raises(ValidationError, match="go together"):
        CHECK_MODELS["command"].model_validate({**command, "scope": "probe"})
    with pytest.raises(ValidationError, match="go together"):
        CHECK_MODELS["command"].model_validate({**command, "scope": "network", "probe": PROBE})
    refusal = probe(check).command
    assert "ssh-keyscan" not in refusal
    result = CommandResult(3, "", "labctl: a command of scope probe runs in the probe point of the grader")
    assert evaluate(check, result).outcome is not Outcome.PASS


def test_burst_is_bounded() -> None:
    with pytest.raises(ValidationError):
        CHECK_MODELS["ssh_ban"].model_validate({**BAN, "attempts": 31})
    with pytest.raises(ValidationError):
        CHECK_MODELS["ssh_ban"].model_validate({**BAN, "within": 61})


def test_a_spec_has_a_bounded_number_of_active_checks() -> None:
    checks = [{**LOGIN, "id": f"c{i}"} for i in range(17)]
    with pytest.raises(ValidationError, match="at most 16 act"):
        GradingSpec.model_validate({"scenario": "s", "checks": checks})


def login(**seen: Any) -> CommandResult:
    data = {"probe": "10.70.4.200", "answered": True, "host_key": "ok", "steps": [], "outcome": "refused",
            "error": ""} | seen
    return CommandResult(0, json.dumps(data), "")


def test_no_answer_is_never_a_refusal() -> None:
    check = SshLoginCheck.model_validate(LOGIN)
    verdict = evaluate_login(check, login(answered=False, outcome="no-answer", error="timed out"))
    assert verdict.outcome is Outcome.FAIL and "did not answer (timed out)" in verdict.evidence


def test_another_server_answering_is_tampering() -> None:
    check = SshLoginCheck.model_validate(LOGIN)
    verdict = evaluate_login(check, login(host_key="host key ssh-ed25519 ab… is none of 3 keys in fw's /etc/ssh"))
    assert verdict.outcome is Outcome.ERROR and "not fw's SSH server" in verdict.evidence


def test_ban_needs_an_answer_first_and_an_undo_after() -> None:
    check = SshBanCheck.model_validate(BAN)
    seen = {"probe": "10.70.4.200", "before": True, "sent": 6, "banned_after": 3.0, "undone": True}
    assert evaluate_ban(check, CommandResult(0, json.dumps(seen), "")).outcome is Outcome.PASS
    silent = evaluate_ban(check, CommandResult(0, json.dumps(seen | {"before": False}), ""))
    assert silent.outcome is Outcome.FAIL and "before the burst" in silent.evidence
    stuck = evaluate_ban(check, CommandResult(0, json.dumps(seen | {"undone": "exit 1"}), ""))
    assert stuck.outcome is Outcome.ERROR and "could not be lifted" in stuck.evidence


class Recorder:
    """A session that observes every check itself and records the order and overlap of calls."""

    concurrent = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.overlap_with_active = False

    def observe(self, check: Any, timeout: float) -> Any:
        from labctl.grading.checks.base import judged

        self.running += 1
        if check.acts and self.running > 1:
            self.overlap_with_active = True
        self.calls.append(("start", check.id))
        time.sleep(0.02)
        self.calls.append(("end", check.id))
        self.running -= 1
        return judged(True, "ok")

    def run(self, command: str, timeout: float) -> CommandResult:
        raise AssertionError("not used")

    def cli(self, command: str, timeout: float) -> str:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


def test_active_checks_run_alone_after_the_others_and_are_marked() -> None:
    checks = [{**LOGIN, "id": "a1"}, {**BASE, "type": "file", "id": "p1", "path": "/etc/x"},
              {**LOGIN, "id": "a2"}, {**BASE, "type": "file", "id": "p2", "path": "/etc/y"}]
    spec = GradingSpec.model_validate({"scenario": "s", "checks": checks})
    session = Recorder()
    report = grade(spec, lambda node: session, lab="l")  # type: ignore[arg-type,return-value]
    started = [c for kind, c in session.calls if kind == "start"]
    assert set(started[:2]) == {"p1", "p2"} and started[2:] == ["a1", "a2"]
    assert not session.overlap_with_active
    assert [r.check_id for r in report.results] == ["a1", "p1", "a2", "p2"]  # results stay in spec order
    assert [r.active for r in report.results] == [True, False, True, False]
    assert [r.active for r in from_json(to_json(report)).results] == [True, False, True, False]
    assert "[actif : a agi sur le nœud, puis l'a défait]" in render_table(report, lang="fr")
    assert "[active: acted on the node, then undid it]" in render_table(report, lang="en")
