"""Nodes run systemd as PID 1 (or the light init, per node), and reboot as machines do.

One lab, built once per test: a router and a host on systemd, a host on the light init.
What a candidate does by hand is lost across a reboot; what they wrote in files and enabled
comes back; the node's units live in groups below the node's own (observed from the host).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import cgroups
from labctl import lab as labs
from labctl.connect import open_session
from labctl.grading.spec import GradingSpec
from labctl.providers import get_provider
from labctl.state import LabState

from .conftest import lab_of, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

TOPOLOGY = """
name: systemd-nodes
nodes:
  r1: {kind: router}
  h1: {kind: host, routes: [{to: default, via: 10.10.0.1}]}
  h2: {kind: host, init: light, routes: [{to: default, via: 10.20.0.1}]}
  lan: {kind: switch, subnet: 10.10.0.0/24}
links:
  - endpoints: ["r1:eth1@10.10.0.1/24", lan]
  - endpoints: ["h1:eth1@10.10.0.10/24", lan]
  - endpoints: ["r1:eth2@10.20.0.1/30", "h2:eth1@10.20.0.2/30"]
"""


def run(lab: LabState, node: str, command: str) -> str:
    """`command` on `node` as the candidate runs it (its root, over SSH); its output."""
    session = open_session(get_provider("local").access(lab, node))
    try:
        result = session.run(command, 30)
    finally:
        session.close()
    return result.stdout.strip()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabState]:
    yield from lab_of(tmp_path, TOPOLOGY, "systemd-nodes")


def test_systemd_runs_the_node_and_the_candidate_uses_it(lab: LabState) -> None:
    assert run(lab, "h1", "cat /proc/1/comm") == "systemd"
    assert run(lab, "h1", "systemctl is-system-running --wait") == "running"
    assert run(lab, "r1", "systemctl is-active frr ssh") == "active\nactive"
    assert run(lab, "h1", "systemctl is-enabled frr; true") == "disabled"  # routers only
    assert run(lab, "r1", "sysctl -n net.ipv4.ip_forward") == "1"  # /etc/sysctl.d at boot
    assert "Started ssh.service" in run(lab, "h1", "journalctl -b -u ssh --no-pager")
    run(lab, "h1", "systemctl enable --now cron")
    assert run(lab, "h1", "systemctl is-enabled cron") == "enabled"
    # Seen from the host: the node's units are groups below the node's own group.
    groups = [d for tree in cgroups.layout().dirs(cgroups.node_group(lab.id, "h1"))
              for d in tree.rglob("ssh.service") if d.is_dir()]
    assert groups, "no ssh.service group below the node's group"
    # The light node: no systemd, its services started by labctl-init.
    assert run(lab, "h2", "cat /proc/1/comm; test -e /run/systemd/system || echo no-systemd") != "systemd"
    assert "no-systemd" in run(lab, "h2", "test -e /run/systemd/system || echo no-systemd")
    assert run(lab, "h2", "ping -c1 -W2 10.10.0.10 >/dev/null && echo reached") == "reached"


def test_a_reboot_keeps_files_and_enabled_units_not_what_was_done_by_hand(lab: LabState) -> None:
    before = {node: lab.nodes[node].init for node in ("r1", "h1", "h2")}
    interfaces = "auto eth1\\niface eth1 inet static\\n  address 10.10.0.88/24\\n"
    run(lab, "h1", f"ip addr add 10.10.0.77/24 dev eth1; printf '{interfaces}' >> /etc/network/interfaces; "
                   "systemctl start cron; systemctl disable cron; echo kept > /root/note; ip link set eth1 mtu 1400")
    machine_id = run(lab, "h1", "cat /etc/machine-id")
    run(lab, "h2", "ip addr add 10.20.0.99/30 dev eth1 2>/dev/null; echo kept > /root/note")
    labs.reboot(lab)
    assert all(lab.nodes[node].init != before[node] for node in before)  # new PID 1s
    addresses = run(lab, "h1", "ip -4 -o addr show dev eth1")
    assert "10.10.0.10/24" in addresses and "10.10.0.88/24" in addresses  # the plan's, the file's
    assert "10.10.0.77" not in addresses  # by hand only: gone
    assert "mtu 1500" in run(lab, "h1", "ip link show eth1")
    assert run(lab, "h1", "systemctl is-active cron; true") == "inactive"  # started, not enabled
    assert run(lab, "h1", "cat /root/note; cat /etc/machine-id") == f"kept\n{machine_id}"
    assert run(lab, "h2", "cat /root/note") == "kept"
    assert "10.20.0.99" not in run(lab, "h2", "ip -4 -o addr show dev eth1")
    # The network works again end to end, through the rebooted router.
    assert run(lab, "h1", "ping -c1 -W3 10.20.0.2 >/dev/null && echo reached") == "reached"
    assert get_provider("local").node_states(lab) == {"r1": "running", "h1": "running", "h2": "running"}


def _unit_spec(**keys: object) -> GradingSpec:
    check = {"id": "cron", "criterion": "A2.1-c1", "node": "h1", "type": "service", "unit": "cron",
             "description": {"fr": "cron démarre au boot", "en": "cron starts at boot"}, **keys}
    return GradingSpec.model_validate({"scenario": "systemd-nodes", "checks": [check]})


def _outcome(lab: LabState, spec: GradingSpec, after_reboot: bool = False) -> tuple[str, str]:
    result = labs.grade(lab, spec, after_reboot=after_reboot).results[0]
    return result.outcome.value, result.evidence


def test_service_unit_enabled_and_active_observed_from_outside(lab: LabState) -> None:
    enabled, active = _unit_spec(enabled=True), _unit_spec(active=True, executable="/usr/sbin/cron")
    run(lab, "h1", "systemctl disable --now cron")
    assert _outcome(lab, enabled)[0] == "FAIL" and _outcome(lab, active)[0] == "FAIL"
    run(lab, "h1", "systemctl start cron")  # running, not enabled
    assert _outcome(lab, active)[0] == "PASS"
    assert _outcome(lab, enabled)[0] == "FAIL"
    run(lab, "h1", "systemctl enable cron")
    assert _outcome(lab, enabled)[0] == "PASS", _outcome(lab, enabled)
    run(lab, "h1", "systemctl mask cron")  # masked: never starts, whatever wants it
    outcome, evidence = _outcome(lab, enabled)
    assert outcome == "FAIL" and "masked" in evidence
    run(lab, "h1", "systemctl unmask cron; systemctl enable cron")
    # A process of the same name started by hand outside the unit is not the unit running.
    run(lab, "h1", "systemctl stop cron; setsid -f /usr/sbin/cron")
    assert _outcome(lab, active)[0] == "FAIL"
    # The light node runs no units: not judged.
    light = GradingSpec.model_validate({"scenario": "s", "checks": [{
        "id": "x", "criterion": "A2.1-c1", "node": "h2", "type": "service", "unit": "ssh", "active": True,
        "description": {"fr": "x", "en": "x"}}]})
    assert _outcome(lab, light)[0] == "ERROR"


def test_persist_reboot_fails_a_service_started_but_not_enabled(lab: LabState) -> None:
    spec = _unit_spec(active=True, persist="reboot")
    run(lab, "h1", "systemctl disable cron; systemctl start cron")
    assert _outcome(lab, spec)[0] == "ERROR"  # not judged without a reboot
    labs.reboot(lab)
    assert _outcome(lab, spec, after_reboot=True)[0] == "FAIL"
    run(lab, "h1", "systemctl enable cron")
    labs.reboot(lab)
    assert _outcome(lab, spec, after_reboot=True)[0] == "PASS"
