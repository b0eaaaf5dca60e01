"""Run a program inside a local node from the host, never exposing host credentials in it.

`nsenter -t PID -a` enters a node's namespaces while still holding the host's root: for
a moment (and for as long as the program it starts runs as host root) a process with host
credentials is visible in the node's PID namespace, where the node's root can trace it,
read its memory and so reach the host. This helper closes that window entirely:

1. it makes itself non-dumpable first (its memory belongs to the host's user namespace, so
   from then on only a process with CAP_SYS_PTRACE on the host may trace or inspect it);
2. it opens the node's namespaces, then joins the node's USER namespace before any other,
   so from then on its capabilities count only inside the node, never on the host;
3. it joins the other namespaces (mount, UTS, IPC, network, cgroup, PID), takes the node's
   root directory, becomes uid/gid 0 of the node (the node's mapped root: an unprivileged
   uid on the host), drops the supplementary groups, reduces its capability bounding set to
   the node's PID 1's and clears inherited and ambient capabilities;
4. only then it forks: the child is the first process that appears in the node's PID
   namespace, already node root, still non-dumpable, and it execs the program with a clean
   environment (the exec makes it an ordinary process of the node's root).

A node with no user namespace of its own (root in it is the host's root) gets the same
treatment except step 2: the program still runs with no more than the node's PID 1 has.

This file is also the helper itself, run with the host's Python in isolated mode
(`node_exec_argv`); it imports nothing from labctl so that it starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

NAMESPACES = ("user", "mnt", "uts", "ipc", "net", "cgroup", "pid")  # user first: see above
CLONE_FLAGS = {"user": 0x10000000, "mnt": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000,
               "net": 0x40000000, "cgroup": 0x02000000, "pid": 0x20000000}
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FAILED = 125  # the helper itself failed (as env(1) and timeout(1) do)


def node_exec_argv(init_pid: int, argv: list[str]) -> list[str]:
    """The command line that runs `argv` inside the node whose PID 1 is `init_pid`, as the
    node's root, with no host credential ever visible in the node (see the module doc)."""
    if not argv:
        raise ValueError("nothing to run in the node")
    return [sys.executable or "/usr/bin/python3", "-I", "-S", os.path.abspath(__file__),
            str(int(init_pid)), "--", *argv]


def bounding_set(status: str) -> int:
    """The capability bounding set (CapBnd) from a /proc/PID/status text."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise ValueError("no CapBnd line in the process status")


def clean_environment(environ: dict[str, str]) -> dict[str, str]:
    """What the program in the node gets: a fixed PATH and HOME, the terminal type only."""
    env = {"PATH": NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    if "TERM" in environ:
        env["TERM"] = environ["TERM"]
    return env


class EnterError(Exception):
    """The node cannot be entered (gone, or a system call refused)."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise EnterError(f"{what}: {os.strerror(errno)}")


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> int:
    return int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(arg3),
                           ctypes.c_ulong(0), ctypes.c_ulong(0)))


def _non_dumpable() -> None:
    _check(_prctl(PR_SET_DUMPABLE, 0), "prctl(PR_SET_DUMPABLE)")


def _open_namespaces(pid: int) -> tuple[dict[str, int], int, int]:
    """The node's namespaces that differ from ours, its root folder, its bounding set."""
    proc = f"/proc/{pid}"
    try:
        with open(f"{proc}/status") as status:
            capbnd = bounding_set(status.read())
        fds: dict[str, int] = {}
        for name in NAMESPACES:
            theirs, ours = f"{proc}/ns/{name}", f"/proc/self/ns/{name}"
            if not os.path.exists(theirs):
                continue
            if os.stat(theirs).st_ino != os.stat(ours).st_ino:
                fds[name] = os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)
        root = os.open(f"{proc}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise EnterError(f"node process {pid} cannot be entered: {exc}") from None
    if "mnt" not in fds:  # a node always has its own; a host process (a reused PID) never enters
        raise EnterError(f"process {pid} shares this machine's mount namespace: it is no node (stopped?)")
    return fds, root, capbnd


def _drop_capabilities(keep: int) -> None:
    """Bounding set down to `keep`; no inheritable or ambient capability survives exec."""
    last = 0
    while _prctl(PR_CAPBSET_READ, last + 1) >= 0:
        last += 1
    for cap in range(last + 1):
        if not keep & (1 << cap):
            _check(_prctl(PR_CAPBSET_DROP, cap), f"prctl(PR_CAPBSET_DROP, {cap})")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for half in data:
        half.inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _become_node_root(pid: int) -> None:
    """Every step before the fork: afterwards nothing of the host's credentials is left."""
    _non_dumpable()
    fds, root, capbnd = _open_namespaces(pid)
    for name in NAMESPACES:
        if name in fds:
            _check(_libc.setns(fds[name], CLONE_FLAGS[name]), f"setns({name}) into node process {pid}")
            os.close(fds[name])
    _check(_libc.fchdir(root), "fchdir(node root)")
    _check(_libc.chroot(b"."), "chroot(node root)")
    os.close(root)
    os.chdir("/")
    _check(_libc.setgroups(0, None), "setgroups([])")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _non_dumpable()  # a change of credentials may reset it (fs.suid_dumpable)
    _drop_capabilities(capbnd)


def _find_program(name: str) -> str:
    """`name` on the node's PATH (os.execvpe would import a module, from the node's root now)."""
    if "/" in name:
        return name
    for folder in NODE_PATH.split(":"):
        candidate = f"{folder}/{name}"
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(name)


def _run_child(argv: list[str]) -> None:
    """In the forked child, the first process of ours the node can see."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, 65536)
        os.execve(_find_program(argv[0]), argv, clean_environment(dict(os.environ)))
    except FileNotFoundError:
        os.write(2, f"labctl-enter: {argv[0]}: not found in the node\n".encode())
        os._exit(127)
    except OSError as exc:
        os.write(2, f"labctl-enter: {argv[0]}: {exc.strerror}\n".encode())
        os._exit(126)
    except BaseException as exc:  # nothing may escape a forked child
        os.write(2, f"labctl-enter: {argv[0]}: {exc!r}\n".encode())
    os._exit(FAILED)


def main(args: list[str]) -> int:
    """`enter.py PID -- PROGRAM [ARG...]`: run PROGRAM in the node of PID 1 `PID`."""
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        sys.stderr.write("usage: enter.py NODE_INIT_PID -- PROGRAM [ARG...]\n")
        return 2
    pid, argv = int(args[0]), args[2:]
    try:
        _become_node_root(pid)
    except EnterError as exc:
        sys.stderr.write(f"labctl-enter: {exc}\n")
        return FAILED
    child = os.fork()
    if child == 0:
        _run_child(argv)

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):  # it may have ended already
            os.kill(child, sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
