"""IPv6 on a real dual-stack lab (tests/data/labs/features.yml): reach (the right host must answer,
proven by its own ICMPv6 echo replies, as for IPv4) and route checks on IPv6 routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.results import CheckResult, Outcome
from labctl.topology import load_topology

from .conftest import DATA, inside, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
FEATURES = DATA / "labs" / "features.yml"
SPEC = """\
scenario: features
checks:
  - {id: lan, criterion: A2.3-c1, description: {fr: lan, en: lan}, node: h1, type: reach, target: "2001:db8:1::1",
     wait: WAIT}
  - {id: wan, criterion: A2.3-c1, description: {fr: wan, en: wan}, node: h1, type: reach, target: "2001:db8:255::2",
     wait: WAIT}
  - {id: nobody, criterion: A2.3-c1, description: {fr: personne, en: nobody}, node: h1, type: reach,
     target: "2001:db8:1::99", expect: unreachable}
"""


def grade(lab: object, tmp_path: Path, wait: int = 0) -> dict[str, CheckResult]:
    spec_file = tmp_path / "v6.yml"
    spec_file.write_text(SPEC.replace("WAIT", str(wait)))
    spec = load_grading_spec(spec_file, load_topology(FEATURES))
    return {r.check_id: r for r in labs.grade(lab, spec).results}  # type: ignore[arg-type]


def test_ipv6_reach_is_answered_by_the_address_owner(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(FEATURES, name="checks-v6")  # type: ignore[operator]
    got = grade(lab, tmp_path, 20)  # neighbour discovery on a fresh lab takes a moment
    assert {k: r.outcome for k, r in got.items()} == dict.fromkeys(got, Outcome.PASS), got
    assert got["wan"].evidence.startswith("2001:db8:255::2 answers (2 packets transmitted, 2 received")
    assert got["wan"].observed == "outside"
    # r2 loses its address and r1 answers for it from its own lo: not the owner, FAIL
    inside(lab, "r2", "ip -6 addr del 2001:db8:255::2/64 dev eth1")
    inside(lab, "r1", "ip -6 addr add 2001:db8:255::2/128 dev lo")
    got = grade(lab, tmp_path)
    assert got["wan"].outcome is Outcome.FAIL, got["wan"]
    assert "2001:db8:255::2 answered, but not from r2" in got["wan"].evidence
    # h1 puts the address on itself: its own stack answers, FAIL
    inside(lab, "h1", "ip -6 addr add 2001:db8:1::1/128 dev lo")
    got = grade(lab, tmp_path)
    assert got["lan"].outcome is Outcome.FAIL and "is an address of h1 itself" in got["lan"].evidence, got["lan"]


ROUTES = """\
scenario: features
checks:
  - {id: h1-default6, criterion: A2.3-c1, description: {fr: d, en: d}, node: h1, type: route, destination: default6,
     via: "2001:db8:1::1", protocol: static}
  - {id: r2-lan6, criterion: A2.3-c1, description: {fr: l, en: l}, node: r2, type: route,
     destination: "2001:db8:1::/64", via: "2001:db8:255::1"}
  - {id: r2-lan6-connected, criterion: A2.3-c1, description: {fr: c, en: c}, node: r2, type: route,
     destination: "2001:db8:1::/64", protocol: connected}
  - {id: h1-no-lan9, criterion: A2.3-c1, description: {fr: n, en: n}, node: h1, type: route,
     destination: "2001:db8:9::/64", absent: true}
"""


def test_ipv6_routes(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(FEATURES, name="checks-v6-routes")  # type: ignore[operator]
    spec_file = tmp_path / "routes6.yml"
    spec_file.write_text(ROUTES)
    spec = load_grading_spec(spec_file, load_topology(FEATURES))
    got = {r.check_id: r for r in labs.grade(lab, spec).results}  # type: ignore[arg-type]
    assert {k: r.outcome.value for k, r in got.items()} == {
        "h1-default6": "PASS", "r2-lan6": "PASS", "r2-lan6-connected": "FAIL", "h1-no-lan9": "PASS"}, got
    assert got["h1-default6"].evidence.startswith("default via 2001:db8:1::1 dev eth0 proto")
    assert "expected a route 2001:db8:1::/64 proto connected" in got["r2-lan6-connected"].evidence
    # the candidate removes h1's IPv6 default route: FAIL, saying so
    inside(lab, "h1", "ip -6 route del default")
    again = {r.check_id: r for r in labs.grade(lab, spec).results}  # type: ignore[arg-type]
    assert again["h1-default6"].outcome is Outcome.FAIL
    assert again["h1-default6"].evidence.startswith("no route to default"), again["h1-default6"]
