"""The JSON schema of topology files, for YAML editors' completion and checking.

topology_json_schema() -> dict
    pydantic's schema of `Topology` (validation mode), with `$schema` and `title`, and
    what the models accept beyond their fields: the `node:interface@address` shorthand
    for link ends, `to: default` in routes, and the node name pattern.

Point an editor at it, e.g. with a first line `# yaml-language-server: $schema=<file>`.
"""

from __future__ import annotations

from typing import Any

from labctl.topology.model import IFACE_NAME, NODE_NAME, Topology

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "labctl topology"
ENDPOINT_SHORTHAND = r"^[^\s:@]+(:[^\s:@]+)?(@\S+)?$"


def topology_json_schema() -> dict[str, Any]:
    """The JSON schema of a topology file (a fresh dict: callers may change it)."""
    schema = Topology.model_json_schema(mode="validation")
    defs = schema["$defs"]
    _endpoint_shorthand(defs["Link"])
    _interface_pattern(defs["Endpoint"])
    _dhcp_address(defs["Endpoint"])
    _default_route(defs["Route"])
    schema["properties"]["nodes"]["propertyNames"] = {"pattern": NODE_NAME.pattern}
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "title": TITLE, **schema}


def _endpoint_shorthand(link: dict[str, Any]) -> None:
    """Link ends may be written `node`, `node:iface`, `node:iface@10.0.0.1/24`, with `,IPV6/LEN`
    after the IPv4 address (or alone), or `node:iface@dhcp`."""
    endpoints = link["properties"]["endpoints"]
    endpoints["items"] = {"anyOf": [
        {"type": "string", "pattern": ENDPOINT_SHORTHAND,
         "description": "node, node:interface, node:interface@address/prefix[,ipv6/prefix] or "
                        "node:interface@dhcp"},
        endpoints["items"],
    ]}


def _interface_pattern(endpoint: dict[str, Any]) -> None:
    """Interface names follow Linux rules (at most 15 characters)."""
    for choice in endpoint["properties"]["interface"]["anyOf"]:
        if choice.get("type") == "string":
            choice["pattern"] = IFACE_NAME.pattern


def _default_route(route: dict[str, Any]) -> None:
    """A route's `to` may be `default` (IPv4) or `default6` (IPv6) as well as a network."""
    route["properties"]["to"]["anyOf"] += [{"const": "default"}, {"const": "default6"}]


def _dhcp_address(endpoint: dict[str, Any]) -> None:
    """An end's `address` may be `dhcp` (the node's DHCP client asks for one)."""
    endpoint["properties"]["address"]["anyOf"].insert(1, {"const": "dhcp"})
