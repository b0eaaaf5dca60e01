"""Check types about a node's network state: reach (ping), http (bash /dev/tcp), route
(ip -j route), port (ss)."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from typing import Any

from labctl.grading.checks.base import (
    NOT_FOUND_CODES,
    CheckType,
    Probe,
    Unobservable,
    Verdict,
    judged,
    matching_line,
    parse_json,
    short,
    tool_failure,
)
from labctl.grading.checks.system import CONTENT_LIMIT
from labctl.grading.session import CommandResult
from labctl.grading.spec import HttpCheck, PortCheck, ReachCheck, RouteCheck

# ping's words for "the kernel has nowhere to send this": an observation, not a tool failure
NO_ROUTE = ("Network is unreachable", "No route to host")
# route protocol numbers FRR uses, for nodes whose iproute2 does not name them
FRR_PROTOCOLS = {"186": "bgp", "187": "isis", "188": "ospf", "189": "rip", "190": "ripng",
                 "191": "nhrp", "192": "eigrp", "193": "ldp", "194": "sharp", "195": "pbr",
                 "196": "static", "197": "openfabric", "198": "srte"}
PING_SUMMARY = re.compile(r"^\d+ packets transmitted.*$", re.MULTILINE)
# An HTTP/1.0 GET over bash's /dev/tcp: no Python, curl or wget on the node, a few ms of CPU.
# The values come as arguments: $1 host, $2 port, $3 path, $4 Host header. The request is
# written by coreutils' printf, in one write (bash's builtin writes it line by line: a
# server that closes after the first line would cut the probe off with SIGPIPE).
HTTP_GET = ('exec 3<>"/dev/tcp/$1/$2" && '
            'env printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" "$3" "$4" >&3 && '
            f'head -c {CONTENT_LIMIT} <&3')
# seconds for the whole fetch, when the check gives no timeout: a gateway that does not
# exist shows as "no route to host" once ARP gives up (3 s); a retried check in a room
# graded at once is not held longer than that (its node's other checks wait behind it)
HTTP_TIMEOUT = 4.0
TIMED_OUT = 124  # `timeout`'s exit code when it stopped the command
BROKEN_PIPE = 141  # 128 + SIGPIPE: the server closed the connection before taking the request
# what bash (strerror) says when a connection is not made or breaks: observations of the network
CONNECT_ERRORS = ("Connection refused", "No route to host", "Network is unreachable",
                  "Connection timed out", "Connection reset by peer")
NAME_ERRORS = ("Name or service not known", "Temporary failure in name resolution",
               "No address associated with hostname")
STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)? (\d{3})(?: (.*))?$")


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


def http_timeout(check: HttpCheck) -> float:
    """Seconds the fetch may take: within the check's timeout, so that a slow server is
    observed (FAIL, "timed out") before the probe itself runs over (ERROR)."""
    if check.timeout is None:
        return HTTP_TIMEOUT
    return max(check.timeout - 1, check.timeout / 2)


def probe_http(check: HttpCheck) -> Probe:
    """`timeout N bash -c HTTP_GET http HOST PORT PATH HOST_HEADER`, values shell-quoted."""
    target = check.target
    values = (target.host, str(target.port), target.path, target.host_header)
    return Probe(f"LC_ALL=C timeout {http_timeout(check):g} bash -c {shlex.quote(HTTP_GET)} http "
                 + " ".join(shlex.quote(value) for value in values))


def page_excerpt(body: str) -> str:
    """What a page shows, for evidence: its <title> and <h1>, or the start of its text."""
    found: dict[str, str] = {}
    for tag in ("title", "h1"):
        match = re.search(rf"<{tag}\b[^>]*>(.*?)</{tag}>", body, re.IGNORECASE | re.DOTALL)
        text = short(re.sub(r"<[^>]*>", "", match.group(1)), 80) if match else ""
        if text and text not in found.values():
            found[tag] = text
    if found:
        return ", ".join(f'{tag} "{text}"' for tag, text in found.items())
    text = short(re.sub(r"<[^>]*>", " ", body), 120)
    return f'"{text}"' if text else "empty"


def _http_failure(check: HttpCheck, result: CommandResult) -> Verdict:
    """No answer read: a connection that failed or timed out is a FAIL; anything else ERROR."""
    text = result.stderr + result.stdout
    if result.exit_code == TIMED_OUT:
        partial = f" (partial answer: {short(result.stdout, 80)})" if result.stdout.strip() else ""
        return judged(False, f"{check.url}: timed out after {http_timeout(check):g} s{partial}")
    if result.exit_code == BROKEN_PIPE and not text.strip():
        return judged(False, f"{check.url}: the server closed the connection before reading the request")
    if result.exit_code not in NOT_FOUND_CODES:
        for words in CONNECT_ERRORS:
            if words in text:
                partial = f" (after: {short(result.stdout, 80)})" if result.stdout.strip() else ""
                return judged(False, f"{check.url}: {words.lower()}{partial}")
        for words in NAME_ERRORS:
            if words in text:
                return judged(False, f"{check.url}: cannot resolve {check.target.host} ({words})")
    return tool_failure(result, "bash")


def evaluate_http(check: HttpCheck, result: CommandResult) -> Verdict:
    """The status line, headers and page the server sent, against `status` and `body_matches`.

    Line ends are read as LF (servers send CRLF): `$` in `body_matches` ends a line of the page.
    """
    if result.exit_code != 0:
        return _http_failure(check, result)
    if not result.stdout:
        return judged(False, f"{check.url}: the server closed the connection without answering")
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.split("\n")
    status = STATUS_LINE.match(status_line.strip())
    if not status:
        return judged(False, f"{check.url}: the answer is not HTTP: {short(result.stdout, 80)}")
    code, reason = int(status.group(1)), (status.group(2) or "").strip()
    seen = f"{check.url}: HTTP {code}" + (f" {reason}" if reason else "")
    if code != check.status:
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in header_lines)}
        moved = f" to {headers['location']}" if 300 <= code < 400 and headers.get("location") else ""
        return judged(False, f"{seen}{moved}, expected {check.status}; page: {page_excerpt(body)}")
    if check.body_matches is None:
        return judged(True, f"{seen} ({len(body)} characters; page: {page_excerpt(body)})")
    line = matching_line(check.body_matches, body)
    if line is None:
        return replace(judged(False, f"{seen} but the page does not match /{check.body_matches}/ "
                                     f"(page: {page_excerpt(body)})"), seen=f"{seen}; page: {page_excerpt(body)}")
    return judged(True, f"{seen}, the page matches /{check.body_matches}/: {short(line, 120)}")


def probe_route(check: RouteCheck) -> Probe:
    """Routes with exactly this destination in the main table, as JSON."""
    return Probe(shlex.join(check.listing_argv()))


def _destination(route: dict[str, Any]) -> str:
    """A route's destination as a prefix (`ip -j` prints /32 routes without the length)."""
    dst = str(route.get("dst", ""))
    return dst if dst == "default" or "/" in dst else f"{dst}/{128 if ':' in dst else 32}"


def _gateways(route: dict[str, Any]) -> list[str]:
    """Next hops of a route, multipath included."""
    hops = route.get("nexthops") or [route]
    return [str(h["gateway"]) for h in hops if isinstance(h, dict) and "gateway" in h]


def _protocol(route: dict[str, Any]) -> str:
    """The route's origin, by name (`ip` leaves out `boot`, the default)."""
    protocol = str(route.get("protocol", "boot"))
    return FRR_PROTOCOLS.get(protocol, protocol)


# a check's protocol in a technician's words -> the kernel's protocols it covers: `static` is a route
# configured by hand or by a tool (`ip route add` leaves proto boot; FRR's staticd, proto static)
PROTOCOL_WORDS = {"static": ("static", "boot")}


def protocol_matches(route: dict[str, Any], wanted: str) -> bool:
    """Whether a kernel route has the check's protocol: `connected` is a kernel route to an
    interface's subnet (proto kernel, scope link), `static` one configured by hand or a tool,
    any other word is the route's protocol as `ip` names it."""
    if wanted == "connected":
        return _protocol(route) == "kernel" and route.get("scope") == "link"
    return _protocol(route) in PROTOCOL_WORDS.get(wanted, (wanted,))


def _describe(route: dict[str, Any], metric: bool = False) -> str:
    """A route in `ip route` words (with its metric when asked)."""
    words = [str(route.get("type", "")), _destination(route)]
    words += [f"via {g}" for g in _gateways(route)]
    if "dev" in route:
        words.append(f"dev {route['dev']}")
    words.append(f"proto {_protocol(route)}")
    if metric:
        words.append(f"metric {route.get('metric', 0)}")
    return " ".join(w for w in words if w)


def evaluate_route(check: RouteCheck, result: CommandResult) -> Verdict:
    """Is there a route to the destination matching `via` and `protocol`?"""
    if result.exit_code != 0:
        return tool_failure(result, "ip route")
    if check.ospf_type is not None or (check.protocol == "ospf" and check.metric is not None):
        # the kernel knows neither (FRR installs every route with metric 20): ospfd and zebra do,
        # which the local provider asks (routing.py); a node's own `ip` cannot tell
        raise Unobservable("an OSPF route's type and metric are read from ospfd and zebra, which this provider "
                           "does not ask (local labs only)")
    routes = parse_json(result.stdout or "[]", "`ip -j route` output")
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise Unobservable(f"`ip -j route` printed no list of routes: {short(result.stdout, 120)}")
    routes = [r for r in routes if _destination(r) == check.kernel_destination]
    matching = [r for r in routes
                if (check.via is None or str(check.via) in _gateways(r))
                and (check.protocol is None or protocol_matches(r, check.protocol))
                and (check.metric is None or int(r.get("metric", 0)) == check.metric)]
    wanted = " ".join([check.destination, *([f"via {check.via}"] if check.via else []),
                       *([f"proto {check.protocol}"] if check.protocol else []),
                       *([f"metric {check.metric}"] if check.metric is not None else [])])
    seen = "; ".join(_describe(r, check.metric is not None) for r in routes) or f"no route to {check.destination}"
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
    CheckType("http", probe_http, evaluate_http),
    CheckType("route", probe_route, evaluate_route),
    CheckType("port", probe_port, evaluate_port),
)
