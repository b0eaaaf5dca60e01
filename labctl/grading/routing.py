"""OSPF checks graded from evidence the candidate's shell does not produce (local provider).

The neighbour table and the routes OSPF learned come from the node's own ospfd and zebra,
asked by the controller over their vty sockets once they are proven to be the image's
daemons (`frr_vty`); the kernel's routing table comes from the node's network namespace,
read by the controller's own `ip`. Then the outcome the brief means is graded:

- `ospf_neighbor`: the neighbour with that router id is in the expected state, on the
  interface and at the address the topology gives the router that owns the router id (a
  neighbour faked on an interface the candidate made does not count);
- `route` with `protocol: ospf`: OSPF learned the route (zebra has it from ospfd, selected
  and installed), through the expected next hop, which is an OSPF neighbour in state Full
  (the right one: the router that owns the address in the topology), and the kernel
  forwards with it. A route put in the kernel by hand with `proto ospf` where OSPF learned
  nothing FAILs, and so does an OSPF route the kernel lacks.

The judging functions are pure and tested on recorded daemon answers
(tests/data/frr/).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_interface
from pathlib import Path
from typing import Any

from labctl.grading.checks.base import Unobservable, Verdict, error, judged, short
from labctl.grading.checks.network import _describe, _destination, _gateways, _protocol
from labctl.grading.checks.ospf import COMMANDS, DAEMONS, _state, neighbor_table
from labctl.grading.frr_vty import Forged, NotRunning, VtyError, open_daemon
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import OspfNeighborCheck, RouteCheck
from labctl.plan import LabPlan, NodePlan

NEIGHBORS = "show ip ospf neighbor json"
OSPF_ROUTES = "show ip ospf route json"


@dataclass(frozen=True)
class Peering:
    """A router the topology puts next to a node: on `iface` of the node, at `address`."""

    node: str
    router_id: str | None
    iface: str
    address: str

    def describe(self) -> str:
        """`r2 (2.2.2.2) at 10.255.0.2 on eth1`."""
        rid = f" ({self.router_id})" if self.router_id else ""
        return f"{self.node}{rid} at {self.address} on {self.iface}"


def peerings(plan: LabPlan, node: str) -> list[Peering]:
    """The nodes sharing a link or a switch with `node`, with their address there."""
    own = plan.node(node)
    found = []
    for iface in own.interfaces:
        for other in plan.nodes:
            if other.name == node:
                continue
            for far in other.interfaces:
                shared = (iface.bridge is not None and far.bridge == iface.bridge) or (
                    iface.bridge is None and far.peer_netns == own.netns and iface.peer_netns == other.netns
                    and far.name == iface.peer_name)
                address = far.address or far.address6  # an IPv6-only link still has its peer
                if shared and address:
                    found.append(Peering(other.name, router_id(other), iface.name, str(ip_interface(address).ip)))
    return found


def router_id(node: NodePlan) -> str | None:
    """The router id the topology gives `node`: its `router_id` variable, else its IPv4 loopback
    (the address a router id is taken from), else None."""
    given = node.vars.get("router_id")
    if given:
        return str(given)
    loopback = next((a for a in node.loopbacks if ":" not in a), None)
    return str(ip_interface(loopback).ip) if loopback else None


def lab_interfaces(plan: LabPlan, node: str) -> set[str]:
    """The interfaces the topology gives `node` (management excluded)."""
    return {iface.name for iface in plan.node(node).interfaces}


# ---- pure judging --------------------------------------------------------------------
def _iface(entry: dict[str, Any]) -> str:
    """FRR 8 prints `eth1:10.255.0.1` (interface:local address)."""
    return str(entry.get("ifaceName", "")).split(":", 1)[0]


def _address(entry: dict[str, Any]) -> str:
    return str(entry.get("ifaceAddress") or entry.get("address") or "")


def _entry_text(router_id: str, entry: dict[str, Any]) -> str:
    """`2.2.2.2 Full/- on eth1 (10.255.0.2)`; ospf6d names no address (its neighbours speak from
    link-local ones)."""
    address = _address(entry) or ("" if "ifaceAddress" not in entry and "address" not in entry else "?")
    return f"{router_id} {_state(entry)} on {_iface(entry) or '?'}" + (f" ({address})" if address else "")


def judge_ospf_neighbor(check: OspfNeighborCheck, table: dict[str, list[dict[str, Any]]],
                        expected: list[Peering], interfaces: set[str]) -> Verdict:
    """PASS when ospfd has neighbour `check.neighbor` in `check.state` where the topology
    puts it (`expected`: the router owning that id), or at least on a lab interface when
    no node of the topology owns the id."""
    rid = str(check.neighbor)
    entries = table.get(rid, [])
    wanted = [p for p in expected if p.router_id == rid]
    where = ("; expected " + " or ".join(p.describe() for p in wanted)) if wanted else ""
    if not entries:
        others = ", ".join(f"{r} {_state(e[0])}" for r, e in sorted(table.items())) or "none"
        return judged(False, f"no OSPF neighbor {rid} (neighbors: {others}); expected {check.state}{where}")
    def at(entry: dict[str, Any], peer: Peering) -> bool:  # OSPFv3: the link, by interface
        return _iface(entry) == peer.iface and (check.version == 3 or _address(entry) == peer.address)

    placed = [e for e in entries if (any(at(e, p) for p in wanted) if wanted else _iface(e) in interfaces)]
    seen = "; ".join("neighbor " + _entry_text(rid, e) for e in entries)
    if not placed:
        why = where or f"; expected on one of the lab's interfaces ({', '.join(sorted(interfaces))})"
        return judged(False, f"{seen}: not where the topology puts it{why}")
    ok = any(_state(e).split("/")[0].lower() == check.state.lower() for e in placed)
    return judged(ok, seen + ("" if ok else f", expected {check.state}"))


def zebra_key(destination: str) -> str:
    """The prefix zebra names a destination by."""
    return "0.0.0.0/0" if destination == "default" else destination


ROUTE_TYPES = {"N": "intra-area", "N IA": "inter-area", "N E1": "external-1", "N E2": "external-2"}


def ospf_route_type(check: RouteCheck, routes: dict[str, Any]) -> tuple[str, bool]:
    """ospfd's word on the destination (`show ip ospf route json`): its route type, cost and
    area, and whether the type is the one the check asks for."""
    entry = routes.get(zebra_key(check.destination)) if isinstance(routes, dict) else None
    if not isinstance(entry, dict):
        return f"ospfd: no OSPF route to {check.destination}", False
    code = str(entry.get("routeType", "")).strip()
    kind = ROUTE_TYPES.get(code, code or "?")
    cost = f"cost {entry.get('cost')}"
    if "type2cost" in entry:
        cost += f" to the ASBR, external cost {entry['type2cost']}"
    area = f" in area {entry['area']}" if entry.get("area") else ""
    return f"ospfd: {check.destination} {kind} ({code}){area}, {cost}", kind == check.ospf_type


def judge_ospf_route(check: RouteCheck, zebra: dict[str, Any], kernel: list[dict[str, Any]],
                     table: dict[str, list[dict[str, Any]]], expected: list[Peering],
                     ospf_routes: dict[str, Any] | None = None) -> Verdict:
    """Did OSPF learn the route (zebra: from ospfd, selected, installed), through `check.via`,
    a Full neighbour that is the router the topology puts at that address, and does the
    kernel forward with it? With `metric`, zebra's metric for it; with `ospf_type`, ospfd's
    route type (`ospf_routes`: its routing table). `absent`: no such route, learned or in the
    kernel."""
    if not isinstance(zebra, dict) or not isinstance(kernel, list):
        raise Unobservable("unexpected zebra or kernel route listing")
    via = str(check.via) if check.via else None
    learned = [r for r in zebra.get(zebra_key(check.destination), []) if isinstance(r, dict)
               and r.get("protocol") == "ospf"]
    hops = [(r, h) for r in learned for h in r.get("nexthops", []) if isinstance(h, dict)]
    good = [(r, h) for r, h in hops if r.get("selected") and r.get("installed") and h.get("fib")
            and h.get("active") and (via is None or h.get("ip") == via)]
    in_kernel = [r for r in kernel if isinstance(r, dict) and _destination(r) == check.destination
                 and _protocol(r) == "ospf" and (via is None or via in _gateways(r))]
    learned_text = "; ".join(
        f"via {h.get('ip') or h.get('interfaceName')}"
        f"{'' if r.get('selected') and h.get('fib') else ' (not installed)'}" for r, h in hops) or "nothing"
    seen = (f"zebra: OSPF learned {check.destination} {learned_text}" if hops
            else f"zebra: OSPF learned nothing for {check.destination}")
    seen += ("; kernel: "
            + ("; ".join(_describe(r) for r in kernel if isinstance(r, dict) and _destination(r) == check.destination)
               or f"no route to {check.destination}"))
    wanted = f"{check.destination}" + (f" via {via}" if via else "") + " learned by OSPF"
    if check.absent:
        present = bool(good or in_kernel)
        return judged(not present, seen + (f"; expected no route {wanted}" if present else ""))
    if in_kernel and not good:
        return judged(False, seen + f"; the kernel's proto ospf route was not learned by OSPF "
                                    f"(zebra has no such OSPF route): expected a route {wanted}")
    if not good:
        return judged(False, seen + f"; expected a route {wanted}")
    if not in_kernel:
        return judged(False, seen + "; zebra's OSPF route is not in the kernel's table: expected it installed")
    preferred = min((r for r in kernel if isinstance(r, dict) and _destination(r) == check.destination),
                    key=lambda r: int(r.get("metric", 0)))
    if preferred not in in_kernel:
        return judged(False, seen + f"; the kernel forwards with {_describe(preferred)} "
                                    f"(a lower metric), not with the OSPF route")
    gateways = {str(h.get("ip")) for _, h in good if h.get("ip")}
    wrong = []
    if check.metric is not None:
        metrics = sorted({int(r.get("metric", 0)) for r, _ in good})
        seen += f"; metric {', '.join(str(m) for m in metrics)}"
        if check.metric not in metrics:
            wrong.append(f"expected metric {check.metric}")
    if check.ospf_type is not None:
        words, ok = ospf_route_type(check, ospf_routes or {})
        seen += f"; {words}"
        if not ok:
            wrong.append(f"expected an {check.ospf_type} route")
    neighbor = _full_neighbor(gateways, table, expected)
    if neighbor is None:
        owners = [p for p in expected if p.address in gateways]
        who = f" ({' or '.join(p.describe() for p in owners)})" if owners else ""
        wrong.append(f"next hop {', '.join(sorted(gateways))}{who} is not a Full OSPF neighbor")
    if wrong:
        return judged(False, seen + "; " + "; ".join(wrong))
    return judged(True, seen + f"; next hop is OSPF neighbor {neighbor}")


def _full_neighbor(gateways: set[str], table: dict[str, list[dict[str, Any]]],
                   expected: list[Peering]) -> str | None:
    """The Full neighbour (as text) at one of `gateways` whose router id is the one the
    topology gives the router at that address (when it gives one), or None."""
    for rid, entries in sorted(table.items()):
        for entry in entries:
            if _address(entry) not in gateways or _state(entry).split("/")[0] != "Full":
                continue
            owners = [p for p in expected if p.address == _address(entry)]
            if any(p.router_id not in (None, rid) or p.iface != _iface(entry) for p in owners):
                continue
            return _entry_text(rid, entry)
    return None


# ---- observing -----------------------------------------------------------------------
def _answer(init_pid: int, daemon: str, command: str, lower: Path, timeout: float) -> tuple[str, Any]:
    """Who answered (`ospfd (pid N, ... of the image)`) and a proven daemon's JSON answer; a
    daemon that does not run answers nothing ({}), said so. Forged, VtyError or Unobservable
    when it cannot be asked or believed."""
    try:
        session = open_daemon(init_pid, daemon, lower, timeout)
    except NotRunning as exc:
        return str(exc), {}
    try:
        reply = session.ask(command, timeout)
    finally:
        session.close()
    if not reply.ok:
        raise Unobservable(f"{daemon} refused `{command}`: {short(reply.text, 120)}")
    text = reply.text.strip()
    if not text:  # ospfd prints nothing when no OSPF instance is configured
        return session.daemon.describe(), {}
    try:
        return session.daemon.describe(), json.loads(text)
    except json.JSONDecodeError:
        raise Unobservable(f"{daemon}'s answer to `{command}` is not JSON: {short(text, 120)}") from None


def kernel_routes(result: CommandResult) -> list[dict[str, Any]]:
    """The routes in the controller's `ip -j route show` output, run in the node's netns."""
    if result.exit_code != 0:
        raise Unobservable(f"the kernel's routes could not be read: {short(result.stderr or result.stdout, 120)}")
    try:
        listing = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise Unobservable(f"`ip -j route` printed no JSON: {short(result.stdout, 120)}") from None
    if not isinstance(listing, list):
        raise Unobservable(f"`ip -j route` printed no list: {short(result.stdout, 120)}")
    return listing


def _guarded(work: Callable[[], Verdict]) -> Verdict:
    """Run an observation; a forged daemon is ERROR 'tampered', an unanswered one ERROR."""
    try:
        return work()
    except Forged as exc:
        return error(f"tampered: {exc} (falsifié : le démon FRR n'est pas celui de l'image)")
    except (VtyError, Unobservable) as exc:
        return error(str(exc))


def observe_ospf_neighbor(check: OspfNeighborCheck, plan: LabPlan, init_pid: int, lower: Path,
                          timeout: float, far_pid: Callable[[str], int] | None = None) -> Verdict:
    """An ospf_neighbor check observed from outside: the image's ospfd, asked directly.

    A Full adjacency with a router of the lab is confirmed from its other end too
    (`far_pid(node)` gives that node's PID 1): its own ospfd must see this router Full
    where the topology puts it, so a neighbour faked on one side only does not count.
    """
    name, command = DAEMONS[check.version], COMMANDS[check.version]

    def work() -> Verdict:
        daemon, answer = _answer(init_pid, name, command, lower, timeout)
        table = neighbor_table(json.dumps(answer)) if answer else {}
        near = judge_ospf_neighbor(check, table, peerings(plan, check.node), lab_interfaces(plan, check.node))
        evidence = f"{daemon}: {near.evidence}"
        far = far_end(check, plan)
        if near.outcome is not Outcome.PASS or far is None or far_pid is None:
            return Verdict(near.outcome, evidence)
        far_daemon, far_answer = _answer(far_pid(far.node), name, command, lower, timeout)
        far_table = neighbor_table(json.dumps(far_answer)) if far_answer else {}
        seen = judge_ospf_neighbor(far, far_table, peerings(plan, far.node), lab_interfaces(plan, far.node))
        return Verdict(seen.outcome, f"{evidence}; seen from {far.node}, {far_daemon}: {seen.evidence}")
    return _guarded(work)


def far_end(check: OspfNeighborCheck, plan: LabPlan) -> OspfNeighborCheck | None:
    """The same adjacency as its other end must see it (Full checks between two routers of the
    topology that both have a router id), or None when there is no such other end."""
    rid = router_id(plan.node(check.node))
    owners = {p.node for p in peerings(plan, check.node) if p.router_id == str(check.neighbor)}
    if check.state != "Full" or not rid or len(owners) != 1:
        return None
    return check.model_copy(update={"node": owners.pop(), "neighbor": IPv4Address(str(rid))})


def observe_ospf_route(check: RouteCheck, plan: LabPlan, init_pid: int, lower: Path, timeout: float,
                       kernel: Callable[[list[str], float], CommandResult]) -> Verdict:
    """A `route` check with `protocol: ospf` observed from outside: zebra and ospfd (the
    image's, asked directly) and the kernel's table (`kernel` runs the controller's `ip`
    in the node's network namespace)."""
    def work() -> Verdict:
        zebra, routes = _answer(init_pid, "zebra", f"show ip route {zebra_key(check.destination)} json",
                                lower, timeout)
        ospfd, answer = _answer(init_pid, "ospfd", NEIGHBORS, lower, timeout)
        table = neighbor_table(json.dumps(answer)) if answer else {}
        ospf_routes = _answer(init_pid, "ospfd", OSPF_ROUTES, lower, timeout)[1] if check.ospf_type else None
        listing = kernel_routes(kernel(["ip", "-j", "route", "show", check.destination], timeout))
        verdict = judge_ospf_route(check, routes, listing, table, peerings(plan, check.node), ospf_routes)
        return Verdict(verdict.outcome, f"{zebra}, {ospfd}: {verdict.evidence}")
    return _guarded(work)


def observed_by_routing(check: object) -> bool:
    """Whether this module grades the check (ospf_neighbor, and route checks on OSPF)."""
    return isinstance(check, OspfNeighborCheck) or (isinstance(check, RouteCheck) and check.protocol == "ospf")
