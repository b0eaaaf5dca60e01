"""How the grader talks to a node: one session per node, opened once, reused by its checks.

Providers implement `NodeSession` (SSH with paramiko for the shell, netmiko for the router
CLI); tests implement it with local processes. A session only reads: checks never change
a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from labctl.errors import ProviderError


@dataclass(frozen=True)
class CommandResult:
    """What a shell command left behind: its exit code and both output streams."""

    exit_code: int
    stdout: str
    stderr: str


class NodeSession(Protocol):
    """An open connection to one lab node."""

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run `command` through the node's shell; raise CommandTimeout past `timeout` s.

        Raise NodeUnreachable when the node can no longer be reached.
        """
        ...

    def cli(self, command: str, timeout: float) -> str:
        """Run a router CLI command (vtysh) and return its output; may raise."""
        ...

    def close(self) -> None:
        """Release the connection; never raises for an already dead node."""
        ...


class NodeUnreachable(ProviderError):
    """The node cannot be reached (raised by `connect()` or by `NodeSession.run`/`cli`)."""


class CommandTimeout(ProviderError):
    """A command ran longer than the time it was given (raised by `NodeSession.run`/`cli`)."""
