"""A router CLI connection that never stops sending is cut (labctl/connect.py CappedSocket)."""

from __future__ import annotations

import socket

import pytest

from labctl.connect import CappedSocket


def test_a_connection_is_cut_past_its_limit_and_passes_the_rest_through() -> None:
    left, right = socket.socketpair()
    capped = CappedSocket(left, limit=100_000)
    try:
        capped.settimeout(5)  # anything else goes to the real socket
        right.sendall(b"x" * 60_000)
        got = 0
        while got < 60_000:
            got += len(capped.recv(65536))
        right.sendall(b"y" * 60_000)
        with pytest.raises(OSError, match="router CLI sent over 0 MiB"):
            while True:
                capped.recv(65536)
        assert left.fileno() == -1  # closed
    finally:
        left.close()
        right.close()
