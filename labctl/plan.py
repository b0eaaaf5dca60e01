"""LabPlan: one concrete instance of a topology, as pure data.

The plan fixes everything a provider needs and nothing it decides at run time: the lab's
short id, every kernel object name (derived from that id so labs never collide),
interface names and addresses inside nodes, management addresses, static routes.
It is saved in the lab's state, so `down` and `status` work without the topology file.
"""

from __future__ import annotations

import secrets
import string
from ipaddress import IPv4Interface

from pydantic import BaseModel

from labctl.errors import LabctlError
from labctl.topology.model import Limits, NodeInit, NodeKind, Topology

LAB_ID_LENGTH = 6
MGMT_IFACE = "mgmt0"


class InterfacePlan(BaseModel):
    """An interface inside a node and where its other end goes."""

    name: str
    address: str | None
    peer_netns: str
    peer_name: str
    bridge: str | None = None  # the segment's bridge in the fabric namespace, if any
    creates_pair: bool = True  # a point-to-point pair is created from one end only
    address6: str | None = None
    dhcp: bool = False  # labctl assigns no IPv4 address: the node's DHCP client asks for one
    mtu: int | None = None  # both ends of the cable (None: the kernel's 1500)

    def shown_addresses(self) -> list[str]:
        """What this interface's addresses are, for people: `10.1.0.1/24`, `dhcp`, the IPv6 one."""
        shown = ["dhcp"] if self.dhcp else [self.address] if self.address else []
        return shown + ([self.address6] if self.address6 else [])


RESTARTING = "-r"  # suffix of a restarting node's previous network namespace
PROBE = ".probe"  # suffix of the lab's probe point (grading/probepoint.py), made for an active check


class RoutePlan(BaseModel):
    """A static route of a node."""

    to: str
    via: str | None


class NodePlan(BaseModel):
    """One machine of the lab (host or router)."""

    name: str
    kind: NodeKind
    netns: str
    machine: str
    mgmt_address: str
    mgmt_port: str
    interfaces: list[InterfacePlan]
    routes: list[RoutePlan]
    vars: dict[str, object]
    limits: Limits = Limits()  # processes, memory, CPU weight and disk (plans saved before limits: defaults)
    loopbacks: list[str] = []  # addresses on the node's `lo`, IPv4 then IPv6
    init: NodeInit = NodeInit.light  # the node's init; plans saved before systemd ran the light one


class SegmentPlan(BaseModel):
    """An L2 segment built as a bridge in the fabric namespace (one per switch)."""

    name: str
    bridge: str


class LabPlan(BaseModel):
    """Everything needed to build one lab instance."""

    lab_id: str
    lab_name: str
    topology: str
    fabric_netns: str
    mgmt_bridge: str
    mgmt_subnet: str
    controller_address: str
    nodes: list[NodePlan]
    segments: list[SegmentPlan]

    def node(self, name: str) -> NodePlan:
        """The plan of node `name` (KeyError if there is none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def netns_names(self) -> list[str]:
        """Every network namespace this lab owns (fabric first; then the nodes', and the one a
        node restarting leaves while its links move to its new one)."""
        return [self.fabric_netns, *(n.netns for n in self.nodes), *(n.netns + RESTARTING for n in self.nodes),
                self.probe_netns]

    @property
    def probe_netns(self) -> str:
        """The namespace of the grader's probe point (exists only while an active check acts)."""
        return self.fabric_netns.removesuffix("-fab") + PROBE


def new_lab_id() -> str:
    """A short random id: a letter then lowercase letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(LAB_ID_LENGTH - 1)
    )


def plan_lab(topology: Topology, lab_id: str, lab_name: str) -> LabPlan:
    """Derive the concrete plan of `topology` for the lab `lab_id` (deterministic)."""
    prefix = f"lc-{lab_id}"
    fabric = f"{prefix}-fab"
    bridges = {name: f"br{i}" for i, name in enumerate(topology.switches())}
    capacity = topology.addressing.mgmt.num_addresses - 3  # network, broadcast, controller
    if len(topology.lab_nodes()) > capacity:
        raise LabctlError(f"{len(topology.lab_nodes())} nodes do not fit the management network "
                          f"{topology.addressing.mgmt} ({capacity} addresses)",
                          "give addressing.mgmt a larger subnet, e.g. 198.18.0.0/22")
    mgmt_hosts = topology.addressing.mgmt.hosts()
    controller = next(mgmt_hosts)
    mgmt_len = topology.addressing.mgmt.prefixlen
    machines = topology.lab_nodes()
    interfaces: dict[str, list[InterfacePlan]] = {name: [] for name in machines}
    for index, link in enumerate(topology.links):
        a, b = link.endpoints
        for here, there in ((a, b), (b, a)):
            if here.node not in machines or here.interface is None:
                continue
            if there.node in bridges:
                peer_ns, peer_name, bridge = fabric, f"p{index}", bridges[there.node]
            else:
                peer_ns, peer_name, bridge = f"{prefix}-{there.node}", str(there.interface), None
            interfaces[here.node].append(InterfacePlan(
                name=here.interface, address=str(here.address) if here.address else None,
                peer_netns=peer_ns, peer_name=peer_name, bridge=bridge,
                creates_pair=bridge is not None or here is a,
                address6=str(here.address6) if here.address6 else None, dhcp=here.dhcp, mtu=link.mtu,
            ))
    nodes = [
        NodePlan(
            name=name, kind=node.kind, netns=f"{prefix}-{name}", machine=f"{prefix}-{name}",
            mgmt_address=str(IPv4Interface(f"{next(mgmt_hosts)}/{mgmt_len}")),
            mgmt_port=f"m{i}", interfaces=interfaces[name],
            routes=[RoutePlan(to=str(r.to), via=r.gateway) for r in node.routes],
            vars=dict(node.vars), limits=node.limits, init=node.init or topology.defaults.init,
            loopbacks=[str(a) for a in (node.loopback, node.loopback6) if a is not None and a != "auto"],
        )
        for i, (name, node) in enumerate(machines.items())
    ]
    return LabPlan(
        lab_id=lab_id, lab_name=lab_name, topology=topology.name, fabric_netns=fabric,
        mgmt_bridge="mgmt", mgmt_subnet=str(topology.addressing.mgmt),
        controller_address=f"{controller}/{mgmt_len}", nodes=nodes,
        segments=[SegmentPlan(name=n, bridge=b) for n, b in bridges.items()],
    )
