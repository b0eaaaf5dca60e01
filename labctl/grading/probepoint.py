"""The grader's own probe point on a switch of the lab, for active checks (local provider).

An active check (ssh_login, ssh_ban) must act from a machine the candidate has no shell on:
from `ext`, where the candidate is root, a firewall rule in ext could drop the grader's packets
and make a refused log-in out of a connection that never reached the server. The probe point is
a network namespace labctl creates (named after the lab, `lc-<id>.probe`: `labctl down`
removes it with the lab's other namespaces if a grading run died), with one veth whose other end
labctl plugs into the switch's bridge in the lab's fabric namespace, and the address the check
names. No process of any node runs in it, nothing listens in it, and it exists only for the
check's duration (removed after, even when the check fails).

What the candidate can still do is what anyone on the same switch can (ARP spoofing from ext):
that can only make the grader's connection fail or land elsewhere. Neither helps: a refusal is
judged only when the node's own SSH server answered (its host key, read from the node's files
from outside, must match), and a ban only when the probe's SYN was seen arriving at the node's
own interface (a packet socket in the node's namespace) with no answer leaving it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from labctl import netns
from labctl.errors import ProviderError
from labctl.plan import LabPlan

HOST_END, PROBE_END = "prb0", "eth0"
_lock = threading.Lock()  # one probe point at a time in this process (one per lab at a time)


@dataclass(frozen=True)
class ProbePointAt:
    """A probe point made: its namespace, its address, and the node's address on its switch."""

    netns: str
    address: str
    target: str
    target_node: str


def target_on(plan: LabPlan, switch: str, node: str) -> tuple[str, ipaddress.IPv4Interface]:
    """(bridge, the node's address on the switch); ProviderError when the switch or the node's
    interface on it is not in the plan."""
    segment = next((s for s in plan.segments if s.name == switch), None)
    if segment is None:
        switches = ", ".join(s.name for s in plan.segments) or "none"
        raise ProviderError(f"no switch {switch!r} in this lab (switches: {switches}): a probe point joins a switch")
    for iface in plan.node(node).interfaces:
        if iface.bridge == segment.bridge and iface.address:
            return segment.bridge, ipaddress.IPv4Interface(iface.address)
    raise ProviderError(f"{node} has no IPv4 address on switch {switch}")


def draw_address(plan: LabPlan, target: ipaddress.IPv4Interface, addresses: str) -> ipaddress.IPv4Interface:
    """A random address of `addresses` that no node holds, with the switch's prefix length."""
    pool = ipaddress.IPv4Network(addresses)
    if not pool.subnet_of(target.network):
        raise ProviderError(f"the probe point's range {pool} is not inside the switch's subnet {target.network}")
    taken = {ipaddress.ip_interface(i.address).ip for n in plan.nodes for i in n.interfaces if i.address}
    free = [a for a in pool.hosts() if a not in taken and a != target.network.broadcast_address]
    if not free:
        raise ProviderError(f"every address of the probe point's range {pool} is a node's")
    return ipaddress.IPv4Interface(f"{secrets.choice(free)}/{target.network.prefixlen}")


@contextlib.contextmanager
def probe_point(plan: LabPlan, switch: str, addresses: str, node: str) -> Iterator[ProbePointAt]:
    """A probe point on `switch` with an address drawn from `addresses`, to reach `node` there;
    removed on the way out."""
    bridge, target = target_on(plan, switch, node)
    interface = draw_address(plan, target, addresses)
    name = plan.probe_netns
    with _lock:
        netns.delete(name)  # a probe point a killed run left behind
        netns.add(name)
        try:
            netns.batch(plan.fabric_netns, [
                f"link add {HOST_END} type veth peer name {PROBE_END} netns {name}",
                f"link set {HOST_END} master {bridge}", f"link set {HOST_END} up"], "plugging the probe point")
            netns.batch(name, ["link set lo up", f"addr add {interface.with_prefixlen} dev {PROBE_END}",
                               f"link set {PROBE_END} up"], "addressing the probe point")
            yield ProbePointAt(name, str(interface.ip), str(target.ip), node)
        finally:
            with contextlib.suppress(ProviderError):
                netns.batch(plan.fabric_netns, [f"link del {HOST_END}"], "unplugging the probe point")
            netns.delete(name)


def tcp_socket(name: str) -> socket.socket:
    """A TCP socket made in namespace `name`."""
    return netns.in_namespace(netns.NETNS_DIR / name, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), name)

