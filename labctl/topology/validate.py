"""Semantic validation of a topology: what the shape of the model cannot say.

check_topology(topology, origin) -> list[Problem]
    Every problem that does not depend on allocated addresses: node and interface names,
    link ends (unknown node, missing or forbidden interface/address, switch-to-switch and
    self links), an interface used twice, duplicate addresses, addresses outside or at the
    edges of their subnet, mixed subnets on one segment, overlapping subnets (between
    segments, and with addressing.mgmt), duplicate route destinations.
check_routes(resolved, origin) -> list[Problem]
    Static route gateways that are the node's own address or on none of its subnets;
    needs a topology whose addressing is resolved.

`Origin` says where a topology's parts are in its file, so each Problem names file:line.
Messages count links from 1 in file order ("link 1" is the first entry of `links`) and
give the line of the other place involved.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

from labctl.errors import Problem
from labctl.sourcefile import Lines, PathKey
from labctl.topology.addressing import End, Wiring, wirings
from labctl.topology.model import (
    IFACE_NAME,
    NODE_NAME,
    RESERVED_IFACES,
    Endpoint,
    Link,
    NodeKind,
    Route,
    Topology,
)

IFACE_MAX = 15
NODE_NAME_HINT = ("node names become hostnames: lowercase letters, digits and '-', "
                  "starting with a letter, at most 31 characters")


@dataclass(frozen=True)
class Origin:
    """Where a topology's parts are in its file.

    A topology salvaged from a file with model errors holds only its usable parts:
    `link_positions[i]` is then the file index of `topology.links[i]`, `dropped_nodes`
    names the nodes left out (no valid kind; links to them are left out too), and
    `complete` is False when anything was left out or trimmed.
    """

    lines: Lines
    link_positions: tuple[int, ...] | None = None
    dropped_nodes: frozenset[str] = frozenset()
    complete: bool = True

    def path(self, path: Sequence[str | int]) -> PathKey:
        """The file's data path for a path into the (possibly salvaged) topology."""
        key = tuple(path)
        if self.link_positions is not None and len(key) > 1 and key[0] == "links":
            return ("links", self.link_positions[int(key[1])], *key[2:])
        return key

    def line(self, path: Sequence[str | int]) -> int:
        """The line of `path` in the file."""
        return self.lines.line(self.path(path))

    def problem(self, path: Sequence[str | int], message: str, hint: str | None = None) -> Problem:
        """A Problem at `path`."""
        return self.lines.problem(self.path(path), message, hint)

    def link_number(self, index: int) -> int:
        """The 1-based number of `topology.links[index]` in the file."""
        return (self.link_positions[index] if self.link_positions is not None else index) + 1

    def link_ref(self, index: int, path: Sequence[str | int] | None = None) -> str:
        """`link N (line L)`, with the line of `path` (default: the link itself)."""
        return f"link {self.link_number(index)} (line {self.line(path or ('links', index))})"

    def segment_ref(self, wiring: Wiring) -> str:
        """`switch NAME`, `switch NAME VLAN N` or `link N`, for messages."""
        if wiring.switch is not None:
            return f"switch {wiring.name}"
        return f"link {self.link_number(wiring.links[0])}"


_Check = Callable[[Topology, Origin], Iterable[Problem]]


def check_topology(topology: Topology, origin: Origin) -> list[Problem]:
    """Every semantic problem of `topology` that does not need allocated addresses."""
    return [problem for check in _STATIC_CHECKS for problem in check(topology, origin)]


def check_routes(topology: Topology, origin: Origin) -> list[Problem]:
    """Route gateways not on the node's subnets (`topology` has resolved addressing).

    Nodes whose subnets are uncertain (a link naming a missing node, a segment left
    without a subnet) are skipped: their problems are reported elsewhere.
    """
    attached = _attached_subnets(topology)
    unsure = _nodes_on_dangling_links(topology)
    problems: list[Problem] = []
    for name, node in topology.lab_nodes().items():
        subnets = attached.get(name, [])
        if name in unsure or None in subnets:
            continue
        known: list[IPv4Network | IPv6Network] = [subnet for subnet in subnets if subnet is not None]
        known += _attached_subnets6(topology).get(name, [])
        own: set[IPv4Address | IPv6Address] = {e.address.ip for e in topology.interfaces(name) if e.address}
        own |= {e.address6.ip for e in topology.interfaces(name) if e.address6}
        for k, route in enumerate(node.routes):
            problems.extend(_gateway(origin, name, k, route, known, own))
    return problems


# -- names ---------------------------------------------------------------------------------


def _node_names(topology: Topology, origin: Origin) -> Iterator[Problem]:
    for name in [*topology.nodes, *sorted(origin.dropped_nodes)]:
        if not NODE_NAME.fullmatch(name):
            yield origin.problem(("nodes", name), f"node name '{name}' is not valid",
                                 _node_name_hint(name))


def _node_name_hint(name: str) -> str:
    fixed = re.sub(r"[^a-z0-9-]+", "-", name.lower()).lstrip("0123456789-")[:31].strip("-")
    return f"{NODE_NAME_HINT}, e.g. '{fixed}'" if NODE_NAME.fullmatch(fixed) else NODE_NAME_HINT


def _interface_name(origin: Origin, path: PathKey, name: str) -> Iterator[Problem]:
    if len(name) > IFACE_MAX:
        yield origin.problem(
            path, f"interface name '{name}' is too long ({len(name)} characters; "
            f"Linux allows at most {IFACE_MAX})", "use a shorter name, e.g. eth1")
    elif not IFACE_NAME.fullmatch(name):
        yield origin.problem(path, f"interface name '{name}' is not valid",
                             "start with a letter, then letters, digits, '_', '.' or '-'")
    elif name in RESERVED_IFACES:
        yield origin.problem(path, f"interface name '{name}' is reserved",
                             "lo is the loopback and mgmt0 is labctl's management "
                             "interface; use another name, e.g. eth1")


# -- link ends -------------------------------------------------------------------------------


def _link_ends(topology: Topology, origin: Origin) -> Iterator[Problem]:
    for i, link in enumerate(topology.links):
        for j, endpoint in enumerate(link.endpoints):
            yield from _end(topology, origin, End(i, j, endpoint))
        yield from _link_shape(topology, origin, i, link)


def _end(topology: Topology, origin: Origin, end: End) -> Iterator[Problem]:
    endpoint, number = end.endpoint, origin.link_number(end.link)
    node = topology.nodes.get(endpoint.node)
    if node is None:
        if endpoint.node not in origin.dropped_nodes:
            yield origin.problem(
                end.path, f"link {number} names node '{endpoint.node}', "
                "which is not defined under `nodes`",
                _unknown_node_hint([*topology.nodes, *origin.dropped_nodes], endpoint.node))
    elif node.kind is NodeKind.switch:
        yield from _switch_end(origin, end, number)
    elif endpoint.interface is None:
        yield origin.problem(
            end.path, f"{endpoint.node} is a {node.kind}: its end of link {number} "
            "needs an interface",
            f"write {endpoint.node}:{_free_interface(topology, endpoint.node)} (node:interface)")


def _switch_end(origin: Origin, end: End, number: int) -> Iterator[Problem]:
    endpoint = end.endpoint
    if endpoint.interface is not None:
        yield origin.problem(
            (*end.path, "interface"), f"{endpoint.node} is a switch: its end of link {number} "
            f"takes no interface ('{endpoint.interface}')",
            f"write just '{endpoint.node}': the interface belongs to the host/router "
            "at the other end")
    given = ", ".join(endpoint.shown_addresses())
    if given:
        yield origin.problem(
            (*end.path, "address"), f"{endpoint.node} is a switch: its end of link {number} "
            f"takes no address ({given})",
            "put the address on the host/router end (e.g. r1:eth1@10.0.0.1/24), and the "
            f"segment's subnet in {endpoint.node}'s `subnet`")


def _unknown_node_hint(defined: Iterable[str], name: str) -> str:
    names = sorted(defined)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"nodes are: {', '.join(names)}" if names else "define it under `nodes`"


def _link_shape(topology: Topology, origin: Origin, i: int, link: Link) -> Iterator[Problem]:
    a, b = link.endpoints
    number = origin.link_number(i)
    if a.node == b.node:
        yield origin.problem(("links", i), f"link {number} connects {a.node} to itself",
                             "a link joins two different nodes")
    elif a.node in topology.switches() and b.node in topology.switches():
        yield origin.problem(
            ("links", i), f"link {number} joins two switches, {a.node} and {b.node}",
            "switches join through hosts/routers only: cable an interface of a router "
            "(or host) to each switch instead")


def _machine_ends(topology: Topology) -> Iterator[End]:
    """Ends whose node is not a switch (missing nodes included), in file order."""
    switches = topology.switches()
    for i, link in enumerate(topology.links):
        for j, endpoint in enumerate(link.endpoints):
            if endpoint.node not in switches:
                yield End(i, j, endpoint)


def _free_interface(topology: Topology, node: str) -> str:
    used = {endpoint.interface for endpoint in topology.interfaces(node)}
    number = 1
    while f"eth{number}" in used:
        number += 1
    return f"eth{number}"


def _interfaces(topology: Topology, origin: Origin) -> Iterator[Problem]:
    first: dict[tuple[str, str], End] = {}
    for end in _machine_ends(topology):
        endpoint = end.endpoint
        if endpoint.interface is None:
            continue
        path = (*end.path, "interface")
        yield from _interface_name(origin, path, endpoint.interface)
        seen = first.setdefault((endpoint.node, endpoint.interface), end)
        if seen is not end:
            used_by = origin.link_ref(seen.link, seen.path)
            yield origin.problem(
                path, f"{endpoint.label} is already used by {used_by}",
                f"give each link its own interface, e.g. "
                f"{endpoint.node}:{_free_interface(topology, endpoint.node)}")


# -- addresses and subnets ---------------------------------------------------------------------


def _duplicate_addresses(topology: Topology, origin: Origin) -> Iterator[Problem]:
    """An address (IPv4 or IPv6, on an interface or a loopback) given twice."""
    first: dict[IPv4Address | IPv6Address, tuple[str, PathKey]] = {}
    for path, label, ip in _addresses(topology):
        seen = first.setdefault(ip, (label, path))
        if seen[1] != path:
            yield origin.problem(
                path, f"address {ip} of {label} is already used by {seen[0]} (line {origin.line(seen[1])})",
                "every interface and loopback needs its own address; " + (
                    "give this sub-interface another one (labctl draws none for sub-interfaces)"
                    if "subinterfaces" in path else "remove this one to have one allocated"))


def _addresses(topology: Topology) -> Iterator[tuple[PathKey, str, IPv4Address | IPv6Address]]:
    """Every address the file gives a machine: where, whose, which (file order, loopbacks first)."""
    for name, node in topology.lab_nodes().items():
        for key in ("loopback", "loopback6"):
            value = getattr(node, key)
            if isinstance(value, IPv4Interface | IPv6Interface):
                yield ("nodes", name, key), f"{name}'s loopback", value.ip
    for end in _machine_ends(topology):
        for key in ("address", "address6"):
            value = getattr(end.endpoint, key)
            if value is not None:
                yield (*end.path, key), end.endpoint.label, value.ip
    for name, node in topology.lab_nodes().items():
        for k, sub in enumerate(node.subinterfaces):
            for key in ("address", "address6"):
                value = getattr(sub, key)
                if value is not None:
                    yield ("nodes", name, "subinterfaces", k, key), f"{name}:{sub.interface}", value.ip


def _segment_addresses6(topology: Topology, origin: Origin) -> Iterator[Problem]:
    """IPv6 addresses outside their segment's subnet6 (given, or that of its first IPv6 address)."""
    for wiring in wirings(topology):
        subnet = wiring.known_subnet6(topology)
        if subnet is None:
            continue
        where = (f"{origin.segment_ref(wiring)}'s subnet6 (line {origin.line(wiring.subnet6_path)})"
                 if wiring.given_subnet6(topology) is not None else
                 f"the subnet of {origin.segment_ref(wiring)}'s first IPv6 address")
        for end in wiring.ends:
            address = end.endpoint.address6
            if address is not None and address.network != subnet:
                yield origin.problem(
                    (*end.path, "address6"), f"IPv6 address {address} of {end.endpoint.label} is not in "
                    f"{subnet}, {where}", f"use an address in {subnet} (e.g. {subnet[1]}/{subnet.prefixlen}), "
                    "or remove it to have one allocated")


def _segment_addresses(topology: Topology, origin: Origin) -> Iterator[Problem]:
    for wiring in wirings(topology):
        given = wiring.given_subnet(topology)
        if given is not None:
            yield from _in_given_subnet(origin, wiring, given)
        else:
            yield from _in_shared_subnet(origin, wiring)


def _in_given_subnet(origin: Origin, wiring: Wiring, subnet: IPv4Network) -> Iterator[Problem]:
    ref = f"{origin.segment_ref(wiring)} (line {origin.line(wiring.subnet_path)})"
    for end in wiring.ends:
        address = end.endpoint.address
        if address is None:
            continue
        path = (*end.path, "address")
        if address.ip not in subnet:
            yield origin.problem(
                path, f"address {address} of {end.endpoint.label} is not in subnet {subnet} "
                f"of {ref}", f"use an address in {subnet}, or remove it to have one allocated")
        elif address.network != subnet:
            yield origin.problem(
                path, f"address {address} of {end.endpoint.label} has prefix length "
                f"/{address.network.prefixlen}, but the subnet of {ref} is {subnet}",
                f"write {address.ip}/{subnet.prefixlen}")
        else:
            yield from _edge_address(origin, path, end.endpoint, subnet)


def _in_shared_subnet(origin: Origin, wiring: Wiring) -> Iterator[Problem]:
    first = wiring.first_addressed()
    if first is None or first.endpoint.address is None:
        return
    shared = first.endpoint.address
    for end in wiring.ends:
        address = end.endpoint.address
        if address is None:
            continue
        path = (*end.path, "address")
        if address.network != shared.network:
            yield origin.problem(
                path, f"address {address} of {end.endpoint.label} is not in the subnet of "
                f"{first.endpoint.label} ({shared}, line {origin.line(first.path)}): "
                f"the ends of {origin.segment_ref(wiring)} share one subnet",
                f"use an address in {shared.network}, or give "
                f"{origin.segment_ref(wiring)} a `subnet`")
        else:
            yield from _edge_address(origin, path, end.endpoint, address.network)


def _edge_address(origin: Origin, path: PathKey, endpoint: Endpoint,
                  subnet: IPv4Network) -> Iterator[Problem]:
    """The network or broadcast address used as a host address (not on /31 and /32)."""
    if endpoint.address is None or subnet.prefixlen >= 31:
        return
    edges = {subnet.network_address: "network", subnet.broadcast_address: "broadcast"}
    what = edges.get(endpoint.address.ip)
    if what is not None:
        yield origin.problem(
            path, f"address {endpoint.address} of {endpoint.label} is the {what} address "
            f"of {subnet}", f"use a host address, {subnet.network_address + 1} to "
            f"{subnet.broadcast_address - 1}")


@dataclass(frozen=True)
class _Claim:
    """A subnet a segment holds before allocation: given, or implied by an address."""

    subnet: IPv4Network | IPv6Network
    path: PathKey
    owner: str


def _claims(topology: Topology, origin: Origin) -> list[_Claim]:
    claims = []
    for wiring in wirings(topology):
        given, first = wiring.given_subnet(topology), wiring.first_addressed()
        owner = origin.segment_ref(wiring)
        if given is not None:
            claims.append(_Claim(given, wiring.subnet_path, owner))
        elif first is not None and first.endpoint.address is not None:
            claims.append(_Claim(first.endpoint.address.network, (*first.path, "address"), owner))
        given6, first6 = wiring.given_subnet6(topology), wiring.first_addressed6()
        if given6 is not None:
            claims.append(_Claim(given6, wiring.subnet6_path, owner))
        elif first6 is not None and first6.endpoint.address6 is not None:
            claims.append(_Claim(first6.endpoint.address6.network, (*first6.path, "address6"), owner))
    for name, node in topology.lab_nodes().items():
        for key in ("loopback", "loopback6"):
            value = getattr(node, key)
            if isinstance(value, IPv4Interface | IPv6Interface):
                claims.append(_Claim(value.network, ("nodes", name, key), f"{name}'s loopback"))
    return sorted(claims, key=lambda claim: origin.line(claim.path))


def _overlapping_subnets(topology: Topology, origin: Origin) -> Iterator[Problem]:
    mgmt = topology.addressing.mgmt
    claims = _claims(topology, origin)
    for n, claim in enumerate(claims):
        if claim.subnet.overlaps(mgmt):
            yield origin.problem(
                claim.path, f"subnet {claim.subnet} of {claim.owner} overlaps the management "
                f"network {mgmt} (addressing.mgmt)",
                "the management network is kept for labctl's access to the nodes: choose "
                "another subnet, or move addressing.mgmt")
        other = next((c for c in claims[:n] if c.subnet.overlaps(claim.subnet)), None)
        loopback = next((c for c in (claim, other) if c is not None and c.path[-1] in ("loopback", "loopback6")), None)
        if other is not None and loopback is not None:
            segment = other if loopback is claim else claim
            yield origin.problem(
                loopback.path, f"{loopback.owner} {loopback.subnet} lies in subnet {segment.subnet} of "
                f"{segment.owner} (line {origin.line(segment.path)})",
                "a loopback address belongs to its node alone: take it outside every link's subnet "
                "(e.g. `loopback: auto`, drawn from addressing.loopback)")
        elif other is not None:
            yield origin.problem(
                claim.path, f"subnet {claim.subnet} of {claim.owner} overlaps subnet "
                f"{other.subnet} of {other.owner} (line {origin.line(other.path)})",
                "each segment (a switch, or a point-to-point link) needs its own subnet")


# -- routes ------------------------------------------------------------------------------------


def _destination(route: Route) -> str:
    return "default" if route.to.prefixlen == 0 else str(route.to)


def _duplicate_routes(topology: Topology, origin: Origin) -> Iterator[Problem]:
    for name, node in topology.nodes.items():
        first: dict[IPv4Network | IPv6Network, int] = {}
        for k, route in enumerate(node.routes):
            seen = first.setdefault(route.to, k)
            if seen != k:
                yield origin.problem(
                    ("nodes", name, "routes", k, "to"),
                    f"{name} has two routes to {_destination(route)}; the first is at line "
                    f"{origin.line(('nodes', name, 'routes', seen))}",
                    "keep one: a node has one next hop per destination")


def _attached_subnets(topology: Topology) -> dict[str, list[IPv4Network | None]]:
    """Each node's segment subnets in file order (None: a segment left without one)."""
    attached: dict[str, list[IPv4Network | None]] = {}
    for wiring in wirings(topology):
        subnet = wiring.given_subnet(topology)
        for end in wiring.ends:
            subnets = attached.setdefault(end.endpoint.node, [])
            if subnet not in subnets:
                subnets.append(subnet)
    return attached


def _attached_subnets6(topology: Topology) -> dict[str, list[IPv6Network]]:
    """Each node's segment IPv6 subnets (resolved topology), in file order."""
    attached: dict[str, list[IPv6Network]] = {}
    for wiring in wirings(topology):
        subnet = wiring.given_subnet6(topology)
        for end in wiring.ends:
            subnets = attached.setdefault(end.endpoint.node, [])
            if subnet is not None and subnet not in subnets:
                subnets.append(subnet)
    return attached


def _nodes_on_dangling_links(topology: Topology) -> set[str]:
    """Nodes cabled to a node that does not exist (their real subnets are unknown)."""
    unsure: set[str] = set()
    for link in topology.links:
        if any(endpoint.node not in topology.nodes for endpoint in link.endpoints):
            unsure.update(endpoint.node for endpoint in link.endpoints)
    return unsure


def _gateway(origin: Origin, name: str, k: int, route: Route, subnets: list[IPv4Network | IPv6Network],
             own: set[IPv4Address | IPv6Address]) -> Iterator[Problem]:
    if route.via is None:
        return
    gateway, path = route.via.ip, ("nodes", name, "routes", k, "via")
    prefix = f"route to {_destination(route)} on {name}: gateway {gateway}"
    if gateway in own:
        yield origin.problem(path, f"{prefix} is {name}'s own address",
                             "use the address of the next router on that subnet")
    elif not any(gateway in subnet for subnet in subnets if subnet.version == gateway.version):
        subnets = [subnet for subnet in subnets if subnet.version == gateway.version]
        listed = ", ".join(str(subnet) for subnet in subnets)
        hint = (f"{name} is on {listed}; use a neighbour's address there" if subnets
                else f"{name} has no links: cable it to the gateway's segment first")
        yield origin.problem(path, f"{prefix} is not on a subnet {name} is attached to", hint)


# -- VLANs -------------------------------------------------------------------------------------

# The kernel features VLANs need, as `labctl doctor` names them (labctl.doctor.FEATURES).
TAGGING = "vlan (802.1q)"
VLAN_SWITCH = "bridge vlan filtering"


@dataclass(frozen=True)
class VlanUse:
    """A place in the file that needs a VLAN feature of the kernel."""

    path: PathKey
    what: str
    feature: str


def vlan_uses(topology: Topology) -> list[VlanUse]:
    """Every switch port in a VLAN or trunk and every tagged sub-interface, in file order."""
    uses = [VlanUse(("links", i, key), f"link {i + 1}: a switch port {'in VLAN' if key == 'vlan' else 'trunk of'} "
                    f"{value}", VLAN_SWITCH)
            for i, link in enumerate(topology.links)
            for key, value in (("vlan", link.vlan), ("trunk", link.trunk)) if value is not None]
    return uses + [VlanUse(("nodes", name, "subinterfaces", k), f"{name}: tagged sub-interface {sub.interface}",
                           TAGGING)
                   for name, node in topology.lab_nodes().items() for k, sub in enumerate(node.subinterfaces)]


def _vlans(topology: Topology, origin: Origin) -> Iterator[Problem]:
    """VLAN ports only toward a switch; sub-interfaces on an interface of the node, whose
    cable carries their tag (a trunk naming the VLAN, or a point-to-point link)."""
    ports: dict[tuple[str, str], tuple[int, Link]] = {}
    for i, link in enumerate(topology.links):
        if link.vlan is None and link.trunk is None:
            continue
        key = "vlan" if link.vlan is not None else "trunk"
        if not any(e.node in topology.switches() for e in link.endpoints):
            yield origin.problem(("links", i, key), f"link {origin.link_number(i)} has `{key}` but no switch end: "
                                 "a VLAN is a switch port's", "cable the interface to a switch, or remove the key "
                                 "(between two machines, tag with sub-interfaces on both ends)")
            continue
        for j, end in enumerate(link.endpoints):
            if end.interface:
                ports[(end.node, end.interface)] = (i, link)
            if link.trunk is not None and end.interface and (end.address or end.address6 or end.dhcp):
                yield origin.problem(("links", i, "endpoints", j), f"{end.label} is on a trunk port "
                                     f"({origin.link_ref(i)}): it carries only tagged frames, so "
                                     f"{', '.join(end.shown_addresses())} would be on no segment",
                                     f"put the address on a tagged sub-interface, e.g. {end.interface}."
                                     f"{link.trunk[0]} in {end.node}'s `subinterfaces`")
    for name, node in topology.lab_nodes().items():
        interfaces = [e.interface for e in topology.interfaces(name)]
        seen: set[str] = set()
        for k, sub in enumerate(node.subinterfaces):
            path = ("nodes", name, "subinterfaces", k)
            yield from _interface_name(origin, path, sub.interface)
            if sub.interface in seen or sub.interface in interfaces:
                yield origin.problem(path, f"{name}: interface {sub.interface} is defined twice",
                                     "give each VLAN of an interface one sub-interface")
            seen.add(sub.interface)
            if sub.parent not in interfaces:
                yield origin.problem(path, f"{name}: {sub.interface} tags frames on {sub.parent}, which is not one "
                                     f"of {name}'s interfaces", f"{name}'s interfaces are: "
                                     f"{', '.join(i for i in interfaces if i) or 'none (cable it first)'}")
                continue
            port: tuple[int, Link | None] = ports.get((name, sub.parent), (-1, None))
            i, cable = port
            if cable is not None and cable.vlan is not None:
                yield origin.problem(path, f"{name}: {sub.interface} sends VLAN {sub.vid} tagged on {sub.parent}, "
                                     f"an access port of VLAN {cable.vlan} ({origin.link_ref(i)}): its frames are "
                                     "untagged", f"make that port a trunk: `trunk: [{sub.vid}]`")
            elif cable is not None and cable.trunk is not None and sub.vid not in cable.trunk:
                yield origin.problem(path, f"{name}: {sub.interface} sends VLAN {sub.vid} on {sub.parent}, whose "
                                     f"trunk ({origin.link_ref(i)}) carries {cable.trunk}",
                                     f"add {sub.vid} to that link's `trunk`")


_STATIC_CHECKS: tuple[_Check, ...] = (
    _node_names,
    _link_ends,
    _interfaces,
    _vlans,
    _duplicate_addresses,
    _segment_addresses,
    _segment_addresses6,
    _overlapping_subnets,
    _duplicate_routes,
)
