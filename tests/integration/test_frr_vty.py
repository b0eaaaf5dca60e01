"""OSPF graded from the image's own FRR daemons on a real two-router lab: FAIL while OSPF is
not set up, PASS once it is; a route added by hand with `proto ospf`, a replaced vtysh and
a fake listener on ospfd's vty socket change nothing a candidate would want."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.results import CheckResult, Outcome
from labctl.topology import load_topology

from .conftest import DATA, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
TWO_ROUTERS = DATA / "labs" / "two-routers.yml"
SPEC = """\
scenario: two-routers
checks:
  - {id: neighbor, criterion: A1.3-c2, description: {fr: voisin, en: neighbour}, node: r1, type: ospf_neighbor,
     neighbor: 2.2.2.2, wait: WAIT}
  - {id: route, criterion: A1.3-c2, description: {fr: route, en: route}, node: r1, type: route,
     destination: 10.2.0.0/24, via: 10.255.0.2, protocol: ospf, wait: WAIT}
"""
FAST_TIMERS = ["interface eth1", "ip ospf network point-to-point", "ip ospf hello-interval 1",
               "ip ospf dead-interval 4", "exit"]


def ospf(router_id: str, networks: list[str]) -> str:
    """The vtysh command a candidate types to set OSPF up (fast timers, as the scenarios use)."""
    lines = ["configure terminal", *FAST_TIMERS, "router ospf", f"ospf router-id {router_id}",
             "timers throttle spf 0 50 1000", *(f"network {n} area 0" for n in networks), "end"]
    return "vtysh " + " ".join(f"-c '{line}'" for line in lines)


def inside(lab: object, node: str, command: str) -> str:
    """Run a command as the node's root (as the candidate would)."""
    view = LabView(lab)
    try:
        result = OutsideSession(view, node, lambda: None).run(command, 20)  # type: ignore[arg-type,return-value]
    finally:
        view.close()
    assert result.exit_code == 0, (command, result)
    return result.stdout


def graded(lab: object, tmp_path: Path, wait: int) -> dict[str, CheckResult]:
    spec_file = tmp_path / f"ospf-{wait}.yml"
    spec_file.write_text(SPEC.replace("WAIT", str(wait)))
    spec = load_grading_spec(spec_file, load_topology(TWO_ROUTERS))
    return {r.check_id: r for r in labs.grade(lab, spec).results}  # type: ignore[arg-type]


def outcomes(results: dict[str, CheckResult]) -> dict[str, str]:
    return {key: r.outcome.value for key, r in results.items()}


FAKE_OSPFD = """
import os, socket
path = "/run/frr/ospfd.vty"
os.rename(path, "/run/frr/ospfd.vty.real")
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(4)
while True:
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\\0"):
        data += c.recv(4096)
    c.sendall(b'{"neighbors":{"2.2.2.2":[{"nbrState":"Full/-","ifaceName":"eth1:10.255.0.1",'
              b'"ifaceAddress":"10.255.0.2"}]}}\\0\\0\\0\\0')
"""


def test_ospf_from_the_daemons_themselves(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(TWO_ROUTERS, name="frr-vty")  # type: ignore[operator]
    inside(lab, "r1", ospf("1.1.1.1", ["10.1.0.0/24", "10.255.0.0/30"]))

    # r2 has no OSPF yet: FAIL, whatever the candidate makes r1's own tools say
    inside(lab, "r1", "printf '#!/bin/sh\\necho Full\\n' > /usr/bin/vtysh"
                      " && ip route add 10.2.0.0/24 via 10.255.0.2 proto ospf")
    broken = graded(lab, tmp_path, 0)
    assert outcomes(broken) == {"neighbor": "FAIL", "route": "FAIL"}, broken
    assert "/usr/lib/frr/ospfd of the image): no OSPF neighbor 2.2.2.2" in broken["neighbor"].evidence
    assert "kernel: 10.2.0.0/24 via 10.255.0.2 dev eth1 proto ospf" in broken["route"].evidence
    assert "was not learned by OSPF (zebra has no such OSPF route)" in broken["route"].evidence
    assert {r.observed for r in broken.values()} == {"outside"}

    # the candidate sets OSPF up on r2 (and removes the hand-made route): PASS once converged
    inside(lab, "r1", "ip route del 10.2.0.0/24")
    inside(lab, "r2", ospf("2.2.2.2", ["10.2.0.0/24", "10.255.0.0/30"]))
    started = time.monotonic()
    solved = graded(lab, tmp_path, 40)  # converges in ~2 s; a loaded machine may take longer
    assert outcomes(solved) == {"neighbor": "PASS", "route": "PASS"}, solved
    print(f"converged and graded in {time.monotonic() - started:.1f} s")
    assert "neighbor 2.2.2.2 Full/- on eth1 (10.255.0.2); seen from r2, ospfd (pid" in solved["neighbor"].evidence
    assert solved["neighbor"].evidence.endswith("of the image): neighbor 1.1.1.1 Full/- on eth1 (10.255.0.1)")
    assert "next hop is OSPF neighbor 2.2.2.2 Full/- on eth1 (10.255.0.2)" in solved["route"].evidence

    # a daemon that is not there is an observation (FAIL), not an error
    inside(lab, "r1", "mv /run/frr/zebra.vty /run/frr/zebra.vty.away")
    gone = graded(lab, tmp_path, 0)["route"]
    assert gone.outcome is Outcome.FAIL and gone.evidence.startswith(
        "zebra is not running (no /run/frr/zebra.vty in the node), ospfd (pid "), gone
    inside(lab, "r1", "mv /run/frr/zebra.vty.away /run/frr/zebra.vty")

    # a listener of the candidate's on ospfd's socket path, answering "Full": tampered, ERROR
    inside(lab, "r1", "(setsid python3 -c '" + FAKE_OSPFD.replace("'", "'\\''") + "' >/dev/null 2>&1 &);"
                      " for i in $(seq 100); do [ -e /run/frr/ospfd.vty.real ] && [ -S /run/frr/ospfd.vty ] && exit 0;"
                      " sleep 0.1; done; exit 1")
    faked = graded(lab, tmp_path, 0)
    assert faked["neighbor"].outcome is Outcome.ERROR, faked["neighbor"]
    assert faked["neighbor"].evidence.startswith("tampered: /run/frr/ospfd.vty is answered by /usr/bin/python3")
    assert faked["route"].outcome is Outcome.ERROR  # its next hop is checked against ospfd too
    tampering = labs.grade(lab, load_grading_spec(tmp_path / "ospf-0.yml", load_topology(TWO_ROUTERS)))
    assert any(c["path"] == "/usr/bin/vtysh" for t in tampering.tampering if t["node"] == "r1"
               for c in t["changes"])


TYPED_SPEC = """\
scenario: two-routers
checks:
  - {id: lan2-inter-area, criterion: A1.3-c2, description: {fr: inter, en: inter}, node: r1, type: route,
     destination: 10.2.0.0/24, via: 10.255.0.2, protocol: ospf, ospf_type: inter-area, metric: 20, wait: WAIT}
  - {id: lan2-cost-17, criterion: A1.3-c2, description: {fr: cout, en: cost}, node: r1, type: route,
     destination: 10.2.0.0/24, protocol: ospf, metric: 17}
  - {id: external-e2, criterion: A1.3-c2, description: {fr: externe, en: external}, node: r1, type: route,
     destination: 172.16.0.0/24, via: 10.255.0.2, protocol: ospf, ospf_type: external-2, wait: WAIT}
"""


def test_ospf_route_types_and_metrics(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(TWO_ROUTERS, name="frr-types")  # type: ignore[operator]
    inside(lab, "r1", ospf("1.1.1.1", ["10.1.0.0/24", "10.255.0.0/30"]))
    inside(lab, "r2", ospf("2.2.2.2", ["10.2.0.0/24", "10.255.0.0/30"]))  # r2's LAN in area 0: intra-area
    spec_file = tmp_path / "typed.yml"

    def grade(wait: int) -> dict[str, CheckResult]:
        spec_file.write_text(TYPED_SPEC.replace("WAIT", str(wait)))
        spec = load_grading_spec(spec_file, load_topology(TWO_ROUTERS))
        return {r.check_id: r for r in labs.grade(lab, spec).results}  # type: ignore[arg-type]

    # once r1 has learned r2's LAN (intra-area), the area and the external route are wrong
    converged = graded(lab, tmp_path, 40)
    assert outcomes(converged) == {"neighbor": "PASS", "route": "PASS"}, converged
    intra = grade(0)
    assert outcomes(intra) == {"lan2-inter-area": "FAIL", "lan2-cost-17": "FAIL", "external-e2": "FAIL"}, intra
    assert "ospfd: 10.2.0.0/24 intra-area (N) in area 0.0.0.0, cost 20; expected an inter-area route" \
        in intra["lan2-inter-area"].evidence, intra["lan2-inter-area"]
    assert "zebra: OSPF learned nothing for 172.16.0.0/24" in intra["external-e2"].evidence
    # the candidate puts r2's LAN in area 1 and redistributes a static route: inter-area, external E2
    inside(lab, "r2", "vtysh -c 'configure terminal' -c 'ip route 172.16.0.0/24 blackhole' -c 'router ospf'"
                      " -c 'no network 10.2.0.0/24 area 0' -c 'network 10.2.0.0/24 area 1'"
                      " -c 'redistribute static' -c end")
    grade(40)  # until the new routes are learned
    typed = grade(0)
    assert outcomes(typed) == {"lan2-inter-area": "PASS", "lan2-cost-17": "FAIL", "external-e2": "PASS"}, typed
    assert "ospfd: 10.2.0.0/24 inter-area (N IA) in area 0.0.0.0, cost 20" in typed["lan2-inter-area"].evidence
    assert "; metric 20; expected metric 17" in typed["lan2-cost-17"].evidence  # the cost seen, then the one expected
    assert "172.16.0.0/24 external-2 (N E2), cost 10 to the ASBR, external cost 20" in typed["external-e2"].evidence


FEATURES = DATA / "labs" / "features.yml"
# ospf6d is off in the image's /etc/frr/daemons: turned on as an administrator would
OSPF6D_ON = ("sed -i 's/^ospf6d=no/ospf6d=yes/' /etc/frr/daemons && if [ -d /run/systemd/system ];"
             " then systemctl restart frr; else /usr/lib/frr/frrinit.sh restart >/dev/null; fi")
V3_SPEC = """\
scenario: features
checks:
  - {id: v3, criterion: A1.3-c2, description: {fr: v3, en: v3}, node: r1, type: ospf_neighbor, version: 3,
     neighbor: 2.2.2.2, wait: WAIT}
"""


def ospf6(router_id: str) -> str:
    """OSPFv3 on the WAN link (eth1), fast timers."""
    lines = ["configure terminal", "interface eth1", "ipv6 ospf6 area 0", "ipv6 ospf6 network point-to-point",
             "ipv6 ospf6 hello-interval 1", "ipv6 ospf6 dead-interval 4", "exit", "router ospf6",
             f"ospf6 router-id {router_id}", "end"]
    return "vtysh " + " ".join(f"-c '{line}'" for line in lines)


def test_ospfv3_neighbor(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(FEATURES, name="frr-v3")  # type: ignore[operator]
    spec_file = tmp_path / "v3.yml"

    def grade(wait: int) -> CheckResult:
        spec_file.write_text(V3_SPEC.replace("WAIT", str(wait)))
        return labs.grade(lab, load_grading_spec(spec_file, load_topology(FEATURES))).results[0]  # type: ignore[arg-type]

    gone = grade(0)  # ospf6d does not run: an observation, FAIL
    assert gone.outcome is Outcome.FAIL and "ospf6d is not running" in gone.evidence, gone
    for router in ("r1", "r2"):
        inside(lab, router, OSPF6D_ON)
    inside(lab, "r1", ospf6("1.1.1.1"))
    alone = grade(0)
    assert alone.outcome is Outcome.FAIL, alone
    assert "/usr/lib/frr/ospf6d of the image): no OSPF neighbor 2.2.2.2 (neighbors: none)" in alone.evidence
    inside(lab, "r2", ospf6("2.2.2.2"))
    full = grade(30)
    assert full.outcome is Outcome.PASS, full
    assert full.evidence.endswith("of the image): neighbor 2.2.2.2 Full on eth1"), full.evidence
    assert full.observed == "outside"
