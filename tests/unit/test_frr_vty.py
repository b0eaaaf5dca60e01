"""The controller's own FRR vty client: framing against a socket server, reaching a socket
path without following links, and the proof of who answers, on real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.grading import frr_vty
from labctl.grading.frr_vty import Forged, NotRunning, Reply, VtyError, ask, encode

TERMINATOR = b"\0\0\0"
SERVERS: list[socket.socket] = []  # server ends stay open until the test process ends


def serve(chunks: list[bytes], expect: bytes, close: bool = False) -> socket.socket:
    """A connected client socket whose server thread reads one command, checks it and answers
    with `chunks` (written one by one, a little apart)."""
    client, server = socket.socketpair()
    SERVERS.append(server)

    def answer() -> None:
        got = b""
        while not got.endswith(b"\0"):
            got += server.recv(4096)
        assert got == expect
        for chunk in chunks:
            server.sendall(chunk)
            time.sleep(0.01)
        if close:
            server.close()

    threading.Thread(target=answer, daemon=True).start()
    return client


def test_a_command_is_its_bytes_and_a_nul() -> None:
    assert encode("show ip ospf neighbor json") == b"show ip ospf neighbor json\0"
    for bad in ("show\nrun", "a\0b"):
        with pytest.raises(ValueError):
            encode(bad)


def test_an_answer_is_read_up_to_three_nuls_and_the_status() -> None:
    # the terminator may arrive cut anywhere
    sock = serve([b'{"neighbors":', b'{}}\n\0', b"\0", b"\0\0"], b"show ip ospf neighbor json\0")
    assert ask(sock, "show ip ospf neighbor json", 2) == Reply(0, '{"neighbors":{}}\n')
    sock = serve([b"% Unknown command: show ip osp\n" + TERMINATOR + b"\x02"], b"show ip osp\0")
    reply = ask(sock, "show ip osp", 2)
    assert reply == Reply(2, "% Unknown command: show ip osp\n") and not reply.ok


def test_no_answer_a_closed_connection_or_too_much_is_an_error() -> None:
    sock = serve([b"partial"], b"show version\0")
    started = time.monotonic()
    with pytest.raises(VtyError, match=r"no complete answer to `show version` within 0.3 s"):
        ask(sock, "show version", 0.3)
    assert time.monotonic() - started < 2
    with pytest.raises(VtyError, match="closed the connection"):
        ask(serve([b"half"], b"show version\0", close=True), "show version", 2)
    with pytest.raises(VtyError, match="larger than 100 bytes"):
        ask(serve([b"x" * 300], b"show version\0"), "show version", 2, limit=100)


LISTENER = """
import socket, sys, os
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\\0"):
        data += c.recv(4096)
    c.sendall(b'{"neighbors":{"2.2.2.2":[{"nbrState":"Full/-"}]}}' + b"\\0\\0\\0\\0")
"""


@pytest.fixture
def node_root(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A folder standing for a node's root with a fake ospfd listening at /run/frr/ospfd.vty."""
    (tmp_path / "run/frr").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", LISTENER, str(tmp_path / "run/frr/ospfd.vty")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield tmp_path, proc
    proc.kill()
    proc.wait()


def test_a_fake_listener_is_refused(node_root: tuple[Path, subprocess.Popen[str]]) -> None:
    root, proc = node_root
    sock = frr_vty.connect(str(root), "ospfd", 2)
    try:
        assert frr_vty.peer_pid(sock) == proc.pid
        with pytest.raises(Forged, match=rf"is answered by .*python.* \(pid {proc.pid}\), not /usr/lib/frr/ospfd"):
            frr_vty.prove(sock, "ospfd", os.getpid(), Path("/"))
        # once it answered, the server end of this connection is held by the listener only
        assert ask(sock, "show ip ospf neighbor json", 2).ok
        inode = frr_vty.peer_inode(sock)
        assert frr_vty.holders(inode, os.readlink("/proc/self/ns/pid")) == {proc.pid}
    finally:
        sock.close()


def test_links_and_non_sockets_on_the_way_are_refused(node_root: tuple[Path, subprocess.Popen[str]],
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    root, _ = node_root
    elsewhere = tmp_path_factory.mktemp("host")
    (root / "run/frr/zebra.vty").symlink_to(root / "run/frr/ospfd.vty")
    with pytest.raises(Forged, match=r"/run/frr/zebra\.vty is a symbolic link planted in the node"):
        frr_vty.connect(str(root), "zebra", 2)
    (root / "run/frr/staticd.vty").write_text("")
    with pytest.raises(Forged, match=r"/run/frr/staticd\.vty is not a socket"):
        frr_vty.connect(str(root), "staticd", 2)
    with pytest.raises(NotRunning, match=r"bgpd is not running \(no /run/frr/bgpd\.vty in the node\)"):
        frr_vty.connect(str(root), "bgpd", 2)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(root / "run/frr/ripd.vty"))  # a daemon killed without removing its socket
    stale.close()
    with pytest.raises(NotRunning, match=r"ripd is not running \(/run/frr/ripd\.vty refuses connections\)"):
        frr_vty.connect(str(root), "ripd", 2)
    shutil.move(root / "run/frr", elsewhere / "frr")
    (root / "run/frr").symlink_to(elsewhere / "frr")  # the folder itself points out of the node
    with pytest.raises(Forged, match="/run/frr is a symbolic link"):
        frr_vty.connect(str(root), "ospfd", 2)


def test_code_in_memory_is_compared_with_the_image(tmp_path: Path) -> None:
    """A process whose executable mappings are all the image's files passes; the same process
    against an image whose copy of its program differs does not."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    proc = subprocess.Popen([sleep, "30"])
    try:
        time.sleep(0.2)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert frr_vty.foreign_code(proc.pid, maps, Path("/")) == []
        program = os.path.realpath(sleep)
        image = tmp_path / "image"
        for mapping in frr_vty.parse_maps(maps):
            if "x" in mapping.perms and mapping.path.startswith("/"):
                copy = image / mapping.path.lstrip("/")
                copy.parent.mkdir(parents=True, exist_ok=True)
                if not copy.exists():
                    shutil.copyfile(mapping.path, copy)
        text = next(m for m in frr_vty.parse_maps(maps) if "x" in m.perms and m.path == program)
        patched = bytearray((image / program.lstrip("/")).read_bytes())
        patched[text.offset + 16] ^= 0xFF
        (image / program.lstrip("/")).write_bytes(bytes(patched))
        assert frr_vty.foreign_code(proc.pid, maps, image) == [
            f"{program} in memory is not the image's file (written in the node or patched)"]
        (image / program.lstrip("/")).unlink()
        assert frr_vty.foreign_code(proc.pid, maps, image) == [f"{program} is not a file of the image"]
    finally:
        proc.kill()
        proc.wait()


def test_maps_lines() -> None:
    maps = ("5632686cf000-563268745000 r-xp 0007c000 00:12f 1639146    /usr/lib/frr/ospfd\n"
            "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                  [vdso]\n"
            "7f000000-7f001000 rwxp 00000000 00:00 0 \n")
    found = frr_vty.parse_maps(maps)
    assert [(m.perms, m.offset, m.inode, m.path) for m in found] == [
        ("r-xp", 0x7c000, 1639146, "/usr/lib/frr/ospfd"), ("r-xp", 0, 0, "[vdso]"), ("rwxp", 0, 0, "")]
    assert frr_vty.image_path("/var/lib/labctl/images/x/rootfs/usr/lib/frr/ospfd",
                              Path("/var/lib/labctl/images/x/rootfs")) == "/usr/lib/frr/ospfd"
