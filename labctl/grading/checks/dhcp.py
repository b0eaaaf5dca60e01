"""The dhcp check: a node holds a DHCP lease, as its kernel and resolver configuration show it.

A lease is what the DHCP client made of it: a *dynamic* address on the interface (a finite
valid lifetime, counting down to the lease's end), the default route through the lease's
router and the lease's nameservers in /etc/resolv.conf. Not a lease file, which anyone in the
node could write. The probe lists the three facts (`ip -j -4 addr`, `ip -j -4 route show
default`, resolv.conf); from outside a local node the controller gathers the same three with
its own `ip` in the node's network namespace and reads resolv.conf through nodeview.
"""

from __future__ import annotations

import json
import re
import shlex
from ipaddress import IPv4Address
from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, judged, short, tool_failure
from labctl.grading.dnsquery import parse_resolv_conf
from labctl.grading.session import CommandResult
from labctl.grading.spec import DhcpCheck

FOREVER = 4294967295  # the kernel's "valid forever" lifetime: a static address
SECTION = "--- labctl dhcp: {} ---"
SECTIONS = ("addresses", "default routes", "clients", "resolv.conf")
# programs that are DHCP clients: a lease is kept (and renewed) by one of them, holding UDP port 68
CLIENTS = ("dhclient", "systemd-networkd", "dhcpcd", "udhcpc", "NetworkManager", "connmand")
SS_USER = re.compile(r'\("([^"]*)",pid=(\d+)')


def probe_dhcp(check: DhcpCheck) -> Probe:
    """The interface's IPv4 addresses and the default routes (as JSON), the processes holding UDP
    port 68 (`ss`), then resolv.conf."""
    iface = shlex.quote(check.interface)
    marks = [shlex.quote(SECTION.format(name)) for name in SECTIONS]
    return Probe(f"export LC_ALL=C; echo {marks[0]}; ip -j -4 addr show dev {iface} || exit; "
                 f"echo {marks[1]}; ip -j -4 route show default || exit; "
                 f"echo {marks[2]}; ss -Hunap 'sport = :68' || exit; "
                 f"echo {marks[3]}; head -c 65536 /etc/resolv.conf 2>/dev/null; exit 0")


def client_line(name: str, pid: int) -> str:
    """A process holding UDP port 68, as `ss -p` shows it (how the outside observation hands it over)."""
    return f'UNCONN 0 0 0.0.0.0:68 0.0.0.0:* users:(("{name}",pid={pid},fd=0))'


def facts_output(addresses: str, routes: str, clients: list[str], resolv_conf: str) -> str:
    """The probe's output made of the four facts (how the outside observation hands them over)."""
    parts = [SECTION.format(SECTIONS[0]), addresses.strip(), SECTION.format(SECTIONS[1]), routes.strip(),
             SECTION.format(SECTIONS[2]), *clients, SECTION.format(SECTIONS[3]), resolv_conf]
    return "\n".join(parts)


def _sections(stdout: str) -> dict[str, str]:
    """The probe's output cut at its marks (the first of each, in order: resolv.conf comes last)."""
    marks = [SECTION.format(name) + "\n" for name in SECTIONS]
    positions = [stdout.find(mark) for mark in marks]
    if -1 in positions or positions != sorted(positions):
        raise Unobservable(f"unexpected dhcp probe output: {short(stdout, 120)}")
    ends = [*positions[1:], len(stdout)]
    cuts = zip(SECTIONS, marks, positions, ends, strict=True)
    return {name: stdout[at + len(mark):end] for name, mark, at, end in cuts}


def _json_list(text: str, what: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError:
        raise Unobservable(f"`ip -j` printed no JSON for the {what}: {short(text, 120)}") from None
    if not isinstance(data, list):
        raise Unobservable(f"`ip -j` printed no list for the {what}: {short(text, 120)}")
    return [d for d in data if isinstance(d, dict)]


def evaluate_dhcp(check: DhcpCheck, result: CommandResult) -> Verdict:
    """The probe's three facts, judged."""
    if result.exit_code == 1 and "does not exist" in result.stderr:
        return judged(False, f"{check.interface}: no such interface on {check.node}")
    if result.exit_code != 0:
        return tool_failure(result, "ip")
    parts = _sections(result.stdout)
    links = _json_list(parts["addresses"], "addresses")
    addresses = [a for link in links for a in link.get("addr_info", []) if isinstance(a, dict)
                 and a.get("family") == "inet"]
    clients = [(name, int(pid)) for name, pid in SS_USER.findall(parts["clients"])]
    return judge_dhcp(check, addresses, _json_list(parts["default routes"], "default routes"),
                      parse_resolv_conf(parts["resolv.conf"]), clients)


def _lease_text(address: dict[str, Any]) -> str:
    valid = int(address.get("valid_life_time", FOREVER))
    kind = "static, valid forever" if valid >= FOREVER else f"dynamic, {valid} s of lease left"
    return f"{address.get('local')}/{address.get('prefixlen')} ({kind})"


def judge_dhcp(check: DhcpCheck, addresses: list[dict[str, Any]], routes: list[dict[str, Any]],
               conf: dict[str, Any], clients: list[tuple[str, int]]) -> Verdict:
    """A dynamic address in the range, kept by a DHCP client (`clients`: the processes holding UDP
    port 68, by name), the gateway, the nameservers: each mismatch is listed."""
    leases = [a for a in addresses if int(a.get("valid_life_time", FOREVER)) < FOREVER]
    shown = ", ".join(_lease_text(a) for a in addresses) or "no IPv4 address"
    seen = [f"{check.interface}: {shown}"]
    wrong: list[str] = []
    dhcp_clients = [(name, pid) for name, pid in clients if name in CLIENTS]
    if dhcp_clients:
        seen.append("DHCP client: " + ", ".join(f"{name} (pid {pid})" for name, pid in dhcp_clients))
    if not leases:
        wrong.append("no address from DHCP (a lease's address has a finite lifetime)")
    elif not dhcp_clients:
        others = "; ".join(f"{name} (pid {pid})" for name, pid in clients) or "nothing"
        wrong.append(f"no DHCP client runs to keep the lease (UDP port 68 held by {others}): an address given a "
                     "lifetime by hand is no lease")
    elif check.range is not None:
        low, high = check.range
        inside = [a for a in leases if low <= IPv4Address(str(a.get('local'))) <= high]
        if not inside:
            wrong.append(f"the lease's address is outside the pool {low}-{high}")
    gateways = [str(r.get("gateway")) for r in routes if r.get("gateway")]
    if check.gateway is not None or routes:
        routes_text = "; ".join(f"default via {r.get('gateway')} dev {r.get('dev')}" if r.get("gateway")
                                else f"default dev {r.get('dev')}" for r in routes) or "no default route"
        seen.append(routes_text)
    if check.gateway is not None and str(check.gateway) not in gateways:
        wrong.append(f"expected the default route via {check.gateway}")
    nameservers = [] if conf.get("default") else list(conf.get("nameservers", []))
    if check.dns or nameservers:
        seen.append(f"/etc/resolv.conf: nameserver {', '.join(nameservers)}" if nameservers
                    else "/etc/resolv.conf: no nameserver")
    missing = [str(d) for d in check.dns if str(d) not in nameservers]
    if missing:
        wrong.append(f"expected nameserver {', '.join(str(d) for d in check.dns)}")
    return judged(not wrong, "; ".join(seen + wrong))


DHCP_TYPES: tuple[CheckType[Any], ...] = (CheckType("dhcp", probe_dhcp, evaluate_dhcp),)
