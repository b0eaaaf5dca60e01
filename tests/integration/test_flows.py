"""The flows check on a real lab: a firewall router (nftables) between a LAN, a DMZ and an outside
network (tests/data/labs/zones.yml). A permissive router FAILs, the policy of the matrix PASSes,
one forbidden flow opened or a stateless rule set FAILs saying which flows; tricks played on
the zones' nodes (a listener of the candidate's, a service stopped, a rule on a source node)
change nothing the network does and so change no verdict in the candidate's favour."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.grading.loader import load_grading_spec
from labctl.grading.results import CheckResult, Outcome
from labctl.state import LabState

from .conftest import DATA, inside, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

ZONES = DATA / "labs" / "zones.yml"
SPEC = """scenario: zones
checks:
  - id: matrix
    criterion: A3.3-c1
    description: {fr: matrice des flux, en: flow matrix}
    node: fw
    type: flows
    zones: {lan: lan1, dmz: web, out: ext@10.63.0.10}
    services: [icmp, tcp/22, tcp/80, udp/53]
    allow: ["lan -> dmz tcp/80", "lan -> dmz icmp", "lan -> dmz udp/53", "out -> dmz tcp/80", "lan -> out tcp/80"]
"""
POLICY = """flush ruleset
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "eth1" oifname "eth2" tcp dport 80 accept
    iifname "eth1" oifname "eth2" udp dport 53 accept
    iifname "eth1" oifname "eth2" icmp type echo-request accept
    iifname "eth3" oifname "eth2" tcp dport 80 accept
    iifname "eth1" oifname "eth3" tcp dport 80 accept
    counter drop
  }
}
"""


def grade(lab: LabState, tmp_path: Path) -> CheckResult:
    spec_file = tmp_path / "spec.yml"
    spec_file.write_text(SPEC)
    report = labs.grade(lab, load_grading_spec(spec_file))
    (result,) = report.results
    assert result.observed == "outside"
    return result


def policy(lab: LabState, text: str) -> None:
    inside(lab, "fw", f"cat > /etc/nftables.conf <<'EOF'\n{text}EOF\nnft -f /etc/nftables.conf")


def test_flow_matrix_both_ways_through_an_nftables_router(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab(ZONES)  # type: ignore[operator]
    flat = grade(lab, tmp_path)  # the router forwards everything
    assert flat.outcome is Outcome.FAIL
    assert flat.evidence.startswith("5/5 allowed flows pass, 19 of 19 forbidden flows open: "), flat.evidence

    policy(lab, POLICY)
    right = grade(lab, tmp_path)
    assert right.outcome is Outcome.PASS, right.evidence
    assert right.evidence == "5/5 allowed flows pass, 19/19 forbidden flows blocked"

    # the candidate's own listener on a forbidden port, a stopped web server: nothing changes
    inside(lab, "web", "(timeout 30 nc -l -k -p 22 >/dev/null 2>&1 &) ; pkill -x python3 || true")
    assert grade(lab, tmp_path).outcome is Outcome.PASS

    # a forbidden flow dropped on its source node, not by the firewall, is not blocked by the network
    inside(lab, "fw", 'nft insert rule inet filter forward iifname "eth1" oifname "eth2" tcp dport 22 accept')
    inside(lab, "lan1", "nft add table inet own && nft add chain inet own out '{ type filter hook output "
                        "priority 0; policy accept; }' && nft add rule inet own out tcp dport 22 drop")
    hidden = grade(lab, tmp_path)
    assert hidden.outcome is Outcome.FAIL
    assert "lan->dmz tcp/22: the probe never left lan's node" in hidden.evidence

    inside(lab, "lan1", "nft delete table inet own")
    opened = grade(lab, tmp_path)
    assert opened.outcome is Outcome.FAIL
    assert opened.evidence == "5/5 allowed flows pass, 1 of 19 forbidden flows open: lan->dmz tcp/22: open"

    policy(lab, POLICY.replace("    ct state established,related accept\n", ""))  # stateless: answers dropped
    stateless = grade(lab, tmp_path)
    assert stateless.outcome is Outcome.FAIL
    assert stateless.evidence.startswith("0/5 allowed flows pass, 19/19 forbidden flows blocked: ")
    assert "out->dmz tcp/80: reached dmz but its answer did not come back" in stateless.evidence
