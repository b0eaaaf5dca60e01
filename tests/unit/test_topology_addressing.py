"""Addressing resolution: pools, explicit and implied subnets, the segment API."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from labctl.topology.addressing import (
    Resolution,
    node_subnets,
    resolve_addressing,
    segment_subnet,
    segments,
    wirings,
)
from labctl.topology.loader import load_topology
from labctl.topology.model import Topology


def topology(links: list[Any], nodes: dict[str, Any] | None = None,
             **addressing: str) -> Topology:
    """A topology of the given links; nodes default to routers r*, hosts pc*, switches sw*."""
    names = {str(e).split(":")[0].split("@")[0] for link in links for e in link}
    kinds = {"r": "router", "p": "host", "s": "switch"}
    default = {name: {"kind": kinds[name[0]]} for name in sorted(names)}
    return Topology.model_validate({
        "name": "t", "addressing": addressing, "nodes": {**default, **(nodes or {})},
        "links": [{"endpoints": link} for link in links],
    })


def resolved(*args: Any, **kwargs: Any) -> Topology:
    """Resolve, asserting that no allocation failed."""
    result = resolve_addressing(topology(*args, **kwargs))
    assert result.shortages == []
    return result.topology


def addresses(topo: Topology) -> dict[str, str]:
    return {e.label: str(e.address) for link in topo.links for e in link.endpoints if e.address}


def test_switches_get_successive_lan_subnets_and_hosts_in_file_order() -> None:
    topo = resolved([["r1:eth1", "sw1"], ["pc1:eth1", "sw1"], ["r1:eth2", "sw2"]])
    assert addresses(topo) == {"r1:eth1": "10.0.0.1/24", "pc1:eth1": "10.0.0.2/24",
                               "r1:eth2": "10.0.1.1/24"}
    assert topo.nodes["sw1"].subnet == IPv4Network("10.0.0.0/24")


def test_p2p_links_get_slash30s_from_the_p2p_pool() -> None:
    topo = resolved([["r1:eth1", "r2:eth1"], ["r2:eth2", "r3:eth1"]])
    assert addresses(topo) == {"r1:eth1": "10.255.0.1/30", "r2:eth1": "10.255.0.2/30",
                               "r2:eth2": "10.255.0.5/30", "r3:eth1": "10.255.0.6/30"}
    assert [str(link.subnet) for link in topo.links] == ["10.255.0.0/30", "10.255.0.4/30"]


def test_allocation_skips_subnets_in_use_and_mgmt() -> None:
    topo = resolved([["r1:eth1", "sw1"], ["r1:eth2", "sw2"], ["r1:eth3@10.0.2.1/24", "sw3"]],
                    nodes={"sw1": {"kind": "switch", "subnet": "10.0.1.0/24"}},
                    mgmt="10.0.0.0/24")
    assert topo.nodes["sw2"].subnet == IPv4Network("10.0.3.0/24")
    assert topo.nodes["sw3"].subnet == IPv4Network("10.0.2.0/24")


def test_explicit_addresses_are_kept_and_skipped() -> None:
    topo = resolved([["pc1:eth1", "sw1"], ["r1:eth1@10.0.0.1/24", "sw1"], ["pc2:eth1", "sw1"]])
    assert addresses(topo) == {"pc1:eth1": "10.0.0.2/24", "r1:eth1": "10.0.0.1/24",
                               "pc2:eth1": "10.0.0.3/24"}


def test_p2p_link_takes_the_subnet_of_its_explicit_address() -> None:
    topo = resolved([["r1:eth1", "r2:eth1@172.16.5.1/29"]])
    assert topo.links[0].subnet == IPv4Network("172.16.5.0/29")
    assert addresses(topo)["r1:eth1"] == "172.16.5.2/29"


def test_slash31_uses_both_addresses() -> None:
    topo = topology([["r1:eth1", "r2:eth1"]])
    topo.links[0].subnet = IPv4Network("10.9.0.0/31")
    assert addresses(resolve_addressing(topo).topology) == {
        "r1:eth1": "10.9.0.0/31", "r2:eth1": "10.9.0.1/31"}


def test_resolution_is_deterministic_and_leaves_its_input_alone() -> None:
    topo = topology([["r1:eth1", "sw1"], ["r1:eth2", "r2:eth1"], ["pc1:eth1", "sw1"]])
    first, second = resolve_addressing(topo), resolve_addressing(topo)
    assert first.topology.model_dump() == second.topology.model_dump()
    assert addresses(topo) == {}
    assert first.topology is not topo


def test_a_lan_pool_smaller_than_a_slash24_is_exhausted() -> None:
    result = resolve_addressing(topology([["r1:eth1", "sw1"]], lan="10.0.0.0/25"))
    assert [(s.path, s.message) for s in result.shortages] == [
        (("nodes", "sw1", "subnet"), "no free /24 left in the lan pool 10.0.0.0/25 for switch sw1"),
    ]
    assert isinstance(result, Resolution)


def test_a_full_subnet_leaves_the_last_end_without_address() -> None:
    result = resolve_addressing(topology(
        [["r1:eth1", "sw1"], ["pc1:eth1", "sw1"], ["pc2:eth1", "sw1"]],
        nodes={"sw1": {"kind": "switch", "subnet": "10.7.0.0/30"}}))
    assert [s.path for s in result.shortages] == [("links", 2, "endpoints", 0)]
    assert "no free address left in 10.7.0.0/30 for pc2:eth1" in result.shortages[0].message


def test_segments_of_a_resolved_topology() -> None:
    topo = resolved([["r1:eth1", "r2:eth1"], ["r1:eth2", "sw1"], ["sw1", "pc1:eth1"],
                     ["sw1", "sw2"]])
    found = [(s.name, s.switch, str(s.subnet), [e.label for e in s.endpoints], s.links)
             for s in segments(topo)]
    assert found == [
        ("sw1", "sw1", "10.0.0.0/24", ["r1:eth2", "pc1:eth1"], (1, 2)),
        ("sw2", "sw2", "10.0.1.0/24", [], ()),
        ("r1:eth1--r2:eth1", None, "10.255.0.0/30", ["r1:eth1", "r2:eth1"], (0,)),
    ]


def test_segment_subnet_and_node_subnets() -> None:
    topo = resolved([["r1:eth1", "r2:eth1"], ["r1:eth2", "sw1"], ["pc1:eth1", "sw1"]])
    assert segment_subnet(topo, topo.links[0]) == IPv4Network("10.255.0.0/30")
    assert segment_subnet(topo, topo.links[2]) == IPv4Network("10.0.0.0/24")
    assert node_subnets(topo, "r1") == [IPv4Network("10.0.0.0/24"), IPv4Network("10.255.0.0/30")]
    assert node_subnets(topo, "pc1") == [IPv4Network("10.0.0.0/24")]


def test_segment_api_needs_resolved_addressing() -> None:
    topo = topology([["r1:eth1", "sw1"]])
    with pytest.raises(ValueError, match="resolve addressing first"):
        segments(topo)
    with pytest.raises(ValueError, match="resolve addressing first"):
        segment_subnet(topo, topo.links[0])


def test_wirings_keep_file_positions() -> None:
    plan = wirings(topology([["pc1:eth1", "sw1"], ["r1:eth1", "r2:eth1"], ["sw1", "r1:eth2"]]))
    assert [(w.name, w.links, [e.path for e in w.ends]) for w in plan] == [
        ("sw1", (0, 2), [("links", 0, "endpoints", 0), ("links", 2, "endpoints", 1)]),
        ("r1:eth1--r2:eth1", (1,), [("links", 1, "endpoints", 0), ("links", 1, "endpoints", 1)]),
    ]


def test_loader_returns_resolved_topology(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text(
        "name: t\n"
        "nodes:\n  r1: {kind: router}\n"
        "  pc1: {kind: host, routes: [{to: default, via: 10.0.0.1}]}\n"
        "  sw1: {kind: switch}\n"
        "links:\n  - endpoints: [r1:eth1, sw1]\n  - endpoints: [pc1:eth1, sw1]\n",
        encoding="utf-8")
    topo = load_topology(path)
    assert topo.links[1].endpoints[0].address == IPv4Interface("10.0.0.2/24")
    assert [s.subnet for s in segments(topo)] == [IPv4Network("10.0.0.0/24")]
