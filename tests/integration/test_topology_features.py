"""Topology features on real labs (local provider): the management network stays out of the
lab's routing, and each topology feature (loopbacks, MTU, IPv6, VLANs, DHCP) is seen working
from the nodes themselves, not only in the plan."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.results import Outcome
from labctl.topology import load_topology

from .conftest import DATA, pytestmark_local
from .test_frr_vty import FAST_TIMERS, inside

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
TWO_ROUTERS = DATA / "labs" / "two-routers.yml"
FEATURES = DATA / "labs" / "features.yml"
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")

# A candidate's catch-all OSPF: no router id, every interface the router has in area 0.
CATCH_ALL = "vtysh " + " ".join(f"-c '{line}'" for line in [
    "configure terminal", *FAST_TIMERS, "router ospf", "timers throttle spf 0 50 1000",
    "network 0.0.0.0/0 area 0", "end"])


def _until(what: str, probe: object, seconds: float = 40) -> str:
    """Poll `probe()` (a text, or None while not yet) until it answers; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = probe()  # type: ignore[operator]
        if answer:
            return str(answer)
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {seconds:.0f} s")


def test_management_network_is_invisible_to_routing(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(TWO_ROUTERS, name="topo-mgmt")  # type: ignore[operator]
    mgmt = IPv4Network(lab.plan.mgmt_subnet)
    for router in ("r1", "r2"):
        links = json.loads(inside(lab, router, "ip -j link show"))
        assert sorted(link["ifname"] for link in links) == ["eth0", "eth1", "lo"], links
        inside(lab, router, CATCH_ALL)

    def full() -> str | None:
        text = inside(lab, "r1", "vtysh -c 'show ip ospf neighbor json'")
        return text if '"Full' in text else None
    _until("r1-r2 OSPF adjacency", full)
    r2_id = json.loads(inside(lab, "r2", "vtysh -c 'show ip ospf json'"))["routerId"]
    r1_id = json.loads(inside(lab, "r1", "vtysh -c 'show ip ospf json'"))["routerId"]
    assert {r1_id, r2_id} <= {"10.1.0.1", "10.255.0.1", "10.2.0.1", "10.255.0.2"}, (r1_id, r2_id)

    def learned() -> str | None:
        text = inside(lab, "r2", "vtysh -c 'show ip route ospf json'")
        return text if "10.1.0.0/24" in text else None
    _until("r2 learns r1's LAN through OSPF", learned)

    seen = {
        "r1 LSDB": inside(lab, "r1", "vtysh -c 'show ip ospf database router' -c 'show ip ospf database'"),
        "r2 LSDB": inside(lab, "r2", "vtysh -c 'show ip ospf database router' -c 'show ip ospf database'"),
        "r2 FRR routes": inside(lab, "r2", "vtysh -c 'show ip route'"),
        "r2 kernel routes": inside(lab, "r2", "ip route show table all"),
        "r1 interfaces": inside(lab, "r1", "vtysh -c 'show interface brief'"),
    }
    assert "10.1.0.0" in seen["r2 LSDB"] and "10.1.0.0/24" in seen["r2 FRR routes"]  # the lab is there
    for where, text in seen.items():
        leaked = [a for a in IPV4.findall(text) if IPv4Address(a) in mgmt]
        assert not leaked, f"management addresses {leaked} in {where}:\n{text}"

    # labctl still reaches, grades and opens shells on the routers (out of band)
    spec_file = tmp_path / "neighbor.yml"
    spec_file.write_text(f"""\
scenario: two-routers
checks:
  - {{id: neighbor, criterion: A1.3-c2, description: {{fr: voisin, en: neighbour}}, node: r1,
     type: ospf_neighbor, neighbor: {r2_id}, wait: 20}}
  - {{id: hostname, criterion: A1.3-c2, description: {{fr: nom, en: name}}, node: r2, type: command,
     command: hostname, stdout_matches: '^r2$'}}
""")
    report = labs.grade(lab, load_grading_spec(spec_file, load_topology(TWO_ROUTERS)))
    assert {r.check_id: r.outcome for r in report.results} == {
        "neighbor": Outcome.PASS, "hostname": Outcome.PASS}, report.results
    shell = subprocess.run([sys.executable, "-m", "labctl", "ssh", "--lab", lab.name, "r1"],
                           input="hostname\nexit\n", capture_output=True, text=True, timeout=60)
    assert shell.returncode == 0 and "r1" in shell.stdout.split(), (shell.stdout, shell.stderr)
    one = subprocess.run([sys.executable, "-m", "labctl", "exec", "--lab", lab.name, "r2", "--", "hostname"],
                         capture_output=True, text=True, timeout=60)
    assert (one.returncode, one.stdout.strip()) == (0, "r2"), one.stderr


def _attempt(lab: object, node: str, command: str) -> int:
    """The exit code of `command` run as the node's root (a probe that may fail)."""
    view = LabView(lab)
    try:
        return OutsideSession(view, node, lambda: None).run(command, 20).exit_code  # type: ignore[arg-type]
    finally:
        view.close()


def _answers(lab: object, node: str, command: str) -> bool:
    """A ping that must get through: tried for up to 10 s (a fresh link resolves its neighbours first)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _attempt(lab, node, command) == 0:
            return True
        time.sleep(0.5)
    return False


def _reach_spec(tmp_path: Path, wait: int) -> Path:
    spec = tmp_path / f"loopbacks-{wait}.yml"
    spec.write_text(f"""\
scenario: features
checks:
  - {{id: r2-r1-lo, criterion: A2.3-c1, description: {{fr: boucle, en: loopback}}, node: r2, type: reach,
     target: 10.254.0.1, wait: {wait}}}
  - {{id: h1-r2-lo, criterion: A2.3-c1, description: {{fr: boucle, en: loopback}}, node: h1, type: reach,
     target: 10.254.0.2, wait: {wait}}}
""")
    return spec


def test_loopbacks_ipv6_and_mtu_on_a_real_lab(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(FEATURES, name="topo-features")  # type: ignore[operator]
    labs.snapshot(lab)  # the starting state `reset` comes back to (at the end)

    # MTU: both ends of the WAN cable say 1400; a 1400-byte packet passes it, 1401 bytes do not
    for router in ("r1", "r2"):
        assert json.loads(inside(lab, router, "ip -j link show eth1"))[0]["mtu"] == 1400
    assert json.loads(inside(lab, "r1", "ip -j link show eth0"))[0]["mtu"] == 1500
    assert _answers(lab, "r1", "ping -c 1 -W 2 -M do -s 1372 10.255.0.2")
    assert _attempt(lab, "r1", "ping -c 1 -W 2 -M do -s 1373 10.255.0.2") != 0

    # IPv6 beside IPv4: h1 reaches r1 on the LAN and r2 across r1 (static IPv6 routes both ways)
    addresses = json.loads(inside(lab, "h1", "ip -j -6 addr show dev eth0"))[0]["addr_info"]
    assert "2001:db8:1::2" in [a["local"] for a in addresses]
    assert _answers(lab, "h1", "ping -6 -c 1 -W 2 2001:db8:1::1")
    assert _answers(lab, "h1", "ping -6 -c 1 -W 2 2001:db8:255::2")
    assert _answers(lab, "h1", "ping -6 -c 1 -W 2 2001:db8:ff::1")  # r1's IPv6 loopback
    assert _attempt(lab, "h1", "ping -6 -c 1 -W 2 2001:db8:ff::99") != 0  # nobody's: not reached

    # Loopbacks: on lo, unreachable from afar until OSPF carries them, then reached; they are
    # the routers' OSPF router ids (no router-id configured)
    assert "10.254.0.1/32" in inside(lab, "r1", "ip -4 -o addr show dev lo")
    spec = load_grading_spec(_reach_spec(tmp_path, 0), load_topology(FEATURES))
    before = {r.check_id: r.outcome for r in labs.grade(lab, spec).results}
    assert before == {"r2-r1-lo": Outcome.FAIL, "h1-r2-lo": Outcome.FAIL}, before
    for router in ("r1", "r2"):
        inside(lab, router, CATCH_ALL)
    spec = load_grading_spec(_reach_spec(tmp_path, 40), load_topology(FEATURES))
    after = {r.check_id: r for r in labs.grade(lab, spec).results}
    assert {k: r.outcome for k, r in after.items()} == {"r2-r1-lo": Outcome.PASS, "h1-r2-lo": Outcome.PASS}, after
    assert json.loads(inside(lab, "r1", "vtysh -c 'show ip ospf json'"))["routerId"] == "10.254.0.1"
    assert json.loads(inside(lab, "r2", "vtysh -c 'show ip ospf json'"))["routerId"] == "10.254.0.2"

    # status shows every address, loopbacks and IPv6 included
    shown = subprocess.run([sys.executable, "-m", "labctl", "status", "--lab", lab.name, "--json"],
                           capture_output=True, text=True, timeout=60)
    rows = {row["node"]: row["addresses"] for row in json.loads(shown.stdout)}
    assert rows["r1"] == ["lo=10.254.0.1/32", "lo=2001:db8:ff::1/128", "eth0=10.1.0.1/24", "eth0=2001:db8:1::1/64",
                          "eth1=10.255.0.1/30", "eth1=2001:db8:255::1/64"], rows

    # reset brings loopbacks, IPv6 addresses and routes and the MTU back
    inside(lab, "r2", "ip addr flush dev lo; ip -6 route flush table main; ip link set eth1 mtu 1500")
    labs.reset(lab)
    assert "10.254.0.2/32" in inside(lab, "r2", "ip -4 -o addr show dev lo")
    assert json.loads(inside(lab, "r2", "ip -j link show eth1"))[0]["mtu"] == 1400
    assert _answers(lab, "h1", "ping -6 -c 1 -W 2 2001:db8:255::2")


VLANS = DATA / "labs" / "vlans.yml"


def test_vlans_are_refused_with_doctors_finding_naming_each_place() -> None:
    """A topology with VLANs: refused before any lab exists. Where the kernel lacks 802.1q or
    bridge vlan filtering (this machine), the error is doctor's own probe result, exit 5
    (platform), at file:line; where it has them, the local provider still builds no VLAN (6)."""
    from labctl.doctor import kernel_feature
    from labctl.errors import EXIT_PLATFORM, EXIT_PROVIDER, LabctlError
    from labctl.state import all_labs

    before = {lab.id for lab in all_labs()}
    with pytest.raises(LabctlError) as refused:
        labs.up(str(VLANS), name="vlans-refused")
    message = refused.value.render()
    tagging, switch = kernel_feature("vlan (802.1q)"), kernel_feature("bridge vlan filtering")
    if tagging.ok and switch.ok:
        assert refused.value.exit_code == EXIT_PROVIDER
        assert "does not build VLANs yet" in message
    else:
        assert refused.value.exit_code == EXIT_PLATFORM
        for probe in (tagging, switch):
            if not probe.ok:  # doctor's line, word for word
                assert f"{probe.name}: {probe.detail}" in message
    # every place, at its line: the trunk and access ports (links 1-4), the sub-interfaces
    lines = VLANS.read_text().splitlines()
    for needle, what in (("trunk: [10, 20]", "link 1: a switch port trunk of [10, 20]"),
                         ("vlan: 10", "link 2: a switch port in VLAN 10"),
                         ('"eth1.10@10.0.10.1/24"', "r1: tagged sub-interface eth1.10"),
                         ("eth1.30@10.0.30.2/30", "r2: tagged sub-interface eth1.30")):
        line = next(n for n, text in enumerate(lines, 1) if needle in text)
        assert f"{VLANS}:{line}: {what}" in message, (what, message)
    assert {lab.id for lab in all_labs()} == before, "nothing is built"
