"""The grader's own probe point on a switch of the lab, for active checks (local provider).

An active check (ssh_login, ssh_ban) must act from a machine the candidate has no shell on:
from `ext`, where the candidate is root, a firewall rule in ext could drop the grader's packets
and make a refused log-in out of a connection that never reached the server. The probe point is
a network namespace labctl creates (named after the lab, `lc-<id>.probe`: `labctl down`
removes it with the lab's other namespaces if a grading run died), with one veth whose other end
labctl plugs into the switch's bridge in the lab's fabric namespace, and the address the check
names. No process of any node runs in it, nothing listens in it, and it exists only for the
check's duration (removed after, even when the check fails).

The candidate is root in every node of the lab, so any neighbour on the switch could claim a
node's address (ARP, or frames with a forged source MAC) and answer in its place. The probe point
therefore talks to the switch's nodes at the link layer labctl knows, not the one they announce:
for every static IPv4 address the plan puts on the switch (`pins_on`), labctl reads the MAC of the
interface the plan names, in the node's namespace with its own iproute2 (never a program of the
node), and then
- in the probe's namespace: a permanent neighbour entry address -> MAC (no ARP answer changes it)
  and a filter at the interface's ingress (netdev table) dropping IPv4 and ARP that claim the
  address from another MAC, and all IPv6 (the probe speaks IPv4 only);
- at the switch (bridge table in the fabric namespace, labctl's): toward the probe's port, IPv4
  and ARP claiming the address pass only from its owner's port, VLAN-tagged frames not at all;
  from the probe's port, frames to the owner's MAC go to the owner's port only. This part is the
  one that holds: a node can forge any source MAC (h1 copying r1's MAC fools the probe's own
  filter, tested), not the port its frames come in by.
An address whose MAC cannot be read (node stopped, interface gone) is pinned to nobody: nothing
claiming it reaches the probe. The probe asks pinned nodes no ARP, so it announces its own MAC once
its port forwards (a gratuitous ARP): a node may hold an earlier probe point's MAC for the same
address.

What the candidate can still do: make the grader's connection fail (silence the target, poison the
target's ARP cache for the probe's address, copy MACs, change the target's MAC during the check,
which just loses that check's connection): a FAIL or ERROR they caused themselves. Redirect from
inside the target node itself (a DNAT in r1 sending the probe's connection to h1): the target's
namespace is theirs, and the probe proves only that what answered came in by the target's port;
checks that need the real server prove it otherwise (ssh_login: the node's host key, read from
outside). Addresses the plan does not give are not pinned: DHCP leases, VIPs and addresses a
node adds itself. And ssh_login/ssh_ban judge as before: a refusal is judged only when the node's
own SSH server answered (its host key, read from the node's files from outside, must match), and a
ban only when the probe's SYN was seen arriving at the node's own interface (a packet socket in the
node's namespace) with no answer leaving it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from labctl import netns
from labctl.errors import ProviderError
from labctl.plan import LabPlan
from labctl.providers import firewall

HOST_END, PROBE_END = "prb0", "eth0"
SWITCH_TABLE, PROBE_TABLE = "labctl_probe_pins", "labctl_pins"  # nft tables: the fabric's (bridge), the probe's
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


@dataclass(frozen=True)
class Pin:
    """An address the plan gives a node on the probe's switch, and where it must come from: the
    node's interface (in the node's namespace) and that interface's port on the switch's bridge
    (its other end, in the fabric namespace, which is labctl's)."""

    node: str
    netns: str
    interface: str
    address: str
    port: str


def pins_on(plan: LabPlan, bridge: str) -> list[Pin]:
    """Every static IPv4 address the plan puts on `bridge`, with its owner's interface and port.
    DHCP leases, addresses a node adds itself (VIPs) and IPv6 are not among them."""
    return [Pin(node.name, node.netns, iface.name, str(ipaddress.IPv4Interface(iface.address).ip), iface.peer_name)
            for node in plan.nodes for iface in node.interfaces
            if iface.bridge == bridge and iface.address and not iface.dhcp]


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def unicast_mac(text: object) -> str | None:
    """`text` when it is an Ethernet unicast address (lower case), else None."""
    if not isinstance(text, str) or not _MAC.fullmatch(text.lower()):
        return None
    mac = text.lower()
    return mac if not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00" else None


def read_mac(pin: Pin) -> str | None:
    """The current MAC of the pin's interface, asked of the kernel from outside the node (iproute2
    run by labctl in the node's namespace, nothing of the node's); None when the namespace or the
    interface is gone or has no Ethernet address."""
    try:
        shown = json.loads(netns.run(["ip", "-j", "-n", pin.netns, "link", "show", "dev", pin.interface]) or "[]")
    except (ProviderError, ValueError):
        return None
    return unicast_mac(shown[0].get("address")) if isinstance(shown, list) and shown and isinstance(shown[0], dict) \
        else None


def neighbours(pins: list[Pin], macs: dict[str, str | None]) -> list[str]:
    """`ip` commands for the probe's permanent neighbour entries: ARP answers change none of them."""
    return [f"neigh replace {p.address} lladdr {macs[p.address]} dev {PROBE_END} nud permanent"
            for p in pins if macs[p.address]]


def probe_chains(pins: list[Pin], macs: dict[str, str | None]) -> str:
    """The probe's own filter (netdev table, ingress of its interface): IPv6 is dropped (the probe
    speaks IPv4 only), and so is any IPv4 packet or ARP message that claims a pinned address from
    another MAC than its owner's (every one when the owner's MAC could not be read)."""
    rules = ["meta protocol ip6 drop"]
    for pin in pins:
        mac = macs[pin.address]
        other = f" ether saddr != {mac}" if mac else ""
        rules += [f"ip saddr {pin.address}{other} drop", f"arp saddr ip {pin.address}{other} drop"]
        if mac:
            rules.append(f"arp saddr ip {pin.address} arp saddr ether != {mac} drop")
    return _chain("pin", f'type filter hook ingress device "{PROBE_END}" priority -500; policy accept;', rules)


def switch_chains(pins: list[Pin], macs: dict[str, str | None]) -> str:
    """The switch's filter toward the probe (bridge table in the fabric namespace, by port: a node
    can forge any source MAC, not the port its frames come in by). To the probe's port, an IPv4
    packet or ARP message claiming a pinned address passes only from its owner's port, and no
    VLAN-tagged frame passes; from it, a frame to a pinned MAC goes only to that MAC's owners'
    ports, wherever the bridge learnt it."""
    rules = [f'oifname "{HOST_END}" ether type {{ 8021q, 8021ad }} drop']
    owners: dict[str, list[str]] = {}
    for pin in pins:
        rules += [f'oifname "{HOST_END}" ip saddr {pin.address} iifname != "{pin.port}" drop',
                  f'oifname "{HOST_END}" arp saddr ip {pin.address} iifname != "{pin.port}" drop']
        mac = macs[pin.address]
        if mac:
            owners.setdefault(mac, []).append(pin.port)
    for mac, ports in owners.items():
        names = ", ".join(f'"{port}"' for port in ports)
        rules.append(f'iifname "{HOST_END}" ether daddr {mac} oifname != {{ {names} }} drop')
    return _chain("forward", "type filter hook forward priority -200; policy accept;", rules)


def _chain(name: str, hook: str, rules: list[str]) -> str:
    body = "".join(f"        {rule}\n" for rule in rules)
    return f"    chain {name} {{\n        {hook}\n{body}    }}\n"


def gratuitous_arp(mac: str, address: str) -> bytes:
    """An Ethernet frame announcing that `address` is at `mac` (a broadcast ARP request for itself)."""
    hardware, ip = bytes.fromhex(mac.replace(":", "")), socket.inet_aton(address)
    return b"\xff" * 6 + hardware + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hardware + ip + \
        b"\0" * 6 + ip


def announce(fabric: str, name: str, address: str) -> None:
    """Tell the switch's nodes the probe's address is at its MAC once its port forwards (at most
    3 s): the probe asks no ARP of pinned nodes, and a node may still hold an earlier probe point's
    MAC for this address, where its replies would go until its entry expires (seconds)."""
    for _ in range(60):
        port = json.loads(netns.run(["ip", "-j", "-d", "-n", fabric, "link", "show", "dev", HOST_END]) or "[{}]")
        if port[0].get("linkinfo", {}).get("info_slave_data", {}).get("state") == "forwarding":
            break
        time.sleep(0.05)
    shown = json.loads(netns.run(["ip", "-j", "-n", name, "link", "show", "dev", PROBE_END]))
    frame = gratuitous_arp(shown[0]["address"], address)

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((PROBE_END, 0))
            sock.send(frame)

    netns.in_namespace(netns.NETNS_DIR / name, send, name)


@contextlib.contextmanager
def probe_point(plan: LabPlan, switch: str, addresses: str, node: str) -> Iterator[ProbePointAt]:
    """A probe point on `switch` with an address drawn from `addresses`, to reach `node` there,
    talking to the switch's nodes at the link layer labctl reads (pinned); removed on the way
    out."""
    bridge, target = target_on(plan, switch, node)
    interface = draw_address(plan, target, addresses)
    name, fabric = plan.probe_netns, firewall.netns_prefix(plan.fabric_netns)
    with _lock:
        netns.delete(name)  # a probe point a killed run left behind
        netns.add(name)
        try:
            pins = pins_on(plan, bridge)
            macs = {pin.address: read_mac(pin) for pin in pins}
            firewall.load(SWITCH_TABLE, switch_chains(pins, macs), fabric, family="bridge")
            netns.batch(plan.fabric_netns, [
                f"link add {HOST_END} type veth peer name {PROBE_END} netns {name}",
                f"link set {HOST_END} master {bridge}"], "plugging the probe point")
            netns.batch(name, ["link set lo up", f"addr add {interface.with_prefixlen} dev {PROBE_END}",
                               f"link set {PROBE_END} up", *neighbours(pins, macs)], "addressing the probe point")
            firewall.load(PROBE_TABLE, probe_chains(pins, macs), firewall.netns_prefix(name), family="netdev")
            netns.batch(plan.fabric_netns, [f"link set {HOST_END} up"], "plugging the probe point")
            announce(plan.fabric_netns, name, str(interface.ip))
            yield ProbePointAt(name, str(interface.ip), str(target.ip), node)
        finally:
            with contextlib.suppress(ProviderError):
                netns.batch(plan.fabric_netns, [f"link del {HOST_END}"], "unplugging the probe point")
            firewall.unload(SWITCH_TABLE, fabric, family="bridge")
            netns.delete(name)


def tcp_socket(name: str) -> socket.socket:
    """A TCP socket made in namespace `name`."""
    return netns.in_namespace(netns.NETNS_DIR / name, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), name)

