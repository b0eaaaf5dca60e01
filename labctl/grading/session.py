"""How the grader talks to a node: one session per node, opened once, reused by its checks.

Providers implement `NodeSession` (SSH with paramiko for the shell, netmiko for the router
CLI); tests implement it with local processes. A session only reads: checks never change
a node.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from dataclasses import dataclass
from typing import Protocol

from labctl.errors import ProviderError

MAX_OUTPUT = 1 << 20  # bytes of each output stream a probe keeps; the rest is read and dropped
CUT_NOTE = "\n[sortie coupée à 1 Mio / output cut at 1 MiB: {total} bytes]"


class Capped:
    """One output stream of a probe, kept up to MAX_OUTPUT bytes (memory stays bounded
    whatever a node writes); the evidence says when it was cut."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.limit, self.total, self.data = limit, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        """Count `chunk`, keep what fits."""
        self.total += len(chunk)
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    def text(self) -> str:
        """What was kept, decoded, with a note when something was dropped."""
        text = self.data.decode(errors="replace")
        return text + CUT_NOTE.format(total=self.total) if self.total > len(self.data) else text


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


def communicate_capped(proc: subprocess.Popen[bytes], timeout: float) -> tuple[str, str]:
    """`proc.communicate(timeout=...)` keeping at most MAX_OUTPUT bytes of each stream;
    raises subprocess.TimeoutExpired like it (the caller kills the process)."""
    streams = {proc.stdout: Capped(), proc.stderr: Capped()}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for stream in streams:
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            for key, _ in selector.select(min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    streams[key.fileobj].add(chunk)  # type: ignore[index]
                else:
                    selector.unregister(key.fileobj)
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise subprocess.TimeoutExpired(proc.args, timeout) from None
    out, err = streams.values()
    return out.text(), err.text()
