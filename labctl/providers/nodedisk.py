"""A disk of its own for each node's writable layer, so a node that fills it fills only it.

The disk is a sparse file formatted ext4 (it takes room on the machine only as the node
writes), mounted through a loop device at `nodes/<node>/layer`; the overlay's upper folder
is `layer/upper` (`LabState.upper_dir`). Mount points and loop devices are found from the
lab's folder (/proc/self/mountinfo, each loop device's backing file), not from a record, so
`release` frees them whatever instant a command was killed at.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from labctl import netns, paths

DISK_FILE = "layer.img"
MOUNT_DIR = "layer"


def create(node_dir: Path, size: int) -> Path:
    """Make and mount the node's disk (idempotent: an already mounted disk is kept); returns
    the mount point."""
    mount_point = node_dir / MOUNT_DIR
    if mount_point in mounts_under(node_dir):
        return mount_point
    disk = node_dir / DISK_FILE
    node_dir.mkdir(parents=True, exist_ok=True)
    mount_point.mkdir(exist_ok=True)
    with open(disk, "wb") as handle:
        handle.truncate(size)
    # No journal (a scratch disk, rebuilt with the lab), no blocks kept for root, inode
    # tables initialised lazily: 0.04 s for 2 GiB.
    netns.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
               "-E", "lazy_itable_init=1,lazy_journal_init=1", str(disk)], what=f"formatting {disk}")
    # Every container started while the disk is mounted holds a hidden copy of the mount (nspawn
    # moves the node's root over the machine's mounts), which keeps the disk busy after it is
    # unmounted here. Under a shared mount point those copies are slaves (nspawn makes them so):
    # unmounting here unmounts them too, and the disk is freed.
    netns.share_mount_point(paths.labs_dir())
    # `-o loop` makes the loop device clear itself when the disk is unmounted.
    netns.run(["mount", "-o", "loop", str(disk), str(mount_point)], what=f"mounting {disk}")
    return mount_point


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory` in this mount namespace, deepest first."""
    prefix = str(directory.resolve() if directory.exists() else directory)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def loops_under(directory: Path) -> list[str]:
    """Loop devices whose backing file is at or below `directory`."""
    prefix = str(directory.resolve() if directory.exists() else directory)
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            name = backing.read_text().strip().removesuffix(" (deleted)")
            if name == prefix or name.startswith(prefix + "/"):
                found.append(f"/dev/{backing.parent.parent.name}")
    return sorted(found)


def release(directory: Path, timeout: float = 60.0) -> list[str]:
    """Unmount everything mounted below `directory` and detach the loop devices of its files;
    returns what is still there (for the caller to name). A disk with much unwritten data
    takes seconds to let go of its loop device (the kernel flushes it first)."""
    deadline = time.monotonic() + timeout
    while True:
        for point in mounts_under(directory):
            subprocess.run(["umount", str(point)], capture_output=True)
        for device in loops_under(directory):
            subprocess.run(["losetup", "-d", device], capture_output=True)
        left = [f"mount {p}" for p in mounts_under(directory)] + [f"loop device {d}" for d in loops_under(directory)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if left:  # busy: detach lazily, so the space comes back once the last user goes
        for point in mounts_under(directory):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
        left = [f"mount {p}" for p in mounts_under(directory)] + [f"loop device {d}" for d in loops_under(directory)]
    return left

