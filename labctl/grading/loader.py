"""Reading a grading spec file, reporting every problem at once as file:line with a hint.

Each check is validated against the model of its own `type`, so that a problem names the
check and the hint knows the keys of that type; then ids, criteria and nodes are checked
across the file (and against the topology, when one is given).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from labctl.errors import InvalidInputError, Problem
from labctl.grading.criteria import all_criteria, closest_criteria
from labctl.grading.spec import CHECK_MODELS, CheckBase, GradingSpec, Strict
from labctl.sourcefile import Lines, problems_from_validation, read_yaml
from labctl.topology.model import NodeKind, Topology

TYPES = ", ".join(sorted(CHECK_MODELS))
MISSING = re.compile(r"^(?P<label>.*?)missing required key '(?P<key>[^']+)'")
KEY_HINTS = {
    "id": "e.g. ospf-r1-r2",
    "destination": "a network prefix such as 10.2.0.0/24, or default",
    "stdout_matches": "Python regular expression syntax; in YAML, quote it with single quotes",
    "body_matches": "Python regular expression syntax; in YAML, quote it with single quotes",
    "url": "a plain HTTP URL: http://HOST[:PORT]/PATH, e.g. http://10.1.0.20/",
    "contains": "Python regular expression syntax; in YAML, quote it with single quotes",
    "mode": 'an octal string in quotes, e.g. mode: "0640" (unquoted, YAML reads a number)',
    "sha256": "64 hexadecimal digits, as `sha256sum` prints them",
    "path": "an absolute path on the node, starting with /",
    "json_path": 'keys and list indexes joined by dots, e.g. interfaces.0.name; quote keys with dots: '
                 'routes."10.0.0.1/32"[0].metric',
    "package": "a Debian package name as `dpkg -l` shows it, e.g. openssh-server",
    "version": 'quote versions: version: "1.2" (unquoted, YAML may read a number)',
    "min_version": 'quote versions: min_version: "1.2" (unquoted, YAML may read a number)',
    "process": "the name `pgrep -x` matches: the kernel keeps the first 15 characters",
    "target": "an IPv4 or IPv6 address, e.g. 10.0.1.10 or 2001:db8:1::10",
    "neighbor": "the neighbor's OSPF router id, an IPv4 address",
    "via": "a next-hop IPv4 address, e.g. 10.255.0.2",
}


class _SpecShape(Strict):
    """The top level of a spec file, checks left raw (each is validated on its own)."""

    scenario: str = Field(min_length=1)
    checks: list[dict[str, Any]] = Field(min_length=1)


def load_grading_spec(path: str | Path, topology: Topology | None = None,
                      variables: dict[str, Any] | None = None) -> GradingSpec:
    """Read and validate a grading spec; raise InvalidInputError listing every problem.

    With a topology, each check's node must be one of its hosts or routers
    (and an ospf_neighbor check's node a router).
    """
    data, lines, problems = read_yaml(Path(path), variables)
    if not isinstance(data, dict):
        raise InvalidInputError([*problems, lines.problem(
            (), "a grading spec is a mapping", "start with `scenario:` then `checks:`")])
    try:
        _SpecShape.model_validate(data)
    except ValidationError as exc:
        problems += problems_from_validation(exc, lines, _SpecShape, data)
    raw_checks = data.get("checks")
    raw_checks = raw_checks if isinstance(raw_checks, list) else []
    checks: list[CheckBase] = []
    for index, raw in enumerate(raw_checks):
        if isinstance(raw, dict):
            check, found = _validate_check(raw, index, lines)
            problems += found
            if check is not None:
                checks.append(check)
    problems += _cross_problems(raw_checks, lines, topology)
    if problems:
        raise InvalidInputError(drop_explained_missing(problems))
    return GradingSpec.model_validate({"scenario": data["scenario"], "checks": checks})


def _label(raw: dict[str, Any], index: int) -> str:
    """How a message names a check: by its id when it has a usable one."""
    check_id = raw.get("id")
    return f"check '{check_id}'" if isinstance(check_id, str) else f"check #{index + 1}"


def _validate_check(
    raw: dict[str, Any], index: int, lines: Lines
) -> tuple[CheckBase | None, list[Problem]]:
    """Validate one check against the model of its type."""
    where = ("checks", index)
    label = _label(raw, index)
    kind = raw.get("type")
    if kind is None:
        return None, [lines.problem(where, f"{label}: missing required key 'type'",
                                    f"add 'type:', one of {TYPES}")]
    model = CHECK_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        close = difflib.get_close_matches(str(kind), list(CHECK_MODELS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return None, [lines.problem((*where, "type"), f"{label}: unknown check type '{kind}'",
                                    f"{hint}types are: {TYPES}")]
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        return None, [_check_problem(e, raw, index, kind, lines) for e in exc.errors()]


def _check_problem(
    error: Any, raw: dict[str, Any], index: int, kind: str, lines: Lines
) -> Problem:
    """One pydantic error on one check, as a Problem naming the check and the key."""
    loc = tuple(error["loc"])
    path = ("checks", index, *loc)
    label = _label(raw, index)
    key = ".".join(str(part) for part in loc)
    fields = list(CHECK_MODELS[kind].model_fields)
    if error["type"] == "extra_forbidden":
        return lines.problem(path, f"{label}: unknown key '{key}' for type {kind}",
                             _unknown_key_hint(str(loc[-1]), kind))
    if error["type"] == "missing":
        under = f" under '{'.'.join(str(p) for p in loc[:-1])}'" if len(loc) > 1 else ""
        return lines.problem(path[:-1], f"{label}: missing required key '{key}' for type {kind}",
                             f"add '{loc[-1]}:'{under or ' to this check'}")
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return lines.problem(path, f"{label}: {message}")
    value = error.get("input")
    shown = f" {value!r}:" if isinstance(value, str | int | float) else ":"
    hint = KEY_HINTS.get(str(loc[0])) if loc[0] in fields else None
    if error["type"] == "literal_error":
        hint = f"use one of {error['ctx']['expected']}"
    return lines.problem(path, f"{label}: {key}{shown} {message}", hint)


def _unknown_key_hint(key: str, kind: str) -> str:
    """The type that has this key, or did-you-mean among the type's keys."""
    fields = [f for f in CHECK_MODELS[kind].model_fields if f != "type"]
    own = ", ".join(f for f in fields if f not in CheckBase.model_fields)
    owners = [name for name, model in CHECK_MODELS.items() if key in model.model_fields]
    if owners:
        return f"'{key}' is a key of {' and '.join(owners)} checks; {kind} checks take: {own}"
    close = difflib.get_close_matches(key, fields, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"keys of a {kind} check: {', '.join(fields)}"


def drop_explained_missing(problems: list[Problem]) -> list[Problem]:
    """Leave out "missing key K" when an unknown key of the same check is a typo of K.

    The typo's problem already says "did you mean 'K'?"; one problem per mistake is enough.
    """
    def explained(problem: Problem) -> bool:
        """Is this a missing-key problem that a did-you-mean hint already covers?"""
        match = MISSING.match(problem.message)
        if not match:
            return False
        hint = f"did you mean '{match['key'].split('.')[-1]}'?"
        return any(other.hint == hint and other.message.startswith(match["label"])
                   and "unknown key" in other.message for other in problems)

    return [p for p in problems if not explained(p)]


def _cross_problems(
    raw_checks: list[Any], lines: Lines, topology: Topology | None
) -> list[Problem]:
    """Duplicate ids, unknown criteria and unknown nodes, across every check."""
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for index, raw in enumerate(raw_checks):
        if not isinstance(raw, dict):
            continue
        check_id, criterion_id, node = raw.get("id"), raw.get("criterion"), raw.get("node")
        if isinstance(check_id, str):
            line = lines.line(("checks", index, "id"))
            if check_id in first_line:
                problems.append(lines.problem(
                    ("checks", index, "id"), f"duplicate check id '{check_id}'",
                    f"already used at line {first_line[check_id]}; ids must be unique"))
            first_line.setdefault(check_id, line)
        if isinstance(criterion_id, str) and criterion_id not in all_criteria():
            problems.append(_criterion_problem(criterion_id, raw, index, lines))
        if topology is not None and isinstance(node, str):
            problem = _node_problem(node, raw, index, lines, topology)
            if problem is not None:
                problems.append(problem)
        if topology is not None and isinstance(raw.get("probe"), dict):
            problem = _probe_problem(raw["probe"].get("switch"), raw, index, lines, topology)
            if problem is not None:
                problems.append(problem)
    return problems


def _probe_problem(switch: object, raw: dict[str, Any], index: int, lines: Lines,
                   topology: Topology) -> Problem | None:
    """A probe point's switch that is not a switch of the topology (found at load, not at grading)."""
    switches = sorted(name for name, n in topology.nodes.items() if n.kind is NodeKind.switch)
    if not isinstance(switch, str) or switch in switches:
        return None
    close = difflib.get_close_matches(switch, switches, n=1)
    hint = f"did you mean '{close[0]}'?" if close else (f"switches: {', '.join(switches)}" if switches else
                                                         "the topology has no switch: add one for the probe point")
    return lines.problem(("checks", index, "probe", "switch"),
                         f"{_label(raw, index)}: the probe point's switch '{switch}' is not a switch of topology "
                         f"'{topology.name}'", hint)


def _criterion_problem(criterion_id: str, raw: dict[str, Any], index: int, lines: Lines) -> Problem:
    """An unknown criterion id, with the closest ids of the referentiel."""
    close = closest_criteria(criterion_id)
    hint = f"closest ids: {', '.join(close)}" if close else "ids look like A1.3-c2"
    return lines.problem(("checks", index, "criterion"),
                         f"{_label(raw, index)}: unknown criterion '{criterion_id}'", hint)


def _node_problem(
    node: str, raw: dict[str, Any], index: int, lines: Lines, topology: Topology
) -> Problem | None:
    """A node missing from the topology, a switch, or a host given a router-only check."""
    where = ("checks", index, "node")
    label = _label(raw, index)
    machines = topology.lab_nodes()
    if node not in topology.nodes:
        close = difflib.get_close_matches(node, list(machines), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"nodes: {', '.join(sorted(machines))}"
        return lines.problem(where, f"{label}: unknown node '{node}' (not in topology "
                                    f"'{topology.name}')", hint)
    kind = topology.nodes[node].kind
    if kind is NodeKind.switch:
        return lines.problem(where, f"{label}: node '{node}' is a switch (an L2 segment); "
                                    "checks run on hosts and routers",
                             f"hosts and routers: {', '.join(sorted(machines))}")
    if raw.get("type") == "ospf_neighbor" and kind is not NodeKind.router:
        routers = sorted(n for n, v in machines.items() if v.kind is NodeKind.router)
        return lines.problem(where, f"{label}: ospf_neighbor checks run on routers (FRR); "
                                    f"'{node}' is a {kind.value}",
                             f"routers: {', '.join(routers) or 'none'}")
    return None
