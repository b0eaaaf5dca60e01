"""A node of a local lab seen from the controller: its files, processes and network.

Nothing here runs a program of the node or goes through its shell, PATH, login files or
sshd, so nothing the candidate (root in the node) writes there can answer for it:

- files are opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to the
  node's root (its PID 1's `/proc/PID/root`, opened once): a symlink planted by the
  candidate resolves inside the node, never on the machine; only regular files are read,
  never FIFOs or devices, and never more than a bound;
- processes are the host's /proc entries in the node's PID namespace, identified by their
  real executable (the inode `/proc/P/exe` points to), not by the name or argv they show;
- network facts come from the node's network namespace as the kernel keeps it
  (`/proc/PID/net/...`) or from the controller's own programs entered into that namespace
  only (never the node's mount namespace): a ping or a connection still leaves from the
  node's stack, so its routes and firewall apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from labctl.grading.session import CommandResult, CommandTimeout, NodeUnreachable, communicate_capped
from labctl.image import UID_BASE, UID_COUNT

SYS_OPENAT2 = 437  # x86_64 and aarch64 alike
RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT = 0x02, 0x10
READ_LIMIT = 1024 * 1024  # bytes of a file read for its content
HASH_LIMIT = 256 * 1024 * 1024  # bytes hashed at most (a 10 GB file is not hashed)
CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # not /usr/local: what the candidate adds is not the system
CLEAN_ENV = {"PATH": CLEAN_PATH, "LC_ALL": "C", "LANG": "C", "HOME": "/root"}
T = TypeVar("T")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
CLONE_NEWNET = 0x40000000


class NodeFileError(Exception):
    """A path of the node cannot be read as asked (loop, FIFO, device, too big, I/O error)."""


@dataclass(frozen=True)
class FileFacts:
    """What a node's file is: kind, mode, owner and group as uid/gid inside the node."""

    kind: str  # "regular file", "directory", "symbolic link", "fifo", "character special file"...
    mode: int
    uid: int
    gid: int
    size: int
    device: int
    inode: int


def _kind(mode: int) -> str:
    """A file type in `stat -c %F` words."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISCHR, "character special file"), (stat.S_ISBLK, "block special file"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "weird file"


def node_id(host_id: int) -> int:
    """A uid or gid seen on the machine, as the node sees it (its user namespace is shifted)."""
    return host_id - UID_BASE if UID_BASE <= host_id < UID_BASE + UID_COUNT else 65534


class NodeView:
    """One running node of a local lab, observed from the controller."""

    def __init__(self, name: str, init_pid: int, start_time: int, upper: Path, cgroup: str | None = None) -> None:
        self.name, self.pid, self.start_time, self.upper = name, init_pid, start_time, upper
        self.cgroup = cgroup  # the node's cgroup (relative path): what runs inside joins it
        try:
            self.root_fd = os.open(f"/proc/{init_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            self.pid_ns = os.readlink(f"/proc/{init_pid}/ns/pid")
        except OSError as exc:
            raise NodeUnreachable(f"{name}: cannot open the node's root or namespaces: {exc.strerror}") from None
        self.check_alive()

    def close(self) -> None:
        """Release the node's root."""
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def check_alive(self) -> None:
        """Raise NodeUnreachable when the node's PID 1 is no longer the one that started it."""
        from labctl.state import process_start_time

        if process_start_time(self.pid) != self.start_time:
            raise NodeUnreachable(f"{self.name}: the node's PID 1 ({self.pid}) is gone")

    # ---- files -----------------------------------------------------------------------
    def _open(self, path: str, flags: int) -> int:
        """openat2 of `path` resolved inside the node's root; OSError on failure."""
        how = _OpenHow(flags=flags | os.O_CLOEXEC, mode=0, resolve=RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(SYS_OPENAT2, self.root_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return int(fd)

    def stat(self, path: str) -> FileFacts | None:
        """The file at `path` (symlinks followed inside the node), or None when it does not exist."""
        try:
            fd = self._open(path, os.O_PATH)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                raise NodeFileError(f"{path}: too many levels of symbolic links") from None
            if exc.errno == 20:  # ENOTDIR: a parent is not a folder, so the path does not exist
                return None
            raise NodeFileError(f"{path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        return FileFacts(_kind(info.st_mode), stat.S_IMODE(info.st_mode), node_id(info.st_uid),
                         node_id(info.st_gid), info.st_size, info.st_dev, info.st_ino)

    def chunks(self, path: str, limit: int = READ_LIMIT) -> Iterator[bytes]:
        """The first `limit` bytes of the regular file at `path`, a MiB at a time; NodeFileError
        for anything but a regular file.

        The file is opened as a path first and checked to be a regular file, then re-opened for
        reading through that descriptor: a FIFO or a device is never opened for reading.
        """
        handle = self._open_regular(path)
        try:
            left = limit
            while left > 0:
                chunk = os.read(handle, min(left, 1024 * 1024))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            os.close(handle)

    def read(self, path: str, limit: int = READ_LIMIT) -> bytes:
        """Up to `limit` bytes of the regular file at `path` (see `chunks`)."""
        return b"".join(self.chunks(path, limit))

    def _open_regular(self, path: str) -> int:
        try:
            fd = self._open(path, os.O_PATH)
        except OSError as exc:
            reason = "too many levels of symbolic links" if exc.errno == 40 else exc.strerror
            raise NodeFileError(f"{path}: {reason}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NodeFileError(f"{path} is a {_kind(info.st_mode)}, not a regular file: not read")
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as exc:
            raise NodeFileError(f"{path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def sha256(self, path: str, limit: int = HASH_LIMIT) -> str:
        """The sha256 of a regular file; NodeFileError when it is larger than `limit`."""
        facts = self.stat(path)
        if facts is not None and facts.size > limit:
            raise NodeFileError(f"{path} is {facts.size} bytes: larger than the {limit} bytes hashed at most")
        digest = hashlib.sha256()
        for chunk in self.chunks(path, limit):
            digest.update(chunk)
        return digest.hexdigest()

    def listdir(self, path: str, limit: int = 4096) -> list[str]:
        """The names in the folder at `path` (at most `limit`); empty when it is not a folder."""
        try:
            fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return []
        try:
            return sorted(os.listdir(fd))[:limit]
        finally:
            os.close(fd)

    def lstat_link(self, path: str) -> tuple[os.stat_result, str | None] | None:
        """The file at `path` itself (a final symbolic link not followed) and, for a link, its
        target as written; None when it does not exist."""
        try:
            fd = self._open(path, os.O_PATH | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISLNK(info.st_mode):
                return info, None
            buffer = ctypes.create_string_buffer(4096)
            size = _libc.readlinkat(fd, b"", buffer, len(buffer))
            return info, buffer.raw[:size].decode(errors="replace") if size >= 0 else ""
        finally:
            os.close(fd)

    def text(self, path: str, limit: int = READ_LIMIT) -> str:
        """A file's text (undecodable bytes replaced)."""
        return self.read(path, limit).decode(errors="replace")

    def replaced(self, path: str) -> bool:
        """Whether the candidate wrote `path` (it is in the node's writable layer, so it is not
        the image's file)."""
        relative = path.lstrip("/")
        try:
            os.lstat(self.upper / relative)
            return True
        except OSError:
            return False

    # ---- processes -------------------------------------------------------------------
    def processes(self) -> list[NodeProcess]:
        """The node's live processes (zombies excluded), from the host's /proc."""
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") != self.pid_ns:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    raw = handle.read().decode(errors="replace")
                comm = raw[raw.index("(") + 1:raw.rindex(")")]
                state = raw[raw.rindex(")") + 2:].split()[0]
                if state in ("Z", "X"):
                    continue
                exe = os.stat(f"/proc/{entry.name}/exe")
                exe_path = os.readlink(f"/proc/{entry.name}/exe")
            except (OSError, ValueError):
                continue  # gone meanwhile, or a kernel thread without an executable
            found.append(NodeProcess(int(entry.name), comm, exe_path, exe.st_dev, exe.st_ino))
        return found

    def socket_owners(self) -> dict[int, list[NodeProcess]]:
        """Socket inode -> the node's processes holding it."""
        owners: dict[int, list[NodeProcess]] = {}
        for process in self.processes():
            try:
                links = os.listdir(f"/proc/{process.pid}/fd")
            except OSError:
                continue
            for fd in links:
                try:
                    target = os.readlink(f"/proc/{process.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owners.setdefault(int(target[8:-1]), []).append(process)
        return owners

    # ---- network ---------------------------------------------------------------------
    def net_file(self, name: str) -> str:
        """A file of the node's network namespace as the kernel keeps it (/proc/PID/net/NAME)."""
        try:
            return Path(f"/proc/{self.pid}/net/{name}").read_text()
        except OSError as exc:
            self.check_alive()
            raise NodeUnreachable(f"{self.name}: cannot read its network state ({exc.strerror})") from None

    def netns_argv(self, argv: Sequence[str]) -> list[str]:
        """The controller's program `argv`, entered into the node's network namespace only."""
        return netns_argv(f"/proc/{self.pid}/ns/net", argv)

    def run_in_netns(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run a controller program in the node's network namespace."""
        self.check_alive()
        return run_argv(self.netns_argv(argv), timeout)

    def in_netns(self, work: Callable[[], T]) -> T:
        """Run `work` in a thread that entered the node's network namespace (sockets made there
        stay there); exceptions propagate."""
        result: dict[str, object] = {}

        def target() -> None:
            try:
                with open(f"/proc/{self.pid}/ns/net", "rb") as handle:
                    if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                result["value"] = work()
            except BaseException as exc:  # handed to the caller
                result["error"] = exc

        self.check_alive()
        thread = threading.Thread(target=target, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join()
        if "error" in result:
            raise result["error"]  # type: ignore[misc]
        return result["value"]  # type: ignore[return-value]

    def inside_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the node as its root (user namespace first, no host credential
        ever visible in it: providers/enter.py), with a clean environment: no login files, no
        PATH or variables of anyone's choosing."""
        from labctl.providers.enter import node_exec_argv

        inside = node_exec_argv(self.pid, ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in CLEAN_ENV.items()),
                                           *argv])
        if self.cgroup is None:
            return inside
        from labctl import cgroups  # the node's limits hold for it, and `down` finds it with the node

        return cgroups.enter_argv(self.cgroup, inside)


@dataclass(frozen=True)
class NodeProcess:
    """A process of the node: host pid, the name it shows, its real executable (path and inode)."""

    pid: int
    comm: str
    exe: str
    exe_device: int
    exe_inode: int


def netns_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """The controller's program `argv`, entered into network namespace `namespace` (a path) only,
    with a clean environment."""
    return ["nsenter", f"--net={namespace}", "--", "env", "-i", *(f"{k}={v}" for k, v in CLEAN_ENV.items()), *argv]


def clean_shell_argv(command: str) -> list[str]:
    """A non-login, non-interactive bash that reads no start-up file, for `command`."""
    return ["/bin/bash", "--noprofile", "--norc", "-c", command]


def run_argv(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run a controller-side command line in a session of its own; past `timeout` seconds the
    whole session is killed (children that kept its pipes open too) and CommandTimeout raised."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = communicate_capped(proc, timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child that left the session may hold the pipes
            proc.communicate(timeout=1)
        raise CommandTimeout(f"'{' '.join(argv[-3:])}' ran over {timeout:g} s") from None
    return CommandResult(proc.returncode, out, err)
