"""Network namespaces and links, through iproute2; plus sockets opened inside a namespace.

Everything a lab creates lives in namespaces of its own: links are created directly in
their target namespaces (never in the machine's own), and labctl talks to nodes over a
management network it reaches by opening sockets *inside* the lab's fabric namespace
from a short-lived thread (setns affects only the calling thread), so no lab address or
route ever appears in the machine's own namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from labctl.errors import ProviderError

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


def run(argv: Sequence[str], *, input_text: str | None = None, what: str | None = None) -> str:
    """Run a command; on failure raise ProviderError with its error output."""
    proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise ProviderError(f"{what or ' '.join(argv)} failed: {detail}")
    return proc.stdout


def exists(name: str) -> bool:
    """True if the named network namespace exists."""
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    """Create a named, empty network namespace."""
    run(["ip", "netns", "add", name])


def attach(name: str, pid: int) -> None:
    """Give the network namespace of process `pid` a name."""
    run(["ip", "netns", "attach", name, str(pid)])


def delete(name: str) -> None:
    """Remove a named namespace if it exists (its links go with it)."""
    if exists(name):
        proc = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
        if proc.returncode != 0 and exists(name):
            raise ProviderError(f"cannot remove network namespace {name}: {proc.stderr.strip()}")


def batch(name: str, commands: Sequence[str], what: str) -> None:
    """Run `ip` commands (one per line, without the leading `ip`) inside namespace `name`."""
    if commands:
        run(["ip", "-n", name, "-batch", "-"], input_text="\n".join(commands) + "\n", what=what)


_libc = ctypes.CDLL(None, use_errno=True)


def connect_in(netns: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to address:port made from inside namespace `netns`."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            with open(NETNS_DIR / netns, "rb") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            sock = socket.create_connection((address, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            result["sock"] = sock
        except OSError as exc:
            result["error"] = exc

    # The thread ends after connecting, so its namespace switch dies with it; the socket
    # stays bound to the namespace it was created in.
    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    sock = result["sock"]
    assert isinstance(sock, socket.socket)
    return sock
