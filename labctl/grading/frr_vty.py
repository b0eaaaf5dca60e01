"""Asking a node's FRR daemons directly, with the controller's own code, and proving who answers.

The candidate (root in the node) can replace vtysh, wrap it in a login file or point the
CLI user's shell anywhere: none of it is used here. labctl speaks FRR's vty protocol
itself (what vtysh speaks): connect to the daemon's unix socket (/run/frr/<daemon>.vty
inside the node), send the command and a NUL, read until three NULs and a status byte.

The socket is reached through the node's root from the host (`/proc/<init>/root`), one
path component at a time, none a symbolic link, the last one a socket. Before trusting
an answer, the process at the other end must be the image's daemon:

- its pid (SO_PEERCRED), pinned with a pidfd while it is examined, in the node's PID and
  network namespaces, not traced;
- every executable mapping of its memory is a file of the image, by device and inode
  (`/proc/P/maps` shows the real file under the overlay: a copy in the writable layer, a
  deleted file or a memfd has another inode), and no anonymous executable memory;
- the server end of this very connection (sock_diag UNIX_DIAG_PEER) is held by that
  process and no other (a listener planted at the socket path, or a descriptor stolen from
  the daemon, answers from another process).

Anything else raises `Forged`: the check is ERROR "tampered: ...", never PASS.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path

VTY_DIR = ("run", "frr")
REPLY_LIMIT = 4 * 1024 * 1024  # bytes of one answer read at most
CODE_CHUNK = 1 << 20
NOT_CODE = ("[vdso]", "[vsyscall]")
SOCK_DIAG_BY_FAMILY, NETLINK_SOCK_DIAG, UDIAG_SHOW_PEER, UNIX_DIAG_PEER = 20, 4, 0x04, 2
NLM_F_REQUEST, NLMSG_ERROR = 0x01, 2
CMD_SUCCESS, CMD_WARNING = 0, 1
CMD_STATUS = {0: "success", 1: "warning", 2: "no such command", 3: "ambiguous command",
              4: "incomplete command", 5: "too many arguments", 13: "not my instance"}


class VtyError(Exception):
    """The daemon could not be asked (no socket, no answer in time, a broken answer)."""


class NotRunning(VtyError):
    """The daemon does not run: its socket is missing or refuses connections (an observation
    of the node's state, not a failure to observe it)."""


class Forged(Exception):
    """What answers on the daemon's socket is not the image's daemon (or cannot be proven to be)."""


@dataclass(frozen=True)
class Reply:
    """A daemon's answer: the status byte of the vty protocol and the text before it."""

    status: int
    text: str

    @property
    def ok(self) -> bool:
        """The command ran (success, or a warning that still printed its output)."""
        return self.status in (CMD_SUCCESS, CMD_WARNING)


@dataclass(frozen=True)
class Daemon:
    """An FRR daemon proven to be the image's: its name, host pid and executable."""

    name: str
    pid: int
    exe: str

    def describe(self) -> str:
        """Evidence: `ospfd (pid 1234, /usr/lib/frr/ospfd of the image)`."""
        return f"{self.name} (pid {self.pid}, {self.exe} of the image)"


# ---- the protocol -----------------------------------------------------------------------
def encode(command: str) -> bytes:
    """A command as vtysh sends it: its bytes and a NUL."""
    if "\0" in command or "\n" in command:
        raise ValueError("a vty command is one line without NUL")
    return command.encode() + b"\0"


def ask(sock: socket.socket, command: str, timeout: float, limit: int = REPLY_LIMIT) -> Reply:
    """Send `command` and read the answer up to the protocol's terminator (three NULs and
    the status byte); VtyError past `timeout` s, `limit` bytes or a closed connection."""
    deadline = time.monotonic() + timeout
    sock.sendall(encode(command))
    buffer = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise VtyError(f"no complete answer to `{command}` within {timeout:g} s")
        chunk = sock.recv(65536)
        if not chunk:
            raise VtyError(f"the daemon closed the connection while answering `{command}`")
        buffer += chunk
        if len(buffer) >= 4 and buffer[-4:-1] == b"\0\0\0":
            return Reply(buffer[-1], bytes(buffer[:-4]).decode(errors="replace"))
        if len(buffer) > limit:
            raise VtyError(f"the answer to `{command}` is larger than {limit} bytes")


# ---- reaching the socket ------------------------------------------------------------------
def open_socket_path(root: str, daemon: str) -> int:
    """An O_PATH descriptor of /run/frr/<daemon>.vty under the node's `root` (its PID 1's
    /proc/P/root), opened one component at a time without following any symbolic link;
    VtyError or Forged otherwise."""
    try:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise VtyError(f"cannot open the node's root: {exc.strerror}") from None
    shown = ""
    for part in (*VTY_DIR, f"{daemon}.vty"):
        shown += "/" + part
        try:
            child = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            raise NotRunning(f"{daemon} is not running (no {shown} in the node)") from None
        except OSError as exc:
            os.close(fd)
            raise VtyError(f"{shown}: {exc.strerror}") from None
        os.close(fd)
        fd = child
        mode = os.fstat(fd).st_mode
        last = part.endswith(".vty")
        if stat.S_ISLNK(mode):
            os.close(fd)
            raise Forged(f"{shown} is a symbolic link planted in the node")
        if (not last and not stat.S_ISDIR(mode)) or (last and not stat.S_ISSOCK(mode)):
            os.close(fd)
            raise Forged(f"{shown} is not a {'socket' if last else 'folder'}")
    return fd


def connect(root: str, daemon: str, timeout: float) -> socket.socket:
    """A connection to the daemon's vty socket under the node's `root` (not yet proven genuine)."""
    path_fd = open_socket_path(root, daemon)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(f"/proc/self/fd/{path_fd}")
    except ConnectionRefusedError:
        sock.close()
        raise NotRunning(f"{daemon} is not running (/run/frr/{daemon}.vty refuses connections)") from None
    except OSError as exc:
        sock.close()
        raise VtyError(f"cannot connect to /run/frr/{daemon}.vty: {exc.strerror}") from None
    finally:
        os.close(path_fd)
    return sock


# ---- proving the daemon -----------------------------------------------------------------
def peer_pid(sock: socket.socket) -> int:
    """The pid (in this machine's PID namespace) of the process at the other end."""
    pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid)


def peer_inode(sock: socket.socket) -> int:
    """The inode of the other end of a connected unix socket (sock_diag UNIX_DIAG_PEER)."""
    own = os.fstat(sock.fileno()).st_ino
    request = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, own, UDIAG_SHOW_PEER,
                          0xFFFFFFFF, 0xFFFFFFFF)
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(2.0)
        diag.send(header + request)
        answer = diag.recv(65536)
    length, kind = struct.unpack_from("=IH", answer)
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("=i", answer, 16)[0]
        raise VtyError(f"sock_diag: {os.strerror(code)}")
    offset = 16 + 16  # nlmsghdr, unix_diag_msg
    while offset + 4 <= length:
        size, attr = struct.unpack_from("=HH", answer, offset)
        if attr == UNIX_DIAG_PEER and size >= 8:
            return int(struct.unpack_from("=I", answer, offset + 4)[0])
        offset += (size + 3) & ~3
        if size < 4:
            break
    raise VtyError("sock_diag gave no peer for the connection")


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/P/maps: address range, permissions, file offset, inode and path."""

    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


def parse_maps(text: str) -> list[Mapping]:
    """The mappings listed in /proc/P/maps."""
    found = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        start, end = (int(n, 16) for n in fields[0].split("-"))
        found.append(Mapping(start, end, fields[1], int(fields[2], 16), int(fields[4]),
                             fields[5] if len(fields) > 5 else ""))
    return found


def image_path(shown: str, lower: Path) -> str:
    """A mapped file's path inside the node (maps shows it as the node sees it, or as the
    host path of the image)."""
    prefix = str(lower).rstrip("/")
    return shown[len(prefix):] if shown.startswith(prefix + "/") else shown


def foreign_code(pid: int, maps: str, lower: Path) -> list[str]:
    """Why the process's executable memory is not exactly the image's code (empty: it is).

    Each executable mapping must be of a file that the image has, and hold the very bytes
    of the image's file at that offset (read from the process's memory): a copy written in
    the node, a deleted or memory-only file, or code patched in memory all differ.
    """
    problems = []
    try:
        memory = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return [f"its memory cannot be read ({exc.strerror})"]
    try:
        for mapping in parse_maps(maps):
            if "x" not in mapping.perms or mapping.path in NOT_CODE:
                continue
            problem = _code_problem(memory, mapping, lower)
            if problem:
                problems.append(problem)
    finally:
        os.close(memory)
    return sorted(set(problems))


def _code_problem(memory: int, mapping: Mapping, lower: Path) -> str:
    """Why one executable mapping is not the image's code, or ''."""
    if mapping.inode == 0:
        return f"anonymous executable memory ({mapping.path or 'no file'})"
    path = image_path(mapping.path, lower)
    try:
        image = os.open(lower / path.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return f"{mapping.path} is not a file of the image"
    try:
        size = min(mapping.end - mapping.start, max(0, os.fstat(image).st_size - mapping.offset))
        done = 0
        while done < size:
            length = min(CODE_CHUNK, size - done)
            expected = os.pread(image, length, mapping.offset + done)
            if os.pread(memory, length, mapping.start + done) != expected:
                return f"{path} in memory is not the image's file (written in the node or patched)"
            done += length
        return ""
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    finally:
        os.close(image)


def holders(inode: int, pid_ns: str, deadline: float | None = None) -> set[int]:
    """Processes of the PID namespace `pid_ns` holding socket `inode`; VtyError past
    `deadline` (monotonic), e.g. a node whose processes hold millions of descriptors."""
    target, found = f"socket:[{inode}]", set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry.name}/ns/pid") != pid_ns:
                continue
            for count, fd in enumerate(os.listdir(f"/proc/{entry.name}/fd")):
                if deadline is not None and count % 1024 == 0 and time.monotonic() > deadline:
                    raise VtyError("the node's processes hold too many descriptors to find who holds "
                                   "the connection in time")
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry.name}/fd/{fd}") == target:
                        found.add(int(entry.name))
                        break
    return found


def prove(sock: socket.socket, daemon: str, init_pid: int, lower: Path) -> Daemon:
    """The daemon at the other end of `sock`, proven to be the image's `daemon` running in
    the node of `init_pid`; Forged with the reason otherwise."""
    pid = peer_pid(sock)
    if pid <= 0:
        raise Forged(f"the process answering on /run/frr/{daemon}.vty is not in this node")
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        raise Forged(f"the process answering on /run/frr/{daemon}.vty (pid {pid}) is gone") from None
    try:
        proof = _examine(sock, daemon, pid, init_pid, lower)
        if select.select([pidfd], [], [], 0)[0]:  # it exited: /proc may have shown another process
            raise Forged(f"{daemon} (pid {pid}) exited while it was examined")
        return proof
    finally:
        os.close(pidfd)


def _examine(sock: socket.socket, daemon: str, pid: int, init_pid: int, lower: Path) -> Daemon:
    proc = f"/proc/{pid}"
    expected = f"/usr/lib/frr/{daemon}"
    try:
        for ns in ("pid", "net"):
            if os.readlink(f"{proc}/ns/{ns}") != os.readlink(f"/proc/{init_pid}/ns/{ns}"):
                raise Forged(f"the process answering as {daemon} (pid {pid}) is not in the node's {ns} namespace")
        exe = image_path(os.readlink(f"{proc}/exe"), lower)
        maps = Path(f"{proc}/maps").read_text()
        status = Path(f"{proc}/status").read_text()
    except OSError as exc:
        raise Forged(f"the process answering as {daemon} (pid {pid}) cannot be examined: {exc.strerror}") from None
    if exe != expected:
        raise Forged(f"/run/frr/{daemon}.vty is answered by {exe} (pid {pid}), not {expected}")
    tracer = next((line.split()[1] for line in status.splitlines() if line.startswith("TracerPid:")), "0")
    if tracer != "0":
        raise Forged(f"{daemon} (pid {pid}) is being traced by pid {tracer}")
    problems = foreign_code(pid, maps, lower)
    if problems:
        raise Forged(f"{daemon} (pid {pid}) runs code that is not the image's: {'; '.join(problems[:3])}")
    held = _accepted_by(sock, os.readlink(f"/proc/{init_pid}/ns/pid"), daemon)
    if held != {pid}:
        others = ", ".join(f"pid {p} ({_exe_of(p)})" for p in sorted(held - {pid})) or "no process of the node"
        raise Forged(f"the connection to {daemon} is held by {others}, not by {daemon} (pid {pid})")
    return Daemon(daemon, pid, exe)


def _accepted_by(sock: socket.socket, pid_ns: str, daemon: str) -> set[int]:
    """The node's processes holding the server end of `sock`, once some process accepted it
    (a connection waits in the listener's queue until the daemon's loop takes it; the
    server end has no inode before that)."""
    deadline = time.monotonic() + (sock.gettimeout() or 5.0)
    while True:
        inode = peer_inode(sock)
        held = holders(inode, pid_ns, deadline) if inode else set()
        if held or time.monotonic() > deadline:
            return held
        time.sleep(0.005)


def _exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return "?"


@dataclass
class DaemonSession:
    """An open, proven connection to one FRR daemon of a node."""

    daemon: Daemon
    sock: socket.socket

    def ask(self, command: str, timeout: float) -> Reply:
        """The daemon's answer to `command`."""
        return ask(self.sock, command, timeout)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self.sock.close()


def open_daemon(init_pid: int, daemon: str, lower: Path, timeout: float) -> DaemonSession:
    """A proven connection to `daemon` (zebra, ospfd, ...) of the node of `init_pid`."""
    sock = connect(f"/proc/{init_pid}/root", daemon, timeout)
    try:
        return DaemonSession(prove(sock, daemon, init_pid, lower), sock)
    except BaseException:
        sock.close()
        raise
