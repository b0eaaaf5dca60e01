"""Kernel interfaces a node's root cannot make writable: /proc/sys and the other /proc knobs.

systemd-nspawn mounts /proc/sys and a few other kernel knobs read-only, but it mounts
them from inside the node's user namespace: the node's root owns those mounts and
`mount -o remount,rw /proc/sys` succeeds. The kernel locks a mount's flags (and keeps its
sub-mounts from being taken away) only when the mount arrives from a more privileged
mount namespace. So, once a node runs, the host:

1. clones the node's own /proc tree (as nspawn made it: /proc/sys, /proc/bus, /proc/fs,
   /proc/irq read-only, /proc/sys/net writable for the node's network settings);
2. mounts each clone on a folder of the host that is shared with the node (`CHANNEL`,
   bound into the node at start by `nspawn_args`): the kernel propagates it into the node
   across the user namespaces, and that copy is locked (read-only stays read-only, its
   sub-mounts cannot be removed);
3. inside the node's mount namespace, replaces /proc with a recursive copy of the locked
   tree (the old, unlocked one is detached first, so nothing unlocked remains under it),
   then removes the channel's mounts on both sides.

/sys needs none of this: nspawn mounts its parts before it enters the user namespace, so
they arrive locked already. Node root can still mount a fresh proc elsewhere; the host-wide
files in it stay owned by the host's root, which node root is not (test_containment.py).
`seal` runs the work in a helper process (a mount namespace cannot be changed by a process
with threads), this file itself.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

CHANNEL = "/run/labctl/incoming"  # where the node sees the host's shared folder
TREES = ("proc",)  # /sys: nspawn mounts it from outside the user namespace, locked already
CLONE_NEWNS = 0x00020000
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # x86_64 and most architectures since 5.2
OPEN_TREE_CLONE, AT_RECURSIVE, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH = 1, 0x8000, -100, 0x04
MS_BIND, MS_SHARED = 0x1000, 1 << 20
MNT_DETACH = 2
SEAL_TIMEOUT = 30.0


class LockdownError(Exception):
    """A node's kernel interfaces could not be locked."""


def mount_api() -> bool:
    """Whether this kernel has the mount system calls the lockdown uses (5.2 and later)."""
    if _libc.syscall(SYS_OPEN_TREE, -1, b"", ctypes.c_uint(0)) == 0:
        return True  # cannot happen with these arguments; the call exists
    return ctypes.get_errno() != errno.ENOSYS


def nspawn_args(channel: Path) -> list[str]:
    """Make `channel` a shared mount on the host and bind it into the node (before start)."""
    share(channel)
    return [f"--bind={channel}:{CHANNEL}"]


def share(channel: Path) -> None:
    """`channel` becomes a shared bind mount of itself on the host (idempotent)."""
    channel.mkdir(parents=True, exist_ok=True)
    channel.chmod(0o700)
    if not _is_mount_point(channel):
        _mount(str(channel), str(channel), None, MS_BIND, "bind the lockdown channel")
    _mount(None, str(channel), None, MS_SHARED, "share the lockdown channel")


def release(channel: Path) -> None:
    """Remove the host's shared mount (the node keeps its locked copies); idempotent."""
    for _ in range(8):
        if not _is_mount_point(channel):
            return
        _libc.umount2(str(channel).encode(), MNT_DETACH)


def _is_mount_point(path: Path) -> bool:
    """A bind mount of a folder on itself (os.path.ismount cannot tell)."""
    target = str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\n", "\\012")
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


def seal(init_pid: int, channel: Path) -> None:
    """Lock /proc of the node whose PID 1 is `init_pid` (see the module doc)."""
    argv = [sys.executable or "/usr/bin/python3", "-I", "-S", os.path.abspath(__file__), str(int(init_pid)),
            str(channel)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SEAL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise LockdownError(f"locking node process {init_pid}'s /proc took over "
                            f"{SEAL_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise LockdownError(f"cannot lock node process {init_pid}'s /proc: "
                            f"{done.stderr.strip() or done.returncode}")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _fail(what: str) -> None:
    raise LockdownError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, what: str) -> None:
    if _libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), None) != 0:
        _fail(what)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNS) != 0:
        _fail(f"enter the {what} mount namespace")


def _clone_tree(path: str) -> int:
    fd = int(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                           ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC)))
    if fd < 0:
        _fail(f"clone the mount tree {path}")
    return fd


def _attach(tree: int, target: str) -> None:
    if _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH) != 0:
        _fail(f"mount the tree on {target}")
    os.close(tree)


def _mount_points(proc: int) -> set[str]:
    """Mount points of our current mount namespace (`proc`: the host's /proc, opened before
    entering the node, whose own /proc has no entry for this process)."""
    fd = os.open("self/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    with open(fd) as mountinfo:
        return {line.split()[4] for line in mountinfo}


def _lock(pid: int, channel: str) -> None:
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    host = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        node = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LockdownError(f"node process {pid}: {exc.strerror}") from None
    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        raise LockdownError(f"node process {pid} shares the host's mount namespace")
    _setns(node, "node's")
    clones = {tree: _clone_tree(f"/{tree}") for tree in TREES}
    _setns(host, "host's")
    for tree, fd in clones.items():
        os.makedirs(f"{channel}/{tree}", exist_ok=True)
        _attach(fd, f"{channel}/{tree}")  # propagated into the node, locked there
    try:
        _setns(node, "node's")
        for tree in TREES:
            arrived = f"{CHANNEL}/{tree}"
            if arrived not in _mount_points(proc):
                raise LockdownError(f"the host's {tree} tree did not reach the node at {arrived} "
                                    "(is the channel bound into it?)")
            locked = _clone_tree(arrived)
            for _ in range(8):  # nspawn's tree, and anything the node stacked on it
                if f"/{tree}" not in _mount_points(proc):
                    break
                if _libc.umount2(f"/{tree}".encode(), MNT_DETACH) != 0:
                    _fail(f"detach the node's /{tree}")
            _attach(locked, f"/{tree}")
            _libc.umount2(arrived.encode(), MNT_DETACH)  # the host's umount does not reach a locked copy
    finally:
        _setns(host, "host's")
        for tree in TREES:
            _libc.umount2(f"{channel}/{tree}".encode(), MNT_DETACH)


def main(args: list[str]) -> int:
    """`lockdown.py PID CHANNEL`: lock /proc of the node of PID 1 `PID`."""
    if len(args) != 2 or not args[0].isdigit():
        sys.stderr.write("usage: lockdown.py NODE_INIT_PID HOST_CHANNEL\n")
        return 2
    try:
        _lock(int(args[0]), args[1])
    except LockdownError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
