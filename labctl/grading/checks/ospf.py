"""The ospf_neighbor check type: FRR's `show ip ospf neighbor json` through the router CLI
(`show ipv6 ospf6 neighbor json` for OSPFv3).

FRR 8.x prints {"neighbors": {"<router id>": [{"nbrState": "Full/DR", ...}, ...]}};
older releases print the router ids at the top level, each with one object whose state is
in "state". Both are read. ospf6d prints {"neighbors": [{"neighborId": ..., "state": "Full",
"interfaceName": "eth1"}, ...]}: read into the same table. The state before the "/" (the DR
role) is compared.
"""

from __future__ import annotations

from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, judged, short
from labctl.grading.checks.base import parse_json as _parse_json
from labctl.grading.session import CommandResult
from labctl.grading.spec import OspfNeighborCheck

COMMAND = "show ip ospf neighbor json"
COMMANDS = {2: COMMAND, 3: "show ipv6 ospf6 neighbor json"}
DAEMONS = {2: "ospfd", 3: "ospf6d"}


def probe_ospf_neighbor(check: OspfNeighborCheck) -> Probe:
    """The neighbor table as JSON, through the router CLI (vtysh)."""
    return Probe(COMMANDS[check.version], cli=True)


def _json_text(output: str) -> str:
    """The JSON object in a CLI output (a CLI may echo the command or a prompt around it)."""
    start, end = output.find("{"), output.rfind("}")
    if start < 0 or end < start:
        shown = short(output, 120) or "no output"
        raise Unobservable(f"no JSON in the output of `{COMMAND}`: {shown}")
    return output[start : end + 1]


def neighbor_table(output: str) -> dict[str, list[dict[str, Any]]]:
    """Router id -> neighbor entries (one per interface the neighbor is seen on)."""
    data = _parse_json(_json_text(output), f"the output of `{COMMAND}`")
    if not isinstance(data, dict):
        raise Unobservable(f"unexpected output of `{COMMAND}`: {short(output, 120)}")
    neighbors = data.get("neighbors", data)
    if isinstance(neighbors, list):  # ospf6d: a list of neighbours, each naming its router id
        by_id: dict[str, Any] = {}
        for entry in neighbors:
            if not isinstance(entry, dict) or not entry.get("neighborId"):
                raise Unobservable(f"unexpected neighbor entry in `{COMMANDS[3]}`: {short(str(entry), 120)}")
            by_id.setdefault(str(entry["neighborId"]), []).append(
                {"nbrState": entry.get("state"), "ifaceName": entry.get("interfaceName")})
        neighbors = by_id
    if not isinstance(neighbors, dict):
        raise Unobservable(f"unexpected `neighbors` in `{COMMAND}`: {short(output, 120)}")
    table: dict[str, list[dict[str, Any]]] = {}
    for router_id, entries in neighbors.items():
        listed = entries if isinstance(entries, list) else [entries]
        if not all(isinstance(e, dict) and _state(e) for e in listed):
            raise Unobservable(f"neighbor {router_id} has no state in `{COMMAND}`")
        table[router_id] = listed
    return table


def _state(entry: dict[str, Any]) -> str:
    """FRR's state text, e.g. Full/DR, 2-Way/DROther, Full/- (point-to-point)."""
    return str(entry.get("nbrState") or entry.get("state") or "")


def _where(entry: dict[str, Any]) -> str:
    """The interface (and address) the neighbor is seen on, when FRR says."""
    iface = entry.get("ifaceName")
    address = entry.get("ifaceAddress") or entry.get("address")
    if isinstance(iface, str) and ":" in iface:  # older FRR: "eth1:10.255.0.1"
        iface = iface.split(":", 1)[0]
    parts = [f"on {iface}" if iface else "", f"({address})" if address else ""]
    return " ".join(p for p in parts if p)


def evaluate_ospf_neighbor(check: OspfNeighborCheck, result: CommandResult) -> Verdict:
    """PASS when some entry for the router id is in the expected state."""
    if "is not running" in result.stdout and "{" not in result.stdout:
        return judged(False, f"{short(result.stdout, 80)}; expected neighbor {check.neighbor} "
                             f"{check.state}")
    table = neighbor_table(result.stdout)
    entries = table.get(str(check.neighbor), [])
    if not entries:
        others = ", ".join(f"{rid} {_state(e[0])}" for rid, e in sorted(table.items())) or "none"
        return judged(False, f"no OSPF neighbor {check.neighbor} (neighbors: {others}); "
                             f"expected {check.state}")
    seen = "; ".join(f"neighbor {check.neighbor} state {_state(e)} {_where(e)}".rstrip()
                     for e in entries)
    ok = any(_state(e).split("/")[0].lower() == check.state.lower() for e in entries)
    return judged(ok, seen + ("" if ok else f", expected {check.state}"))


OSPF_TYPES: tuple[CheckType[Any], ...] = (
    CheckType("ospf_neighbor", probe_ospf_neighbor, evaluate_ospf_neighbor),
)
