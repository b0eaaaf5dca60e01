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
from labctl.grading.results import Outcome
from labctl.topology import load_topology

from .conftest import DATA, pytestmark_local
from .test_frr_vty import FAST_TIMERS, inside

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
TWO_ROUTERS = DATA / "labs" / "two-routers.yml"
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
