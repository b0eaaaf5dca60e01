"""The grading spec file format (`grading/<scenario>.yml`).

A spec names its scenario and lists checks. Every check has the common keys of
`CheckBase` (id, criterion, description, node, weight, wait, stage) and a `type` whose
own keys sit at the same level; `Check` is the union of the types, told apart by `type`.
`labctl.grading.loader.load_grading_spec` reads a file into a `GradingSpec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from labctl import sourcelimits
from labctl.grading.debversion import split_version
from labctl.sourcelimits import ExitCode, HttpStatus, Port, PositiveSeconds, Seconds, SmallCount, Weight

CHECK_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
OspfState = Literal["Full", "Loading", "Exchange", "ExStart", "2-Way", "Init", "Attempt", "Down"]
OSPF_STATES: tuple[str, ...] = get_args(OspfState)


class Strict(BaseModel):
    """Base for spec models: unknown keys are errors (they are usually typos)."""

    model_config = ConfigDict(extra="forbid")


def compile_regex(value: str | None) -> str | None:
    """Check that `value` is a valid Python regular expression (re.search syntax), of a
    reasonable size and with repetition counts Python accepts (`a{99999999999}` is refused)."""
    if value is not None:
        sourcelimits.compile_regex(value)
    return value


Regex = Annotated[str, Field(description="A Python regular expression, searched (re.search).")]


class Description(Strict):
    """What a check verifies, in French (read by the jury) and English."""

    fr: str = Field(min_length=1)
    en: str = Field(min_length=1)


class CheckBase(Strict):
    """Keys every check has, whatever its type."""

    id: str = Field(description="Unique in the spec; lowercase letters, digits and '-'.")
    criterion: str = Field(description="A criterion id of the referentiel, e.g. A1.3-c2.")
    description: Description
    node: str = Field(description="The host or router the check runs on.")
    weight: Weight = Field(default=1, description="Points the check is worth.")
    wait: Seconds = Field(
        default=0,
        description="Seconds (from grading start) to keep retrying while the check FAILs.",
    )
    stage: str | None = Field(default=None, description="The scenario stage it is graded in; none: every stage.")
    timeout: PositiveSeconds | None = Field(
        default=None,
        description="Seconds one probe may run before the check is an ERROR (default: the run's, 30 s).",
    )
    hint: Description | None = Field(
        default=None,
        description="Where to look, for a candidate practising: shown by `labctl grade --hints` under a check "
                    "that does not PASS; never in exam sessions' reports.",
    )
    expectation: Description | None = Field(
        default=None,
        description="What the check expects, in words a jury reads (fr, en), e.g. \"both WAN links carry 1500-byte "
                    "packets\": the report shows it with the value observed, instead of the check's technical "
                    "terms (a regular expression, a JSON path).",
    )
    persist: Literal["reboot"] | None = Field(
        default=None,
        description="`reboot`: the state must survive a restart of the nodes; the check is graded only after "
                    "one (`labctl grade --reboot`; `scenario verify` reboots before grading it). Without a "
                    "reboot it is an ERROR (not judged).",
    )

    acts: bool = Field(
        default=False,
        description="An active check: it acts on the node before it observes (e.g. tries to log in). Only check "
                    "types that can act accept `acts: true`, and they require it, so a spec says plainly which "
                    "checks act. An active check runs alone, after the node's other checks, bounded in time, and "
                    "undoes what it did. (Named `acts`, not `active`: a service check's `active` is a unit's state.)",
    )

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not CHECK_ID.match(value):
            raise ValueError("may only use lowercase letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _active_only_where_it_acts(self) -> CheckBase:
        kind = getattr(self, "type", None)
        if kind is None:
            return self
        acts = kind in ACTIVE_TYPES
        if self.acts and not acts:
            raise ValueError(f"a {kind} check only observes: `acts: true` goes with the types that act "
                             f"({', '.join(sorted(ACTIVE_TYPES))})")
        if acts and not self.acts:
            raise ValueError(f"a {kind} check acts on the node: say so with `acts: true`")
        if acts and self.wait:
            raise ValueError("an active check is not retried: leave `wait` out (each retry would act again)")
        return self


@dataclass(frozen=True)
class PathStep:
    """One step of a json_path: a key, a list index ([N]), or a bare word (`0` is a key of an
    object, an index of a list)."""

    kind: Literal["key", "index", "bare"]
    text: str


def parse_json_path(path: str) -> list[PathStep]:
    """The steps of a json_path; ValueError saying where it is wrong.

    Grammar: steps joined by `.`; a step is a bare word (no space, `.`, `"` or brackets) or a
    double-quoted key (`\\"` and `\\\\` escape a quote and a backslash), followed by any
    number of `[N]` list indexes; a path may also start with `[N]`.
    """
    steps: list[PathStep] = []
    i, n = 0, len(path)
    while True:
        start = i
        if i < n and path[i] == '"':
            i += 1
            key = []
            while i < n and path[i] != '"':
                if path[i] == "\\" and i + 1 < n and path[i + 1] in '"\\':
                    i += 1
                key.append(path[i])
                i += 1
            if i >= n:
                raise ValueError(f"unclosed quote at character {start + 1} of the path")
            i += 1
            steps.append(PathStep("key", "".join(key)))
        else:
            while i < n and not path[i].isspace() and path[i] not in '."[]':
                i += 1
            if i > start:
                steps.append(PathStep("bare", path[start:i]))
            elif not (i < n and path[i] == "[" and not steps):
                raise ValueError(f"a key is missing at character {i + 1} of the path "
                                 "(quote keys that hold dots, spaces or brackets: \"10.0.0.1/32\")")
        while i < n and path[i] == "[":
            close = path.find("]", i)
            if close == -1 or not path[i + 1:close].isdigit():
                raise ValueError(f"`[` at character {i + 1} of the path must hold a list index, e.g. [0]")
            steps.append(PathStep("index", path[i + 1:close]))
            i = close + 1
        if i == n:
            return steps
        if path[i] != ".":
            raise ValueError(f"unexpected {path[i]!r} at character {i + 1} of the path")
        i += 1


class ProbePoint(Strict):
    """Where an active check acts from: a network namespace labctl creates for the check's duration, plugged
    into a switch of the topology, with an address drawn at random from `addresses` each time (the traces one
    attempt leaves in the node, such as failures a brute-force detector counts, never add up with the next
    run's); no node shares it, no candidate has a shell there (local provider)."""

    switch: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="The topology's switch the probe point joins.")
    addresses: str = Field(description="The range its address is drawn from, as a network inside the switch's "
                                       "subnet, e.g. 10.70.4.128/25 (addresses nodes hold are skipped).")

    @field_validator("addresses")
    @classmethod
    def _range(cls, value: str) -> str:
        try:
            found = IPv4Network(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 network (e.g. 10.70.4.128/25)") from None
        if found.prefixlen > 30:
            raise ValueError(f"{value}: give a range of a few addresses at least (/30 or wider)")
        return value


class CommandCheck(CheckBase):
    """Run a shell command; check its exit code, and optionally its output."""

    type: Literal["command"]
    command: str = Field(min_length=1, description="Shell command, run as the grading user.")
    exit_code: ExitCode = Field(default=0, description="Expected exit code (0-255).")
    stdout_matches: Regex | None = None
    json_path: str | None = Field(
        default=None, max_length=1000,
        description='Path into stdout parsed as JSON: keys joined by dots, list indexes as `.0` or `[0]`, keys with '
                    'dots or brackets in double quotes, e.g. `a.b.0.c` or `routes."10.0.0.1/32"[0].metric`.',
    )
    equals: Any = Field(default=None, description="Value expected at json_path (any JSON).")
    scope: Literal["node", "network", "probe"] = Field(
        default="node",
        description="node: run inside the node (its programs, a clean non-login shell); network: run the "
                    "controller's own shell and programs in the node's network namespace only (where the "
                    "provider can), so nothing the candidate installed answers for them; probe: run them in "
                    "the grader's own probe point on a switch (`probe`), a namespace no node shares, so not "
                    "even a rule in the node's own namespace can redirect what they ask (local provider).",
    )
    probe: ProbePoint | None = Field(default=None, description="With scope probe: the switch and address range.")

    _regex = field_validator("stdout_matches")(compile_regex)

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_json_path(value)
        return value

    @model_validator(mode="after")
    def _equals_needs_path(self) -> CommandCheck:
        if "equals" in self.model_fields_set and self.json_path is None:
            raise ValueError("`equals` needs `json_path` (the value to compare)")
        if (self.scope == "probe") != (self.probe is not None):
            raise ValueError("`scope: probe` and `probe: {switch, addresses}` go together (the probe point the "
                             "command runs in)")
        return self


@dataclass(frozen=True)
class HttpTarget:
    """Where an http check connects and what it asks for: host, port, path (with query)."""

    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        """The Host header: the host, with the port unless it is 80."""
        return self.host if self.port == 80 else f"{self.host}:{self.port}"


def http_target(url: str) -> HttpTarget:
    """Split a plain-HTTP URL; ValueError saying what is wrong with it otherwise."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("contains spaces or control characters (encode them, e.g. %20)")
    parts = urlsplit(url)
    if not parts.scheme:
        raise ValueError("must start with http://, e.g. http://10.1.0.20/")
    if parts.scheme != "http":
        raise ValueError(f"{parts.scheme}:// is not supported: the probe speaks plain HTTP/1.0 "
                         "over bash's /dev/tcp (no TLS); use an http:// URL")
    if "@" in parts.netloc:
        raise ValueError("user names or passwords in the URL are not supported")
    if not parts.hostname:
        raise ValueError("has no host (write http://HOST[:PORT]/PATH)")
    if not HOST_NAME.match(parts.hostname):
        raise ValueError(f"host '{parts.hostname}' is not an IPv4 address or a host name")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    if parts.fragment:
        raise ValueError("a #fragment is never sent to the server: leave it out")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpTarget(parts.hostname, port or 80, path)


class HttpCheck(CheckBase):
    """Fetch `url` from the node (plain HTTP): the status, and optionally the page, must match."""

    type: Literal["http"]
    url: str = Field(description="http://HOST[:PORT][/PATH], fetched from the node (no proxy, no TLS).")
    status: HttpStatus = Field(default=200, description="Expected HTTP status code.")
    body_matches: Regex | None = Field(default=None, description="Searched in the page (re.search).")

    _regex = field_validator("body_matches")(compile_regex)

    @field_validator("url")
    @classmethod
    def _plain_http(cls, value: str) -> str:
        http_target(value)
        return value

    @property
    def target(self) -> HttpTarget:
        """The host, port and path the probe asks."""
        return http_target(self.url)


class ReachCheck(CheckBase):
    """Ping `target` from the node: it must answer (or must not, for `unreachable`)."""

    type: Literal["reach"]
    target: IPv4Address | IPv6Address = Field(description="An IPv4 or IPv6 address.")
    expect: Literal["reachable", "unreachable"] = "reachable"
    count: SmallCount = Field(default=2, description="Echo requests sent.")


class RouteCheck(CheckBase):
    """A route to `destination` is in the main table (or is not, with `absent`)."""

    type: Literal["route"]
    destination: str = Field(
        description="A prefix such as 10.2.0.0/24 or 2001:db8:1::/64, `default` (IPv4) or `default6` (IPv6).")
    via: IPv4Address | IPv6Address | None = Field(default=None, description="Required next hop.")
    protocol: str | None = Field(
        default=None,
        description="Required origin: ospf (learned by OSPF), static (configured: `ip route add`, ifupdown, FRR's "
                    "staticd), connected (an interface's subnet), kernel, or another protocol as `ip -j route` "
                    "names it (bgp, dhcp, boot...).",
    )
    absent: bool = Field(default=False, description="True: no matching route may exist.")
    metric: int | None = Field(
        default=None, ge=0, le=4294967295,
        description="Required metric: with `protocol: ospf`, the route's OSPF metric as zebra holds it (the "
                    "cost; for an E2 external route, its external cost); otherwise the kernel route's metric.",
    )
    ospf_type: Literal["intra-area", "inter-area", "external-1", "external-2"] | None = Field(
        default=None, description="Required OSPF route type (ospfd's routing table); needs `protocol: ospf`.",
    )

    @property
    def version(self) -> int:
        """4 or 6: the destination's address family."""
        return 6 if self.destination == "default6" or ":" in self.destination else 4

    @property
    def kernel_destination(self) -> str:
        """The destination as the kernel's table names it (`default` for either family)."""
        return "default" if self.destination == "default6" else self.destination

    def listing_argv(self) -> list[str]:
        """`ip -j route show DESTINATION` (with -6 for IPv6): the kernel's routes to the destination."""
        family = ["-6"] if self.version == 6 else []
        return ["ip", "-j", *family, "route", "show", self.kernel_destination]

    @model_validator(mode="after")
    def _ospf_type_needs_ospf(self) -> RouteCheck:
        if self.via is not None and self.via.version != self.version:
            raise ValueError(f"`via` {self.via} is not of the destination's address family (IPv{self.version})")
        if self.protocol == "ospf" and self.version == 6:
            raise ValueError("OSPF routes are graded for IPv4 destinations (OSPFv3's routes are not read yet)")
        if self.ospf_type is not None and self.protocol != "ospf":
            raise ValueError("`ospf_type` needs `protocol: ospf`")
        if self.absent and (self.metric is not None or self.ospf_type is not None):
            raise ValueError("`absent: true` cannot be combined with metric or ospf_type")
        return self

    @field_validator("destination")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value in ("default", "default6"):
            return value
        try:
            network = ip_network(value)
        except ValueError as exc:
            if "host bits" in str(exc):
                prefix = ip_network(value, strict=False).with_prefixlen
                raise ValueError(f"has host bits set; the network is {prefix}") from None
            raise ValueError(f"not an IPv4 or IPv6 prefix ({exc})") from None
        return network.with_prefixlen


class OspfNeighborCheck(CheckBase):
    """The router has OSPF neighbor `neighbor` (router id) in `state` (FRR's view)."""

    type: Literal["ospf_neighbor"]
    neighbor: IPv4Address = Field(description="The neighbor's router id.")
    state: OspfState = "Full"
    version: Literal[2, 3] = Field(default=2, description="2: OSPF for IPv4 (ospfd); 3: OSPFv3 for IPv6 (ospf6d).")


class DnsCheck(CheckBase):
    """`name` resolves, from the node, through its own resolver configuration (its
    /etc/resolv.conf: nameservers, search list), to exactly `addresses`."""

    type: Literal["dns"]
    name: str = Field(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$",
        description="The name looked up, as a program of the node would (a name without enough dots goes "
                    "through the search list; a trailing dot makes it absolute).",
    )
    addresses: list[IPv4Address | IPv6Address] = Field(
        default_factory=list,
        description="The addresses it must resolve to, all of them and no other (A records for IPv4, AAAA for "
                    "IPv6); none: the name must not resolve at all.",
    )
    reverse: bool = Field(default=False, description="Also: each address resolves back to `name` (PTR).")
    server: IPv4Address | IPv6Address | None = Field(
        default=None, description="The nameserver that must give the answer (one of the node's resolv.conf).",
    )

    @model_validator(mode="after")
    def _reverse_needs_addresses(self) -> DnsCheck:
        if self.reverse and not self.addresses:
            raise ValueError("`reverse` needs `addresses` (the addresses whose PTR records are checked)")
        return self

    def record_types(self) -> list[str]:
        """The record types looked up: A and/or AAAA as the addresses go, both for a name that must
        not resolve."""
        kinds = [kind for kind, version in (("A", 4), ("AAAA", 6))
                 if any(a.version == version for a in self.addresses)]
        return kinds or ["A", "AAAA"]


class DhcpCheck(CheckBase):
    """The node holds a DHCP lease on `interface`: a dynamic address (finite lifetime) in
    `range`, and, when given, the default route through `gateway` and the nameservers `dns`."""

    type: Literal["dhcp"]
    interface: str = Field(min_length=1, max_length=15, pattern=r"^[A-Za-z0-9_.@-]+$",
                           description="The node's interface that must hold the lease, e.g. eth1.")
    range: tuple[IPv4Address, IPv4Address] | None = Field(
        default=None, description="First and last address of the DHCP pool the lease must come from.",
    )
    gateway: IPv4Address | None = Field(default=None, description="The default gateway the lease must give.")
    dns: list[IPv4Address] = Field(
        default_factory=list,
        description="Nameservers the node must use (in its /etc/resolv.conf), as the lease gives.",
    )

    @field_validator("range")
    @classmethod
    def _low_first(cls, value: tuple[IPv4Address, IPv4Address] | None) -> tuple[IPv4Address, IPv4Address] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"[{value[0]}, {value[1]}]: the first address comes first")
        return value


FLOW_SERVICE = re.compile(r"^(icmp|(tcp|udp)/(\d{1,5}))$")
FLOW_RULE = re.compile(r"^\s*(?P<source>\*|[a-z][a-z0-9_-]*)\s*->\s*(?P<destination>\*|[a-z][a-z0-9_-]*)\s+"
                       r"(?P<service>\S+)\s*$")
ZONE_NAME = r"^[a-z][a-z0-9_-]{0,30}$"
FLOW_PROBES = 400  # at most this many probes in one flows check (zones x other zones x services)


def flow_service(text: str) -> str:
    """A service of a flow matrix, checked: `icmp`, `tcp/PORT` or `udp/PORT`."""
    match = FLOW_SERVICE.match(text)
    if not match or (match[3] is not None and not 1 <= int(match[3]) <= 65535):
        raise ValueError(f"service {text!r}: write icmp, tcp/PORT or udp/PORT (PORT 1-65535)")
    return text


class FlowsCheck(CheckBase):
    """A flow matrix, checked exhaustively both ways: from each zone's node to each other zone's
    node, every service in `services` (ICMP echo, TCP and UDP ports) must pass if `allow` lists it
    and must not pass otherwise. Probes are sent by labctl from the source node's network namespace
    and watched leaving it and arriving at the destination node's interface (local provider)."""

    type: Literal["flows"]
    zones: dict[Annotated[str, Field(pattern=ZONE_NAME)], str] = Field(
        min_length=2, max_length=8,
        description="Zone name -> the node that stands for it: NODE (its first address) or NODE@ADDRESS.",
    )
    allow: list[str] = Field(
        max_length=200,
        description='Allowed flows, "SOURCE -> DESTINATION SERVICE", e.g. "lan -> dmz tcp/80", "admin -> * tcp/22" '
                    "(* : every other zone); every other flow of the matrix is forbidden.",
    )
    services: list[str] = Field(
        default_factory=list, max_length=32,
        description="The services probed between every pair of zones (icmp, tcp/PORT, udp/PORT); default: those "
                    "`allow` names. Name here the ports that must be closed too.",
    )
    window: PositiveSeconds = Field(default=2.0, le=10,
                                    description="Seconds the probes (all sent at once) wait for their packets.")

    @field_validator("services")
    @classmethod
    def _services(cls, value: list[str]) -> list[str]:
        return [flow_service(v) for v in value]

    @model_validator(mode="after")
    def _matrix(self) -> FlowsCheck:
        nodes = [v.split("@")[0] for v in self.zones.values()]
        if len(set(nodes)) != len(nodes):
            raise ValueError("each zone needs its own node (a node cannot be its own source and destination)")
        for value in self.zones.values():
            node, _, address = value.partition("@")
            if not HOST_NAME.match(node):
                raise ValueError(f"zone node {value!r}: write NODE or NODE@ADDRESS")
            try:
                IPv4Address(address or "0.0.0.0")
            except ValueError:
                raise ValueError(f"zone node {value!r}: {address} is not an IPv4 address") from None
        for rule in self.allow:
            source, destination, service = self.parse_rule(rule)
            for zone in (source, destination):
                if zone != "*" and zone not in self.zones:
                    raise ValueError(f"allow {rule!r}: unknown zone {zone!r} (zones: {', '.join(self.zones)})")
            if source == destination and source != "*":
                raise ValueError(f"allow {rule!r}: a flow goes from one zone to another")
            if self.services and service not in self.services:
                raise ValueError(f"allow {rule!r}: service {service} is not in `services`")
        count = len(self.zones) * (len(self.zones) - 1) * len(self.probed_services())
        if count > FLOW_PROBES:
            raise ValueError(f"the matrix makes {count} probes, more than {FLOW_PROBES}: fewer zones or services")
        if not self.probed_services():
            raise ValueError("no service to probe: give `services` or `allow`")
        return self

    @staticmethod
    def parse_rule(rule: str) -> tuple[str, str, str]:
        """(source zone, destination zone, service) of an `allow` entry."""
        match = FLOW_RULE.match(rule)
        if not match:
            raise ValueError(f"allow {rule!r}: write \"SOURCE -> DESTINATION SERVICE\", e.g. \"lan -> dmz tcp/80\"")
        return match["source"], match["destination"], flow_service(match["service"])

    def probed_services(self) -> list[str]:
        """The services probed between each pair of zones, in order."""
        return list(dict.fromkeys(self.services or [self.parse_rule(r)[2] for r in self.allow]))

    def matrix(self) -> list[tuple[str, str, str, bool]]:
        """Every flow of the matrix: (source zone, destination zone, service, allowed)."""
        allowed = set()
        for rule in self.allow:
            source, destination, service = self.parse_rule(rule)
            for s in (self.zones if source == "*" else [source]):
                for d in (self.zones if destination == "*" else [destination]):
                    allowed.add((s, d, service))
        return [(s, d, service, (s, d, service) in allowed)
                for s in self.zones for d in self.zones if s != d for service in self.probed_services()]


ACTIVE_TYPES = frozenset({"ssh_login", "ssh_ban"})
ACTIVE_CHECKS = 16  # at most this many active checks in one spec
BURST_ATTEMPTS = 30  # at most this many log-in attempts in one ssh_ban burst


SshMethods = Literal["password", "key", "key+code", "key+wrong-code"]


class SshLoginCheck(CheckBase):
    """Log in to the node's SSH server from a probe point (active): with a password, a key, or a key and a TOTP
    code (RFC 6238, computed by labctl from `totp_secret`; `wrong-code`: a code an hour old). A verdict stands
    only when the node's own SSH server (its host key checked against the node's files) answered and refused;
    a connection that gets no answer is never a refusal. Nothing is run: authentication only, no session."""

    type: Literal["ssh_login"]
    probe: ProbePoint
    port: Port = 22
    user: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    methods: SshMethods
    password: str | None = Field(default=None, max_length=200, description="With methods password.")
    key: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="A private key file (OpenSSH format) in the lab's vault, where the setup recorded it.")
    totp_secret: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{2,128}$",
                                    description="The TOTP secret in hexadecimal (as pam_oath's users file).")
    totp_digits: Literal[6, 7, 8] = 6
    expect: Literal["accepted", "refused", "partial"] = Field(
        description="accepted: logged in; refused: the server said no (for key+code methods, after it accepted the "
                    "key as a first factor); partial: the credentials were accepted as one factor only and the "
                    "server asked for another.")
    undo: str | None = Field(
        default=None, min_length=1, max_length=500,
        description="Shell command run in the node (clean shell, as root) after the attempt, twice (1 s and 2.5 s "
                    "after: a detector bans asynchronously), to lift what the attempt may have caused, e.g. "
                    "`fail2ban-client unban {address}` ({address}: the probe point's); its exit code is not judged.")
    restores: list[Annotated[str, Field(pattern=r"^/")]] = Field(
        default_factory=list, max_length=8,
        description="Files of the node the attempt may rewrite (pam_oath records the last code used in its users "
                    "file): saved before, written back after, so grading twice gives the same result.")
    _key_text: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _credentials(self) -> SshLoginCheck:
        if self.methods == "password" and self.password is None:
            raise ValueError("methods password needs `password`")
        if self.methods != "password" and self.key is None:
            raise ValueError(f"methods {self.methods} needs `key` (a private key in the lab's vault)")
        if "code" in self.methods and self.totp_secret is None:
            raise ValueError(f"methods {self.methods} needs `totp_secret`")
        return self

    @property
    def key_text(self) -> str | None:
        """The private key, as the vault holds it (attached before grading), or None."""
        return self._key_text

    def attach_key(self, text: str) -> None:
        """Give the check its private key, read from the lab's vault."""
        self._key_text = text


class SshBanCheck(CheckBase):
    """Detection (active): from a probe point, a bounded burst of log-ins with wrong passwords; the node must then
    ban the probe point's address (its SSH port stops answering it: the probe's SYN seen arriving at the node's
    interface, no answer leaving it) within `within` seconds. Then `undo` runs in the node (e.g. fail2ban-client
    unban) and the SSH server must answer the probe point again."""

    type: Literal["ssh_ban"]
    probe: ProbePoint
    port: Port = 22
    user: str = Field(default="root", min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    attempts: int = Field(default=6, ge=1, le=BURST_ATTEMPTS, description="Wrong passwords tried, one per connection.")
    within: PositiveSeconds = Field(default=20, le=60, description="Seconds after the burst for the ban to take.")
    undo: str = Field(min_length=1, max_length=500,
                      description="Shell command run in the node (clean shell, as root) to lift the ban; "
                                  "{address} is the probe point's address, {addresses} every address the run's "
                                  "probe points took on this node (earlier log-in attempts may have got theirs "
                                  "banned too), this one's included.")


class PortCheck(CheckBase):
    """A socket listens on `port` (or nothing does, with `listening: false`)."""

    type: Literal["port"]
    port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    listening: bool = True
    executable: str | None = Field(
        default=None, pattern=r"^/",
        description="The program that must own the listening socket (absolute path in the node, e.g. "
                    "/usr/bin/python3): its real executable, as the image installed it.",
    )


class ServiceCheck(CheckBase):
    """A process named `process` runs (or none does, with `running: false`); or, with `unit`, a
    systemd unit starts at boot (`enabled`) and/or runs now (`active`)."""

    type: Literal["service"]
    process: str | None = Field(
        default=None, min_length=1, max_length=15,
        description="Name as `pgrep -x` matches it (the kernel keeps 15 characters). Or give `unit`.",
    )
    running: bool = True
    unit: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9:_.@\\-]+$", max_length=200,
        description="A systemd unit (`cron` means cron.service), with `enabled` and/or `active`. Observed from "
                    "outside: enabled by systemd's rules on the node's unit files (a link in a .wants/ folder of a "
                    "unit the boot reaches, not masked; what is in /run does not survive a reboot); active when "
                    "the unit's cgroup holds a live process (running `executable`, when given).",
    )
    enabled: bool | None = Field(default=None, description="With `unit`: it starts at boot (true) or not (false).")
    active: bool | None = Field(default=None, description="With `unit`: it runs now (true) or not (false).")
    executable: str | None = Field(
        default=None, pattern=r"^/",
        description="The program the process must run (absolute path in the node); where the grader observes "
                    "from outside, a process counts only when its real executable is this file (default: a "
                    "file named `process`), as the image or a package installed it.",
    )

    @model_validator(mode="after")
    def _process_or_unit(self) -> ServiceCheck:
        if (self.process is None) == (self.unit is None):
            raise ValueError("give `process` (a process name) or `unit` (a systemd unit), one of them")
        if self.unit is not None and self.enabled is None and self.active is None:
            raise ValueError("a `unit` check says `enabled` and/or `active` (true or false)")
        if self.unit is None and (self.enabled is not None or self.active is not None):
            raise ValueError("`enabled` and `active` go with `unit`; a `process` check says `running`")
        return self


class FileCheck(CheckBase):
    """A file exists (or not) with the given mode, owner, group, checksum or content."""

    type: Literal["file"]
    path: str = Field(pattern=r"^/", description="Absolute path on the node.")
    exists: bool = True
    mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$", description='e.g. "0640"')
    owner: str | None = None
    group: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    contains: Regex | None = None

    _regex = field_validator("contains")(compile_regex)

    @model_validator(mode="after")
    def _absent_has_no_attributes(self) -> FileCheck:
        if not self.exists and self.attributes():
            keys = ", ".join(self.attributes())
            raise ValueError(f"`exists: false` cannot be combined with {keys}")
        return self

    def attributes(self) -> list[str]:
        """The attribute keys this check compares (mode, owner, group, sha256, contains)."""
        keys = ("mode", "owner", "group", "sha256", "contains")
        return [key for key in keys if getattr(self, key) is not None]


class PackageCheck(CheckBase):
    """A Debian package is installed (at a version), or is not."""

    type: Literal["package"]
    package: str = Field(pattern=r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")
    version: str | None = Field(default=None, description="Exact version required.")
    min_version: str | None = Field(default=None, description="Lowest version accepted.")
    installed: bool = True

    @field_validator("version", "min_version")
    @classmethod
    def _debian_version(cls, value: str | None) -> str | None:
        if value is not None:
            split_version(value)
        return value

    @model_validator(mode="after")
    def _one_version_rule(self) -> PackageCheck:
        if self.version is not None and self.min_version is not None:
            raise ValueError("give `version` or `min_version`, not both")
        if not self.installed and (self.version or self.min_version):
            raise ValueError("`installed: false` cannot be combined with a version")
        return self


class UserCheck(CheckBase):
    """A user account exists (in the given groups, with the given shell), or does not."""

    type: Literal["user"]
    user: str = Field(min_length=1)
    exists: bool = True
    groups: list[str] = Field(default_factory=list, description="Groups the user must be in.")
    shell: str | None = None

    @model_validator(mode="after")
    def _absent_has_no_attributes(self) -> UserCheck:
        if not self.exists and (self.groups or self.shell):
            raise ValueError("`exists: false` cannot be combined with groups or shell")
        return self


class ManifestCheck(CheckBase):
    """Files on the node match checksums recorded in the lab's vault (e.g. before a fault).

    The vault is on the controller, out of the candidate's reach; `labctl.grading.vault`
    attaches the recorded checksums to the check before grading.
    """

    type: Literal["manifest"]
    manifest: str = Field(min_length=1, description="A `sha256sum` listing (absolute paths) in the lab's vault.")
    _expected: dict[str, str] | None = PrivateAttr(default=None)

    @property
    def expected(self) -> dict[str, str] | None:
        """path -> sha256 as recorded, or None when nothing was recorded."""
        return self._expected

    def attach(self, expected: dict[str, str]) -> None:
        """Give the check the checksums recorded in the vault."""
        self._expected = dict(expected)


CHECK_MODELS: dict[str, type[CheckBase]] = {
    "command": CommandCheck,
    "reach": ReachCheck,
    "http": HttpCheck,
    "route": RouteCheck,
    "ospf_neighbor": OspfNeighborCheck,
    "dns": DnsCheck,
    "dhcp": DhcpCheck,
    "flows": FlowsCheck,
    "ssh_login": SshLoginCheck,
    "ssh_ban": SshBanCheck,
    "port": PortCheck,
    "service": ServiceCheck,
    "file": FileCheck,
    "package": PackageCheck,
    "user": UserCheck,
    "manifest": ManifestCheck,
}

Check = Annotated[
    CommandCheck | ReachCheck | HttpCheck | RouteCheck | OspfNeighborCheck | DnsCheck | DhcpCheck | FlowsCheck
    | SshLoginCheck | SshBanCheck
    | PortCheck
    | ServiceCheck
    | FileCheck | PackageCheck | UserCheck | ManifestCheck,
    Field(discriminator="type"),
]


class GradingSpec(Strict):
    """A whole grading spec: the scenario it grades and its checks, in order."""

    scenario: str = Field(min_length=1, description="Name of the scenario this spec grades.")
    checks: list[Check] = Field(min_length=1)

    @model_validator(mode="after")
    def _bounded_actions(self) -> GradingSpec:
        active = [c.id for c in self.checks if c.acts]
        if len(active) > ACTIVE_CHECKS:
            raise ValueError(f"{len(active)} active checks: at most {ACTIVE_CHECKS} act on the nodes in one run")
        return self

    def nodes(self) -> list[str]:
        """Nodes the checks run on, in order of first appearance."""
        return list(dict.fromkeys(check.node for check in self.checks))


def grading_json_schema() -> dict[str, Any]:
    """JSON Schema of a grading spec file (for editors and documentation)."""
    return GradingSpec.model_json_schema()
