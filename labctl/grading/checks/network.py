"""Check types about a node's network state: reach (ping), route (ip -j route), port (ss)."""

from __future__ import annotations

import re
from typing import Any

from labctl.grading.checks.base import (
    CheckType,
    Probe,
    Unobservable,
    Verdict,
    judged,
    parse_json,
    short,
    tool_failure,
)
from labctl.grading.session import CommandResult
from labctl.grading.spec import PortCheck, ReachCheck, RouteCheck

# ping's words for "the kernel has nowhere to send this": an observation, not a tool failure
NO_ROUTE = ("Network is unreachable", "No route to host")
# route protocol numbers FRR uses, for nodes whose iproute2 does not name them
FRR_PROTOCOLS = {"186": "bgp", "187": "isis", "188": "ospf", "189": "rip", "190": "ripng",
                 "191": "nhrp", "192": "eigrp", "193": "ldp", "194": "sharp", "195": "pbr",
                 "196": "static", "197": "openfabric", "198": "srte"}
PING_SUMMARY = re.compile(r"^\d+ packets transmitted.*$", re.MULTILINE)


def probe_reach(check: ReachCheck) -> Probe:
    """`ping -c N -W 1` (quiet, numeric, 0.2 s apart)."""
    return Probe(f"LC_ALL=C ping -n -q -c {check.count} -i 0.2 -W 1 {check.target}")


def evaluate_reach(check: ReachCheck, result: CommandResult) -> Verdict:
    """Exit 0: replies. Exit 1, or no route: no reply. Anything else: ERROR."""
    text = result.stdout + result.stderr
    summary = PING_SUMMARY.search(text)
    if result.exit_code == 0:
        counts = summary.group(0) if summary else "exit 0"
        reachable, seen = True, f"{check.target} answers ({counts})"
    elif result.exit_code == 1 and summary:
        reachable, seen = False, f"{check.target} does not answer ({summary.group(0)})"
    elif result.exit_code == 2 and any(words in text for words in NO_ROUTE):
        reachable, seen = False, f"no route to {check.target} ({short(text, 80)})"
    else:
        return tool_failure(result, "ping")
    ok = reachable == (check.expect == "reachable")
    return judged(ok, seen + ("" if ok else f", expected {check.expect}"))


def probe_route(check: RouteCheck) -> Probe:
    """Routes with exactly this destination in the main table, as JSON."""
    return Probe(f"ip -j route show {check.destination}")


def _destination(route: dict[str, Any]) -> str:
    """A route's destination as a prefix (`ip -j` prints /32 routes without the length)."""
    dst = str(route.get("dst", ""))
    return dst if dst == "default" or "/" in dst else f"{dst}/32"


def _gateways(route: dict[str, Any]) -> list[str]:
    """Next hops of a route, multipath included."""
    hops = route.get("nexthops") or [route]
    return [str(h["gateway"]) for h in hops if isinstance(h, dict) and "gateway" in h]


def _protocol(route: dict[str, Any]) -> str:
    """The route's origin, by name (`ip` leaves out `boot`, the default)."""
    protocol = str(route.get("protocol", "boot"))
    return FRR_PROTOCOLS.get(protocol, protocol)


def _describe(route: dict[str, Any]) -> str:
    """A route in `ip route` words."""
    words = [str(route.get("type", "")), _destination(route)]
    words += [f"via {g}" for g in _gateways(route)]
    if "dev" in route:
        words.append(f"dev {route['dev']}")
    words.append(f"proto {_protocol(route)}")
    return " ".join(w for w in words if w)


def evaluate_route(check: RouteCheck, result: CommandResult) -> Verdict:
    """Is there a route to the destination matching `via` and `protocol`?"""
    if result.exit_code != 0:
        return tool_failure(result, "ip route")
    routes = parse_json(result.stdout or "[]", "`ip -j route` output")
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise Unobservable(f"`ip -j route` printed no list of routes: {short(result.stdout, 120)}")
    routes = [r for r in routes if _destination(r) == check.destination]
    matching = [r for r in routes
                if (check.via is None or str(check.via) in _gateways(r))
                and (check.protocol is None or _protocol(r) == check.protocol)]
    wanted = " ".join([check.destination, *([f"via {check.via}"] if check.via else []),
                       *([f"proto {check.protocol}"] if check.protocol else [])])
    seen = "; ".join(_describe(r) for r in routes) or f"no route to {check.destination}"
    if check.absent:
        return judged(not matching, seen + (f"; expected no route {wanted}" if matching else ""))
    return judged(bool(matching), seen + ("" if matching else f"; expected a route {wanted}"))


def probe_port(check: PortCheck) -> Probe:
    """Listening sockets of the protocol, numeric, without a header."""
    return Probe(f"ss -Hln{'t' if check.protocol == 'tcp' else 'u'}")


def listening_ports(stdout: str) -> dict[int, list[str]]:
    """Port -> local addresses, from `ss -Hln[tu]` lines (State Recv-Q Send-Q Local Peer)."""
    ports: dict[int, list[str]] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 5 or ":" not in fields[3]:
            raise Unobservable(f"unexpected ss output line: {short(line, 120)}")
        address, _, port = fields[3].rpartition(":")
        if port.isdigit():
            ports.setdefault(int(port), []).append(address)
    return ports


def evaluate_port(check: PortCheck, result: CommandResult) -> Verdict:
    """Something listens on the port (any address), or nothing does."""
    if result.exit_code != 0:
        return tool_failure(result, "ss")
    ports = listening_ports(result.stdout)
    name = f"{check.protocol} port {check.port}"
    if check.port in ports:
        seen = f"{name} listening on {', '.join(ports[check.port])}"
        return judged(check.listening, seen + ("" if check.listening else ", expected closed"))
    others = ", ".join(str(p) for p in sorted(ports)[:12]) or "none"
    seen = f"nothing listens on {name} (listening {check.protocol} ports: {others})"
    return judged(not check.listening, seen)


NETWORK_TYPES: tuple[CheckType[Any], ...] = (
    CheckType("reach", probe_reach, evaluate_reach),
    CheckType("route", probe_route, evaluate_route),
    CheckType("port", probe_port, evaluate_port),
)
