"""Probing a flow matrix from outside the nodes (local provider): every probe at once, bounded.

For each flow, labctl opens its own socket in the source node's network namespace (a TCP
connect, a UDP datagram carrying a random token, or an ICMP echo request carrying one) and
watches with packet sockets (which see every frame a namespace's interfaces send and receive,
before the node's own firewall can drop it) in the source's and the destination's namespaces:
the probe leaving the source, arriving at the destination, the destination's answer (a TCP
SYN-ACK or reset from its kernel, an ICMP echo reply or port-unreachable, or the echo of the
UDP responder labctl binds in the destination's namespace for the probe's duration) and that
answer reaching the source's socket. No program of the nodes takes part: a candidate cannot
make a flow look open with a listener of their own, nor closed by stopping a service (the
destination's kernel answers a closed port with a reset). Probes carry random ports/tokens:
frames are matched to the probe that caused them. Everything labctl opened is closed at the
end (TCP connections are reset, not left half-open).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from labctl.grading.checks.flows import FlowResult
from labctl.grading.nodeview import NodeView

ETH_P_ALL, ETH_P_IP, PACKET_OUTGOING = 0x0003, 0x0800, 4
TOKEN_BYTES = 12
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10


@dataclass
class Planned:
    """One flow to probe: between which zones, which service, from which node to which."""

    source: str
    destination: str
    service: str  # icmp, tcp/PORT, udp/PORT
    src_view: NodeView
    src_address: str
    dst_view: NodeView
    dst_address: str
    # filled while probing
    sock: socket.socket | None = None
    sport: int = 0
    token: bytes = field(default_factory=lambda: os.urandom(TOKEN_BYTES))
    ident: int = 0
    left: bool = False
    arrived: bool = False
    dst_answered: bool = False
    src_got_answer: bool = False
    detail: str = ""

    @property
    def proto(self) -> str:
        return self.service.split("/")[0]

    @property
    def port(self) -> int:
        return int(self.service.split("/")[1]) if "/" in self.service else 0

    def result(self) -> FlowResult:
        """What was seen."""
        return FlowResult(self.source, self.destination, self.service, self.left, self.arrived,
                          self.dst_answered and self.src_got_answer, self.detail)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(ident: int, payload: bytes) -> bytes:
    """An ICMP echo request (type 8) with this id, sequence 1 and payload."""
    head = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    return struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, 1) + payload


@dataclass(frozen=True)
class Packet:
    """The parts of an IPv4 frame that tell which probe it belongs to."""

    outgoing: bool
    proto: int
    src: str
    dst: str
    sport: int
    dport: int
    flags: int  # TCP flags, or ICMP type
    icmp_id: int
    payload: bytes
    inner: tuple[int, str, str, int, int] | None  # ICMP error: the offending packet's proto, src, dst, ports


def parse_frame(frame: bytes, outgoing: bool) -> Packet | None:
    """An Ethernet frame carrying IPv4, or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or len(ip) < header + 8:
        return None
    proto, src, dst = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    body = ip[header:]
    if proto == socket.IPPROTO_TCP and len(body) >= 14:
        sport, dport = struct.unpack("!HH", body[:4])
        return Packet(outgoing, proto, src, dst, sport, dport, body[13], 0, b"", None)
    if proto == socket.IPPROTO_UDP:
        sport, dport = struct.unpack("!HH", body[:4])
        return Packet(outgoing, proto, src, dst, sport, dport, 0, 0, body[8:], None)
    if proto == socket.IPPROTO_ICMP:
        kind, ident = body[0], struct.unpack("!H", body[4:6])[0]
        inner = None
        if kind == 3 and len(body) >= 8 + 20 + 4:  # destination unreachable: the offending header follows
            old = body[8:]
            old_header = (old[0] & 0x0F) * 4
            if len(old) >= old_header + 4:
                inner = (old[9], socket.inet_ntoa(old[12:16]), socket.inet_ntoa(old[16:20]),
                         *struct.unpack("!HH", old[old_header:old_header + 4]))
        return Packet(outgoing, proto, src, dst, 0, 0, kind, ident, body[8:], inner)
    return None


def _forward(p: Planned, pkt: Packet) -> bool:
    """Whether `pkt` is the probe itself (source -> destination)."""
    if pkt.src != p.src_address or pkt.dst != p.dst_address:
        return False
    if p.proto == "tcp":
        return pkt.proto == socket.IPPROTO_TCP and (pkt.sport, pkt.dport) == (p.sport, p.port) \
            and bool(pkt.flags & TCP_SYN) and not pkt.flags & TCP_ACK
    if p.proto == "udp":
        return pkt.proto == socket.IPPROTO_UDP and (pkt.sport, pkt.dport) == (p.sport, p.port) \
            and p.token in pkt.payload
    return pkt.proto == socket.IPPROTO_ICMP and pkt.flags == 8 and pkt.icmp_id == p.ident and p.token in pkt.payload


def _answer(p: Planned, pkt: Packet) -> bool:
    """Whether `pkt` is the destination's answer to the probe (destination -> source)."""
    if pkt.src != p.dst_address or pkt.dst != p.src_address:
        return False
    if p.proto == "tcp":
        return pkt.proto == socket.IPPROTO_TCP and (pkt.sport, pkt.dport) == (p.port, p.sport) \
            and (bool(pkt.flags & TCP_RST) or pkt.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK)
    if p.proto == "udp":
        if pkt.proto == socket.IPPROTO_UDP:
            return (pkt.sport, pkt.dport) == (p.port, p.sport) and p.token in pkt.payload
        return pkt.proto == socket.IPPROTO_ICMP and pkt.inner == (socket.IPPROTO_UDP, p.src_address, p.dst_address,
                                                                   p.sport, p.port)
    return pkt.proto == socket.IPPROTO_ICMP and pkt.flags == 0 and pkt.icmp_id == p.ident and p.token in pkt.payload


def _watch(view: NodeView) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setblocking(False)
        return sock
    return view.in_netns(make)


def _open_probes(view: NodeView, probes: list[Planned]) -> None:
    """The probes' sockets, made and sent in the source's namespace (they stay there)."""
    def make() -> None:
        for p in probes:
            if p.proto == "tcp":
                p.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                p.sock.setblocking(False)
                p.sock.bind((p.src_address, 0))
                p.sport = p.sock.getsockname()[1]
                code = p.sock.connect_ex((p.dst_address, p.port))
                if code not in (0, errno.EINPROGRESS):
                    p.detail = os.strerror(code)
            elif p.proto == "udp":
                p.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                p.sock.setblocking(False)
                p.sock.bind((p.src_address, 0))
                p.sport = p.sock.getsockname()[1]
                p.sock.connect((p.dst_address, p.port))
            else:
                p.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                p.sock.setblocking(False)
                p.sock.bind((p.src_address, 0))
                p.ident = int.from_bytes(os.urandom(2), "big")
    view.in_netns(make)


def _send(probes: list[Planned]) -> None:
    """UDP and ICMP probes go out once every watch is open (TCP connects are under way already)."""
    for p in probes:
        with contextlib.suppress(OSError):
            if p.sock is not None and p.proto == "udp":
                p.sock.send(p.token)
            elif p.sock is not None and p.proto == "icmp":
                p.sock.sendto(echo_request(p.ident, p.token), (p.dst_address, 0))


def _responders(probes: list[Planned]) -> list[socket.socket]:
    """A UDP echo responder in each destination's namespace on each probed UDP port that is free
    there (a port the node's own service holds answers as that service does, or not at all)."""
    made: dict[tuple[int, str, int], socket.socket] = {}
    for p in probes:
        key = (p.dst_view.pid, p.dst_address, p.port)
        if p.proto != "udp" or key in made:
            continue

        def bind(address: str = p.dst_address, port: int = p.port) -> socket.socket | None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError:
                sock.close()
                return None
            sock.setblocking(False)
            return sock

        found = p.dst_view.in_netns(bind)
        if found is not None:
            made[key] = found
    return list(made.values())


def probe_flows(probes: list[Planned], window: float) -> list[FlowResult]:
    """Send every probe at once and watch for `window` seconds (less when every flow is settled)."""
    watches: dict[int, tuple[socket.socket, NodeView]] = {}
    responders: list[socket.socket] = []
    try:
        for p in probes:
            for view in (p.src_view, p.dst_view):
                if view.pid not in watches:
                    watches[view.pid] = (_watch(view), view)
        responders = _responders(probes)
        by_source: dict[int, list[Planned]] = {}
        for p in probes:
            by_source.setdefault(p.src_view.pid, []).append(p)
        for group in by_source.values():
            _open_probes(group[0].src_view, group)
        _send(probes)
        _observe(probes, watches, responders, window)
    finally:
        for p in probes:
            if p.sock is not None:
                p.sock.close()
        for sock in [w for w, _ in watches.values()] + responders:
            sock.close()
    return [p.result() for p in probes]


def _observe(probes: list[Planned], watches: dict[int, tuple[socket.socket, NodeView]],
             responders: list[socket.socket], window: float) -> None:
    deadline = time.monotonic() + window
    watch_of = {w.fileno(): (w, pid) for pid, (w, _) in watches.items()}
    responder_of = {r.fileno(): r for r in responders}
    probe_of: dict[int, Planned] = {p.sock.fileno(): p for p in probes if p.sock is not None}
    tokens = {p.token for p in probes}
    while (left := deadline - time.monotonic()) > 0:
        if all(p.src_got_answer and p.dst_answered for p in probes):
            break
        readers = [*watch_of, *responder_of,
                   *(fd for fd, p in probe_of.items() if p.proto != "tcp" and not p.src_got_answer)]
        writers = [fd for fd, p in probe_of.items() if p.proto == "tcp" and not p.src_got_answer]
        readable, writable, _ = select.select(readers, writers, [], min(left, 0.1))
        for fd in readable:
            if fd in watch_of:
                _drain_watch(watch_of[fd][0], watch_of[fd][1], probes)
            elif fd in responder_of:
                _echo(responder_of[fd], tokens)
            else:
                _read_probe(probe_of[fd])
        for fd in writable:
            p = probe_of[fd]
            code = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if p.sock is not None else 0
            if code in (0, errno.ECONNREFUSED):
                p.src_got_answer = True
            else:
                p.detail = os.strerror(code)
                probe_of.pop(fd)
    for sock, pid in watch_of.values():  # frames already queued still count
        _drain_watch(sock, pid, probes)


def _drain_watch(sock: socket.socket, pid: int, probes: list[Planned]) -> None:
    for _ in range(10000):
        try:
            frame, address = sock.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        if address[0] == "lo":
            continue
        pkt = parse_frame(frame, address[2] == PACKET_OUTGOING)
        if pkt is None:
            continue
        for p in probes:
            if pid == p.src_view.pid and pkt.outgoing and _forward(p, pkt):
                p.left = True
            elif pid == p.dst_view.pid and not pkt.outgoing and _forward(p, pkt):
                p.arrived = True
            elif pid == p.dst_view.pid and pkt.outgoing and _answer(p, pkt):
                p.dst_answered = True


def _echo(sock: socket.socket, tokens: set[bytes]) -> None:
    for _ in range(1000):
        try:
            data, peer = sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        if data in tokens:  # only labctl's own probes are answered
            with contextlib.suppress(OSError):
                sock.sendto(data, peer)


def _read_probe(p: Planned) -> None:
    if p.sock is None:
        return
    try:
        data = p.sock.recv(2048)
    except (BlockingIOError, InterruptedError):
        return
    except ConnectionRefusedError:  # ICMP port unreachable: the destination's kernel answered
        p.src_got_answer = True
        return
    except OSError as exc:
        p.detail = exc.strerror or str(exc)
        return
    if p.proto == "udp":
        p.src_got_answer = data == p.token
        return
    pkt = parse_frame(b"\0" * 12 + b"\x08\x00" + data, False)  # a raw ICMP socket reads the IP packet
    if pkt is not None and _answer(p, pkt):
        p.src_got_answer = True


def zone_address(plan_node: Any, given: str) -> str:
    """The address standing for a zone's node: the one given, else the node's first address."""
    if given:
        return given
    for iface in plan_node.interfaces:
        if iface.address:
            return str(iface.address).split("/")[0]
    return ""
