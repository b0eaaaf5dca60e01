"""Topology files: what a trainer wrote, validated, with addresses resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl.topology.model import Endpoint, Link, Node, NodeKind, Route, Topology

__all__ = ["Endpoint", "Link", "Node", "NodeKind", "Route", "Topology", "load_topology"]


def load_topology(path: str | Path, variables: dict[str, Any] | None = None) -> Topology:
    """Read, validate and resolve a topology file (every problem reported at once)."""
    from labctl.topology.loader import load_topology as load

    return load(path, variables)
