"""The flows check: a flow matrix between zones, checked exhaustively both ways.

For every ordered pair of zones and every service of the matrix, labctl sends one probe from
the source zone's node (its own sockets, in that node's network namespace) to the destination
zone's node and watches, with packet sockets in both namespaces, the probe leave the source's
interface, arrive (or not) at the destination's interface, and the destination's answer come
back (grading/flowprobe.py). What a flow needs to pass:

- allowed: the probe left, arrived, the destination answered and its answer reached the source
  (a stateful firewall lets the return traffic through);
- forbidden: the probe left the source and never arrived at the destination. A probe that never
  left its source (the source node's own firewall or routes) proves nothing about the firewall
  between zones: that flow FAILs as "not blocked by the network".

The verdict counts both sides ("14/14 allowed flows pass, 1 of 22 forbidden flows open:
lan->dmz tcp/22"). The observation is handed over as JSON (one record per probe) so that the
judgement is a pure function of recorded probe results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, error, judged, parse_json, short
from labctl.grading.session import CommandResult
from labctl.grading.spec import FlowsCheck

SHOWN = 8  # failing flows named in the evidence, per kind


@dataclass(frozen=True)
class FlowResult:
    """What was seen of one probe."""

    source: str
    destination: str
    service: str
    left: bool  # seen leaving the source node's interface
    arrived: bool  # seen arriving at the destination node's interface
    answered: bool  # the destination answered and its answer reached the source
    detail: str = ""  # e.g. the source's socket error

    @property
    def label(self) -> str:
        """lan->dmz tcp/22"""
        return f"{self.source}->{self.destination} {self.service}"

    def to_dict(self) -> dict[str, Any]:
        """As recorded in the observation."""
        return {"source": self.source, "destination": self.destination, "service": self.service,
                "left": self.left, "arrived": self.arrived, "answered": self.answered, "detail": self.detail}


def flows_output(results: list[FlowResult]) -> str:
    """The observation as the evaluation reads it."""
    return json.dumps({"probes": [r.to_dict() for r in results]})


def probe_flows(check: FlowsCheck) -> Probe:
    """No program of a node can observe a flow matrix from outside it: refused inside (ERROR)."""
    return Probe("echo 'labctl: flows checks are observed from outside the nodes (local provider) only' >&2; exit 3")


def _problem(result: FlowResult, allowed: bool) -> str | None:
    """Why this flow fails, or None when it behaves as the matrix says."""
    if not result.left:
        return f"{result.label}: the probe never left {result.source}'s node (its own firewall or routes)" + (
            "" if allowed else ", so the network's blocking is not shown")
    if allowed:
        if not result.arrived:
            return f"{result.label}: blocked on the way"
        if not result.answered:
            why = f" ({result.detail})" if result.detail else ""
            return f"{result.label}: reached {result.destination} but its answer did not come back{why}"
        return None
    return f"{result.label}: open" if result.arrived else None


def evaluate_flows(check: FlowsCheck, result: CommandResult) -> Verdict:
    """PASS when every allowed flow passes and no forbidden flow arrives; the evidence counts both."""
    if result.exit_code != 0:
        return error(short(result.stderr or result.stdout) or f"flows probe failed (exit {result.exit_code})")
    data = parse_json(result.stdout, "the flows observation")
    try:
        found = {(r.source, r.destination, r.service): r
                 for r in (FlowResult(**{k: item[k] for k in ("source", "destination", "service", "left",
                                                              "arrived", "answered", "detail")})
                           for item in data["probes"])}
    except (KeyError, TypeError) as exc:
        raise Unobservable(f"the flows observation lacks {exc}") from None
    matrix = check.matrix()
    missing = [f"{s}->{d} {svc}" for s, d, svc, _ in matrix if (s, d, svc) not in found]
    if missing:
        raise Unobservable(f"no probe result for {len(missing)} flows: {', '.join(missing[:SHOWN])}")
    allowed = [(found[(s, d, svc)], True) for s, d, svc, ok in matrix if ok]
    forbidden = [(found[(s, d, svc)], False) for s, d, svc, ok in matrix if not ok]
    bad_allowed = [p for r, ok in allowed if (p := _problem(r, ok)) is not None]
    bad_forbidden = [p for r, ok in forbidden if (p := _problem(r, ok)) is not None]
    parts = [f"{len(allowed) - len(bad_allowed)}/{len(allowed)} allowed flows pass",
             f"{len(bad_forbidden)} of {len(forbidden)} forbidden flows open"
             if bad_forbidden else f"{len(forbidden)}/{len(forbidden)} forbidden flows blocked"]
    for problems in (bad_allowed, bad_forbidden):
        if problems:
            more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
            parts.append("; ".join(problems[:SHOWN]) + more)
    return judged(not bad_allowed and not bad_forbidden, ", ".join(parts[:2]) + (
        ": " + " | ".join(parts[2:]) if parts[2:] else ""))


FLOWS_TYPES: tuple[CheckType[Any], ...] = (CheckType("flows", probe_flows, evaluate_flows),)
