"""The candidate gateway takes whatever a candidate types without crashing."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from labctl.session import gateway

NODES = ["r1", "h1", "h2"]
HOSTILE = [
    "²".encode(),                    # '²'.isdigit() is True, int('²') raises
    "½ ① ٣".encode(),                 # more digits Python knows and int() refuses
    b"\xff\xfe\xc3(",                # invalid UTF-8
    b"\x00\x1b[2J\x1b]0;pwn\x07\x08\x7f",  # NUL, terminal escapes, bell, backspace, DEL
    b"9" * 1_000_000,                # a very long line (of digits)
    b"x" * 70_000 + "é".encode(),    # longer than a pipe's buffer, ending in a character
    b"99999999999999999999999", b"0", b"-1", b"   ", b"\t\r",
]


@dataclass
class FakeCandidate:
    id: str = "c1"
    login: str = "cand-c1"
    access: str = "open"

    def seconds_left(self, _session: object) -> float:
        return 600.0


@dataclass
class FakeSession:
    name: str = "s"
    candidates: list[FakeCandidate] = field(default_factory=lambda: [FakeCandidate()])

    def candidate(self, _id: str) -> FakeCandidate:
        return self.candidates[0]


def _typed(lines: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """Run the gateway loop with `lines` on its stdin; return its status and the nodes it opened."""
    from labctl.session import room

    opened: list[str] = []
    lab = SimpleNamespace(plan=SimpleNamespace(nodes=[SimpleNamespace(name=n) for n in NODES]))
    monkeypatch.setenv("SUDO_USER", "cand-c1")
    monkeypatch.setattr(gateway, "load_session", lambda _name: FakeSession())
    monkeypatch.setattr(room, "candidate_lab", lambda _candidate: lab)
    monkeypatch.setattr(gateway, "node_ssh_argv", lambda _s, _c, node: ["ssh", node])
    monkeypatch.setattr(gateway.subprocess, "run", lambda argv: opened.append(argv[-1]))
    read, write = os.pipe()
    data = b"\n".join(lines) + b"\n"

    def feed() -> None:
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    saved = os.dup(0)
    try:
        os.dup2(read, 0)
        writer.start()
        status = gateway.run("s")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read)
        writer.join()
    return status, opened


def test_any_input_is_refused_without_a_crash(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, opened = _typed([*HOSTILE, b"2", b"h2", b"q"], monkeypatch)
    out = capsys.readouterr().out
    assert status == 0
    assert opened == ["h1", "h2"]  # only what named a node opened one
    assert out.count("n'est pas un nœud de votre laboratoire") == len(HOSTILE)
    assert "\x1b" not in out and "\x00" not in out and "\x07" not in out  # nothing typed is replayed raw
    assert max(len(line) for line in out.splitlines()) < 200  # nor at length


def test_end_of_input_leaves_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    status, opened = _typed([b"\xc2"], monkeypatch)  # a cut multi-byte character, then EOF
    assert (status, opened) == (0, [])


def test_pick_and_shown() -> None:
    assert gateway.pick("1", NODES) == "r1" and gateway.pick("h2", NODES) == "h2"
    assert gateway.pick("²", NODES) is None and gateway.pick("4", NODES) is None
    assert gateway.pick("0" * 10_000 + "1", NODES) is None
    assert gateway.shown("a\x1bb") == "a?b" and len(gateway.shown("y" * 500)) == gateway.SHOWN + 1
