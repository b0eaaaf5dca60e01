"""Unit enablement resolved from a node's files (recorded trees), and the service unit verdicts."""

from __future__ import annotations

from labctl.grading.checks.system import evaluate_service, probe_service
from labctl.grading.session import CommandResult
from labctl.grading.spec import ServiceCheck
from labctl.grading.units import Entry, NodeFiles, enablement

LIB, ETC = "/lib/systemd/system", "/etc/systemd/system"
# A Debian 12 node as recorded: files (text) and links (target).
BASE: dict[str, str | Entry] = {
    f"{LIB}/default.target": Entry(link="graphical.target"),
    f"{LIB}/graphical.target": "[Unit]\nRequires=multi-user.target\nWants=display-manager.service\n",
    f"{LIB}/multi-user.target": "[Unit]\nRequires=basic.target\n",
    f"{LIB}/basic.target": "[Unit]\nRequires=sysinit.target\n",
    f"{LIB}/sysinit.target": "[Unit]\n",
    f"{LIB}/rescue.target": "[Unit]\n",
    f"{LIB}/cron.service": "[Service]\nExecStart=/usr/sbin/cron -f\n[Install]\nWantedBy=multi-user.target\n",
    f"{LIB}/ssh.service": "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n",
    f"{ETC}/multi-user.target.wants/ssh.service": Entry(link=f"{LIB}/ssh.service"),
}


def files(tree: dict[str, str | Entry]) -> NodeFiles:
    def listdir(path: str) -> list[str]:
        return sorted({p[len(path) + 1:].split("/")[0] for p in tree if p.startswith(path + "/")})

    def entry(path: str) -> Entry | None:
        found = tree.get(path)
        if found is None:
            return None
        return found if isinstance(found, Entry) else Entry(size=len(found))

    def text(path: str) -> str:
        found = tree[path]
        return found if isinstance(found, str) else ""

    return NodeFiles(listdir, entry, text)


def test_enabled_is_a_link_in_the_wants_of_a_unit_the_boot_reaches() -> None:
    assert enablement(files(BASE), "ssh").state == "enabled"
    assert enablement(files(BASE), "cron.service").state == "disabled"
    enabled = BASE | {f"{ETC}/multi-user.target.wants/cron.service": Entry(link=f"{LIB}/cron.service")}
    assert enablement(files(enabled), "cron").starts_at_boot
    # wanted by a target the boot never reaches: does not start at boot
    elsewhere = BASE | {f"{ETC}/rescue.target.wants/cron.service": Entry(link=f"{LIB}/cron.service")}
    assert enablement(files(elsewhere), "cron").state == "disabled"
    # in /run only: gone after a reboot
    runtime = BASE | {"/run/systemd/system/multi-user.target.wants/cron.service": Entry(link=f"{LIB}/cron.service")}
    assert enablement(files(runtime), "cron").state == "disabled"
    # Wants= in a drop-in of a reached unit counts too
    drop_in = BASE | {f"{ETC}/multi-user.target.d/cron.conf": "[Unit]\nWants=cron.service\n"}
    assert enablement(files(drop_in), "cron").starts_at_boot


def test_a_mask_wins_and_a_missing_unit_is_not_found() -> None:
    masked = BASE | {f"{ETC}/ssh.service": Entry(link="/dev/null")}
    found = enablement(files(masked), "ssh")
    assert found.state == "masked" and not found.starts_at_boot
    empty = BASE | {f"{ETC}/ssh.service": ""}
    assert enablement(files(empty), "ssh").state == "masked"
    assert enablement(files(BASE), "named").state == "not-found"


def _check(**keys: object) -> ServiceCheck:
    return ServiceCheck.model_validate({"id": "c", "criterion": "A2.1-c1", "node": "h1", "type": "service",
                                        "description": {"fr": "x", "en": "x"}, **keys})


def test_inside_the_node_systemctl_answers_judge_a_unit() -> None:
    check = _check(unit="cron", enabled=True, active=True)
    assert "systemctl is-enabled cron.service" in probe_service(check).command
    ok = evaluate_service(check, CommandResult(0, "enabled=enabled\nactive=active\n", ""))
    assert ok.outcome.value == "PASS"
    started_only = evaluate_service(check, CommandResult(0, "enabled=disabled\nactive=active\n", ""))
    assert started_only.outcome.value == "FAIL" and "expected enabled" in started_only.evidence
    masked = evaluate_service(check, CommandResult(0, "enabled=masked\nactive=inactive\n", ""))
    assert masked.outcome.value == "FAIL"
    assert evaluate_service(check, CommandResult(127, "", "sh: systemctl: not found")).outcome.value == "ERROR"
    old = _check(process="sshd")  # specs written before units keep working
    assert evaluate_service(old, CommandResult(0, "42\n", "")).outcome.value == "PASS"


def test_a_service_check_names_a_process_or_a_unit() -> None:
    import pytest
    from pydantic import ValidationError

    for keys in ({}, {"process": "cron", "unit": "cron", "enabled": True}, {"unit": "cron"},
                 {"process": "cron", "enabled": True}):
        with pytest.raises(ValidationError):
            _check(**keys)
