"""The topology file's models (shape only) and their JSON schema."""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Interface, IPv4Network
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


@pytest.mark.parametrize(("text", "expected"), [
    ("sw1", {"node": "sw1", "interface": None, "address": None}),
    ("r1:eth1", {"node": "r1", "interface": "eth1", "address": None}),
    ("r1:eth1@10.0.0.1/24",
     {"node": "r1", "interface": "eth1", "address": IPv4Interface("10.0.0.1/24")}),
    (" r1 : eth1 @ 10.0.0.1/24 ",
     {"node": "r1", "interface": "eth1", "address": IPv4Interface("10.0.0.1/24")}),
])
def test_endpoint_shorthand(text: str, expected: dict[str, Any]) -> None:
    assert Endpoint.model_validate(text).model_dump() == expected


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
