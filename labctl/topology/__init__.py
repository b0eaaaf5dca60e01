"""Topology files: what a trainer wrote, validated, with addresses resolved."""

from labctl.topology.model import Endpoint, Link, Node, NodeKind, Route, Topology

__all__ = ["Endpoint", "Link", "Node", "NodeKind", "Route", "Topology", "load_topology"]


def load_topology(path: "str | __import__('pathlib').Path") -> Topology:  # noqa: UP037
    """Read, validate and resolve a topology file (every problem reported at once)."""
    from labctl.topology.loader import load_topology as _load

    return _load(path)
