"""Out-of-band access to a libvirt node: relay stdin/stdout to one of its virtio-serial sockets.

Usage (as an SSH ProxyCommand): python -m labctl.providers.libvirt_oob LOCKDIR SOCKET...

Each node has a few virtio-serial ports, each served in the guest by one `sshd -i` at a
time (labctl-oob). A QEMU socket serves one client at a time, so the relay takes a free
port (an flock per port under LOCKDIR), starting from a random one, and keeps it a moment
after the session so the guest's sshd sees the end before the next client comes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

WAIT_SECONDS = 30.0
LINGER_SECONDS = 0.5


def _take_port(lockdir: Path, sockets: list[str]) -> tuple[IO[str], socket.socket]:
    """Lock and connect a free port; wait while all are busy."""
    lockdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + WAIT_SECONDS
    start = random.randrange(len(sockets))
    while True:
        for i in range(len(sockets)):
            index = (start + i) % len(sockets)
            lock = open(lockdir / f"oob.{index}.lock", "w")  # noqa: SIM115 - held until exit
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
            return lock, sock
        if time.monotonic() > deadline:
            raise SystemExit(f"labctl-oob: no free out-of-band port among {len(sockets)} (node down?)")
        time.sleep(0.1)


def relay(sock: socket.socket) -> None:
    """Copy stdin to the socket and the socket to stdout until either side ends."""
    selector = selectors.DefaultSelector()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
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
    lock, sock = _take_port(Path(argv[0]), argv[1:])

    def finish(*_: object) -> None:
        sock.close()
        time.sleep(LINGER_SECONDS)  # the port stays ours until the guest's sshd has gone
        lock.close()
        os._exit(0)

    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, finish)
    with contextlib.suppress(OSError):
        relay(sock)
    finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
