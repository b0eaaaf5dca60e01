"""Out-of-band access to a libvirt node: relay stdin/stdout to one of its virtio-serial sockets.

Usage (as an SSH ProxyCommand): python -m labctl.providers.libvirt_oob LOCKDIR SOCKET...

Each node has a few virtio-serial ports, each served in the guest by one `sshd -i` at a
time (labctl-oob). A QEMU socket serves one client at a time, so the relay takes a free
port (an flock per port under LOCKDIR), the one released longest ago first, so that the
guest's previous sshd on it has long seen its session end.

A port only counts once a fresh sshd greets on it: bytes before an `SSH-` line (what a
previous session left in flight) are dropped, and the client's bytes are held until then.
A port that stays silent (its previous sshd, slow to notice the end of its session, sits
on it) is released, which gives that sshd its end of file, and the next port is tried.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

WAIT_SECONDS = 120.0  # for a free port that greets (the SSH client's own timeout usually ends it first)
GREET_SECONDS = float(os.environ.get("LABCTL_OOB_GREET_SECONDS", "10"))  # for a fresh sshd's banner
LINGER_SECONDS = 0.5


class Port:
    """One locked, connected port."""

    def __init__(self, lock: IO[str], sock: socket.socket) -> None:
        self.lock = lock
        self.sock = sock

    def release(self) -> None:
        """Disconnect, wait a moment (the guest's sshd sees the end), stamp and unlock."""
        self.sock.close()
        time.sleep(LINGER_SECONDS)
        with contextlib.suppress(OSError):
            os.utime(self.lock.fileno())
        self.lock.close()


def _by_last_use(lockdir: Path, count: int) -> list[int]:
    def released(index: int) -> float:
        try:
            return (lockdir / f"oob.{index}.lock").stat().st_mtime
        except OSError:
            return 0.0
    return sorted(range(count), key=released)


def take_port(lockdir: Path, sockets: list[str], deadline: float) -> Port:
    """Lock and connect a free port (least recently used first); wait while all are busy."""
    lockdir.mkdir(parents=True, exist_ok=True)
    while True:
        for index in _by_last_use(lockdir, len(sockets)):
            lock = open(lockdir / f"oob.{index}.lock", "a")  # noqa: SIM115 - held until release
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(sockets[index])
            except OSError:
                sock.close()
                lock.close()
                continue
            return Port(lock, sock)
        if time.monotonic() > deadline:
            raise SystemExit(f"labctl-oob: no free out-of-band port among {len(sockets)} (node down?)")
        time.sleep(0.1)


def await_banner(sock: socket.socket, stdin: int, held: bytearray, timeout: float) -> bytes | None:
    """Read `sock` until a line starting with `SSH-`; return it and what follows, dropping
    what came before. Meanwhile keep the client's bytes in `held`. None: no greeting in
    time (or the port closed); b"": the client left."""
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    seen = b"\n"  # the connection's start counts as a line start
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    return b""
                held += data
                continue
            data = sock.recv(65536)
            if not data:
                return None
            seen += data
            start = seen.find(b"\nSSH-")
            if start >= 0:
                return seen[start + 1:]
            seen = seen[-4:]  # a `\nSSH-` split across reads still matches
    return None


def relay(sock: socket.socket, stdin: int, stdout: int) -> None:
    """Copy stdin to the socket and the socket to stdout until either side ends."""
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    return
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(stdout, data)


def main(argv: list[str]) -> int:
    """Entry point: LOCKDIR SOCKET..."""
    if len(argv) < 2:
        print("usage: python -m labctl.providers.libvirt_oob LOCKDIR SOCKET...", file=sys.stderr)
        return 2
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    deadline = time.monotonic() + WAIT_SECONDS
    held = bytearray()
    port: Port | None = None

    def finish(*_: object) -> None:
        if port is not None:
            port.release()
        os._exit(0)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, finish)
    while True:
        port = take_port(Path(argv[0]), argv[1:], deadline)
        try:
            greeting = await_banner(port.sock, stdin, held, GREET_SECONDS)
        except OSError:
            greeting = None
        if greeting == b"":
            finish()
        if greeting is not None:
            with contextlib.suppress(OSError):
                os.write(stdout, greeting)
                port.sock.sendall(held)
                relay(port.sock, stdin, stdout)
            finish()
        port.release()  # silent: its previous sshd gets its end of file; try the next port
        port = None
        if time.monotonic() > deadline:
            print("labctl-oob: no out-of-band port greeted (node down or still booting?)", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
