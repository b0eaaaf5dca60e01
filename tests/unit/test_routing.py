"""OSPF checks judged on what real FRR 8.4 daemons and kernels said (tests/data/frr/,
recorded from a multi-site-routing lab: as set up, with routes added by hand with
`proto ospf`, and solved)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labctl.grading.checks.base import Unobservable
from labctl.grading.checks.ospf import neighbor_table
from labctl.grading.results import Outcome
from labctl.grading.routing import (
    Peering,
    far_end,
    judge_ospf_neighbor,
    judge_ospf_route,
    kernel_routes,
    lab_interfaces,
    observed_by_routing,
    peerings,
)
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, CheckBase
from labctl.plan import LabPlan, plan_lab
from labctl.topology import load_topology

DATA = Path(__file__).parents[1] / "data" / "frr"
TOPOLOGY = Path(__file__).parents[2] / "topologies" / "multi-site-routing.yml"
PASS, FAIL, ERROR = Outcome.PASS, Outcome.FAIL, Outcome.ERROR
R1_PEERS = [Peering("r2", "2.2.2.2", "eth1", "10.255.0.2"), Peering("r3", "3.3.3.3", "eth2", "10.255.0.6")]


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def table(name: str) -> dict[str, list[dict[str, Any]]]:
    answer = recorded(name)["show ip ospf neighbor json"]
    return neighbor_table(json.dumps(answer)) if answer else {}


def make(kind: str, **keys: object) -> Any:
    base = {"id": "t", "criterion": "A1.3-c2", "description": {"fr": "f", "en": "e"}, "node": "r1", "type": kind}
    return CHECK_MODELS[kind].model_validate({**base, **keys})


def route(name: str, check: CheckBase, peers: list[Peering] = R1_PEERS) -> tuple[Outcome, str]:
    data = recorded(name)
    verdict = judge_ospf_route(check, data["show ip route json"], data["kernel"], table(name), peers)
    return verdict.outcome, verdict.evidence


def recorded_plan() -> LabPlan:
    """multi-site-routing's plan with the router ids the recorded FRR outputs were taken with
    (a `router_id` variable wins over the loopback, which the topology now takes them from)."""
    plan = plan_lab(load_topology(TOPOLOGY), "abcdef", "msr")
    for n in (1, 2, 3):
        plan.node(f"r{n}").vars["router_id"] = f"{n}.{n}.{n}.{n}"
    return plan


def test_router_ids_come_from_the_loopbacks() -> None:
    plan = plan_lab(load_topology(TOPOLOGY), "abcdef", "msr")
    assert {p.node: p.router_id for p in peerings(plan, "r1")} == {
        "h1": None, "srv1": None, "r2": "10.254.0.2", "r3": "10.254.0.3"}


def test_peerings_come_from_the_topology() -> None:
    plan = recorded_plan()
    assert set(peerings(plan, "r1")) == {Peering("h1", None, "eth0", "10.1.0.10"),
                                         Peering("srv1", None, "eth0", "10.1.0.20"), *R1_PEERS}
    assert set(peerings(plan, "r2")) == {Peering("h2", None, "eth0", "10.2.0.10"),
                                         Peering("r1", "1.1.1.1", "eth1", "10.255.0.1")}


@pytest.mark.parametrize(("name", "neighbor", "outcome", "evidence"), [
    ("solved-r1", "2.2.2.2", PASS, "neighbor 2.2.2.2 Full/- on eth1 (10.255.0.2)"),
    ("solved-r1", "3.3.3.3", PASS, "neighbor 3.3.3.3 Full/- on eth2 (10.255.0.6)"),
    ("broken-r1", "2.2.2.2", FAIL, "neighbor 2.2.2.2 Exchange/- on eth1 (10.255.0.2), expected Full"),
    ("broken-r1", "3.3.3.3", FAIL, "no OSPF neighbor 3.3.3.3 (neighbors: 2.2.2.2 Exchange/-); expected Full; "
                                   "expected r3 (3.3.3.3) at 10.255.0.6 on eth2"),
])
def test_neighbor(name: str, neighbor: str, outcome: Outcome, evidence: str) -> None:
    verdict = judge_ospf_neighbor(make("ospf_neighbor", neighbor=neighbor), table(name), R1_PEERS,
                                  {"eth0", "eth1", "eth2"})
    assert (verdict.outcome, verdict.evidence) == (outcome, evidence)


def test_a_neighbor_faked_elsewhere_does_not_count() -> None:
    """Router id 2.2.2.2 Full, but on an interface the candidate made and at another address."""
    faked = table("solved-r1")
    faked["2.2.2.2"] = [dict(faked["2.2.2.2"][0], ifaceName="fake0:10.99.0.1", ifaceAddress="10.99.0.2")]
    verdict = judge_ospf_neighbor(make("ospf_neighbor", neighbor="2.2.2.2"), faked, R1_PEERS, {"eth0", "eth1", "eth2"})
    assert verdict.outcome is FAIL
    assert verdict.evidence == ("neighbor 2.2.2.2 Full/- on fake0 (10.99.0.2): not where the topology puts it; "
                                "expected r2 (2.2.2.2) at 10.255.0.2 on eth1")
    # no node of the topology owns the id: any lab interface will do, not one the candidate made
    verdict = judge_ospf_neighbor(make("ospf_neighbor", neighbor="2.2.2.2"), faked, [], {"eth0", "eth1", "eth2"})
    assert verdict.outcome is FAIL and "one of the lab's interfaces (eth0, eth1, eth2)" in verdict.evidence


def test_a_full_adjacency_is_confirmed_from_its_other_end() -> None:
    plan = recorded_plan()
    far = far_end(make("ospf_neighbor", neighbor="2.2.2.2"), plan)
    assert far is not None and (far.node, str(far.neighbor), far.state) == ("r2", "1.1.1.1", "Full")
    assert far_end(make("ospf_neighbor", neighbor="9.9.9.9"), plan) is None  # no router of the lab has it
    assert far_end(make("ospf_neighbor", neighbor="2.2.2.2", state="2-Way"), plan) is None
    r2_peers, r2_interfaces = peerings(plan, "r2"), lab_interfaces(plan, "r2")
    assert judge_ospf_neighbor(far, table("solved-r2"), r2_peers, r2_interfaces).outcome is PASS
    seen = judge_ospf_neighbor(far, table("broken-r2"), r2_peers, r2_interfaces)
    assert (seen.outcome, seen.evidence) == (FAIL, "neighbor 1.1.1.1 ExStart/- on eth1 (10.255.0.1), expected Full")


LAN_A = {"destination": "10.2.0.0/24", "via": "10.255.0.2", "protocol": "ospf"}


def test_route_learned_from_the_right_neighbor_passes() -> None:
    outcome, evidence = route("solved-r1", make("route", **LAN_A))
    assert outcome is PASS
    assert evidence == ("zebra: OSPF learned 10.2.0.0/24 via 10.255.0.2; kernel: 10.2.0.0/24 via 10.255.0.2 dev eth1 "
                        "proto ospf; next hop is OSPF neighbor 2.2.2.2 Full/- on eth1 (10.255.0.2)")
    r2 = [Peering("r1", "1.1.1.1", "eth1", "10.255.0.1")]
    assert route("solved-r2", make("route", node="r2", destination="10.1.0.0/24", via="10.255.0.1",
                                   protocol="ospf"), r2)[0] is PASS


def test_route_not_learned_fails() -> None:
    outcome, evidence = route("broken-r1", make("route", **LAN_A))
    assert outcome is FAIL
    assert evidence == ("zebra: OSPF learned nothing for 10.2.0.0/24; kernel: no route to 10.2.0.0/24; "
                        "expected a route 10.2.0.0/24 via 10.255.0.2 learned by OSPF")


def test_a_hand_made_proto_ospf_route_fails() -> None:
    for destination, via in (("10.2.0.0/24", "10.255.0.2"), ("10.3.0.0/24", "10.255.0.6")):
        outcome, evidence = route("handroute-r1", make("route", destination=destination, via=via, protocol="ospf"))
        assert outcome is FAIL
        assert f"kernel: {destination} via {via} dev" in evidence and "proto ospf" in evidence
        assert "was not learned by OSPF (zebra has no such OSPF route)" in evidence


def test_route_via_another_hop_or_not_from_a_full_neighbor_fails() -> None:
    assert route("solved-r1", make("route", destination="10.2.0.0/24", via="10.255.0.6", protocol="ospf"))[0] is FAIL
    # the topology puts another router at the next hop: learned, but not from the right neighbour
    wrong = [Peering("r3", "3.3.3.3", "eth1", "10.255.0.2")]
    outcome, evidence = route("solved-r1", make("route", **LAN_A), wrong)
    assert outcome is FAIL and "next hop 10.255.0.2 (r3 (3.3.3.3) at 10.255.0.2 on eth1) is not a Full OSPF neighbor" \
        in evidence
    # learned and installed, but a route of the candidate's with a lower metric wins in the kernel
    data = recorded("solved-r1")
    hand = {"dst": "10.2.0.0/24", "gateway": "10.255.0.6", "dev": "eth2", "protocol": "static", "metric": 5}
    verdict = judge_ospf_route(make("route", **LAN_A), data["show ip route json"], [*data["kernel"], hand],
                               table("solved-r1"), R1_PEERS)
    assert verdict.outcome is FAIL and verdict.evidence.endswith(
        "the kernel forwards with 10.2.0.0/24 via 10.255.0.6 dev eth2 proto static (a lower metric), "
        "not with the OSPF route")
    # zebra learned it, the kernel lost it
    data = recorded("solved-r1")
    kernel = [r for r in data["kernel"] if r["dst"] != "10.2.0.0/24"]
    verdict = judge_ospf_route(make("route", **LAN_A), data["show ip route json"], kernel, table("solved-r1"), R1_PEERS)
    assert verdict.outcome is FAIL and "not in the kernel's table" in verdict.evidence


def test_absent_routes() -> None:
    absent = make("route", **LAN_A, absent=True)
    assert route("broken-r1", absent)[0] is PASS
    assert route("solved-r1", absent)[0] is FAIL
    assert route("handroute-r1", absent)[0] is FAIL  # the kernel forwards with it all the same


def test_kernel_listing_errors_are_errors() -> None:
    assert kernel_routes(CommandResult(0, '[{"dst": "default"}]', "")) == [{"dst": "default"}]
    for result in (CommandResult(1, "", "Cannot open netns"), CommandResult(0, "not json", ""),
                   CommandResult(0, "{}", "")):
        with pytest.raises(Unobservable, match=r"kernel|JSON|list"):
            kernel_routes(result)


def test_which_checks_are_graded_here() -> None:
    assert observed_by_routing(make("ospf_neighbor", neighbor="2.2.2.2"))
    assert observed_by_routing(make("route", **LAN_A))
    assert not observed_by_routing(make("route", destination="default", via="10.1.0.1"))
    assert not observed_by_routing(make("reach", target="10.0.0.1"))


# recorded on a two-routers lab: r2's LAN (10.2.0.0/24) in area 1, r2 redistributing a static route
# (172.16.0.0/24, external type 2 by default): r1 learns an inter-area and an external route
TWO_R1_PEERS = [Peering("r2", "2.2.2.2", "eth1", "10.255.0.2")]


def typed(check: CheckBase) -> tuple[Outcome, str]:
    data = recorded("areas-r1")
    verdict = judge_ospf_route(check, data["show ip route json"], data["kernel"], table("areas-r1"), TWO_R1_PEERS,
                               data["show ip ospf route json"])
    return verdict.outcome, verdict.evidence


@pytest.mark.parametrize(("keys", "outcome", "words"), [
    ({"destination": "10.2.0.0/24", "ospf_type": "inter-area", "metric": 20}, PASS,
     "; metric 20; ospfd: 10.2.0.0/24 inter-area (N IA) in area 0.0.0.0, cost 20; next hop is OSPF neighbor 2.2.2.2"),
    ({"destination": "10.2.0.0/24", "ospf_type": "intra-area"}, FAIL,
     "ospfd: 10.2.0.0/24 inter-area (N IA) in area 0.0.0.0, cost 20; expected an intra-area route"),
    ({"destination": "10.2.0.0/24", "metric": 17}, FAIL, "; metric 20; expected metric 17"),
    ({"destination": "172.16.0.0/24", "ospf_type": "external-2", "metric": 20}, PASS,
     "ospfd: 172.16.0.0/24 external-2 (N E2), cost 10 to the ASBR, external cost 20"),
    ({"destination": "172.16.0.0/24", "ospf_type": "external-1"}, FAIL, "expected an external-1 route"),
    ({"destination": "10.9.0.0/24", "ospf_type": "intra-area"}, FAIL, "OSPF learned nothing for 10.9.0.0/24"),
])
def test_ospf_route_type_and_metric(keys: dict[str, Any], outcome: Outcome, words: str) -> None:
    got, evidence = typed(make("route", via="10.255.0.2", protocol="ospf", **keys))
    assert got is outcome, evidence
    assert words in evidence, evidence


def test_route_type_needs_ospf_and_is_not_read_from_the_kernel() -> None:
    from pydantic import ValidationError

    from labctl.grading.checks import evaluate

    with pytest.raises(ValidationError, match="`ospf_type` needs `protocol: ospf`"):
        make("route", destination="10.2.0.0/24", ospf_type="inter-area")
    check = make("route", destination="10.2.0.0/24", protocol="ospf", ospf_type="inter-area")
    kernel = json.dumps(recorded("areas-r1")["kernel"])
    assert evaluate(check, CommandResult(0, kernel, "")).outcome is ERROR  # a node's `ip` cannot tell


# recorded on the features lab running OSPFv3 on its WAN link (ospf6d of FRR 8.4)
V3_PEER = [Peering("r2", "2.2.2.2", "eth1", "2001:db8:255::2")]


@pytest.mark.parametrize(("keys", "peers", "outcome", "words"), [
    ({"neighbor": "2.2.2.2"}, V3_PEER, PASS, "neighbor 2.2.2.2 Full on eth1"),
    ({"neighbor": "2.2.2.2"}, [Peering("r2", "2.2.2.2", "eth0", "2001:db8:1::2")], FAIL,
     "neighbor 2.2.2.2 Full on eth1: not where the topology puts it; expected r2 (2.2.2.2) at 2001:db8:1::2 on eth0"),
    ({"neighbor": "3.3.3.3"}, V3_PEER, FAIL, "no OSPF neighbor 3.3.3.3 (neighbors: 2.2.2.2 Full); expected Full"),
    ({"neighbor": "2.2.2.2", "state": "2-Way"}, V3_PEER, FAIL, "expected 2-Way"),
])
def test_ospfv3_neighbor(keys: dict[str, Any], peers: list[Peering], outcome: Outcome, words: str) -> None:
    answer = recorded("ospf6-r1")["show ipv6 ospf6 neighbor json"]
    check = make("ospf_neighbor", version=3, **keys)
    verdict = judge_ospf_neighbor(check, neighbor_table(json.dumps(answer)), peers, {"eth0", "eth1"})
    assert verdict.outcome is outcome, verdict.evidence
    assert words in verdict.evidence, verdict.evidence


def test_ospfv3_through_the_router_cli() -> None:
    from labctl.grading.checks import evaluate, probe

    check = make("ospf_neighbor", neighbor="1.1.1.1", version=3, node="r2")
    assert probe(check).command == "show ipv6 ospf6 neighbor json" and probe(check).cli
    output = json.dumps(recorded("ospf6-r2")["show ipv6 ospf6 neighbor json"])
    verdict = evaluate(check, CommandResult(0, output, ""))
    assert verdict.outcome is PASS and "neighbor 1.1.1.1 state Full on eth1" in verdict.evidence, verdict.evidence
    broken = json.dumps({"neighbors": [{"state": "Full"}]})
    assert evaluate(check, CommandResult(0, broken, "")).outcome is ERROR  # an entry without its router id
