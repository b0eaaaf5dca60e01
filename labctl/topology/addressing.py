"""Addressing: every L2 segment gets a subnet, every host/router interface an address.

A *segment* is one L2 broadcast domain: a switch together with the host/router ends
cabled to it, or a point-to-point link between two host/router interfaces. A link
between two switches is not a segment (validation rejects it).

API for the rest of labctl (everything is deterministic: same file, same result)::

    resolve_addressing(topology) -> Resolution
        A resolved copy of the topology (`.topology`) and the allocations that failed
        (`.shortages`, each with a data path, message and hint). The input is not changed.
    segments(topology) -> list[Segment]
        The segments of a *resolved* topology: switches in `nodes` order, then
        point-to-point links in `links` order. `Segment` has `name` (the switch name, or
        `r1:eth1--r2:eth1` for a point-to-point link), `switch` (name or None), `subnet`,
        `endpoints` (host/router ends, file order) and `links` (indexes in `links`).
    segment_subnet(topology, link) -> IPv4Network
        The subnet of the segment a link belongs to (resolved topology).
    node_subnets(topology, node) -> list[IPv4Network]
        The subnets a host/router is attached to, in segment order (resolved topology).
    wirings(topology) -> list[Wiring]
        The same grouping before addressing (subnets may still be missing), with each
        end's position in the file; validation uses it.

Allocation rules, applied in segment order:

* A segment keeps its subnet when the file gives one (switch `subnet`, link `subnet`);
  otherwise it takes the network of the first explicit address on it.
* Remaining switches get the next free /24 of `addressing.lan`, remaining point-to-point
  links the next free /30 of `addressing.p2p`; "free" means overlapping no subnet in use
  (given, implied, already allocated) and not the management network `addressing.mgmt`.
* Each host/router end without an address gets the lowest host address of its segment's
  subnet that no interface in the topology uses, in file order; an end addressed by DHCP
  gets none (the node's own client asks for one).
* IPv6 the same way, beside IPv4: a segment keeps its `subnet6`, else the /64 of its first
  explicit IPv6 address, else the next free /64 of `addressing.lan6` (switches) or
  `addressing.p2p6` (point-to-point links) when that pool is set; segments with none of
  these stay IPv4 only. Ends of a segment with an IPv6 subnet get an address in it (DHCP
  ends included: DHCP here is IPv4's).
* Nodes with `loopback: auto` get the next /32 of `addressing.loopback` that no interface
  or loopback of the topology uses, in node order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import cast

from labctl.sourcefile import PathKey
from labctl.topology.model import Endpoint, Link, Topology

LAN_PREFIX = 24
P2P_PREFIX = 30
V6_PREFIX = 64


@dataclass(frozen=True)
class End:
    """A host/router end of a link, with its position in the file."""

    link: int
    index: int
    endpoint: Endpoint

    @property
    def path(self) -> PathKey:
        """The data path of this end, e.g. ("links", 2, "endpoints", 0)."""
        return ("links", self.link, "endpoints", self.index)


@dataclass(frozen=True)
class Wiring:
    """One segment before addressing: a switch or a point-to-point link, and its ends."""

    switch: str | None
    links: tuple[int, ...]
    ends: tuple[End, ...]
    vlan: int | None = None  # a VLAN of the switch: the ends on its access ports (`vlan: N` links)

    @property
    def name(self) -> str:
        """The switch name (`sw1 VLAN 10`), or `a:ifa--b:ifb` for a point-to-point link."""
        if self.switch is not None:
            return self.switch if self.vlan is None else f"{self.switch} VLAN {self.vlan}"
        return "--".join(end.endpoint.label for end in self.ends)

    @property
    def subnet_path(self) -> PathKey:
        """Where the segment's subnet is (or would be) written in the file (a VLAN: its first port)."""
        if self.vlan is not None:
            return ("links", self.links[0], "vlan")
        if self.switch is not None:
            return ("nodes", self.switch, "subnet")
        return ("links", self.links[0], "subnet")

    def given_subnet(self, topology: Topology) -> IPv4Network | None:
        """The subnet the file gives this segment (switch or link `subnet`), if any; a VLAN's is
        that of its addresses (none is written for it)."""
        if self.vlan is not None:
            first = self.first_addressed()
            return first.endpoint.address.network if first and first.endpoint.address else None
        if self.switch is not None:
            return topology.nodes[self.switch].subnet
        return topology.links[self.links[0]].subnet

    def first_addressed(self) -> End | None:
        """The first end (file order) with an explicit address."""
        return next((end for end in self.ends if end.endpoint.address is not None), None)

    def known_subnet(self, topology: Topology) -> IPv4Network | None:
        """The given subnet, else the network of the first explicit address, else None."""
        given = self.given_subnet(topology)
        if given is not None:
            return given
        first = self.first_addressed()
        return first.endpoint.address.network if first and first.endpoint.address else None

    @property
    def subnet6_path(self) -> PathKey:
        """Where the segment's IPv6 subnet is (or would be) written in the file."""
        return (*self.subnet_path[:-1], "subnet6")

    def given_subnet6(self, topology: Topology) -> IPv6Network | None:
        """The IPv6 subnet the file gives this segment (switch or link `subnet6`), if any."""
        if self.vlan is not None:
            first = self.first_addressed6()
            return first.endpoint.address6.network if first and first.endpoint.address6 else None
        if self.switch is not None:
            return topology.nodes[self.switch].subnet6
        return topology.links[self.links[0]].subnet6

    def first_addressed6(self) -> End | None:
        """The first end (file order) with an explicit IPv6 address."""
        return next((end for end in self.ends if end.endpoint.address6 is not None), None)

    def known_subnet6(self, topology: Topology) -> IPv6Network | None:
        """The given IPv6 subnet, else the /64... network of the first explicit IPv6 address."""
        given = self.given_subnet6(topology)
        if given is not None:
            return given
        first = self.first_addressed6()
        return first.endpoint.address6.network if first and first.endpoint.address6 else None


@dataclass(frozen=True)
class Segment:
    """One L2 segment of a resolved topology."""

    name: str
    switch: str | None
    subnet: IPv4Network
    endpoints: tuple[Endpoint, ...]
    links: tuple[int, ...]
    subnet6: IPv6Network | None = None


@dataclass(frozen=True)
class Shortage:
    """An allocation that found no free subnet or address: where, what, and a hint."""

    path: PathKey
    message: str
    hint: str


@dataclass(frozen=True)
class Resolution:
    """The result of `resolve_addressing`: a resolved copy and any failed allocations."""

    topology: Topology
    shortages: list[Shortage] = field(default_factory=list)


def wirings(topology: Topology) -> list[Wiring]:
    """Group link ends into segments: switches in node order, then p2p links in link order.

    An end whose node is not a switch counts as a host/router end (even if the node does
    not exist); a link between two switches belongs to no segment. A switch's access ports
    of one VLAN (`vlan: N`) are a segment of their own, after the switch's untagged one; its
    trunk ports (`trunk:`) carry only tagged frames, so their ends are on no segment.
    """
    switches = topology.switches()
    ends: dict[tuple[str, int | None], list[End]] = {(name, None): [] for name in switches}
    links: dict[tuple[str, int | None], list[int]] = {(name, None): [] for name in switches}
    p2p: list[Wiring] = []
    for i, link in enumerate(topology.links):
        on_switch = [e.node for e in link.endpoints if e.node in switches]
        machine = [End(i, j, e) for j, e in enumerate(link.endpoints) if e.node not in switches]
        if not on_switch:
            p2p.append(Wiring(None, (i,), tuple(machine)))
        elif len(on_switch) == 1 and link.trunk is None:
            ends.setdefault((on_switch[0], link.vlan), []).extend(machine)
            links.setdefault((on_switch[0], link.vlan), []).append(i)
    order = {name: k for k, name in enumerate(switches)}
    keys = sorted(ends, key=lambda key: (order[key[0]], key[1] is not None, key[1] or 0))
    grouped = [Wiring(name, tuple(links[(name, vlan)]), tuple(ends[(name, vlan)]), vlan) for name, vlan in keys]
    return grouped + p2p


def resolve_addressing(topology: Topology) -> Resolution:
    """Give every segment a subnet and every host/router end an address (on a copy)."""
    resolved = topology.model_copy(deep=True)
    plan = wirings(resolved)
    known = [wiring.known_subnet(resolved) for wiring in plan]
    used: list[IPv4Network | IPv6Network] = [resolved.addressing.mgmt, *(s for s in known if s is not None)]
    if any(node.loopback == "auto" for node in resolved.nodes.values()):
        used.append(resolved.addressing.loopback)
    lan = _Pool("lan", resolved.addressing.lan, LAN_PREFIX, used)
    p2p = _Pool("p2p", resolved.addressing.p2p, P2P_PREFIX, used)
    taken = _explicit_ips(resolved)
    shortages: list[Shortage] = []
    for wiring, subnet in zip(plan, known, strict=True):
        pool = lan if wiring.switch is not None else p2p
        if subnet is None:
            subnet = cast(IPv4Network | None, pool.take())
        if subnet is None:
            shortages.append(_pool_shortage(wiring, pool))
            continue
        _set_subnet(resolved, wiring, subnet)
        shortages.extend(_fill_addresses(wiring, subnet, taken))
    shortages.extend(_resolve_ipv6(resolved, plan))
    shortages.extend(_resolve_loopbacks(resolved, taken))
    return Resolution(resolved, shortages)


def _resolve_ipv6(resolved: Topology, plan: list[Wiring]) -> Iterator[Shortage]:
    """IPv6 subnets and addresses, as `resolve_addressing` does IPv4 (module docstring)."""
    known = [wiring.known_subnet6(resolved) for wiring in plan]
    used: list[IPv4Network | IPv6Network] = [subnet for subnet in known if subnet is not None]
    pools = {kind: _Pool(f"{kind}6", network, V6_PREFIX, used) if network is not None else None
             for kind, network in (("lan", resolved.addressing.lan6), ("p2p", resolved.addressing.p2p6))}
    taken: set[IPv4Address | IPv6Address] = {
        e.address6.ip for link in resolved.links for e in link.endpoints if e.address6}
    taken |= {n.loopback6.ip for n in resolved.nodes.values() if n.loopback6}
    for wiring, subnet in zip(plan, known, strict=True):
        pool = pools["lan" if wiring.switch is not None else "p2p"]
        if subnet is None and pool is not None:
            subnet = cast(IPv6Network | None, pool.take())
            if subnet is None:
                yield _pool_shortage(wiring, pool)
                continue
        if subnet is None:
            continue
        if wiring.vlan is not None:
            pass  # written nowhere: its addresses (filled next) say it
        elif wiring.switch is not None:
            resolved.nodes[wiring.switch].subnet6 = subnet
        else:
            resolved.links[wiring.links[0]].subnet6 = subnet
        for end in wiring.ends:
            if end.endpoint.address6 is None:
                ip = next((host for host in subnet.hosts() if host not in taken), None)
                if ip is None:
                    yield Shortage((*end.path, "address6"), f"no free address left in {subnet} for "
                                   f"{end.endpoint.label}", f"use a larger subnet6 for {_segment_words(wiring)}")
                    continue
                taken.add(ip)
                end.endpoint.address6 = IPv6Interface(f"{ip}/{subnet.prefixlen}")


def _resolve_loopbacks(resolved: Topology, taken: set[IPv4Address]) -> Iterator[Shortage]:
    """`loopback: auto` becomes the next /32 of addressing.loopback nobody uses."""
    taken = taken | {n.loopback.ip for n in resolved.nodes.values() if isinstance(n.loopback, IPv4Interface)}
    free = (ip for ip in resolved.addressing.loopback.hosts() if ip not in taken)
    for name, node in resolved.nodes.items():
        if node.loopback == "auto":
            ip = next(free, None)
            if ip is None:
                yield Shortage(("nodes", name, "loopback"), f"no free address left in the loopback pool "
                               f"{resolved.addressing.loopback} for {name}",
                               "enlarge addressing.loopback, or give this node its loopback address")
                continue
            node.loopback = IPv4Interface(f"{ip}/32")


def segments(topology: Topology) -> list[Segment]:
    """The L2 segments of a resolved topology (see the module docstring for the order)."""
    result = []
    for wiring in wirings(topology):
        subnet = wiring.given_subnet(topology)
        if subnet is None and wiring.vlan is not None:
            continue  # every end of this VLAN is addressed by DHCP
        if subnet is None:
            raise ValueError(f"segment {wiring.name} has no subnet; resolve addressing first")
        endpoints = tuple(end.endpoint for end in wiring.ends)
        result.append(Segment(wiring.name, wiring.switch, subnet, endpoints, wiring.links,
                              wiring.given_subnet6(topology)))
    return result


def segment_subnet(topology: Topology, link: Link) -> IPv4Network:
    """The subnet of the segment `link` belongs to (a switch's, or the link's own)."""
    switches = [e.node for e in link.endpoints if e.node in topology.switches()]
    if len(switches) > 1:
        raise ValueError("a link between two switches belongs to no segment")
    subnet = topology.nodes[switches[0]].subnet if switches else link.subnet
    if subnet is None:
        raise ValueError("the link's segment has no subnet; resolve addressing first")
    return subnet


def node_subnets(topology: Topology, node: str) -> list[IPv4Network]:
    """The subnets of the segments `node` has an interface on, in segment order, once each."""
    result: list[IPv4Network] = []
    for segment in segments(topology):
        on_it = any(endpoint.node == node for endpoint in segment.endpoints)
        if on_it and segment.subnet not in result:
            result.append(segment.subnet)
    return result


class _Pool:
    """Hands out the next free subnet of one prefix length from a pool, in address order."""

    def __init__(self, name: str, network: IPv4Network | IPv6Network, prefix: int,
                 used: list[IPv4Network | IPv6Network]) -> None:
        self.name = name
        self.network = network
        self.prefix = prefix
        self._used = used  # shared with the other pool: both see every allocation
        self._candidates = self._subnets()

    def _subnets(self) -> Iterator[IPv4Network | IPv6Network]:
        if self.network.prefixlen <= self.prefix:
            yield from self.network.subnets(new_prefix=self.prefix)

    def take(self) -> IPv4Network | IPv6Network | None:
        """The next subnet overlapping none in use (now marked in use), or None."""
        for candidate in self._candidates:  # a rejected candidate stays rejected: used grows
            if not any(candidate.overlaps(subnet) for subnet in self._used):
                self._used.append(candidate)
                return candidate
        return None


def _explicit_ips(topology: Topology) -> set[IPv4Address]:
    ips = {e.address.ip for link in topology.links for e in link.endpoints if e.address}
    return ips | {n.loopback.ip for n in topology.nodes.values() if isinstance(n.loopback, IPv4Interface)}


def _set_subnet(topology: Topology, wiring: Wiring, subnet: IPv4Network) -> None:
    if wiring.vlan is not None:
        return  # written nowhere: its addresses (filled next) say it
    if wiring.switch is not None:
        topology.nodes[wiring.switch].subnet = subnet
    else:
        topology.links[wiring.links[0]].subnet = subnet


def _fill_addresses(wiring: Wiring, subnet: IPv4Network,
                    taken: set[IPv4Address]) -> Iterator[Shortage]:
    """Give each end without an address the lowest free host address of `subnet`."""
    for end in wiring.ends:
        if end.endpoint.address is not None or end.endpoint.dhcp:
            continue
        ip = next((host for host in subnet.hosts() if host not in taken), None)
        if ip is None:
            yield Shortage(end.path, f"no free address left in {subnet} for {end.endpoint.label}",
                           f"use a larger subnet for {_segment_words(wiring)}")
            continue
        taken.add(ip)
        end.endpoint.address = IPv4Interface(f"{ip}/{subnet.prefixlen}")


def _pool_shortage(wiring: Wiring, pool: _Pool) -> Shortage:
    what = _segment_words(wiring)
    return Shortage(
        wiring.subnet_path,
        f"no free /{pool.prefix} left in the {pool.name} pool {pool.network} for {what}",
        f"enlarge addressing.{pool.name}, or give {what} a `subnet`",
    )


def _segment_words(wiring: Wiring) -> str:
    if wiring.vlan is not None:
        return f"VLAN {wiring.vlan} of switch {wiring.switch}"
    if wiring.switch is not None:
        return f"switch {wiring.switch}"
    return f"the link {wiring.name.replace('--', ' -- ')}"
