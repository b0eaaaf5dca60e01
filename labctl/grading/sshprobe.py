"""Active SSH checks, acted from the grader's probe point (local provider).

`login` tries one log-in (password, key, key + TOTP code) and records what the node's SSH
server answered, after checking its host key against the node's own files (read from outside):
only that server's refusal counts. Authentication only: no session or command is opened, so
nothing runs in the node; files the server's PAM stack rewrites on success (pam_oath's users
file) are saved before and written back after (`restores`).

`ban` sends a bounded burst of wrong passwords, then watches, with a packet socket in the
node's network namespace, whether the probe point's SYN still gets an answer: banned when the
SYN arrives at the node's interface and nothing answers it. Then it runs the check's `undo`
in the node and waits until the server answers the probe point again.

Both return the observation as JSON for the pure judgement (checks/ssh.py).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import secrets
import select
import shlex
import socket
import time
from collections.abc import Callable
from typing import Any

import paramiko

from labctl import netns
from labctl.grading.checks.ssh import totp, wrong_code
from labctl.grading.flowprobe import ETH_P_ALL, PACKET_OUTGOING, TCP_ACK, TCP_RST, TCP_SYN, parse_frame
from labctl.grading.nodeview import NodeFileError, NodeView
from labctl.grading.probepoint import ProbePointAt
from labctl.grading.session import CommandResult
from labctl.grading.spec import SshBanCheck, SshLoginCheck

CONNECT_TIMEOUT = 5.0
SYN_WAIT = 1.5  # seconds an answer to the probe point's SYN is waited for
UNDONE_WITHIN = 15.0  # seconds for the server to answer again after the undo
UNDO_PAUSES = (1.0, 1.5)  # a log-in's undo runs after these pauses, one after the other
RunInside = Callable[[str, float], CommandResult]


def host_keys(view: NodeView) -> set[tuple[str, str]]:
    """(type, base64) of the node's SSH host public keys, read from outside the node."""
    found = set()
    with contextlib.suppress(NodeFileError):
        for name in view.listdir("/etc/ssh"):
            if name.startswith("ssh_host_") and name.endswith(".pub"):
                with contextlib.suppress(NodeFileError):
                    fields = view.text(f"/etc/ssh/{name}").split()
                    if len(fields) >= 2:
                        found.add((fields[0], fields[1]))
    return found


def _transport(point: ProbePointAt, port: int, timeout: float) -> paramiko.Transport:
    sock = netns.connect_in(point.netns, point.target, port, min(timeout, CONNECT_TIMEOUT))
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.auth_timeout = transport.handshake_timeout = timeout
    transport.start_client(timeout=timeout)
    return transport


def _private_key(text: str) -> paramiko.PKey:
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        with contextlib.suppress(paramiko.SSHException, ValueError):
            return kind.from_private_key(io.StringIO(text))
    raise ValueError("the key in the lab's vault is not an OpenSSH private key paramiko reads")


def login(check: SshLoginCheck, point: ProbePointAt, view: NodeView, timeout: float) -> dict[str, Any]:
    """One log-in attempt as the check says; what the server answered."""
    seen: dict[str, Any] = {"probe": point.address, "answered": False, "host_key": "unknown", "steps": [],
                            "outcome": "no-answer", "error": ""}
    expected = host_keys(view)
    try:
        transport = _transport(point, check.port, timeout)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        seen["error"] = str(exc) or type(exc).__name__
        return seen
    steps: list[str] = seen["steps"]
    try:
        seen["answered"] = True
        server = transport.get_remote_server_key()
        if (server.get_name(), server.get_base64()) not in expected:
            seen["host_key"] = f"host key {server.get_name()} {server.get_fingerprint().hex()[:16]}… is none of " \
                               f"{len(expected)} keys in {check.node}'s /etc/ssh"
            return seen
        seen["host_key"] = "ok"
        seen["outcome"] = _authenticate(check, transport, seen)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        seen["outcome"], seen["error"] = "error", str(exc) or type(exc).__name__
        steps.append(f"the connection broke: {seen['error']}")
    finally:
        transport.close()
    return seen


def _authenticate(check: SshLoginCheck, transport: paramiko.Transport, seen: dict[str, Any]) -> str:
    """accepted, partial (one factor accepted, another asked) or refused, each step in words."""
    user, steps = check.user, seen["steps"]
    try:
        if check.methods == "password":
            assert check.password is not None
            left = transport.auth_password(user, check.password, fallback=False)
            return _after(left, "password", steps)
        if check.key_text is None:
            raise paramiko.SSHException("no private key: the lab's vault has none under that name")
        left = transport.auth_publickey(user, _private_key(check.key_text))
        if check.methods == "key" or not left:
            return _after(left, "key", steps)
        steps.append(f"key accepted as a first factor, the server asks for {', '.join(left)}")
        seen["key_first_factor"] = True
        if "keyboard-interactive" not in left:
            steps.append("no keyboard-interactive to give a code to")
            return "refused"
        assert check.totp_secret is not None
        now = time.time()
        code = totp(check.totp_secret, now, check.totp_digits) if check.methods == "key+code" \
            else wrong_code(check.totp_secret, now, check.totp_digits)
        prompts: list[str] = []

        def answer(title: str, instructions: str, asked: list[tuple[str, bool]]) -> list[str]:
            prompts.extend(p.strip() for p, _ in asked)
            return [code] * len(asked)

        which = "the current code" if check.methods == "key+code" else "a code an hour old"
        left = transport.auth_interactive(user, answer)
        shown = f" to {', '.join(repr(p) for p in prompts[:3])}" if prompts else ""
        return _after(left, f"{which}{shown}", steps)
    except paramiko.BadAuthenticationType as exc:
        steps.append(f"{check.methods.split('+')[0]} not offered (the server allows: {', '.join(exc.allowed_types)})")
        return "refused"
    except paramiko.AuthenticationException as exc:
        steps.append(f"refused: {exc}")
        return "refused"


def _after(left: list[str], what: str, steps: list[str]) -> str:
    if not left:
        steps.append(f"{what}: accepted")
        return "accepted"
    steps.append(f"{what}: accepted as one factor only, the server still asks for {', '.join(left)}")
    return "partial"


def restore(view: NodeView, saved: dict[str, bytes | None], run_inside: RunInside) -> list[str]:
    """Write back the files an attempt changed (as they were before); the paths it could not."""
    failed = []
    for path, before in saved.items():
        try:
            now: bytes | None = view.read(path)
        except NodeFileError:
            now = None
        if now == before:
            continue
        quoted = shlex.quote(path)
        command = f"rm -f -- {quoted}" if before is None else \
            f"printf %s {base64.b64encode(before).decode()} | base64 -d > {quoted}"
        result = run_inside(command, 15.0)
        if result.exit_code != 0:
            failed.append(f"{path}: {result.stderr.strip() or result.exit_code}")
    return failed


def saved_files(view: NodeView, paths: list[str]) -> dict[str, bytes | None]:
    """The files' contents before an attempt (None: absent)."""
    saved: dict[str, bytes | None] = {}
    for path in paths:
        try:
            saved[path] = view.read(path)
        except NodeFileError:
            saved[path] = None
    return saved


def lift(undo: str, address: str, run_inside: RunInside, pauses: tuple[float, ...] = UNDO_PAUSES) -> None:
    """Run a log-in's `undo` in the node at 1 s and 2.5 s after the attempt (a detector such as
    fail2ban reads the log and bans a moment later; one attempt can count several failures);
    with `pauses=(0,)`, once before it (a ban an earlier run's undo came too soon for)."""
    for pause in pauses:
        time.sleep(pause)
        run_inside(undo.replace("{address}", address), 15.0)


def answers(point: ProbePointAt, port: int, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether an SSH server answers the probe point (a banner)."""
    try:
        sock = netns.connect_in(point.netns, point.target, port, timeout)
    except OSError:
        return False
    try:
        sock.settimeout(timeout)
        return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
    finally:
        sock.close()


def _bad_password(point: ProbePointAt, check: SshBanCheck) -> bool:
    """One connection, one wrong password (by keyboard-interactive too when the server offers
    it); False when the server did not answer."""
    wrong = "labctl-" + secrets.token_hex(6)
    try:
        transport = _transport(point, check.port, CONNECT_TIMEOUT)
    except (OSError, paramiko.SSHException, EOFError):
        return False
    try:
        try:
            transport.auth_password(check.user, wrong, fallback=False)
        except paramiko.BadAuthenticationType as exc:
            if "keyboard-interactive" in exc.allowed_types:
                with contextlib.suppress(paramiko.SSHException):
                    transport.auth_interactive(check.user, lambda t, i, asked: [wrong] * len(asked))
        except (paramiko.SSHException, EOFError, OSError):
            pass
    finally:
        transport.close()
    return True


def syn_unanswered(point: ProbePointAt, view: NodeView, port: int) -> bool | None:
    """Send a SYN from the probe point: True when it arrived at the node and nothing answered
    within SYN_WAIT, False when the node answered, None when it never arrived."""
    def watch() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setblocking(False)
        return sock

    sniffer = view.in_netns(watch)
    client: socket.socket | None = None
    arrived = answered = False
    try:
        client = netns.in_namespace(netns.NETNS_DIR / point.netns,
                                    lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), point.netns)
        client.setblocking(False)
        client.bind((point.address, 0))
        sport = client.getsockname()[1]
        code = client.connect_ex((point.target, port))
        if code not in (0, errno.EINPROGRESS):
            return None
        deadline = time.monotonic() + SYN_WAIT
        while (left := deadline - time.monotonic()) > 0 and not answered:
            readable, _, _ = select.select([sniffer], [], [], min(left, 0.1))
            for _ in range(1000 if readable else 0):
                try:
                    frame, address = sniffer.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                pkt = parse_frame(frame, address[2] == PACKET_OUTGOING)
                if pkt is None or pkt.proto != socket.IPPROTO_TCP:
                    continue
                if not pkt.outgoing and (pkt.src, pkt.sport, pkt.dport) == (point.address, sport, port) \
                        and pkt.flags & TCP_SYN and not pkt.flags & TCP_ACK:
                    arrived = True
                if pkt.outgoing and (pkt.dst, pkt.dport, pkt.sport) == (point.address, sport, port) \
                        and (pkt.flags & TCP_RST or pkt.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK):
                    answered = True
        if answered:
            return False
        return True if arrived else None
    finally:
        sniffer.close()
        if client is not None:
            client.close()


def ban(check: SshBanCheck, point: ProbePointAt, view: NodeView, run_inside: RunInside,
        used: list[str] | None = None) -> dict[str, Any]:
    """The burst, the ban watched for, then the undo (`used`: every address the run's probe
    points took, for {addresses})."""
    seen: dict[str, Any] = {"probe": point.address, "before": answers(point, check.port), "sent": 0,
                            "banned_after": None, "undone": None}
    if not seen["before"]:
        return seen
    for _ in range(check.attempts):
        if not _bad_password(point, check):
            break
        seen["sent"] += 1
    burst_end = time.monotonic()
    while time.monotonic() - burst_end < check.within:
        started = time.monotonic()
        if syn_unanswered(point, view, check.port):
            seen["banned_after"] = round(time.monotonic() - burst_end, 1)
            break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    addresses = " ".join(dict.fromkeys([*(used or []), point.address]))
    result = run_inside(check.undo.replace("{addresses}", addresses).replace("{address}", point.address), 30.0)
    deadline = time.monotonic() + UNDONE_WITHIN
    while True:
        if answers(point, check.port, 2.0):
            seen["undone"] = True
            break
        if time.monotonic() > deadline:
            seen["undone"] = (f"`{check.undo}` exited {result.exit_code}: "
                              f"{(result.stderr or result.stdout).strip()[:200]}; the server still does not answer")
            break
        time.sleep(0.5)
    return seen


def as_result(seen: dict[str, Any]) -> CommandResult:
    """An observation as the judgement reads it."""
    return CommandResult(0, json.dumps(seen), "")
