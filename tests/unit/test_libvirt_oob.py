"""The out-of-band relay: takes a free port (one client per QEMU socket) and relays bytes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def _server(path: Path, served: list[str], handle: Callable[[socket.socket], None]) -> socket.socket:
    """A QEMU-like port socket: one client at a time, each handled by `handle`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                served.append(path.name)
                handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    return server


def _greets(conn: socket.socket) -> None:
    """A fresh sshd: banner first, then it answers (upper-cased echo)."""
    conn.sendall(b"SSH-2.0-fake\r\n")
    conn.sendall(conn.recv(100).upper())


def _echo_server(path: Path, served: list[str]) -> socket.socket:
    return _server(path, served, _greets)


def test_relay_reaches_a_port_and_skips_a_busy_one(tmp_path: Path) -> None:
    served: list[str] = []
    sockets = [tmp_path / f"oob.{i}" for i in range(2)]
    servers = [_echo_server(path, served) for path in sockets]
    lockdir = tmp_path / "locks"
    lockdir.mkdir()
    import fcntl

    with open(lockdir / "oob.0.lock", "w") as busy:  # port 0 is in use by another session
        fcntl.flock(busy, fcntl.LOCK_EX)
        relay = subprocess.Popen(
            [sys.executable, "-m", "labctl.providers.libvirt_oob", str(lockdir), *map(str, sockets)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert relay.stdin is not None and relay.stdout is not None
        assert relay.stdout.read(14) == b"SSH-2.0-fake\r\n"
        relay.stdin.write(b"hello")
        relay.stdin.flush()
        assert relay.stdout.read(5) == b"HELLO"
        relay.stdin.close()
        assert relay.wait(timeout=10) == 0
    assert served == ["oob.1"]
    for server in servers:
        server.close()


def test_relay_without_arguments_explains_its_usage() -> None:
    result = subprocess.run([sys.executable, "-m", "labctl.providers.libvirt_oob"], capture_output=True)
    assert result.returncode == 2 and b"usage" in result.stderr


def _silent_server(path: Path, served: list[str]) -> socket.socket:
    """A port whose previous sshd still sits on it: accepts, says nothing until the relay leaves."""
    return _server(path, served, lambda conn: conn.recv(100) and None)


def test_relay_leaves_a_silent_port_for_one_that_greets(tmp_path: Path) -> None:
    import os
    import time

    served: list[str] = []
    sockets = [tmp_path / f"oob.{i}" for i in range(2)]
    servers = [_silent_server(sockets[0], served), _echo_server(sockets[1], served)]
    lockdir = tmp_path / "locks"
    lockdir.mkdir()
    (lockdir / "oob.1.lock").touch()  # port 0 was never used: least recently used, tried first
    os.utime(lockdir / "oob.1.lock", (time.time(), time.time()))
    relay = subprocess.Popen(
        [sys.executable, "-m", "labctl.providers.libvirt_oob", str(lockdir), *map(str, sockets)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "LABCTL_OOB_GREET_SECONDS": "0.5"})
    assert relay.stdin is not None and relay.stdout is not None
    relay.stdin.write(b"hello")  # sent before any greeting: held, then given to the port that greets
    relay.stdin.flush()
    assert relay.stdout.read(14) == b"SSH-2.0-fake\r\n"
    assert relay.stdout.read(5) == b"HELLO"
    relay.stdin.close()
    assert relay.wait(timeout=10) == 0
    assert served == ["oob.0", "oob.1"]
    for server in servers:
        server.close()


def test_banner_wait_drops_what_a_previous_session_left_in_flight() -> None:
    import os

    from labctl.providers.libvirt_oob import await_banner

    guest, host = socket.socketpair()
    client_r, client_w = os.pipe()
    os.write(client_w, b"client-hello")
    guest.sendall(b"\x17\x03stale packet\nSS")  # an old sshd's last bytes; the banner split across reads
    threading.Timer(0.2, lambda: guest.sendall(b"H-2.0-fresh\r\nkex")).start()
    held = bytearray()
    assert await_banner(host, client_r, held, timeout=5) == b"SSH-2.0-fresh\r\nkex"
    assert bytes(held) == b"client-hello"
    guest.sendall(b"\x00stale, then SSH- mid-line: not a banner")
    assert await_banner(host, client_r, bytearray(), timeout=0.3) is None
    os.close(client_w)
    assert await_banner(host, client_r, bytearray(), timeout=5) == b""  # the client left
    for end in (guest, host):
        end.close()
    os.close(client_r)
