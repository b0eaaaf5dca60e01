"""Loading a topology file: read it, validate it, resolve its addressing.

load_topology(path) -> Topology
    The validated topology with every host/router endpoint's `address` and every
    segment's subnet filled in (see `labctl.topology.addressing`). Raises one
    InvalidInputError (exit code 2) listing every problem found, each at file:line with
    a hint: duplicate YAML keys, model errors, semantic errors (`validate`), failed
    allocations and route gateways off the node's subnets.
parse_topology(data, lines) -> tuple[Topology | None, Origin, list[Problem]]
    The model step alone. When the model fails, the valid nodes and links are salvaged
    into a partial topology so the semantic checks can still run on them.

Checks that need allocated addresses (pool exhaustion, route gateways) only run when
the model is complete: a salvaged topology lacks parts that change the allocation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from labctl.errors import InvalidInputError, Problem
from labctl.sourcefile import Lines, problems_from_validation, read_yaml
from labctl.topology.addressing import resolve_addressing
from labctl.topology.model import Addressing, Link, Node, Topology
from labctl.topology.validate import Origin, check_routes, check_topology

M = TypeVar("M", bound=BaseModel)


def load_topology(path: str | Path, variables: dict[str, Any] | None = None) -> Topology:
    """Read, validate and resolve a topology file; every problem is reported at once.

    `variables` fill the file's `{{ name }}` placeholders (a scenario's variant values).
    """
    data, lines, problems = read_yaml(Path(path), variables)
    topology, origin, model_problems = parse_topology(data, lines)
    problems.extend(model_problems)
    if topology is None:
        raise InvalidInputError(problems)
    problems.extend(check_topology(topology, origin))
    if origin.complete:
        resolution = resolve_addressing(topology)
        problems.extend(origin.problem(s.path, s.message, s.hint) for s in resolution.shortages)
        problems.extend(check_routes(resolution.topology, origin))
        topology = resolution.topology
    if problems:
        raise InvalidInputError(problems)
    return topology


def parse_topology(data: Any, lines: Lines) -> tuple[Topology | None, Origin, list[Problem]]:
    """Validate the model; on errors, salvage what is valid (None if too little is)."""
    try:
        return Topology.model_validate(data), Origin(lines), []
    except ValidationError as exc:
        problems = problems_from_validation(exc, lines, Topology, data)
    topology, origin = _salvage(data, lines)
    return topology, origin, problems


def _salvage(data: Any, lines: Lines) -> tuple[Topology | None, Origin]:
    """The valid parts of a file whose model has errors, and where they are.

    A node is kept without its invalid keys (or as its kind alone); a node of no valid
    kind is dropped, and so are the links to it (what they mean is unknown), and the
    links that are invalid themselves.
    """
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        return None, Origin(lines, complete=False)
    raw_nodes = {name: raw for name, raw in data["nodes"].items() if isinstance(name, str)}
    nodes = {name: _salvage_node(raw) for name, raw in raw_nodes.items()}
    dropped = frozenset(name for name, node in nodes.items() if node is None)
    raw_links: list[Any] = data["links"] if isinstance(data.get("links"), list) else []
    links = _salvage_links(raw_links, dropped)
    raw_addressing = data.get("addressing", {})
    addressing = _lenient(Addressing, raw_addressing) or Addressing()
    topology = Topology.model_construct(
        name=str(data.get("name", "")), addressing=addressing,
        nodes={name: node for name, node in nodes.items() if node is not None},
        links=[link for _, link in links],
    )
    complete = (len(links) == len(raw_links) and _valid(Addressing, raw_addressing) is not None
                and all(_valid(Node, raw) for raw in raw_nodes.values()))
    return topology, Origin(lines, tuple(i for i, _ in links), dropped, complete)


def _salvage_links(raw_links: list[Any], dropped: frozenset[str]) -> list[tuple[int, Link]]:
    """The valid links (with their file index) that name no dropped node."""
    links = ((i, _valid(Link, raw)) for i, raw in enumerate(raw_links))
    return [(i, link) for i, link in links
            if link is not None and not any(e.node in dropped for e in link.endpoints)]


def _salvage_node(raw: Any) -> Node | None:
    """The node without its invalid keys, else a node of its kind alone, else None."""
    node = _lenient(Node, raw)
    if node is None and isinstance(raw, dict):
        node = _valid(Node, {"kind": raw.get("kind")})
    return node


def _valid(model: type[M], raw: Any) -> M | None:
    """`raw` as `model`, or None if it is not valid (its errors are reported already)."""
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _lenient(model: type[M], raw: Any) -> M | None:
    """`raw` as `model`, leaving out the keys that have errors; None if that fails too."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        if not isinstance(raw, dict):
            return None
        bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
        kept = {key: value for key, value in raw.items() if key not in bad}
        return _valid(model, kept) if bad & raw.keys() else None
