"""The flows check: the matrix a spec declares, and the judgement on recorded probe results
(what was seen of each probe: left the source, arrived at the destination, answered)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.grading.checks import evaluate, probe
from labctl.grading.checks.flows import FlowResult, flows_output
from labctl.grading.flowprobe import _answer, _forward, echo_request, parse_frame
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, FlowsCheck

ZONES = {"lan": "lan1", "dmz": "web", "out": "ext"}
ALLOW = ["lan -> dmz tcp/80", "lan -> dmz icmp", "out -> dmz tcp/80", "admin -> * tcp/22"]


def flows(**keys: Any) -> FlowsCheck:
    base = {"id": "t", "criterion": "A3.3-c1", "description": {"fr": "f", "en": "e"}, "node": "fw", "type": "flows",
            "zones": {**ZONES, "admin": "adm"}, "allow": ALLOW, "services": ["icmp", "tcp/22", "tcp/80", "udp/53"]}
    check = CHECK_MODELS["flows"].model_validate({**base, **keys})
    assert isinstance(check, FlowsCheck)
    return check


def recorded(check: FlowsCheck, wrong: dict[str, dict[str, bool]] | None = None) -> CommandResult:
    """Probe results of a firewall doing exactly what the matrix says, but for `wrong` flows."""
    results = []
    for source, destination, service, allowed in check.matrix():
        seen = {"left": True, "arrived": allowed, "answered": allowed}
        seen.update((wrong or {}).get(f"{source}->{destination} {service}", {}))
        results.append(FlowResult(source, destination, service, detail="", **seen))
    return CommandResult(0, flows_output(results), "")


def test_the_matrix_is_every_pair_of_zones_for_every_service() -> None:
    check = flows()
    matrix = check.matrix()
    assert len(matrix) == 4 * 3 * 4  # zones x other zones x services
    allowed = {(s, d, svc) for s, d, svc, ok in matrix if ok}
    assert allowed == {("lan", "dmz", "tcp/80"), ("lan", "dmz", "icmp"), ("out", "dmz", "tcp/80"),
                       ("admin", "lan", "tcp/22"), ("admin", "dmz", "tcp/22"), ("admin", "out", "tcp/22")}
    assert flows(services=[]).probed_services() == ["tcp/80", "icmp", "tcp/22"]  # default: what allow names


@pytest.mark.parametrize(("keys", "message"), [
    ({"allow": ["lan -> dsz tcp/80"]}, "unknown zone 'dsz'"),
    ({"allow": ["lan dmz tcp/80"]}, "SOURCE -> DESTINATION SERVICE"),
    ({"allow": ["lan -> dmz tcp/99999"]}, "PORT 1-65535"),
    ({"allow": ["lan -> dmz sctp/80"]}, "icmp, tcp/PORT or udp/PORT"),
    ({"allow": ["lan -> dmz udp/161"]}, "not in `services`"),
    ({"allow": ["lan -> lan tcp/80"]}, "from one zone to another"),
    ({"zones": {"lan": "web", "dmz": "web"}, "allow": []}, "its own node"),
    ({"zones": {"lan": "web@10.0.0.300", "dmz": "x"}, "allow": []}, "not an IPv4 address"),
    ({"zones": {f"z{i}": f"n{i}" for i in range(8)}, "allow": [], "services": [f"tcp/{p}" for p in range(1, 10)]},
     "more than 400"),
])
def test_a_wrong_matrix_is_refused_saying_why(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        flows(**keys)


def test_a_firewall_doing_what_the_matrix_says_passes_with_both_sides_counted() -> None:
    check = flows()
    verdict = evaluate(check, recorded(check))
    assert verdict.outcome is Outcome.PASS
    assert verdict.evidence == "6/6 allowed flows pass, 42/42 forbidden flows blocked"


def test_one_forbidden_flow_open_fails_and_is_named() -> None:
    check = flows()
    verdict = evaluate(check, recorded(check, {"lan->dmz tcp/22": {"arrived": True, "answered": True}}))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.evidence == "6/6 allowed flows pass, 1 of 42 forbidden flows open: lan->dmz tcp/22: open"


def test_a_stateless_firewall_fails_the_allowed_flows_whose_answer_is_dropped() -> None:
    check = flows()
    verdict = evaluate(check, recorded(check, {"out->dmz tcp/80": {"answered": False}}))
    assert verdict.outcome is Outcome.FAIL
    assert "5/6 allowed flows pass" in verdict.evidence
    assert "out->dmz tcp/80: reached dmz but its answer did not come back" in verdict.evidence


def test_a_flow_blocked_at_its_source_node_proves_nothing_about_the_firewall() -> None:
    check = flows()
    verdict = evaluate(check, recorded(check, {"out->lan tcp/22": {"left": False}}))
    assert verdict.outcome is Outcome.FAIL
    assert "1 of 42 forbidden flows open" in verdict.evidence
    assert "out->lan tcp/22: the probe never left out's node" in verdict.evidence
    blocked = evaluate(check, recorded(check, {"lan->dmz tcp/80": {"left": True, "arrived": False,
                                                                       "answered": False}}))
    assert blocked.outcome is Outcome.FAIL and "lan->dmz tcp/80: blocked on the way" in blocked.evidence


def test_missing_probe_results_or_a_refused_probe_are_errors_not_fails() -> None:
    check = flows()
    partial = CommandResult(0, flows_output([FlowResult("lan", "dmz", "tcp/80", True, True, True)]), "")
    assert evaluate(check, partial).outcome is Outcome.ERROR
    assert evaluate(check, CommandResult(0, "not json", "")).outcome is Outcome.ERROR
    inside = probe(check)  # no program of a node can observe a flow matrix from outside it
    assert "exit 3" in inside.command
    assert evaluate(check, CommandResult(3, "", "labctl: flows checks are observed from outside")).outcome \
        is Outcome.ERROR


def frame(ip_payload: bytes, proto: int, src: str, dst: str) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(ip_payload), 0, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\0" * 12 + b"\x08\x00" + ip + ip_payload


def test_frames_are_matched_to_the_probe_that_caused_them() -> None:
    from labctl.grading.flowprobe import Planned

    p = Planned("lan", "dmz", "tcp/22", None, "10.0.1.10", None, "10.0.2.10", sport=40000)  # type: ignore[arg-type]
    syn = parse_frame(frame(struct.pack("!HHIIBBHHH", 40000, 22, 1, 0, 0x50, 0x02, 0, 0, 0),
                            socket.IPPROTO_TCP, "10.0.1.10", "10.0.2.10"), False)
    rst = parse_frame(frame(struct.pack("!HHIIBBHHH", 22, 40000, 0, 2, 0x50, 0x14, 0, 0, 0),
                            socket.IPPROTO_TCP, "10.0.2.10", "10.0.1.10"), True)
    other = parse_frame(frame(struct.pack("!HHIIBBHHH", 40001, 22, 1, 0, 0x50, 0x02, 0, 0, 0),
                              socket.IPPROTO_TCP, "10.0.1.10", "10.0.2.10"), False)
    assert syn is not None and rst is not None and other is not None
    assert _forward(p, syn) and not _answer(p, syn)
    assert _answer(p, rst) and not _forward(p, rst)
    assert not _forward(p, other)  # another connection to the same port is not this probe
    ping = Planned("lan", "dmz", "icmp", None, "10.0.1.10", None, "10.0.2.10", ident=7)  # type: ignore[arg-type]
    request = parse_frame(frame(echo_request(7, ping.token), socket.IPPROTO_ICMP, "10.0.1.10", "10.0.2.10"), False)
    forged = parse_frame(frame(echo_request(7, b"x" * 12), socket.IPPROTO_ICMP, "10.0.1.10", "10.0.2.10"), False)
    assert request is not None and forged is not None
    assert _forward(ping, request) and not _forward(ping, forged)
