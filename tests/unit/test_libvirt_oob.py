"""The out-of-band relay: takes a free port (one client per QEMU socket) and relays bytes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path


def _echo_server(path: Path, served: list[str]) -> socket.socket:
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
                conn.sendall(b"SSH-2.0-fake\r\n")
                data = conn.recv(100)
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server


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
