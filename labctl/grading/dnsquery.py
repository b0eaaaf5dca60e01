"""A DNS stub resolver in plain Python: the node's resolver configuration, asked as glibc asks it.

Used by the `dns` check type in two ways, with the same code:
- from outside a local node: the controller reads the node's /etc/resolv.conf through
  nodeview and calls `lookups()` in a thread that entered the node's network namespace, so
  the queries leave from the node's stack (its routes and firewall apply) while no program
  of the node takes part;
- inside a node where nothing else can observe it (the libvirt provider, over SSH): this file
  is the probe's program, `python3 -c SOURCE NAME:TYPE...`, with the standard library only.

What it does, as glibc's resolver does: the nameservers of resolv.conf in order (at most
three; none given means 127.0.0.1), the `search` list and `ndots` for names with few dots,
and the next nameserver when one does not answer or answers SERVFAIL/REFUSED. Everything is
bounded: each query 2 s, the whole lookup a budget, UDP answers 4 KiB, TCP answers (after a
truncated UDP answer) 64 KiB, compressed names 128 jumps. The node's /etc/hosts is not read:
the check is about DNS.

The result is plain data (JSON): the configuration as read, and every query sent, to which
server, and what came back (`rcode` and `answers`, or `error`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import sys
import time
from typing import Any

TYPES = {"A": 1, "AAAA": 28, "PTR": 12, "CNAME": 5}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
NEXT_SERVER = ("FORMERR", "SERVFAIL", "NOTIMP", "REFUSED")  # glibc asks the next nameserver
MAX_NAMESERVERS = 3  # glibc's MAXNS: further nameserver lines are ignored
MAX_SEARCH = 6
DEFAULT_NAMESERVER = "127.0.0.1"
QUERY_TIMEOUT = 2.0
UDP_LIMIT = 4096
TCP_LIMIT = 65535
MAX_JUMPS = 128
MAX_RECORDS = 64  # answer records read at most


def parse_resolv_conf(text: str) -> dict[str, Any]:
    """nameservers, search list and ndots of a resolv.conf, read as glibc reads it."""
    nameservers: list[str] = []
    search: list[str] = []
    ndots = 1
    ignored: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        key, values = words[0], words[1:]
        if key == "nameserver" and values:
            try:
                address = str(ipaddress.ip_address(values[0].split("%")[0]))
            except ValueError:
                ignored.append(values[0])
                continue
            if len(nameservers) < MAX_NAMESERVERS:
                nameservers.append(address)
            else:
                ignored.append(address)
        elif key in ("search", "domain") and values:
            search = [v.rstrip(".") for v in values[:MAX_SEARCH] if v.strip(".")]
        elif key == "options":
            for value in values:
                if value.startswith("ndots:") and value[6:].isdigit():
                    ndots = min(int(value[6:]), 15)
    conf: dict[str, Any] = {"nameservers": nameservers, "search": search, "ndots": ndots}
    if not nameservers:
        conf["nameservers"] = [DEFAULT_NAMESERVER]
        conf["default"] = True  # no nameserver line: glibc asks 127.0.0.1
    if ignored:
        conf["ignored"] = ignored
    return conf


def candidates(name: str, conf: dict[str, Any]) -> list[str]:
    """The fully qualified names glibc tries for `name`, in order (search list and ndots)."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{domain}." for domain in conf.get("search", [])]
    if name.count(".") >= int(conf.get("ndots", 1)):
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


def reverse_name(address: str) -> str:
    """The PTR name of an address (in-addr.arpa or ip6.arpa)."""
    return ipaddress.ip_address(address).reverse_pointer + "."


def encode_name(name: str) -> bytes:
    """A domain name in wire format; ValueError for an empty label or a name too long."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not raw or len(raw) > 63:
            raise ValueError(f"invalid label in {name!r}")
        out += bytes([len(raw)]) + raw
    if len(out) + 1 > 255:
        raise ValueError(f"name too long: {name!r}")
    return out + b"\0"


def build_query(qid: int, qname: str, qtype: str) -> bytes:
    """A standard query, recursion desired, one question."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(qname) + struct.pack("!HH", TYPES[qtype], 1)


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """The (possibly compressed) name at `offset` and the offset after it; ValueError if broken."""
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if offset >= len(message):
            raise ValueError("name runs past the message")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise ValueError("truncated compression pointer")
            jumps += 1
            if jumps > MAX_JUMPS:
                raise ValueError("compression loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise ValueError("unknown label type")
        if length == 0:
            return ".".join(labels) + ".", end if end is not None else offset + 1
        labels.append(message[offset + 1:offset + 1 + length].decode("ascii", errors="replace"))
        offset += 1 + length


def parse_response(message: bytes, qid: int, qname: str, qtype: str) -> dict[str, Any]:
    """rcode, truncation and the answers of `qtype` for `qname` (CNAMEs followed) in a reply;
    ValueError when it is not the reply to this query."""
    if len(message) < 12:
        raise ValueError("reply shorter than a DNS header")
    rid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", message[:12])
    if rid != qid or not flags & 0x8000:
        raise ValueError("not the reply to this query")
    offset = 12
    for _ in range(qdcount):
        asked, offset = read_name(message, offset)
        if asked.lower() != qname.lower():
            raise ValueError(f"reply about another name ({asked})")
        offset += 4
    owners = {qname.lower()}
    cnames: list[str] = []
    answers: list[str] = []
    records = []
    for _ in range(min(ancount, MAX_RECORDS)):
        owner, offset = read_name(message, offset)
        if offset + 10 > len(message):
            raise ValueError("truncated record")
        rtype, _, _, rdlength = struct.unpack("!HHIH", message[offset:offset + 10])
        offset += 10
        if offset + rdlength > len(message):
            raise ValueError("truncated record data")
        records.append((owner.lower(), rtype, offset, rdlength))
        offset += rdlength
    for owner, rtype, start, _ in records:  # CNAMEs first: the chain names the owners
        if rtype == TYPES["CNAME"] and owner in owners:
            target = read_name(message, start)[0]
            cnames.append(target)
            owners.add(target.lower())
    for owner, rtype, start, length in records:
        if owner not in owners or rtype != TYPES[qtype]:
            continue
        data = message[start:start + length]
        if rtype == TYPES["A"] and length == 4:
            answers.append(str(ipaddress.IPv4Address(data)))
        elif rtype == TYPES["AAAA"] and length == 16:
            answers.append(str(ipaddress.IPv6Address(data)))
        elif rtype == TYPES["PTR"]:
            answers.append(read_name(message, start)[0])
    reply: dict[str, Any] = {"rcode": RCODES.get(flags & 0x000F, str(flags & 0x000F)), "answers": answers}
    if cnames:
        reply["cnames"] = cnames
    if flags & 0x0200:
        reply["truncated"] = True
    return reply


def _exchange_udp(server: str, query: bytes, qid: int, qname: str, qtype: str, deadline: float) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((server, 53))  # a connected socket takes replies from that server only
        sock.send(query)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            message = sock.recv(UDP_LIMIT)
            try:
                return parse_response(message, qid, qname, qtype)
            except ValueError:
                continue  # a stray or forged datagram: keep waiting for the reply


def _exchange_tcp(server: str, query: bytes, qid: int, qname: str, qtype: str, deadline: float) -> dict[str, Any]:
    left = max(0.05, deadline - time.monotonic())
    with socket.create_connection((server, 53), timeout=left) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(TCP_LIMIT + 2 - len(data))
            if not chunk:
                raise ValueError("the server closed the TCP connection before answering")
            data += chunk
        return parse_response(data[2:2 + struct.unpack("!H", data[:2])[0]], qid, qname, qtype)


def ask(server: str, qname: str, qtype: str, timeout: float = QUERY_TIMEOUT) -> dict[str, Any]:
    """One query to one server (UDP, then TCP when the answer is truncated), within `timeout`."""
    qid = int.from_bytes(os.urandom(2), "big")
    query = build_query(qid, qname, qtype)
    deadline = time.monotonic() + timeout
    entry: dict[str, Any] = {"server": server, "name": qname, "type": qtype, "id": qid}
    try:
        reply = _exchange_udp(server, query, qid, qname, qtype, deadline)
        if reply.get("truncated"):
            reply = _exchange_tcp(server, query, qid, qname, qtype, deadline)
            reply["tcp"] = True
        entry.update(reply)
    except TimeoutError:
        entry["error"] = f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        entry["error"] = "refused (nothing listens on port 53)"
    except ValueError as exc:
        entry["error"] = f"unreadable answer ({exc})"
    except OSError as exc:
        entry["error"] = exc.strerror or str(exc)
    return entry


def lookup(name: str, qtype: str, conf: dict[str, Any], deadline: float,
           timeout: float = QUERY_TIMEOUT) -> list[dict[str, Any]]:
    """The queries glibc would send for `name` (search list, next server on no answer), until a
    name has answers or every candidate was answered; each query as `ask` returns it."""
    queries: list[dict[str, Any]] = []
    for qname in candidates(name, conf):
        answered = None
        for server in conf["nameservers"]:
            left = deadline - time.monotonic()
            if left <= 0.05:
                queries.append({"server": server, "name": qname, "type": qtype,
                                "error": "not asked: the check's time was spent"})
                return queries
            entry = ask(server, qname, qtype, min(timeout, left))
            queries.append(entry)
            if "error" not in entry and entry["rcode"] not in NEXT_SERVER:
                answered = entry
                break
        if answered is not None and answered["rcode"] == "NOERROR" and answered["answers"]:
            break
    return queries


def lookups(wanted: list[tuple[str, str]], resolv_conf: str, budget: float) -> dict[str, Any]:
    """Every (name, type) of `wanted` looked up through `resolv_conf`, within `budget` seconds."""
    conf = parse_resolv_conf(resolv_conf)
    deadline = time.monotonic() + budget
    return {"resolv_conf": conf,
            "lookups": [{"name": name, "type": qtype, "queries": lookup(name, qtype, conf, deadline)}
                        for name, qtype in wanted]}


def main(argv: list[str]) -> int:
    """`BUDGET NAME:TYPE...`: the lookups through this machine's /etc/resolv.conf, as JSON."""
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as handle:
            text = handle.read(64 * 1024)
    except OSError:
        text = ""
    wanted = [(item.rpartition(":")[0], item.rpartition(":")[2]) for item in argv[1:]]
    print(json.dumps(lookups(wanted, text, float(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
