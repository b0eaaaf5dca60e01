"""The dns check: labctl's stub resolver (dnsquery.py) read on crafted answers. Its judgement on
lookups recorded from a real lab (tests/data/outputs/dns/) is in test_grading_checks.py."""

from __future__ import annotations

import json
import shlex
import struct
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.grading import dnsquery
from labctl.grading.checks import evaluate, probe
from labctl.grading.checks.dhcp import client_line, facts_output
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, DnsCheck

ERROR = Outcome.ERROR


def dns(**keys: Any) -> DnsCheck:
    base = {"id": "t", "criterion": "A2.1-c1", "description": {"fr": "f", "en": "e"}, "node": "ws", "type": "dns"}
    check = CHECK_MODELS["dns"].model_validate({**base, **keys})
    assert isinstance(check, DnsCheck)
    return check


# ---- resolv.conf, as glibc reads it ---------------------------------------------------------
def test_resolv_conf_nameservers_search_and_ndots() -> None:
    conf = dnsquery.parse_resolv_conf(
        "# comment\nnameserver 10.0.0.1\nnameserver not-an-address\nnameserver fe80::1%eth0\n"
        "domain old.lan\nsearch agence.lan. siege.lan\noptions timeout:1 ndots:2\n"
        "nameserver 10.0.0.3\nnameserver 10.0.0.4\n")
    assert conf["nameservers"] == ["10.0.0.1", "fe80::1", "10.0.0.3"]  # three at most, as glibc
    assert conf["search"] == ["agence.lan", "siege.lan"]  # the last search/domain line wins
    assert conf["ndots"] == 2
    assert conf["ignored"] == ["not-an-address", "10.0.0.4"]


def test_resolv_conf_without_nameserver_means_localhost() -> None:
    conf = dnsquery.parse_resolv_conf("# labctl lab node: no DNS resolver outside the lab\noptions timeout:1\n")
    assert conf["nameservers"] == ["127.0.0.1"] and conf["default"] is True


@pytest.mark.parametrize(("name", "ndots", "expected"), [
    ("srv", 1, ["srv.agence.lan.", "srv.siege.lan.", "srv."]),
    ("srv.agence.lan", 1, ["srv.agence.lan.", "srv.agence.lan.agence.lan.", "srv.agence.lan.siege.lan."]),
    ("srv.agence", 2, ["srv.agence.agence.lan.", "srv.agence.siege.lan.", "srv.agence."]),
    ("srv.agence.lan.", 1, ["srv.agence.lan."]),
])
def test_search_list_order(name: str, ndots: int, expected: list[str]) -> None:
    assert dnsquery.candidates(name, {"search": ["agence.lan", "siege.lan"], "ndots": ndots}) == expected


# ---- answers on the wire --------------------------------------------------------------------
def reply(qid: int, qname: str, qtype: str, records: list[tuple[bytes, int, bytes]], rcode: int = 0,
          flags: int = 0x8180) -> bytes:
    """A reply to (qid, qname, qtype) with `records` (owner in wire format, type, rdata)."""
    head = struct.pack("!HHHHHH", qid, flags | rcode, 1, len(records), 0, 0)
    question = dnsquery.encode_name(qname) + struct.pack("!HH", dnsquery.TYPES[qtype], 1)
    body = b"".join(owner + struct.pack("!HHIH", rtype, 1, 60, len(data)) + data for owner, rtype, data in records)
    return head + question + body


QNAME_PTR = b"\xc0\x0c"  # a compression pointer to the question's name (offset 12)


def test_answers_follow_cnames_and_compression() -> None:
    www = dnsquery.encode_name("www.agence.lan.")
    message = reply(7, "intranet.agence.lan.", "A", [
        (QNAME_PTR, 5, www),  # intranet -> www
        (www, 1, bytes([10, 30, 0, 20])),
        (dnsquery.encode_name("other.lan."), 1, bytes([10, 9, 9, 9])),  # not in the chain: ignored
    ])
    parsed = dnsquery.parse_response(message, 7, "intranet.agence.lan.", "A")
    assert parsed == {"rcode": "NOERROR", "answers": ["10.30.0.20"], "cnames": ["www.agence.lan."]}


def test_nxdomain_and_aaaa_and_ptr() -> None:
    assert dnsquery.parse_response(reply(1, "x.lan.", "A", [], rcode=3), 1, "x.lan.", "A")["rcode"] == "NXDOMAIN"
    six = reply(2, "srv.lan.", "AAAA", [(QNAME_PTR, 28, bytes(15) + b"\x01")])
    assert dnsquery.parse_response(six, 2, "srv.lan.", "AAAA")["answers"] == ["::1"]
    name = dnsquery.reverse_name("10.30.0.20")
    assert name == "20.0.30.10.in-addr.arpa."
    ptr = reply(3, name, "PTR", [(QNAME_PTR, 12, dnsquery.encode_name("srv.agence.lan."))])
    assert dnsquery.parse_response(ptr, 3, name, "PTR")["answers"] == ["srv.agence.lan."]


@pytest.mark.parametrize(("message", "why"), [
    (reply(8, "x.lan.", "A", []), "not the reply"),  # another query's id
    (reply(7, "y.lan.", "A", []), "another name"),
    (reply(7, "x.lan.", "A", [], flags=0x0100), "not the reply"),  # a query, not a reply
    (reply(7, "x.lan.", "A", [(b"\xc0\x1d", 1, bytes(4))])[:-6], "truncated"),
    (b"\x00\x07\x81\x80" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c", "compression loop"),
    (b"\x00\x07", "shorter"),
])
def test_replies_that_are_not_this_answer_are_refused(message: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        dnsquery.parse_response(message, 7, "x.lan.", "A")


def test_names_that_cannot_be_asked() -> None:
    with pytest.raises(ValueError):
        dnsquery.encode_name("a" * 64 + ".lan")
    with pytest.raises(ValueError):
        dnsquery.encode_name(".".join(["abcdefgh"] * 40))


def test_query_is_a_recursive_question() -> None:
    query = dnsquery.build_query(0x1234, "srv.lan.", "AAAA")
    assert query[:4] == b"\x12\x34\x01\x00" and query[-4:] == b"\x00\x1c\x00\x01"


# ---- the check --------------------------------------------------------------------------------
def test_spec_keys() -> None:
    assert dns(name="srv.agence.lan", addresses=["10.30.0.20"]).record_types() == ["A"]
    assert dns(name="srv", addresses=["10.30.0.20", "fd00::20"]).record_types() == ["A", "AAAA"]
    assert dns(name="gone.agence.lan").record_types() == ["A", "AAAA"]
    for bad in ({"name": "srv lan"}, {"name": "srv", "reverse": True}, {"name": "srv", "addresses": ["10.0.0.300"]},
                {"name": "x;rm -rf /"}):
        with pytest.raises(ValidationError):
            dns(**bad)


def test_probe_is_the_resolver_module_run_by_the_node_python() -> None:
    command = probe(dns(name="srv.agence.lan", addresses=["10.30.0.20"], reverse=True)).command
    words = shlex.split(command)
    assert words[:3] == ["python3", "-I", "-c"] and words[3] == Path(dnsquery.__file__).read_text()
    assert words[4:] == ["10", "srv.agence.lan:A", "20.0.30.10.in-addr.arpa.:PTR"]


def test_dns_probe_failures_are_errors() -> None:
    check = dns(name="srv.agence.lan", addresses=["10.30.0.2"])
    assert evaluate(check, CommandResult(127, "", "python3: not found")).outcome is ERROR
    assert evaluate(check, CommandResult(0, "Traceback", "")).outcome is ERROR
    assert evaluate(check, CommandResult(0, '{"lookups": []}', "")).outcome is ERROR  # not looked up


def test_the_resolver_only_reads_and_sends_queries() -> None:
    source = Path(dnsquery.__file__).read_text()
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"__future__", "ipaddress", "json", "os", "socket", "struct", "sys", "time", "typing"}
    for word in ("subprocess", "os.system", "exec(", "eval(", "os.remove", "unlink", '"w"', "'w'", "SOCK_RAW"):
        assert word not in source, word
    assert source.count("open(") == 1 and 'open("/etc/resolv.conf", encoding="utf-8", errors="replace")' in source


# ---- dhcp -------------------------------------------------------------------------------------
def dhcp_output(resolv_conf: str, routes: str = "[]") -> str:
    address = {"family": "inet", "local": "10.30.0.120", "prefixlen": 24, "dynamic": True, "valid_life_time": 600}
    client = client_line("dhclient", 21)
    return facts_output(json.dumps([{"ifname": "eth1", "addr_info": [address]}]), routes, [client], resolv_conf)


def dhcp(**keys: Any) -> Any:
    base = {"id": "t", "criterion": "A2.1-c1", "description": {"fr": "f", "en": "e"}, "node": "ws", "type": "dhcp"}
    return CHECK_MODELS["dhcp"].model_validate({**base, "interface": "eth1", **keys})


def test_dhcp_reads_resolv_conf_that_holds_the_probe_marks() -> None:
    # a resolv.conf written to look like the probe's sections: it stays resolv.conf text
    planted = "nameserver 10.30.0.9\n--- labctl dhcp: addresses ---\n[]\nnameserver 10.30.0.2\n"
    verdict = evaluate(dhcp(dns=["10.30.0.2"]), CommandResult(0, dhcp_output(planted), ""))
    assert verdict.outcome is Outcome.PASS
    assert verdict.evidence == ("eth1: 10.30.0.120/24 (dynamic, 600 s of lease left); DHCP client: dhclient (pid 21); "
                                "/etc/resolv.conf: nameserver 10.30.0.9, 10.30.0.2")


def test_dhcp_output_without_its_marks_is_an_error() -> None:
    assert evaluate(dhcp(), CommandResult(0, "[]\n[]\n", "")).outcome is ERROR
    with pytest.raises(ValidationError, match="the first address comes first"):
        dhcp(range=["10.0.0.9", "10.0.0.1"])


# ---- who answered: the nameserver's owner, watched from its own namespace ---------------------
def udp_reply_frame(server: str, qid: int, sport: int = 53) -> bytes:
    ip = bytes([0x45, 0, 0, 60, 0, 0, 0, 0, 64, 17, 0, 0]) + bytes(map(int, server.split("."))) + bytes([10, 30, 0, 99])
    udp = struct.pack("!HHHH", sport, 40000, 20, 0) + struct.pack("!H", qid) + b"\x81\x80" + bytes(8)
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def test_a_dns_reply_is_known_by_its_server_port_and_id() -> None:
    from labctl.grading.outside import dns_reply_id

    assert dns_reply_id(udp_reply_frame("10.30.0.2", 0xBEEF), "10.30.0.2") == 0xBEEF
    assert dns_reply_id(udp_reply_frame("10.30.0.9", 0xBEEF), "10.30.0.2") is None  # another source
    assert dns_reply_id(udp_reply_frame("10.30.0.2", 0xBEEF, sport=5353), "10.30.0.2") is None
    assert dns_reply_id(b"\x00" * 30, "10.30.0.2") is None


def test_answers_the_owner_did_not_send_count_as_none() -> None:
    from labctl.grading.checks.dns import judge_dns
    from labctl.grading.outside import unproven_answers

    def data() -> dict[str, Any]:
        query = {"server": "10.30.0.2", "name": "www.agence.lan.", "type": "A", "id": 7, "rcode": "NOERROR",
                 "answers": ["10.30.0.20"]}
        return {"resolv_conf": {"nameservers": ["10.30.0.2"], "search": [], "ndots": 1},
                "lookups": [{"name": "www.agence.lan", "type": "A", "queries": [query]}]}

    check = dns(name="www.agence.lan", addresses=["10.30.0.20"])
    proven = data()
    unproven_answers(proven, {"10.30.0.2": {7}}, {"10.30.0.2": "srv"})
    assert judge_dns(check, proven).outcome is Outcome.PASS
    forged = data()
    unproven_answers(forged, {"10.30.0.2": {8}}, {"10.30.0.2": "srv"})
    verdict = judge_dns(check, forged)
    assert verdict.outcome is Outcome.FAIL
    assert ("no nameserver answered (10.30.0.2: answered, but not by srv (it sent no such reply): another node "
            "answers for 10.30.0.2)") in verdict.evidence
    down = data()
    unproven_answers(down, {"10.30.0.2": None}, {"10.30.0.2": "srv"})
    assert "(it is not running)" in judge_dns(check, down).evidence


@pytest.mark.parametrize(("clients", "words"), [
    ([], "no DHCP client runs to keep the lease (UDP port 68 held by nothing)"),
    ([client_line("nc", 30)], "UDP port 68 held by nc (pid 30)"),  # a listener is no DHCP client
    ([client_line("/sbin/dhclient (written in the node (not the image's file, not a package's))", 31)],
     "held by /sbin/dhclient (written in the node"),
])
def test_an_address_given_a_lifetime_by_hand_is_no_lease(clients: list[str], words: str) -> None:
    address = {"family": "inet", "local": "10.30.0.120", "prefixlen": 24, "dynamic": True, "valid_life_time": 600}
    output = facts_output(json.dumps([{"addr_info": [address]}]), "[]", clients, "nameserver 10.30.0.2\n")
    verdict = evaluate(dhcp(), CommandResult(0, output, ""))
    assert verdict.outcome is Outcome.FAIL and words in verdict.evidence, verdict.evidence
