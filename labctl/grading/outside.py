"""Grading observed from outside the node (local provider): what the candidate cannot forge.

`OutsideSession` stands for a node's grading session. For every check type it can, it
observes the fact itself through `NodeView` (files through the node's root, processes from
the host's /proc, network facts from the node's network namespace with the controller's
own programs) and judges it with pure functions below (tested on recorded facts). What
must run inside the node (`command` checks of scope `node`) runs there with a clean shell
(absolute /bin/bash, no start-up file, `env -i`, a fixed PATH), never through the node's
sshd; the router CLI still goes through the node's session (`fallback`). Each verdict says
where it was observed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labctl import netns
from labctl.grading import dnsquery, routing, units
from labctl.grading.checks import evaluate, probe
from labctl.grading.checks.base import Verdict, error, judged
from labctl.grading.checks.dhcp import client_line, evaluate_dhcp, facts_output
from labctl.grading.checks.dns import budget as dns_budget
from labctl.grading.checks.dns import judge_dns
from labctl.grading.checks.dns import wanted as dns_lookups
from labctl.grading.checks.flows import evaluate_flows, flows_output
from labctl.grading.checks.network import HTTP_TIMEOUT, evaluate_http, evaluate_reach, evaluate_route, http_timeout
from labctl.grading.checks.system import (
    CONTENT_LIMIT,
    evaluate_command,
    file_verdict,
    judge_unit,
    package_verdict,
    user_verdict,
)
from labctl.grading.nodeview import NodeFileError, NodeProcess, NodeView, clean_shell_argv, netns_argv, run_argv
from labctl.grading.probepoint import ProbePointAt, probe_point
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult, NodeSession, NodeUnreachable
from labctl.grading.spec import (
    CheckBase,
    CommandCheck,
    DhcpCheck,
    DnsCheck,
    FileCheck,
    FlowsCheck,
    HttpCheck,
    ManifestCheck,
    OspfNeighborCheck,
    PackageCheck,
    PortCheck,
    ProbePoint,
    ReachCheck,
    RouteCheck,
    ServiceCheck,
    SshBanCheck,
    SshLoginCheck,
    UserCheck,
)
from labctl.grading.tamper import Channel, Tampering, node_tampering, relied_on, tampered_evidence

OUTSIDE = "outside"  # observed from the controller; the node's programs took no part
INSIDE = "inside"  # observed by running programs of the node
TCP_LISTEN, UDP_UNCONNECTED = "0A", "07"
ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
# every TCP state but LISTEN and CLOSE: the server end of a connection, from SYN_RECV (the
# client's last ACK not yet processed) to TIME_WAIT (the server closed first)
CONNECTED = ("01", "02", "03", "04", "05", "06", "08", "09", "0B", "0C")
ADDED_OUT_OF_PATH = "/usr/local/"  # programs added there are not on the clean shell's PATH
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_LIMIT = 64 * 1024 * 1024
DHCP_CLIENT_PORT = 68
PATTERN_BYTES = 16  # a fresh random payload pattern per ping: its replies are recognised at the owner
# echo requests 50 ms apart (the controller's ping runs as root; a node's user would be held
# to 200 ms): a reach check costs a round trip and 50 ms per extra request
PING_INTERVAL = "0.05"
FILES_CHECKED = 200  # files of an installed package checked to be there
STATUS_WORDS = {"not-installed": "n", "config-files": "c", "half-installed": "H", "unpacked": "U",
                "half-configured": "F", "triggers-awaited": "W", "triggers-pending": "t", "installed": "i"}
WANT_WORDS = {"unknown": "u", "install": "i", "hold": "h", "deinstall": "r", "purge": "p"}


# ---- pure parts: parse what the kernel and the node's files say, then judge -------------------
@dataclass(frozen=True)
class Listener:
    """A listening socket of the node's network namespace."""

    address: str
    port: int
    inode: int


def _hex_address(text: str) -> str:
    """An address of /proc/net/tcp[6] (hex, host byte order words) as text."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def parse_sockets(text: str, states: tuple[str, ...]) -> list[tuple[str, int, str, int, int]]:
    """(local address, local port, remote address, remote port, inode) of /proc/net/{tcp,udp}[6]
    lines in one of `states` (hex state codes)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] not in states:
            continue
        local, _, lport = fields[1].partition(":")
        remote, _, rport = fields[2].partition(":")
        found.append((_hex_address(local), int(lport, 16), _hex_address(remote), int(rport, 16), int(fields[9])))
    return found


def listeners(texts: list[str], protocol: str) -> list[Listener]:
    """Listening sockets (TCP LISTEN, UDP unconnected) from the namespace's socket tables."""
    state = TCP_LISTEN if protocol == "tcp" else UDP_UNCONNECTED
    return [Listener(address, port, inode) for text in texts
            for address, port, _, _, inode in parse_sockets(text, (state,))]


def judge_port(check: PortCheck, found: list[Listener], owners: dict[int, list[str]]) -> Verdict:
    """Something (the expected program, with `executable`) listens on the port, or nothing does.

    `owners` maps a socket inode to descriptions of the processes holding it, each starting
    with "OK " when that process runs the expected executable, as the image installed it.
    """
    name = f"{check.protocol} port {check.port}"
    on_port = [s for s in found if s.port == check.port]
    if not on_port:
        others = ", ".join(str(p) for p in sorted({s.port for s in found})[:12]) or "none"
        return judged(not check.listening, f"nothing listens on {name} (listening {check.protocol} ports: {others})")
    seen = f"{name} listening on {', '.join(sorted({s.address for s in on_port}))}"
    if check.executable is None or not check.listening:
        return judged(check.listening, seen + ("" if check.listening else ", expected closed"))
    holders = [h for s in on_port for h in owners.get(s.inode, [])]
    if any(h.startswith("OK ") for h in holders):
        return judged(True, f"{seen} by {'; '.join(h[3:] for h in holders if h.startswith('OK '))}")
    shown = "; ".join(holders) or "no process of the node holds it"
    tampered = [h for h in holders if "written in the node" in h and h.startswith("TAMPERED ")]
    if tampered:
        return error(f"tampered: {seen} by {'; '.join(h[9:] for h in tampered)}")
    return judged(False, f"{seen}, but not by {check.executable} ({shown})")


def judge_service(check: ServiceCheck, executable: str, found: list[tuple[NodeProcess, str]]) -> Verdict:
    """Running when some process runs the expected executable (origin "image" or "package ...").

    `found` pairs the node's processes whose real executable is `executable`, or is named like
    the service, with where that executable comes from.
    """
    genuine = [p for p, origin in found if not origin.startswith("written")]
    if genuine:
        pids = ", ".join(str(p.pid) for p in genuine[:5])
        seen = f"{executable} running (host pid {pids})"
        return judged(check.running, seen + ("" if check.running else ", expected stopped"))
    if found and check.running:
        shown = "; ".join(f"pid {p.pid} runs {p.exe} ({origin})" for p, origin in found[:3])
        return error(f"tampered: {shown}; not the executable the image installed")
    seen = f"no process runs {executable}"
    return judged(not check.running, seen + (", expected running" if check.running else ""))


def parse_passwd(text: str) -> dict[str, list[str]]:
    """name -> the 7 fields of an /etc/passwd line."""
    users: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] and not fields[0].startswith(("+", "-", "#")):
            users.setdefault(fields[0], fields)
    return users


def parse_group(text: str) -> list[tuple[str, str, list[str]]]:
    """(name, gid, members) of /etc/group lines."""
    groups = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 4 and fields[0]:
            groups.append((fields[0], fields[2], [m for m in fields[3].split(",") if m]))
    return groups


def judge_user(check: UserCheck, passwd: str, group: str) -> Verdict:
    """The user's entry and groups (primary first, then supplementary), as `id -nG` lists them."""
    entry = parse_passwd(passwd).get(check.user)
    if entry is None:
        return judged(not check.exists, f"no user {check.user}" + (", expected to exist" if check.exists else ""))
    groups_table = parse_group(group)
    primary = next((name for name, gid, _ in groups_table if gid == entry[3]), entry[3])
    groups = [primary] + [name for name, _, members in groups_table if check.user in members and name != primary]
    return user_verdict(check, entry[2], entry[6], groups)


def dpkg_packages(status: str) -> dict[str, list[tuple[str, str]]]:
    """package (and package:arch) -> [(status abbreviation, version)] from dpkg's status file."""
    found: dict[str, list[tuple[str, str]]] = {}
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package")
        if not name:
            continue
        words = fields.get("Status", "unknown ok not-installed").split()
        abbrev = WANT_WORDS.get(words[0], "u") + STATUS_WORDS.get(words[-1], "n")
        entry = (abbrev, fields.get("Version", ""))
        found.setdefault(name, []).append(entry)
        if fields.get("Architecture"):
            found.setdefault(f"{name}:{fields['Architecture']}", []).append(entry)
    return found


def judge_package(check: PackageCheck, status: str) -> Verdict:
    """Installed (dpkg status installed, triggers awaited or pending), then the version rule."""
    states = dpkg_packages(status).get(check.package, [])
    if not states:
        return judged(not check.installed, f"package {check.package} is not known to dpkg"
                                           + (", expected installed" if check.installed else ""))
    return package_verdict(check, states)


def name_of(table: list[tuple[str, str]], number: int) -> str:
    """A uid's or gid's name from (name, id) pairs, or the number."""
    return next((name for name, ident in table if ident == str(number)), str(number))


def echo_reply_from(frame: bytes, source: str, pattern: bytes) -> bool:
    """Whether an Ethernet frame is an ICMP (or ICMPv6) echo reply from `source` carrying `pattern`."""
    address = ipaddress.ip_address(source)
    if address.version == 6:
        # IPv6 header (40 bytes), next header ICMPv6 (58), type 129: echo reply
        if len(frame) < 14 + 40 + 8 or frame[12:14] != b"\x86\xdd":
            return False
        ip = frame[14:]
        return ip[0] >> 4 == 6 and ip[6] == 58 and ip[8:24] == address.packed and ip[40] == 129 \
            and pattern in ip[48:]
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
        return False
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != 1 or len(ip) < header + 8 or ip[12:16] != address.packed:
        return False
    return ip[header] == 0 and pattern in ip[header + 8:]


class ReplyWatch:
    """Watches, from inside the owner's network namespace, for the echo replies its kernel sends
    to one ping (a packet socket sees every frame the node sends): proof that the right host
    answered, which no other node can give."""

    def __init__(self, source: str, pattern: bytes) -> None:
        self.source, self.pattern = source, pattern
        self.ready, self.done = threading.Event(), threading.Event()
        self.seen = False
        self.thread: threading.Thread | None = None

    def start(self, owner: NodeView) -> bool:
        """Start watching; False when the owner's namespace cannot be watched."""
        def watch() -> None:
            with contextlib.suppress(OSError, NodeUnreachable):
                owner.in_netns(self._listen)
            self.ready.set()

        self.thread = threading.Thread(target=watch, name=f"watch-{owner.name}", daemon=True)
        self.thread.start()
        self.ready.wait(5)
        return self.thread.is_alive()

    def _listen(self) -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
            sock.settimeout(0.02)
            self.ready.set()
            grace = 0.0
            while True:
                if self.done.is_set():  # the probe is over: frames it caused may still be queued here
                    if self.complete():
                        return
                    grace = grace or time.monotonic() + 0.2
                    if time.monotonic() > grace:
                        return
                try:
                    frame, address = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if address[2] == PACKET_OUTGOING and self.take(frame):
                    return

    def take(self, frame: bytes) -> bool:
        """Note a frame the owner sends; True when what was awaited is seen (watching stops)."""
        self.seen = self.seen or echo_reply_from(frame, self.source, self.pattern)
        return self.seen

    def complete(self) -> bool:
        """Whether everything awaited was seen (no need to wait for late frames)."""
        return self.seen

    def stop(self) -> bool:
        """Stop watching; whether the owner sent a reply to these requests."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(2)
        return self.seen


def dns_reply_id(frame: bytes, server: str) -> int | None:
    """The DNS id of a reply `server` sends from port 53 in an Ethernet frame (UDP, or the first
    segment of a TCP answer), or None."""
    address = ipaddress.ip_address(server)
    if address.version == 4:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4 or frame[26:30] != address.packed:
            return None
        protocol, start = frame[23], 14 + (frame[14] & 0x0F) * 4
    else:
        if len(frame) < 54 or frame[12:14] != b"\x86\xdd" or frame[22:38] != address.packed:
            return None
        protocol, start = frame[20], 54
    segment = frame[start:]
    if protocol == 17 and len(segment) >= 10 and segment[0:2] == b"\x00\x35":
        return int.from_bytes(segment[8:10], "big")
    if protocol == 6 and len(segment) >= 20 and segment[0:2] == b"\x00\x35":
        data = segment[(segment[12] >> 4) * 4:]
        return int.from_bytes(data[2:4], "big") if len(data) >= 4 else None
    return None


class DnsReplyWatch(ReplyWatch):
    """Watches, from a nameserver's network namespace, the DNS replies its kernel sends: the ids
    of the answers its owner really gave (proof that the node the topology gives the address
    answered, not another node or the asking node itself)."""

    def __init__(self, server: str) -> None:
        super().__init__(server, b"")
        self.ids: set[int] = set()
        self.awaited: set[int] = set()  # the ids of the answers received, once the lookups are over

    def take(self, frame: bytes) -> bool:
        found = dns_reply_id(frame, self.source)
        if found is not None:
            self.ids.add(found)
        return False

    def complete(self) -> bool:
        return self.awaited <= self.ids

    def finish(self, awaited: set[int]) -> set[int]:
        """Stop once the replies with these ids were seen (or after a short grace); the ids seen."""
        self.awaited = awaited
        self.stop()
        return self.ids


def unproven_answers(data: dict[str, Any], sent: dict[str, set[int] | None], owners: dict[str, str]) -> None:
    """Mark, in the lookups `data`, the answers no nameserver's owner sent (`sent`: the reply ids
    seen leaving each watched server, None for one whose owner does not run): they are errors
    ("answered, but not by ..."), so the judgement counts them as no answer."""
    for item in data["lookups"]:
        for query in item["queries"]:
            server = query.get("server")
            if "error" in query or server not in sent:
                continue
            seen = sent[server]
            if seen is None or query.get("id") not in seen:
                why = "it is not running" if seen is None else "it sent no such reply"
                query["error"] = (f"answered, but not by {owners[server]} ({why}): another node answers for "
                                  f"{server}")


# ---- the session ------------------------------------------------------------------------------
class LabView:
    """The nodes of one local lab, opened for observation once per grading run."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self._views: dict[str, NodeView] = {}
        self._lock = threading.Lock()
        self._tampering: dict[str, Tampering] = {}
        self._tamper_lock = threading.Lock()
        # the addresses this run's probe points took (active checks), for an undo that lifts them all
        self.probe_addresses: list[str] = []
        # address -> the node the plan gives it (the one that must answer for it)
        self.owners: dict[str, str] = {}
        for node in lab.plan.nodes:
            given = [*(i.address for i in node.interfaces), *(i.address6 for i in node.interfaces),
                     *node.loopbacks]
            for address in given:
                if address:
                    self.owners[str(ipaddress.ip_interface(address).ip)] = node.name

    def tampering(self, node: str) -> Tampering:
        """What the candidate changed among the node's system files (computed once per run)."""
        with self._tamper_lock:
            found = self._tampering.get(node)
            if found is None:
                found = self._tampering[node] = node_tampering(self.lab, node)
            return found

    def tampered_nodes(self) -> list[Tampering]:
        """Every node examined in this run that has changes, or could not be examined fully."""
        with self._tamper_lock:
            return [t for _, t in sorted(self._tampering.items()) if t.changes or not t.complete]

    def view(self, node: str) -> NodeView:
        """The node's view (opened on first use); NodeUnreachable when it is not running."""
        with self._lock:
            found = self._views.get(node)
            if found is None:
                state = self.lab.nodes.get(node)
                if state is None or state.init is None:
                    raise NodeUnreachable(f"{node}: the node was never started")
                from labctl import cgroups

                found = NodeView(node, state.init.pid, state.init.start_time, self.lab.upper_dir(node),
                                 cgroups.node_entry_group(self.lab.id, node))
                self._views[node] = found
            return found

    def close(self) -> None:
        """Release every node's root."""
        with self._lock:
            for view in self._views.values():
                view.close()
            self._views.clear()


class OutsideSession:
    """A node's grading session that observes from outside (implements NodeSession, plus
    `observe`, which the grader prefers, and `concurrent`: a node's probes may run at once)."""

    concurrent = True

    def __init__(self, lab: LabView, node: str, fallback: Callable[[], NodeSession]) -> None:
        self.lab, self.node, self._fallback_open = lab, node, fallback
        self.view = lab.view(node)
        self._fallback: NodeSession | None = None
        self._fallback_lock = threading.Lock()

    # NodeSession: what still runs inside the node
    def run(self, command: str, timeout: float) -> CommandResult:
        """`command` inside the node with a clean shell (never its sshd, login files or PATH)."""
        self.view.check_alive()
        result = run_argv(self.view.inside_argv(clean_shell_argv(command)), timeout)
        self.view.check_alive()
        return result

    def cli(self, command: str, timeout: float) -> str:
        """The router CLI, through the node's own session (opened on first use)."""
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = self._fallback_open()
            session = self._fallback
        return session.cli(command, timeout)

    def close(self) -> None:
        """Close the fallback session, if one was opened."""
        if self._fallback is not None:
            with contextlib.suppress(Exception):
                self._fallback.close()

    # observation
    def observe(self, check: CheckBase, timeout: float) -> Verdict | None:
        """The check's verdict, observed from outside wherever this check type allows it; None
        for a check the node's own programs must answer (the grader probes it through `run`
        or `cli`)."""
        observers: dict[type, Callable[[Any, float], Verdict]] = {
            OspfNeighborCheck: self._ospf_neighbor, RouteCheck: self._route, PortCheck: self._port,
            ReachCheck: self._reach, HttpCheck: self._http,
            FileCheck: self._file, PackageCheck: self._package, UserCheck: self._user,
            ServiceCheck: self._service, ManifestCheck: self._manifest, CommandCheck: self._command,
            DnsCheck: self._dns, DhcpCheck: self._dhcp, FlowsCheck: self._flows,
            SshLoginCheck: self._ssh_login, SshBanCheck: self._ssh_ban,
        }
        observer = observers.get(type(check))
        if observer is None:  # e.g. the router CLI: the node's own session, unless it was tampered with
            command = probe(check)
            return self.untrusted(check, "ssh", command.command, cli=command.cli)
        try:
            verdict = observer(check, timeout)
        except NodeFileError as exc:
            verdict = error(f"cannot read from outside the node: {exc}")
        self.view.check_alive()  # a verdict from a node that died meanwhile is none
        return verdict if verdict.observed != "" else replace(verdict, observed=OUTSIDE)

    def _ospf_neighbor(self, check: OspfNeighborCheck, timeout: float) -> Verdict:
        lab = self.lab.lab
        return routing.observe_ospf_neighbor(check, lab.plan, self.view.pid, Path(lab.image), timeout,
                                             far_pid=lambda node: self.lab.view(node).pid)

    def untrusted(self, check: CheckBase, channel: Channel, command: str, *, cli: bool = False) -> Verdict | None:
        """ERROR "tampered: ..." when a probe run inside the node would rely on a system file the
        candidate changed (tamper.py); None when it may run.

        A program the candidate added under /usr/local is no system tool replaced: the clean
        shell's PATH does not reach it, so it can only be a file the check names on purpose
        (the candidate's own deliverable, such as a backup script the check reads).
        """
        found = [c for c in relied_on(check, self.lab.tampering(self.node), channel=channel, command=command,
                                      cli=cli)
                 if not (channel == "nsenter" and c.kind == "added" and c.path.startswith(ADDED_OUT_OF_PATH))]
        if not found:
            return None
        english, french = tampered_evidence(found)
        return replace(error(f"{english} / {french}"), observed=INSIDE)

    def _route(self, check: RouteCheck, timeout: float) -> Verdict:
        if routing.observed_by_routing(check):
            lab = self.lab.lab
            return routing.observe_ospf_route(check, lab.plan, self.view.pid, Path(lab.image), timeout,
                                              self.view.run_in_netns)
        result = self.view.run_in_netns(check.listing_argv(), timeout)
        return evaluate(check, result) if result.exit_code else evaluate_route(check, result)

    def _port(self, check: PortCheck, timeout: float) -> Verdict:
        tables = ("tcp", "tcp6") if check.protocol == "tcp" else ("udp", "udp6")
        found = listeners([self.view.net_file(t) for t in tables], check.protocol)
        owners: dict[int, list[str]] = {}
        if check.executable is not None and any(s.port == check.port for s in found):
            expected = self.view.stat(check.executable)
            for inode, processes in self.view.socket_owners().items():
                owners[inode] = [self._describe_owner(p, expected) for p in processes]
        return judge_port(check, found, owners)

    def _describe_owner(self, process: NodeProcess, expected: Any) -> str:
        """`OK pid P (EXE)` for the expected, genuine executable; otherwise what it runs."""
        text = f"pid {process.pid} ({process.exe})"
        origin = self.origin(process.exe)
        if origin.startswith("written"):
            return f"TAMPERED {text}: {process.exe} {origin}"
        if expected is not None and (process.exe_device, process.exe_inode) == (expected.device, expected.inode):
            return f"OK {text}"
        return text

    def origin(self, path: str) -> str:
        """Where a node's executable comes from: the image, a package (checksum verified), or
        "written in the node" (added or replaced by someone in the node)."""
        if not self.view.replaced(path):
            return "from the image"
        package = self._package_of(path)
        if package is not None:
            return f"from package {package}"
        return "written in the node (not the image's file, not a package's)"

    def _package_of(self, path: str) -> str | None:
        """The package whose recorded checksum the file at `path` has (dpkg's info read from outside)."""
        try:
            names = os.listdir(self.view.upper / "var/lib/dpkg/info")
        except OSError:
            names = []
        relative = path.lstrip("/")
        for name in sorted(n for n in names if n.endswith(".md5sums")):
            with contextlib.suppress(NodeFileError):
                for line in self.view.text(f"/var/lib/dpkg/info/{name}").splitlines():
                    digest, _, listed = line.partition("  ")
                    if listed == relative:
                        actual = hashlib.md5(self.view.read(path, 512 * 1024 * 1024)).hexdigest()  # dpkg records md5
                        return name[:-len(".md5sums")] if actual == digest else None
        return None

    def _reach(self, check: ReachCheck, timeout: float) -> Verdict:
        target = str(check.target)
        local = self.view.run_in_netns(["ip", "-j", "route", "get", target], timeout)
        if local.exit_code == 0 and '"type":"local"' in local.stdout.replace(" ", ""):
            seen = f"{target} is an address of {self.node} itself: its own stack answers, not the host that " \
                   f"has it"
            return judged(check.expect == "unreachable", seen + (", expected reachable"
                                                                 if check.expect == "reachable" else ""))
        owner = self.lab.owners.get(target)
        pattern = os.urandom(PATTERN_BYTES)
        argv = ["ping", "-n", "-q", "-c", str(check.count), "-i", PING_INTERVAL, "-W", "1", "-p", pattern.hex(), target]
        if owner is None or owner == self.node:
            return evaluate_reach(check, self.view.run_in_netns(argv, timeout))
        try:
            owner_view: NodeView | None = self.lab.view(owner)
        except NodeUnreachable:  # the owner is down: whatever answers, it is not the owner
            owner_view = None
        watch = ReplyWatch(target, pattern)
        watching = owner_view is not None and watch.start(owner_view)
        try:
            result = self.view.run_in_netns(argv, timeout)
        finally:
            seen_by_owner = watch.stop()
        if owner_view is not None and not watching:
            return error(f"cannot watch {owner}'s replies from its network namespace: who answers {target} "
                         f"is not known")
        verdict = evaluate_reach(check, result)
        if result.exit_code == 0 and not seen_by_owner:
            why = "its kernel sent no echo reply to these requests" if watching else "it is not running"
            seen = f"{target} answered, but not from {owner} ({why}): another node answers for it"
            return judged(check.expect == "unreachable", seen + (", expected reachable"
                                                                 if check.expect == "reachable" else ""))
        return verdict

    def _http(self, check: HttpCheck, timeout: float) -> Verdict:
        target = check.target
        limit = http_timeout(check) if check.timeout else HTTP_TIMEOUT
        host = target.host
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            host = self._hosts_entry(host) or ""
            if not host:
                return judged(False, f"{check.url}: cannot resolve {target.host} (Name or service not known)")
        local = self.view.run_in_netns(["ip", "-j", "route", "get", host], timeout)
        if local.exit_code == 0 and '"type":"local"' in local.stdout.replace(" ", ""):
            return judged(False, f"{check.url}: {host} is an address of {self.node} itself: a server there "
                                 f"answers, not the host that has it")
        request = (f"GET {target.path} HTTP/1.0\r\nHost: {target.host_header}\r\n"
                   "Connection: close\r\n\r\n").encode()
        owner = self.lab.owners.get(host)

        def fetch() -> tuple[CommandResult, tuple[str, int] | None]:
            deadline = time.monotonic() + limit
            try:
                sock = socket.create_connection((host, target.port), timeout=limit)
            except TimeoutError:
                return CommandResult(124, "", ""), None
            except OSError as exc:
                return CommandResult(1, "", f"connect: {exc.strerror}"), None
            with sock:
                source = sock.getsockname()[:2]
                peer_ok = self._peer_holds(owner, host, target.port, source[1])
                data = bytearray()
                try:
                    sock.sendall(request)
                    while len(data) < CONTENT_LIMIT:
                        sock.settimeout(max(0.05, deadline - time.monotonic()))
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except TimeoutError:
                    return CommandResult(124, data.decode(errors="replace"), ""), None
                except OSError as exc:
                    return CommandResult(1, data.decode(errors="replace"), exc.strerror or str(exc)), None
                return CommandResult(0, bytes(data[:CONTENT_LIMIT]).decode(errors="replace"), ""), \
                    (owner or "", int(peer_ok or self._peer_holds(owner, host, target.port, source[1])))

        result, peer = self.view.in_netns(fetch)
        verdict = evaluate_http(check, result)
        if verdict.outcome is Outcome.PASS and peer is not None and peer[0] and not peer[1]:
            return judged(False, f"{check.url}: answered, but not by {peer[0]} (no connection from "
                                 f"{self.node} reached it): another node answers for {host}")
        return verdict

    def _peer_holds(self, owner: str | None, address: str, port: int, source_port: int) -> bool:
        """Whether `owner`'s kernel holds the server end of our connection (true when unknown)."""
        if owner is None:
            return True
        try:
            view = self.lab.view(owner)
            texts = [view.net_file("tcp"), view.net_file("tcp6")]
        except NodeUnreachable:
            return False
        return any(lport == port and rport == source_port
                   for text in texts for _, lport, _, rport, _ in parse_sockets(text, CONNECTED))

    def _dns(self, check: DnsCheck, timeout: float) -> Verdict:
        """The node's resolv.conf read from outside; the queries sent by the controller's own code
        from the node's network namespace (no program of the node takes part)."""
        conf = self._quiet_text("/etc/resolv.conf")  # missing: glibc's defaults, as the node would
        limit = min(dns_budget(check), max(0.5, timeout - 0.5))
        # a nameserver the topology gives to another node must answer itself: watched from its namespace
        owners = {server: owner for server in dnsquery.parse_resolv_conf(conf)["nameservers"]
                  if (owner := self.lab.owners.get(server)) not in (None, self.node)}
        watches: dict[str, DnsReplyWatch | None] = {}
        for server, owner in owners.items():
            try:
                owner_view = self.lab.view(owner)
            except NodeUnreachable:  # the owner is down: whatever answers, it is not the owner
                watches[server] = None
                continue
            watch = DnsReplyWatch(server)
            if not watch.start(owner_view):
                return error(f"cannot watch {owner}'s DNS replies from its network namespace: who answers "
                             f"{server} is not known")
            watches[server] = watch
        data: dict[str, Any] = {"lookups": []}
        try:
            data = self.view.in_netns(lambda: dnsquery.lookups(dns_lookups(check), conf, limit))
        finally:
            answered = [q for item in data["lookups"] for q in item["queries"] if "error" not in q]
            sent = {server: w.finish({q["id"] for q in answered if q["server"] == server}) if w else None
                    for server, w in watches.items()}
        unproven_answers(data, sent, owners)
        return judge_dns(check, data)

    def _dhcp(self, check: DhcpCheck, timeout: float) -> Verdict:
        """The interface's addresses and the default routes from the node's network namespace (the
        controller's `ip`), its resolv.conf read from outside."""
        addresses = self.view.run_in_netns(["ip", "-j", "-4", "addr", "show", "dev", check.interface], timeout)
        routes = self.view.run_in_netns(["ip", "-j", "-4", "route", "show", "default"], timeout)
        for result in (addresses, routes):
            if result.exit_code != 0:
                return evaluate_dhcp(check, result)
        # the processes holding UDP port 68, by real executable: a client the image or a package
        # installed goes by its name; one written in the node is shown as such and does not count
        port = [s.inode for s in listeners([self.view.net_file("udp"), self.view.net_file("udp6")], "udp")
                if s.port == DHCP_CLIENT_PORT]
        holders = self.view.socket_owners() if port else {}
        clients = []
        for process in {p.pid: p for inode in port for p in holders.get(inode, [])}.values():
            origin = self.origin(process.exe)
            name = os.path.basename(process.exe) if not origin.startswith("written") else f"{process.exe} ({origin})"
            clients.append(client_line(name, process.pid))
        output = facts_output(addresses.stdout, routes.stdout, clients, self._quiet_text("/etc/resolv.conf"))
        return evaluate_dhcp(check, CommandResult(0, output, ""))

    def _flows(self, check: FlowsCheck, timeout: float) -> Verdict:
        """Every flow of the matrix probed at once by labctl's own sockets in the zones' network
        namespaces, watched leaving the source and arriving at the destination (flowprobe.py)."""
        from labctl.grading.flowprobe import Planned, probe_flows, zone_address

        plan = {node.name: node for node in self.lab.lab.plan.nodes}
        ends: dict[str, tuple[NodeView, str]] = {}
        for zone, value in check.zones.items():
            node, _, given = value.partition("@")
            if node not in plan:
                return error(f"zone {zone}: no node {node} in this lab")
            address = zone_address(plan[node], given)
            if not address:
                return error(f"zone {zone}: node {node} has no address to probe")
            ends[zone] = (self.lab.view(node), address)
        probes = [Planned(s, d, service, *ends[s], *ends[d]) for s, d, service, _ in check.matrix()]
        results = probe_flows(probes, min(check.window, max(0.5, timeout - 1)))
        return evaluate_flows(check, CommandResult(0, flows_output(results), ""))

    @contextlib.contextmanager
    def _probe_point(self, where: ProbePoint) -> Iterator[ProbePointAt]:
        """The grader's probe point on `where`'s switch, toward this node; its address is recorded
        for the run's undo (ssh_ban lifts every address the run took)."""
        with probe_point(self.lab.lab.plan, where.switch, where.addresses, self.node) as point:
            self.lab.probe_addresses.append(point.address)
            yield point

    def _ssh_login(self, check: SshLoginCheck, timeout: float) -> Verdict:
        """One log-in tried from the grader's probe point (sshprobe.py); the files it may rewrite
        are written back after."""
        from labctl.grading.checks.ssh import evaluate_login
        from labctl.grading.sshprobe import as_result, lift, login, restore, saved_files

        saved = saved_files(self.view, check.restores)
        with self._probe_point(check.probe) as point:
            if check.undo is not None:
                lift(check.undo, point.address, self.run, pauses=(0.0,))
            seen = login(check, point, self.view, min(timeout, 15.0))
            if check.undo is not None:
                lift(check.undo, point.address, self.run)
        failed = restore(self.view, saved, self.run)
        verdict = evaluate_login(check, as_result(seen))
        if failed:
            return error(f"{verdict.evidence}; but could not write back {'; '.join(failed)}")
        return verdict

    def _ssh_ban(self, check: SshBanCheck, timeout: float) -> Verdict:
        """A burst of wrong passwords from the grader's probe point, the ban watched at the node's
        interface, then the check's undo (sshprobe.py)."""
        from labctl.grading.checks.ssh import evaluate_ban
        from labctl.grading.sshprobe import as_result, ban

        with self._probe_point(check.probe) as point:
            seen = ban(check, point, self.view, self.run, self.lab.probe_addresses)
        return evaluate_ban(check, as_result(seen))

    def _hosts_entry(self, name: str) -> str | None:
        with contextlib.suppress(NodeFileError):
            for line in self.view.text("/etc/hosts").splitlines():
                fields = line.split("#")[0].split()
                if len(fields) > 1 and name in fields[1:]:
                    return fields[0]
        return None

    def _file(self, check: FileCheck, timeout: float) -> Verdict:
        facts = self.view.stat(check.path)
        if facts is None:
            return judged(not check.exists, f"{check.path} does not exist"
                                            + (", expected it to exist" if check.exists else ""))
        if not check.exists:
            return judged(False, f"{check.path} exists, expected it not to")
        users = [(f[0], f[2]) for f in parse_passwd(self._quiet_text("/etc/passwd")).values()]
        groups = [(name, gid) for name, gid, _ in parse_group(self._quiet_text("/etc/group"))]
        seen = {"kind": facts.kind, "mode": f"{facts.mode:04o}", "owner": name_of(users, facts.uid),
                "group": name_of(groups, facts.gid)}
        regular = facts.kind == "regular file"
        if regular and check.sha256 is not None:
            seen["sha256"] = self.view.sha256(check.path)
        if regular and check.contains is not None:
            seen["content"] = self.view.text(check.path, CONTENT_LIMIT)
        return file_verdict(check, seen)

    def _quiet_text(self, path: str) -> str:
        try:
            return self.view.text(path)
        except NodeFileError:
            return ""

    def _package(self, check: PackageCheck, timeout: float) -> Verdict:
        verdict = judge_package(check, self.view.text(DPKG_STATUS, DPKG_LIMIT))
        if verdict.outcome is not Outcome.PASS or not check.installed:
            return verdict
        missing = self._missing_files(check.package)
        if missing:
            return judged(False, f"{verdict.evidence}, but {missing}")
        return verdict

    def _missing_files(self, package: str) -> str:
        """'' when the files dpkg lists for an installed package are there (the first
        FILES_CHECKED of them); otherwise what is missing: a stanza written into dpkg's status
        by hand, or a package whose files were removed, is not an installed package."""
        name = package.split(":")[0]
        listing = ""
        for candidate in (f"{package}.list", f"{name}.list", f"{name}:amd64.list", f"{name}:all.list"):
            with contextlib.suppress(NodeFileError):
                listing = self.view.text(f"/var/lib/dpkg/info/{candidate}")
                break
        if not listing:
            return f"dpkg has no list of its files (/var/lib/dpkg/info/{name}.list)"
        # what the package installed under /usr (its configuration files are the admin's to change)
        paths = [p for p in listing.splitlines() if p.startswith("/usr/")][:FILES_CHECKED]
        gone = [p for p in paths if self.view.stat(p) is None]
        if gone:
            return f"{len(gone)} of its first {len(paths)} listed files are missing ({', '.join(gone[:3])})"
        return ""

    def _user(self, check: UserCheck, timeout: float) -> Verdict:
        passwd = self.view.text("/etc/passwd")
        if check.user not in parse_passwd(passwd) and self._uses_directory():
            command = probe(check).command
            refused = self.untrusted(check, "nsenter", command)
            if refused is not None:
                return refused
            result = self.run(command, timeout)  # a directory user (LDAP): getent in a clean shell
            return replace(evaluate(check, result), observed=INSIDE)
        return judge_user(check, passwd, self.view.text("/etc/group"))

    def _uses_directory(self) -> bool:
        """Whether the node resolves users from more than its files (nsswitch names a service)."""
        for line in self._quiet_text("/etc/nsswitch.conf").splitlines():
            if line.startswith("passwd:"):
                return any(word not in ("files", "systemd", "compat") for word in line.split()[1:])
        return False

    def _service(self, check: ServiceCheck, timeout: float) -> Verdict:
        if check.unit is not None:
            return self._unit(check)
        executable = check.executable
        expected = self.view.stat(executable) if executable else None
        found = []
        for process in self.view.processes():
            if expected is not None:
                match = (process.exe_device, process.exe_inode) == (expected.device, expected.inode)
            else:
                match = os.path.basename(process.exe) == check.process
            if match:
                found.append((process, self.origin(process.exe)))
        return judge_service(check, executable or str(check.process), found)

    def _unit(self, check: ServiceCheck) -> Verdict:
        """A unit's enablement from the node's unit files (grading/units.py) and its activity from
        its cgroup below the node's, read on the host: a live process of the node in it (running
        `executable`, the image's or a package's, when the check names one)."""
        if self.view.stat("/run/systemd/system") is None:
            return error(f"{self.node} does not run systemd (init: light): units are not started there")
        unit = units.unit_name(str(check.unit))
        enabled = None
        if check.enabled is not None:
            files = units.NodeFiles(self.view.listdir, self._unit_entry,
                                    lambda path: self.view.text(path, 64 * 1024))
            found = units.enablement(files, unit)
            enabled = (found.starts_at_boot, found.reason)
        active = None
        if check.active is not None:
            active = self._unit_activity(unit, check.executable)
        return judge_unit(check, enabled, active)

    def _unit_entry(self, path: str) -> units.Entry | None:
        found = self.view.lstat_link(path)
        return None if found is None else units.Entry(found[1], found[0].st_size)

    def _unit_activity(self, unit: str, executable: str | None) -> tuple[bool, str]:
        """(runs, what was seen): the node's live processes in the unit's cgroup."""
        from labctl import cgroups

        pids: set[int] = set()
        for tree in cgroups.layout().dirs(str(self.view.cgroup)):
            depth = len(tree.parts)
            for directory, folders, _ in os.walk(tree):
                if os.path.basename(directory) == unit:
                    for inner, _, _ in os.walk(directory):
                        with contextlib.suppress(OSError, ValueError):
                            pids |= {int(p) for p in (Path(inner) / "cgroup.procs").read_text().split()[:10000]}
                    folders.clear()
                elif len(Path(directory).parts) - depth >= 4:
                    folders.clear()  # units sit a few levels below the node's group (payload/system.slice/)
        live = [p for p in self.view.processes() if p.pid in pids]
        if executable is not None:
            expected = self.view.stat(executable)
            live = [p for p in live if expected is not None and (p.exe_device, p.exe_inode) ==
                    (expected.device, expected.inode) and not self.origin(p.exe).startswith("written")]
        if not live:
            what = f" running {executable}" if executable else ""
            return False, f"no live process{what} in {unit}'s cgroup (inactive)"
        shown = ", ".join(f"pid {p.pid} {p.exe}" for p in live[:4])
        return True, f"active: {shown} in its cgroup"

    def _manifest(self, check: ManifestCheck, timeout: float) -> Verdict:
        lines, missing = [], []
        for path in sorted(check.expected or {}):
            try:
                lines.append(f"{self.view.sha256(path)}  {path}")
            except NodeFileError as exc:
                missing.append(str(exc))
        result = CommandResult(1 if missing else 0, "\n".join(lines) + "\n", "\n".join(missing))
        return evaluate(check, result)

    def _command(self, check: CommandCheck, timeout: float) -> Verdict:
        if check.scope == "network":
            result = self.view.run_in_netns(clean_shell_argv(check.command), timeout)
            return replace(evaluate_command(check, result), observed=OUTSIDE)
        if check.probe is not None:  # scope probe: the grader's own namespace on the switch
            with self._probe_point(check.probe) as point:
                result = run_argv(netns_argv(f"{netns.NETNS_DIR}/{point.netns}", clean_shell_argv(check.command)),
                                  timeout)
            return replace(evaluate_command(check, result), observed=OUTSIDE)
        refused = self.untrusted(check, "nsenter", check.command)
        if refused is not None:
            return refused
        return replace(evaluate(check, self.run(check.command, timeout)), observed=INSIDE)

