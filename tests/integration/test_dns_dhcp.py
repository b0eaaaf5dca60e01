"""The dns and dhcp check types on a real lab: a branch office where srv runs dnsmasq (DNS and
DHCP) and ws is a workstation (tests/data/scenarios/dns-dhcp). Each check is graded on a wrong
state (FAIL, with what was seen) and on the right one (PASS), observed from outside the node."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.results import CheckResult, Outcome
from labctl.state import LabState

from .conftest import DATA, inside, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

SCENARIO = DATA / "scenarios" / "dns-dhcp"
# srv's dnsmasq: the office's zone (agence.lan, with PTR records for host-record entries) and a
# DHCP pool; started by hand, or restarted by systemd where systemd runs the node
DNSMASQ_SETUP = r"""set -e
cat > /etc/dnsmasq.d/lab.conf <<'EOF'
interface=eth1
bind-interfaces
no-resolv
no-hosts
domain=agence.lan
local=/agence.lan/
host-record=srv.agence.lan,10.30.0.2
host-record=www.agence.lan,10.30.0.20
cname=intranet.agence.lan,www.agence.lan
dhcp-range=10.30.0.100,10.30.0.150,255.255.255.0,1h
dhcp-option=option:router,10.30.0.1
dhcp-option=option:dns-server,10.30.0.2
dhcp-option=option:domain-search,agence.lan
EOF
"""
DNSMASQ_START = r"""if [ -d /run/systemd/system ]; then systemctl restart dnsmasq
else kill $(cat /run/dnsmasq-lab.pid 2>/dev/null) 2>/dev/null && sleep 0.2 || true
  dnsmasq --conf-dir=/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new --pid-file=/run/dnsmasq-lab.pid
fi
"""
# every node has the scenario image's dnsmasq: where systemd runs the node, it starts at boot on
# the workstation too (answering on 127.0.0.1 and holding port 53): stopped there, as an office would
WS_WITHOUT_DNSMASQ = "if [ -d /run/systemd/system ]; then systemctl disable --now dnsmasq; fi"
# ws's DHCP client by hand, as a technician would on a workstation without a DHCP interface
DHCLIENT = ("ip -4 addr flush dev eth1 && timeout 20 dhclient -1 -pf /run/dhclient.eth1.pid "
            "-lf /var/lib/dhcp/dhclient.eth1.leases eth1")


def grade(lab: LabState, tmp_path: Path, checks: str) -> dict[str, CheckResult]:
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text("scenario: dns-dhcp\nchecks:\n" + checks)
    report = labs.grade(lab, load_grading_spec(spec_file))
    return {r.check_id: r for r in report.results}


def check(check_id: str, kind: str, keys: str, node: str = "ws") -> str:
    head = (f"  - id: {check_id}\n    criterion: A2.1-c1\n    description: {{fr: {check_id}, en: {check_id}}}\n"
            f"    node: {node}\n    type: {kind}\n    timeout: 10\n")
    return head + "".join(f"    {line}\n" for line in keys.splitlines())


DNS_CHECKS = "".join([
    check("www", "dns", "name: www.agence.lan\naddresses: [10.30.0.20]\nserver: 10.30.0.2"),
    check("srv-short", "dns", "name: srv\naddresses: [10.30.0.2]\nreverse: true"),
    check("intranet", "dns", "name: intranet.agence.lan\naddresses: [10.30.0.20]"),
    check("no-such", "dns", "name: compta.agence.lan"),
])


def test_dns_through_the_node_resolver_configuration(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(SCENARIO)  # type: ignore[operator]
    inside(lab, "srv", DNSMASQ_SETUP + DNSMASQ_START)
    inside(lab, "ws", WS_WITHOUT_DNSMASQ)
    # wrong: ws has no nameserver (the lab's default resolv.conf); a hosts entry is not DNS
    inside(lab, "ws", "echo '10.30.0.20 www.agence.lan www' >> /etc/hosts")
    got = grade(lab, tmp_path, DNS_CHECKS)
    for name in ("www", "srv-short", "intranet"):
        assert got[name].outcome is Outcome.FAIL, got[name]
        assert "no nameserver in /etc/resolv.conf, so 127.0.0.1" in got[name].evidence
        assert got[name].observed == "outside"
    assert got["no-such"].outcome is Outcome.FAIL  # nothing answered: not proof of no such name
    # wrong: the gateway as nameserver (nothing answers DNS there)
    inside(lab, "ws", "printf 'nameserver 10.30.0.1\\nsearch agence.lan\\n' > /etc/resolv.conf")
    got = grade(lab, tmp_path, DNS_CHECKS)
    assert got["www"].outcome is Outcome.FAIL, got["www"]
    assert "no nameserver answered (10.30.0.1: " in got["www"].evidence
    # right: srv first (a dead second nameserver does not matter)
    inside(lab, "ws", "printf 'nameserver 10.30.0.2\\nnameserver 10.30.0.1\\nsearch agence.lan\\n' > /etc/resolv.conf")
    got = grade(lab, tmp_path, DNS_CHECKS)
    assert {k: r.outcome for k, r in got.items()} == dict.fromkeys(got, Outcome.PASS), got
    assert "srv.agence.lan A -> 10.30.0.2 (from 10.30.0.2)" in got["srv-short"].evidence
    assert "2.0.30.10.in-addr.arpa PTR -> srv.agence.lan" in got["srv-short"].evidence
    assert "via www.agence.lan" in got["intranet"].evidence
    assert "no such name (NXDOMAIN)" in got["no-such"].evidence
    # wrong again: the server's record changed (the candidate broke the zone)
    inside(lab, "srv", "sed -i 's/www.agence.lan,10.30.0.20/www.agence.lan,10.30.0.21/' /etc/dnsmasq.d/lab.conf\n"
                       + DNSMASQ_START)
    got = grade(lab, tmp_path, check("www", "dns", "name: www.agence.lan\naddresses: [10.30.0.20]"))
    assert got["www"].outcome is Outcome.FAIL
    assert "www.agence.lan A -> 10.30.0.21 (from 10.30.0.2)" in got["www"].evidence
    assert "expected 10.30.0.20" in got["www"].evidence


LEASE = "interface: eth1\nrange: [10.30.0.100, 10.30.0.150]\ngateway: 10.30.0.1\ndns: [10.30.0.2]"
DHCP_CHECKS = check("lease", "dhcp", LEASE) + check(
    "other-pool", "dhcp", "interface: eth1\nrange: [10.30.0.200, 10.30.0.250]\ngateway: 10.30.0.254") + check(
    "no-such-interface", "dhcp", "interface: eth7")


def test_dhcp_lease_seen_from_the_kernel_and_resolv_conf(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(SCENARIO)  # type: ignore[operator]
    inside(lab, "srv", DNSMASQ_SETUP + DNSMASQ_START)
    inside(lab, "ws", WS_WITHOUT_DNSMASQ)
    # wrong: ws keeps the topology's static address, no gateway, no nameserver
    got = grade(lab, tmp_path, DHCP_CHECKS)
    assert {k: r.outcome for k, r in got.items()} == dict.fromkeys(got, Outcome.FAIL), got
    lease = got["lease"]
    assert lease.observed == "outside"
    assert lease.evidence.startswith("eth1: 10.30.0.99/24 (static, valid forever)"), lease.evidence
    assert "no address from DHCP" in lease.evidence and "expected the default route via 10.30.0.1" in lease.evidence
    assert "expected nameserver 10.30.0.2" in lease.evidence
    assert got["no-such-interface"].evidence == "eth7: no such interface on ws"
    # forged: an address in the pool given a lifetime by hand, the route and resolv.conf written by hand
    inside(lab, "ws", "ip -4 addr flush dev eth1 && ip addr add 10.30.0.120/24 dev eth1 valid_lft 600"
                      " preferred_lft 600 && ip route add default via 10.30.0.1"
                      " && printf 'nameserver 10.30.0.2\\n' > /etc/resolv.conf")
    forged = grade(lab, tmp_path, DHCP_CHECKS)["lease"]
    assert forged.outcome is Outcome.FAIL, forged
    assert "no DHCP client runs to keep the lease (UDP port 68 held by nothing)" in forged.evidence
    inside(lab, "ws", "ip route del default")
    # right: the workstation's DHCP client got its lease from srv
    inside(lab, "ws", DHCLIENT)
    got = grade(lab, tmp_path, DHCP_CHECKS)
    lease = got["lease"]
    assert lease.outcome is Outcome.PASS, lease
    assert "s of lease left); DHCP client: dhclient (pid " in lease.evidence
    assert "default via 10.30.0.1 dev eth1" in lease.evidence
    assert "/etc/resolv.conf: nameserver 10.30.0.2" in lease.evidence
    other = got["other-pool"]
    assert other.outcome is Outcome.FAIL, other
    assert "outside the pool 10.30.0.200-10.30.0.250" in other.evidence
    assert "expected the default route via 10.30.0.254" in other.evidence


def test_a_nameserver_address_answered_by_another_node_fails(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(SCENARIO)  # type: ignore[operator]
    inside(lab, "srv", DNSMASQ_SETUP + DNSMASQ_START)
    inside(lab, "ws", WS_WITHOUT_DNSMASQ)
    inside(lab, "ws", "printf 'nameserver 10.30.0.2\\n' > /etc/resolv.conf")
    www = check("www", "dns", "name: www.agence.lan\naddresses: [10.30.0.20]")
    assert grade(lab, tmp_path, www)["www"].outcome is Outcome.PASS
    # the candidate on ws takes srv's address on its own lo and answers what the check wants
    inside(lab, "ws", "ip addr add 10.30.0.2/32 dev lo && dnsmasq --port=53 --listen-address=10.30.0.2"
                      " --bind-interfaces --no-resolv --no-hosts --address=/www.agence.lan/10.30.0.20"
                      " --pid-file=/run/fake-dns.pid")
    got = grade(lab, tmp_path, www)["www"]
    assert got.outcome is Outcome.FAIL, got
    assert "answered, but not by srv (it sent no such reply): another node answers for 10.30.0.2" in got.evidence


def test_route_protocols_in_a_technicians_words(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(SCENARIO)  # type: ignore[operator]
    checks = "".join([
        check("static-default", "route", "destination: default\nvia: 10.30.0.1\nprotocol: static", node="srv"),
        check("connected-lan", "route", "destination: 10.30.0.0/24\nprotocol: connected", node="srv"),
        check("lan-not-static", "route", "destination: 10.30.0.0/24\nprotocol: static", node="srv"),
    ])
    got = grade(lab, tmp_path, checks)
    assert {k: r.outcome.value for k, r in got.items()} == {
        "static-default": "PASS", "connected-lan": "PASS", "lan-not-static": "FAIL"}, got
    assert got["lan-not-static"].evidence.startswith("10.30.0.0/24 dev eth1 proto kernel")


@pytest.mark.parametrize("init", ["systemd", "light"])
def test_a_dhcp_interface_does_not_hold_the_boot_and_gets_its_lease_when_a_server_appears(
        make_lab: object, tmp_path: Path, init: str) -> None:
    """ws declared `eth1@dhcp`, no DHCP server at boot: labctl's stanza (allow-hotplug, raised by
    labctl-hotplug.service, or on the light init by its twin in /etc/labctl/init.d) lets the node
    answer while its DHCP client is still asking (with an `auto` stanza, networking.service held
    sshd until dhclient gave up, a minute later); once srv serves DHCP, the client still asking
    gets the lease, without anyone running it again."""
    import shutil

    scenario = tmp_path / "dns-dhcp"
    shutil.copytree(SCENARIO, scenario)
    topology = scenario / "topology.yml"
    topology.write_text(topology.read_text().replace('"ws:eth1@10.30.0.99/24"', '"ws:eth1@dhcp"')
                        + f"defaults: {{init: {init}}}\n")
    lab = make_lab(scenario)  # type: ignore[operator]
    # up returned (sshd answered) while ifup still waits for dhclient's first lease
    assert inside(lab, "ws", "pgrep -x ifup >/dev/null && echo asking; pgrep -x dhclient >/dev/null && echo client"
                  ).split() == ["asking", "client"]
    assert inside(lab, "ws", "cat /etc/network/interfaces.d/labctl-dhcp").splitlines()[1:] == [
        "allow-hotplug eth1", "iface eth1 inet dhcp"]
    inside(lab, "ws", WS_WITHOUT_DNSMASQ)
    assert grade(lab, tmp_path, check("lease", "dhcp", LEASE))["lease"].outcome is Outcome.FAIL
    inside(lab, "srv", DNSMASQ_SETUP + DNSMASQ_START)
    deadline = time.monotonic() + 90  # dhclient asks again after up to ~20 s between its tries
    while True:
        lease = grade(lab, tmp_path, check("lease", "dhcp", LEASE))["lease"]
        if lease.outcome is Outcome.PASS or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert lease.outcome is Outcome.PASS, lease
    assert "DHCP client: dhclient (pid " in lease.evidence
    if init == "systemd":
        assert inside(lab, "ws", "systemctl is-active labctl-hotplug.service").strip() == "active"
    else:
        assert inside(lab, "ws", "test -d /run/systemd/system || echo light").strip() == "light"
