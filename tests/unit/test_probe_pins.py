"""The probe point's pins: which addresses of its switch it pins, and the rules it writes (pure)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

from labctl.grading.probepoint import Pin, gratuitous_arp, neighbours, pins_on, probe_chains, switch_chains, unicast_mac
from labctl.plan import LabPlan, plan_lab
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
R1, H1 = "02:00:00:00:00:01", "02:00:00:00:00:0a"


def _plan(path: Path = ROOT / "tests" / "data" / "labs" / "small.yml") -> LabPlan:
    return plan_lab(load_topology(path), "abc123", "small")


def test_every_static_address_of_the_switch_is_pinned_to_its_owner_interface_and_port() -> None:
    plan = _plan()
    bridge = next(s.bridge for s in plan.segments if s.name == "lan")
    pins = pins_on(plan, bridge)
    assert [(p.node, p.interface, p.address) for p in pins] == [("r1", "eth1", "10.10.0.1"),
                                                                 ("h1", "eth1", "10.10.0.10")]
    for pin in pins:
        node = plan.node(pin.node)
        iface = next(i for i in node.interfaces if i.name == pin.interface)
        assert (pin.netns, pin.port) == (node.netns, iface.peer_name)
    assert pins_on(plan, "no-such-bridge") == []


def test_dhcp_addresses_are_not_pinned(tmp_path: Path) -> None:
    (tmp_path / "dhcp.yml").write_text("""
name: dhcp
nodes:
  r1: {kind: router}
  h1: {kind: host}
  lan: {kind: switch, subnet: 10.10.0.0/24}
links:
  - endpoints: ["r1:eth1@10.10.0.1/24", lan]
  - endpoints: ["h1:eth1@dhcp", lan]
""")
    plan = _plan(tmp_path / "dhcp.yml")
    assert [p.node for p in pins_on(plan, plan.segments[0].bridge)] == ["r1"]


def test_only_ethernet_unicast_addresses_count_as_a_mac() -> None:
    assert unicast_mac("02:AB:00:00:00:01") == "02:ab:00:00:00:01"
    for bad in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00", "02:00:00:00:01", "x", None, 5,
                "02:00:00:00:00:01; drop"):
        assert unicast_mac(bad) is None


PINS = [Pin("r1", "lc-abc123-r1", "eth1", "10.10.0.1", "p0"), Pin("h1", "lc-abc123-h1", "eth1", "10.10.0.10", "p1")]


def test_a_read_mac_gets_a_permanent_neighbour_and_a_source_mac_filter() -> None:
    macs: dict[str, str | None] = {"10.10.0.1": R1, "10.10.0.10": H1}
    assert neighbours(PINS, macs) == [f"neigh replace 10.10.0.1 lladdr {R1} dev eth0 nud permanent",
                                      f"neigh replace 10.10.0.10 lladdr {H1} dev eth0 nud permanent"]
    rules = probe_chains(PINS, macs)
    assert 'hook ingress device "eth0"' in rules and "meta protocol ip6 drop" in rules
    assert f"ip saddr 10.10.0.1 ether saddr != {R1} drop" in rules
    assert f"arp saddr ip 10.10.0.1 arp saddr ether != {R1} drop" in rules
    assert f"arp saddr ip 10.10.0.10 ether saddr != {H1} drop" in rules


def test_an_address_whose_mac_could_not_be_read_is_pinned_to_nobody() -> None:
    macs: dict[str, str | None] = {"10.10.0.1": None, "10.10.0.10": H1}
    assert [n.split()[2] for n in neighbours(PINS, macs)] == ["10.10.0.10"]
    rules = probe_chains(PINS, macs).splitlines()
    assert "        ip saddr 10.10.0.1 drop" in rules and "        arp saddr ip 10.10.0.1 drop" in rules
    switch = switch_chains(PINS, macs)
    assert 'oifname "prb0" ip saddr 10.10.0.1 iifname != "p0" drop' in switch  # still by port
    assert f'iifname "prb0" ether daddr {H1} oifname != {{ "p1" }} drop' in switch
    assert not any("ether daddr" in line and "p0" in line for line in switch.splitlines())


def test_the_switch_checks_the_port_not_the_mac_and_a_shared_mac_goes_to_its_owners_only() -> None:
    copied: dict[str, str | None] = {"10.10.0.1": R1, "10.10.0.10": R1}  # h1 copied r1's MAC before
    switch = switch_chains(PINS, copied)
    assert 'oifname "prb0" ether type { 8021q, 8021ad } drop' in switch
    for address, port in (("10.10.0.1", "p0"), ("10.10.0.10", "p1")):
        assert f'oifname "prb0" ip saddr {address} iifname != "{port}" drop' in switch
        assert f'oifname "prb0" arp saddr ip {address} iifname != "{port}" drop' in switch
    assert f'iifname "prb0" ether daddr {R1} oifname != {{ "p0", "p1" }} drop' in switch


def test_the_announcement_is_a_gratuitous_arp_request() -> None:
    frame = gratuitous_arp("02:00:00:00:00:99", "10.10.0.200")
    mac, ip = bytes.fromhex("020000000099"), ipaddress.IPv4Address("10.10.0.200").packed
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    assert struct.unpack("!HHBBH", frame[14:22]) == (1, 0x0800, 6, 4, 1)
    assert frame[22:28] == mac and frame[28:32] == ip and frame[32:38] == b"\0" * 6 and frame[38:42] == ip
