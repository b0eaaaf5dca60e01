"""The topology file's data model.

A topology names nodes (hosts, FRR routers, switches), the links between node interfaces
(or from an interface onto a switch, which is a named L2 segment), IPv4 and IPv6 addressing
given explicitly or drawn from pools (or DHCP: the node's own client asks), loopback
addresses, per-link MTU, VLANs (switch ports in a VLAN or trunks, tagged sub-interfaces), static
routes and free per-node variables.

After `labctl.topology.loader.load_topology`, every endpoint on a host or router has its
`address` filled in; the models here only describe the shape of the file.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
IFACE_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")
RESERVED_IFACES = frozenset({"lo", "mgmt0"})
SUBINTERFACE_NAME = re.compile(r"^(?P<parent>.+)\.(?P<vid>[0-9]{1,4})$")
VlanId = Annotated[int, Field(ge=1, le=4094)]  # 802.1Q: 0 and 4095 are reserved


class Strict(BaseModel):
    """Base for file models: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class NodeKind(StrEnum):
    """What a node is: a Linux host, an FRR router, or a switch (an L2 segment)."""

    host = "host"
    router = "router"
    switch = "switch"


class NodeInit(StrEnum):
    """A node's init: systemd as on any Debian server, or labctl's light one (a shell script
    starting sshd, FRR and /etc/labctl/init.d: less memory per node, no systemctl)."""

    systemd = "systemd"
    light = "light"


class Route(Strict):
    """A static route: destination network (or `default`, `default6`) through a gateway address."""

    to: IPv4Network | IPv6Network = Field(description=(
        "Destination network, e.g. 10.2.0.0/24 or 2001:db8:2::/64; `default` (IPv4) or `default6` (IPv6)."))
    via: IPv4Interface | IPv6Interface | None = Field(
        default=None, description="Next-hop address; must be on a subnet the node is attached to."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _default_route(cls, value: Any) -> Any:
        return {"default": "0.0.0.0/0", "default6": "::/0"}.get(value, value) if isinstance(value, str) else value

    @field_validator("via", mode="before")
    @classmethod
    def _bare_address(cls, value: Any) -> Any:
        return _with_prefix(value)

    @model_validator(mode="after")
    def _one_family(self) -> Route:
        if self.via is not None and self.via.version != self.to.version:
            raise ValueError(f"the gateway {self.via.ip} is IPv{self.via.version} but the destination "
                             f"{self.to} is IPv{self.to.version}: a route's gateway is of its destination's family")
        return self

    @property
    def gateway(self) -> str | None:
        """The next hop as a bare address, or None for an on-link route."""
        return str(self.via.ip) if self.via else None


def _with_prefix(value: Any) -> Any:
    """A bare address as a host address: /32 (IPv4) or /128 (IPv6)."""
    if isinstance(value, str) and "/" not in value:
        return f"{value}/128" if ":" in value else f"{value}/32"
    return value


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
    subnet6: IPv6Network | None = Field(default=None, description=(
        "Switches only: the segment's IPv6 subnet (dual stack); drawn from `lan6` if that pool is set."))
    limits: Limits = Field(default_factory=Limits, description=(
        "Hosts and routers: resource limits (defaults: pids 1024, memory 1G, cpu_weight 100, disk 2G)."))
    loopback: IPv4Interface | Literal["auto"] | None = Field(default=None, description=(
        "Hosts and routers: an IPv4 address on the loopback interface, e.g. 10.254.0.1/32 (a bare "
        "address is a /32), or `auto`: the next free one of `addressing.loopback`."))
    loopback6: IPv6Interface | None = Field(default=None, description=(
        "Hosts and routers: an IPv6 address on the loopback interface, e.g. 2001:db8:ff::1/128."))

    @field_validator("loopback", "loopback6", mode="before")
    @classmethod
    def _bare_loopback(cls, value: Any) -> Any:
        return value if value == "auto" else _with_prefix(value)
    init: NodeInit | None = Field(default=None, description=(
        "Hosts and routers: systemd (the default: systemctl, journalctl, units) or light (a small "
        "script starting sshd and FRR; less memory per node). Default: `defaults.init`."))
    subinterfaces: list[SubInterface] = Field(default_factory=list, description=(
        "Hosts and routers: tagged (802.1Q) sub-interfaces, written like a link end without the node: "
        "`eth1.10@10.0.10.1/24` is VLAN 10 tagged on eth1 (also `,2001:db8::1/64`, `@dhcp`)."))

    @model_validator(mode="after")
    def _switch_fields(self) -> Node:
        if self.kind is NodeKind.switch and self.routes:
            raise ValueError("a switch has no routes (it is an L2 segment)")
        if self.kind is NodeKind.switch and "init" in self.model_fields_set:
            raise ValueError("a switch has no init (it is an L2 segment, not a machine)")
        if self.kind is NodeKind.switch and "limits" in self.model_fields_set:
            raise ValueError("a switch has no limits (it is an L2 segment, not a machine)")
        if self.kind is NodeKind.switch and (self.loopback or self.loopback6):
            raise ValueError("a switch has no loopback (it is an L2 segment, not a machine)")
        if self.kind is NodeKind.switch and self.subinterfaces:
            raise ValueError("a switch has no sub-interfaces: its ports carry VLANs (a link's `vlan` or `trunk`)")
        if self.kind is not NodeKind.switch and (self.subnet is not None or self.subnet6 is not None):
            raise ValueError("`subnet` is for switches (and `subnet6`); give hosts and routers addresses on links")
        return self


def _addresses_written(value: str, addresses: str) -> dict[str, Any]:
    """The addresses after `@` in a link end or sub-interface: `10.0.0.1/24`, `dhcp`, an IPv6
    one, or an IPv4 (or dhcp) and an IPv6 separated by a comma."""
    result: dict[str, Any] = {}
    for item in (a.strip() for a in addresses.split(",") if a.strip()):
        key = "dhcp" if item == "dhcp" else "address6" if ":" in item else "address"
        if key in result:
            raise ValueError(f"{value!r} gives {key} twice: at most one IPv4 address (or dhcp) "
                             "and one IPv6 address, separated by a comma")
        result[key] = True if key == "dhcp" else item
    return result


class Endpoint(Strict):
    """One end of a link: a node's interface (with its addresses), or a switch."""

    node: str
    interface: str | None = Field(
        default=None, description="Interface name inside the node, e.g. eth1. Not for switches."
    )
    address: IPv4Interface | None = Field(
        default=None, description="e.g. 10.1.0.1/24; drawn from the link's subnet if absent; `dhcp`: "
                                  "labctl assigns none, the node's DHCP client asks for one at boot."
    )
    address6: IPv6Interface | None = Field(
        default=None, description="e.g. 2001:db8:1::1/64; drawn from the segment's subnet6 if it has one."
    )
    dhcp: bool = Field(default=False, description="Addressed by DHCP (written `@dhcp` or `address: dhcp`).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Accept `node`, `node:iface`, `node:iface@10.0.0.1/24`, `node:iface@2001:db8::1/64`,
        `node:iface@10.0.0.1/24,2001:db8::1/64` and `node:iface@dhcp`, as well as a mapping."""
        if isinstance(value, dict):
            if value.get("address") == "dhcp":
                value = {k: v for k, v in value.items() if k != "address"} | {"dhcp": True}
            return value
        if not isinstance(value, str):
            return value
        text, _, addresses = value.partition("@")
        node, _, interface = text.partition(":")
        result: dict[str, Any] = {"node": node.strip()}
        if interface:
            result["interface"] = interface.strip()
        return result | _addresses_written(value, addresses)

    @model_validator(mode="after")
    def _dhcp_or_address(self) -> Endpoint:
        if self.dhcp and self.address is not None:
            raise ValueError(f"{self.label} is addressed by DHCP and given {self.address}: "
                             "keep one (DHCP: the node's client asks; an address: labctl assigns it)")
        return self

    @property
    def label(self) -> str:
        """`node:interface`, or just the node for a switch end."""
        return f"{self.node}:{self.interface}" if self.interface else self.node

    def shown_addresses(self) -> list[str]:
        """What this end's addresses are, for people: `10.1.0.1/24`, `dhcp`, and the IPv6 one."""
        shown = ["dhcp"] if self.dhcp else [str(self.address)] if self.address else []
        return shown + ([str(self.address6)] if self.address6 else [])


class SubInterface(Strict):
    """A tagged (802.1Q) sub-interface: `eth1.10` sends and receives eth1's frames tagged VLAN 10."""

    interface: str = Field(description="`<interface>.<VLAN id>`, e.g. eth1.10 (VLAN 10 tagged on eth1).")
    address: IPv4Interface | None = Field(default=None, description="e.g. 10.0.10.1/24 (none: no IPv4 address).")
    address6: IPv6Interface | None = Field(default=None, description="e.g. 2001:db8:10::1/64.")
    dhcp: bool = Field(default=False, description="Addressed by DHCP (written `@dhcp`).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """Accept `eth1.10`, `eth1.10@10.0.10.1/24`, `eth1.10@dhcp`, ... as well as a mapping."""
        if isinstance(value, dict) and value.get("address") == "dhcp":
            return {k: v for k, v in value.items() if k != "address"} | {"dhcp": True}
        if not isinstance(value, str):
            return value
        interface, _, addresses = value.partition("@")
        return {"interface": interface.strip()} | _addresses_written(value, addresses)

    @model_validator(mode="after")
    def _tagged_name(self) -> SubInterface:
        match = SUBINTERFACE_NAME.fullmatch(self.interface)
        if not match or not 1 <= int(match["vid"]) <= 4094:
            raise ValueError(f"sub-interface '{self.interface}' is not `<interface>.<VLAN id>` with a VLAN "
                             "id from 1 to 4094, e.g. eth1.10")
        if self.dhcp and self.address is not None:
            raise ValueError(f"{self.interface} is addressed by DHCP and given {self.address}: keep one")
        return self

    @property
    def parent(self) -> str:
        """The interface whose frames carry this VLAN's tag."""
        return self.interface.rpartition(".")[0]

    @property
    def vid(self) -> int:
        """The VLAN id."""
        return int(self.interface.rpartition(".")[2])


class Link(Strict):
    """A cable between two endpoints; at most one may be a switch."""

    endpoints: list[Endpoint] = Field(min_length=2, max_length=2)
    subnet: IPv4Network | None = Field(
        default=None,
        description="Point-to-point links only: drawn from the `p2p` pool if absent.",
    )
    subnet6: IPv6Network | None = Field(default=None, description=(
        "Point-to-point links only: the IPv6 subnet (dual stack); drawn from `p2p6` if that pool is set."))
    mtu: int | None = Field(default=None, ge=68, le=65535, description=(
        "MTU of both ends of this cable (the node's interface and, on a switch, its port), e.g. 1400."))
    vlan: VlanId | None = Field(default=None, description=(
        "On a link to a switch: the switch port is an access port of this VLAN (1-4094): the node's "
        "interface sends and receives untagged frames, the switch keeps them in the VLAN."))
    trunk: list[VlanId] | None = Field(default=None, min_length=1, description=(
        "On a link to a switch: the switch port is a trunk carrying these VLANs tagged (802.1Q); the "
        "node reaches them through tagged sub-interfaces (a node's `subinterfaces`, e.g. eth1.10)."))

    @model_validator(mode="after")
    def _one_port_mode(self) -> Link:
        if self.vlan is not None and self.trunk is not None:
            raise ValueError("a switch port is in one VLAN (`vlan`, untagged) or a trunk (`trunk`, tagged), "
                             "not both; a trunk's untagged VLAN is not supported")
        if self.trunk is not None and len(set(self.trunk)) != len(self.trunk):
            raise ValueError(f"trunk {self.trunk} names a VLAN twice")
        return self


class Addressing(Strict):
    """Pools that subnets are drawn from when a file does not give them."""

    lan: IPv4Network = Field(default=IPv4Network("10.0.0.0/16"), description="Split into /24s.")
    p2p: IPv4Network = Field(default=IPv4Network("10.255.0.0/16"), description="Split into /30s.")
    loopback: IPv4Network = Field(default=IPv4Network("10.254.0.0/24"), description=(
        "Loopback addresses written `loopback: auto` are the next free /32s of it."))
    lan6: IPv6Network | None = Field(default=None, description=(
        "IPv6 for every switch: split into /64s (none: only segments given subnet6 or IPv6 addresses)."))
    p2p6: IPv6Network | None = Field(default=None, description=(
        "IPv6 for every point-to-point link: split into /64s (none: only those given subnet6 or addresses)."))
    mgmt: IPv4Network = Field(
        default=IPv4Network("198.18.0.0/24"),
        description=("libvirt VMs' management network (labctl to VMs only; local nodes have none); "
                     "must not overlap lab subnets."),
    )


class NodeDefaults(Strict):
    """What every host and router gets unless it says otherwise."""

    init: NodeInit = Field(default=NodeInit.systemd, description="systemd or light (see a node's `init`).")


class Topology(Strict):
    """A whole topology file."""

    name: str = Field(description="Short name, used in lab names.")
    description: str | None = None
    provider: str | None = Field(default=None, description="Default provider for this topology.")
    addressing: Addressing = Field(default_factory=Addressing)
    defaults: NodeDefaults = Field(default_factory=NodeDefaults, description="Defaults for every node.")
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


Node.model_rebuild()  # it names SubInterface, defined after it
