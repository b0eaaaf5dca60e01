"""The topology file's data model.

A topology names nodes (hosts, FRR routers, switches), the links between node interfaces
(or from an interface onto a switch, which is a named L2 segment), IPv4 addressing given
explicitly or drawn from pools, static routes and free per-node variables.

After `labctl.topology.loader.load_topology`, every endpoint on a host or router has its
`address` filled in; the models here only describe the shape of the file.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Interface, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
IFACE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")
RESERVED_IFACES = frozenset({"lo", "mgmt0"})


class Strict(BaseModel):
    """Base for file models: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class NodeKind(StrEnum):
    """What a node is: a Linux host, an FRR router, or a switch (an L2 segment)."""

    host = "host"
    router = "router"
    switch = "switch"


class Route(Strict):
    """A static route: destination network (or `default`) through a gateway address."""

    to: IPv4Network = Field(description="Destination network, e.g. 10.2.0.0/24, or `default`.")
    via: IPv4Interface | None = Field(
        default=None, description="Next-hop address; must be on a subnet the node is attached to."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _default_route(cls, value: Any) -> Any:
        return "0.0.0.0/0" if value == "default" else value

    @field_validator("via", mode="before")
    @classmethod
    def _bare_address(cls, value: Any) -> Any:
        return f"{value}/32" if isinstance(value, str) and "/" not in value else value

    @property
    def gateway(self) -> str | None:
        """The next hop as a bare address, or None for an on-link route."""
        return str(self.via.ip) if self.via else None


SIZE = re.compile(r"^\s*(\d{1,13})\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIB = 1 << 20


def parse_size(value: Any) -> int:
    """Bytes from `512M`, `1G`, `2GiB` or a plain number of bytes (binary units)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a text such as 512M or 2G")
    if isinstance(value, int):
        return value
    match = SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a size: write e.g. 512M or 2G (K, M, G, T: powers of 1024)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def _bounded_size(value: Any, low: int, high: int) -> int:
    size = parse_size(value)
    if not low <= size <= high:
        raise ValueError(f"{size} bytes is out of range: between {low // MIB}M and {high // MIB // 1024}G")
    return size


class Limits(Strict):
    """What one node may use of the machine; a node that reaches a limit suffers alone."""

    pids: int = Field(default=1024, ge=32, le=100_000, description="Processes and threads at once.")
    memory: int = Field(default=1 << 30, description=(
        "Memory, tmpfs (/tmp, /dev/shm, /run) and page cache included, e.g. 512M or 2G."))
    cpu_weight: int = Field(default=100, ge=1, le=10_000, description=(
        "Share of the CPU when nodes compete: 100 is an even share, 200 twice as much."))
    disk: int = Field(default=2 << 30, description=(
        "Size of the node's writable layer (the files it changes or adds), e.g. 2G."))

    @field_validator("pids", "cpu_weight", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int:
        return _bounded_size(value, 64 * MIB, 1 << 40)

    @field_validator("disk", mode="before")
    @classmethod
    def _disk(cls, value: Any) -> int:
        return _bounded_size(value, 64 * MIB, 1 << 40)


class Node(Strict):
    """One lab node."""

    kind: NodeKind = Field(description="host, router (runs FRR) or switch (an L2 segment).")
    description: str | None = None
    subnet: IPv4Network | None = Field(
        default=None,
        description=(
            "Switches only: the subnet of the segment; drawn from the `lan` pool if absent."
        ),
    )
    routes: list[Route] = Field(default_factory=list, description="Static routes (hosts, routers).")
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Free variables, passed to playbooks as host variables."
    )
    limits: Limits = Field(default_factory=Limits, description=(
        "Hosts and routers: resource limits (defaults: pids 1024, memory 1G, cpu_weight 100, disk 2G)."))

    @model_validator(mode="after")
    def _switch_fields(self) -> Node:
        if self.kind is NodeKind.switch and self.routes:
            raise ValueError("a switch has no routes (it is an L2 segment)")
        if self.kind is NodeKind.switch and "limits" in self.model_fields_set:
            raise ValueError("a switch has no limits (it is an L2 segment, not a machine)")
        if self.kind is not NodeKind.switch and self.subnet is not None:
            raise ValueError("`subnet` is for switches; give hosts and routers addresses on links")
        return self


class Endpoint(Strict):
    """One end of a link: a node's interface (with an address), or a switch."""

    node: str
    interface: str | None = Field(
        default=None, description="Interface name inside the node, e.g. eth1. Not for switches."
    )
    address: IPv4Interface | None = Field(
        default=None, description="e.g. 10.1.0.1/24; drawn from the link's subnet if absent."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Accept `node`, `node:iface` and `node:iface@10.0.0.1/24` as well as a mapping."""
        if not isinstance(value, str):
            return value
        text, _, address = value.partition("@")
        node, _, interface = text.partition(":")
        result: dict[str, Any] = {"node": node.strip()}
        if interface:
            result["interface"] = interface.strip()
        if address:
            result["address"] = address.strip()
        return result

    @property
    def label(self) -> str:
        """`node:interface`, or just the node for a switch end."""
        return f"{self.node}:{self.interface}" if self.interface else self.node


class Link(Strict):
    """A cable between two endpoints; at most one may be a switch."""

    endpoints: list[Endpoint] = Field(min_length=2, max_length=2)
    subnet: IPv4Network | None = Field(
        default=None,
        description="Point-to-point links only: drawn from the `p2p` pool if absent.",
    )


class Addressing(Strict):
    """Pools that subnets are drawn from when a file does not give them."""

    lan: IPv4Network = Field(default=IPv4Network("10.0.0.0/16"), description="Split into /24s.")
    p2p: IPv4Network = Field(default=IPv4Network("10.255.0.0/16"), description="Split into /30s.")
    mgmt: IPv4Network = Field(
        default=IPv4Network("198.18.0.0/24"),
        description=("libvirt VMs' management network (labctl to VMs only; local nodes have none); "
                     "must not overlap lab subnets."),
    )


class Topology(Strict):
    """A whole topology file."""

    name: str = Field(description="Short name, used in lab names.")
    description: str | None = None
    provider: str | None = Field(default=None, description="Default provider for this topology.")
    addressing: Addressing = Field(default_factory=Addressing)
    nodes: dict[str, Node]
    links: list[Link] = Field(default_factory=list)

    def lab_nodes(self) -> dict[str, Node]:
        """Nodes that run as machines (hosts and routers), not switches."""
        return {n: v for n, v in self.nodes.items() if v.kind is not NodeKind.switch}

    def switches(self) -> dict[str, Node]:
        """Nodes that are L2 segments."""
        return {n: v for n, v in self.nodes.items() if v.kind is NodeKind.switch}

    def interfaces(self, node: str) -> list[Endpoint]:
        """The endpoints (interfaces) of a machine node, in file order."""
        return [e for link in self.links for e in link.endpoints if e.node == node and e.interface]

    def peer(self, link: Link, endpoint: Endpoint) -> Endpoint:
        """The other end of `link`."""
        a, b = link.endpoints
        return b if endpoint is a else a
