"""The topology file's models (shape only) and their JSON schema."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.topology.model import (
    Endpoint,
    Link,
    Node,
    NodeKind,
    Route,
    Topology,
)
from labctl.topology.schema import ENDPOINT_SHORTHAND, topology_json_schema

NO_ADDRESS = {"address": None, "address6": None, "dhcp": False}


@pytest.mark.parametrize(("text", "expected"), [
    ("sw1", {"node": "sw1", "interface": None, **NO_ADDRESS}),
    ("r1:eth1", {"node": "r1", "interface": "eth1", **NO_ADDRESS}),
    ("r1:eth1@10.0.0.1/24",
     {"node": "r1", "interface": "eth1", **NO_ADDRESS, "address": IPv4Interface("10.0.0.1/24")}),
    (" r1 : eth1 @ 10.0.0.1/24 ",
     {"node": "r1", "interface": "eth1", **NO_ADDRESS, "address": IPv4Interface("10.0.0.1/24")}),
    ("r1:eth1@10.0.0.1/24,2001:db8::1/64", {"node": "r1", "interface": "eth1", **NO_ADDRESS,
     "address": IPv4Interface("10.0.0.1/24"), "address6": IPv6Interface("2001:db8::1/64")}),
    ("r1:eth1@2001:db8::1/64", {"node": "r1", "interface": "eth1", **NO_ADDRESS,
                                "address6": IPv6Interface("2001:db8::1/64")}),
    ("h1:eth1@dhcp", {"node": "h1", "interface": "eth1", **NO_ADDRESS, "dhcp": True}),
    ({"node": "h1", "interface": "eth1", "address": "dhcp"}, {"node": "h1", "interface": "eth1", **NO_ADDRESS,
                                                               "dhcp": True}),
])
def test_endpoint_shorthand(text: str, expected: dict[str, Any]) -> None:
    assert Endpoint.model_validate(text).model_dump() == expected
    assert Endpoint.model_validate(text).shown_addresses() == [
        *(["dhcp"] if expected["dhcp"] else [str(expected["address"])] if expected["address"] else []),
        *([str(expected["address6"])] if expected["address6"] else [])]


@pytest.mark.parametrize(("text", "message"), [
    ("h1:eth1@dhcp,10.0.0.1/24", "addressed by DHCP and given 10.0.0.1/24"),
    ("h1:eth1@10.0.0.1/24,10.0.0.2/24", "gives address twice"),
])
def test_endpoint_shorthand_refuses_two_answers(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Endpoint.model_validate(text)


def test_routes_and_loopbacks_take_both_families() -> None:
    assert Route.model_validate({"to": "default6", "via": "2001:db8::1"}).to == IPv6Network("::/0")
    assert Route.model_validate({"to": "default", "via": "10.0.0.1"}).gateway == "10.0.0.1"
    with pytest.raises(ValidationError, match="a route's gateway is of its destination's family"):
        Route.model_validate({"to": "2001:db8:2::/64", "via": "10.0.0.1"})
    node = Node.model_validate({"kind": "router", "loopback": "10.254.0.1", "loopback6": "2001:db8:ff::1"})
    assert (str(node.loopback), str(node.loopback6)) == ("10.254.0.1/32", "2001:db8:ff::1/128")
    assert Node.model_validate({"kind": "router", "loopback": "auto"}).loopback == "auto"
    with pytest.raises(ValidationError, match="a switch has no loopback"):
        Node.model_validate({"kind": "switch", "loopback": "auto"})
    with pytest.raises(ValidationError, match="greater than or equal to 68"):
        Link.model_validate({"endpoints": ["a:eth0", "b:eth0"], "mtu": 40})


def test_endpoint_mapping_and_label() -> None:
    endpoint = Endpoint.model_validate({"node": "r1", "interface": "eth2"})
    assert endpoint.label == "r1:eth2"
    assert Endpoint.model_validate("sw").label == "sw"


def test_endpoint_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="adress"):
        Endpoint.model_validate({"node": "r1", "adress": "10.0.0.1/24"})


@pytest.mark.parametrize("count", [1, 3])
def test_link_has_two_endpoints(count: int) -> None:
    with pytest.raises(ValidationError):
        Link.model_validate({"endpoints": [f"n{i}:eth1" for i in range(count)]})


def test_route_default_and_bare_gateway() -> None:
    route = Route.model_validate({"to": "default", "via": "10.0.0.1"})
    assert route.to == IPv4Network("0.0.0.0/0")
    assert route.gateway == "10.0.0.1"
    assert Route.model_validate({"to": "10.1.0.0/24"}).gateway is None


def test_route_destination_is_a_network() -> None:
    with pytest.raises(ValidationError):
        Route.model_validate({"to": "10.1.0.1/24"})


def test_switch_has_no_routes_and_machines_no_subnet() -> None:
    with pytest.raises(ValidationError, match="a switch has no routes"):
        Node.model_validate({"kind": "switch", "routes": [{"to": "default"}]})
    with pytest.raises(ValidationError, match="`subnet` is for switches"):
        Node.model_validate({"kind": "host", "subnet": "10.0.0.0/24"})
    assert Node.model_validate({"kind": "switch", "subnet": "10.0.0.0/24"}).kind is NodeKind.switch


def test_topology_defaults_and_helpers() -> None:
    topology = Topology.model_validate({
        "name": "t",
        "nodes": {"r1": {"kind": "router"}, "pc": {"kind": "host"}, "sw": {"kind": "switch"}},
        "links": [{"endpoints": ["r1:eth1", "sw"]}, {"endpoints": ["pc:eth1", "r1:eth2"]}],
    })
    assert str(topology.addressing.lan) == "10.0.0.0/16"
    assert str(topology.addressing.p2p) == "10.255.0.0/16"
    assert list(topology.lab_nodes()) == ["r1", "pc"]
    assert list(topology.switches()) == ["sw"]
    assert [e.label for e in topology.interfaces("r1")] == ["r1:eth1", "r1:eth2"]
    link = topology.links[1]
    assert topology.peer(link, link.endpoints[0]).label == "r1:eth2"


def test_schema_is_json_with_dialect_and_title() -> None:
    schema = topology_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "labctl topology"
    assert set(schema["required"]) == {"name", "nodes"}
    assert json.loads(json.dumps(schema)) == schema


def test_schema_accepts_the_shorthands() -> None:
    defs = topology_json_schema()["$defs"]
    items = defs["Link"]["properties"]["endpoints"]["items"]["anyOf"]
    assert {"$ref": "#/$defs/Endpoint"} in items
    assert {"const": "default"} in defs["Route"]["properties"]["to"]["anyOf"]
    for text in ("sw1", "r1:eth1", "r1:eth1@10.0.0.1/24"):
        assert re.fullmatch(ENDPOINT_SHORTHAND, text)
    assert not re.fullmatch(ENDPOINT_SHORTHAND, "r1 eth1")


def test_schema_checks_names() -> None:
    schema = topology_json_schema()
    node_names = schema["properties"]["nodes"]["propertyNames"]["pattern"]
    assert re.fullmatch(node_names, "web-1") and not re.fullmatch(node_names, "Web_1")
    interface = schema["$defs"]["Endpoint"]["properties"]["interface"]["anyOf"][0]["pattern"]
    assert re.fullmatch(interface, "eth1") and not re.fullmatch(interface, "x" * 16)


def test_schema_is_a_fresh_dict_each_time() -> None:
    first = topology_json_schema()
    first["title"] = "changed"
    assert topology_json_schema()["title"] == "labctl topology"


def test_init_is_systemd_unless_a_node_or_the_defaults_say_light() -> None:
    from labctl.plan import plan_lab
    from labctl.topology.model import NodeInit

    topology = Topology.model_validate({
        "name": "t", "defaults": {"init": "light"},
        "nodes": {"r1": {"kind": "router", "init": "systemd"}, "pc": {"kind": "host"}},
    })
    plan = plan_lab(topology, "a1b2c3", "t")
    assert {n.name: n.init for n in plan.nodes} == {"r1": NodeInit.systemd, "pc": NodeInit.light}
    plain = plan_lab(Topology.model_validate({"name": "t", "nodes": {"pc": {"kind": "host"}}}), "a1b2c3", "t")
    assert plain.nodes[0].init is NodeInit.systemd
    with pytest.raises(ValidationError, match="a switch has no init"):
        Node.model_validate({"kind": "switch", "init": "light"})
    with pytest.raises(ValidationError):
        Node.model_validate({"kind": "host", "init": "sysvinit"})
