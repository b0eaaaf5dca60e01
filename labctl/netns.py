"""Network namespaces and links, through iproute2; plus sockets opened inside a namespace.

Everything a lab creates lives in namespaces of its own: links are created directly in
their target namespaces (never in the machine's own), and labctl talks to nodes over a
management network it reaches by opening sockets *inside* the lab's fabric namespace
from a short-lived thread (setns affects only the calling thread), so no lab address or
route ever appears in the machine's own namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from labctl.errors import ProviderError

T = TypeVar("T")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED, MNT_DETACH = 0x1000, 0x4000, 0x100000, 2  # <sys/mount.h>


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
    """Give the network namespace of process `pid` a name, as `ip netns attach` does (a bind
    mount under /run/netns, made a shared mount point), with two system calls instead of a
    process: a room's reset names 210 namespaces and removes 240."""
    _name(Path(f"/proc/{pid}/ns/net"), name, f"process {pid}")


def rename(name: str, new: str) -> None:
    """Give namespace `name` the name `new` (it stays the same namespace, links and all)."""
    _name(NETNS_DIR / name, new, name)
    delete(name)


def _name(source: Path, name: str, what: str) -> None:
    _share_netns_dir()
    path = NETNS_DIR / name
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except OSError as exc:
        raise ProviderError(f"cannot name network namespace {name}: {exc.strerror}") from None
    if _libc.mount(bytes(source), bytes(path), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        path.unlink(missing_ok=True)
        raise ProviderError(f"cannot name network namespace {name} ({what}): {os.strerror(err)}")


def delete(name: str) -> None:
    """Remove a named namespace if it exists (its links go with it once nothing holds it), as
    `ip netns delete` does: detach the bind mount, remove the file."""
    path = NETNS_DIR / name
    if not path.exists():
        return
    if _libc.umount2(bytes(path), MNT_DETACH) != 0 and ctypes.get_errno() != errno.EINVAL:  # EINVAL: not mounted
        raise ProviderError(f"cannot remove network namespace {name}: {os.strerror(ctypes.get_errno())}")
    path.unlink(missing_ok=True)


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so that a namespace removed
    here is unmounted in every mount namespace (and freed)."""
    share_mount_point(NETNS_DIR)


def share_mount_point(directory: Path) -> None:
    """Make `directory` a shared mount point (binding it onto itself first if it is not a
    mount point): what is unmounted below it is then unmounted too in every mount namespace
    copied from this one (containers), instead of staying there, hidden and busy."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = bytes(directory)
    if _libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL or _libc.mount(target, target, b"none", MS_BIND | MS_REC, None) != 0 or \
            _libc.mount(b"", target, b"none", MS_SHARED | MS_REC, None) != 0:
        raise ProviderError(f"cannot make {directory} a shared mount point: {os.strerror(ctypes.get_errno())}")


def batch(name: str, commands: Sequence[str], what: str) -> None:
    """Run `ip` commands (one per line, without the leading `ip`) inside namespace `name`."""
    if commands:
        run(["ip", "-n", name, "-batch", "-"], input_text="\n".join(commands) + "\n", what=what)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def in_namespace(path: Path, work: Callable[[], T], label: str) -> T:
    """Run `work` in a short-lived thread that entered the network namespace at `path` (setns
    affects that thread only; sockets made there stay bound to the namespace); exceptions
    propagate."""
    result: dict[str, object] = {}

    def target() -> None:
        try:
            with open(path, "rb") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({label}): {os.strerror(err)}")
            result["value"] = work()
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{label}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def connect_in(netns: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to address:port made from inside namespace `netns`."""
    def connect() -> socket.socket:
        sock = socket.create_connection((address, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    return in_namespace(NETNS_DIR / netns, connect, netns)
