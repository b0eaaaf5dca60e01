"""Control groups: one per lab, one per node below it, with the node's resource limits.

Two layouts are supported, found from /proc/self/mountinfo:
- unified (cgroup v2 mounted at /sys/fs/cgroup, stock Debian 12 under systemd): one tree,
  controllers enabled for the children through `cgroup.subtree_control`;
- hybrid or legacy (v1 controllers each mounted on their own, as on machines with no unit
  manager as PID 1): the same relative path made in each controller's tree.

A lab's groups are `labctl/<lab id>/<node>` in every tree. A node's processes are placed
there from their first instruction (`enter_argv` prefixes the command that starts them), so
whatever instant a labctl command is killed at, `sweep` finds and kills every process of the
lab through its groups, then removes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import PlatformError

ROOT = "labctl"
ENTRY_LEAF = "enter"  # v2: below a node's group, for processes entering the node (node_entry_group)
# The controllers labctl uses; v1 names (cpu carries the weight, blkio the disk weight).
CONTROLLERS = ("memory", "pids", "cpu", "blkio")
V2_NAMES = {"memory": "memory", "pids": "pids", "cpu": "cpu", "blkio": "io"}


@dataclass(frozen=True)
class Limits:
    """What one node may use; None leaves that resource unlimited."""

    pids: int | None = None
    memory: int | None = None  # bytes, page cache, tmpfs and shared memory included
    cpu_weight: int | None = None  # 1..10000, 100 = an even share (cgroup v2's scale)


@dataclass(frozen=True)
class Layout:
    """Where this machine mounts its cgroup trees."""

    unified: Path | None  # the v2 mount, when it is the main (unified) hierarchy
    v1: dict[str, Path]  # v1 controller -> its mount point
    # Hierarchies with no controller that only track processes, beside v1 controllers: v1's
    # name=systemd and hybrid's empty v2. systemd as a node's PID 1 makes its units' groups
    # there, below the node's group: the node's processes join them too, so that a node's
    # systemd never sees the machine's root group, and `sweep` removes what it made.
    trackers: tuple[Path, ...] = ()

    @property
    def kind(self) -> str:
        """"unified (v2)", "hybrid (v1 + v2)" or "legacy (v1)", for people."""
        if self.unified is not None:
            return "unified (v2)"
        return "hybrid (v1 controllers, empty v2)" if _v2_mounts() else "legacy (v1)"

    def controllers(self) -> list[str]:
        """The controllers labctl can use here (v1 names)."""
        if self.unified is not None:
            offered = (self.unified / "cgroup.controllers").read_text().split()
            return [c for c in CONTROLLERS if V2_NAMES[c] in offered]
        return [c for c in CONTROLLERS if c in self.v1]

    def dirs(self, relative: str) -> list[Path]:
        """The folders of group `relative` in every tree labctl uses."""
        if self.unified is not None:
            return [self.unified / relative]
        return [self.v1[c] / relative for c in self.controllers()] + [t / relative for t in self.trackers]


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, filesystem type, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4].replace("\\040", " "), tail[0], tail[2].split(",") if len(tail) > 2 else []))
    return found


def _v2_mounts() -> list[Path]:
    return [Path(point) for point, fstype, _ in _mounts() if fstype == "cgroup2"]


def layout() -> Layout:
    """This machine's cgroup layout."""
    v1: dict[str, Path] = {}
    unified = None
    trackers: list[Path] = []
    for point, fstype, options in _mounts():
        if fstype == "cgroup2":
            trackers.append(Path(point))  # a tracker beside v1 controllers (hugetlb alone, or none)
            if (Path(point) / "cgroup.controllers").exists() and \
                    (Path(point) / "cgroup.controllers").read_text().split():
                unified = unified or Path(point)
            continue
        if "name=systemd" in options:
            trackers.append(Path(point))
        for controller in CONTROLLERS:
            if controller in options:
                v1.setdefault(controller, Path(point))
    if v1:  # v1 controllers mounted: they own those controllers, v2 cannot have them
        return Layout(unified=None, v1=v1, trackers=tuple(dict.fromkeys(trackers)))
    return Layout(unified=unified, v1=v1)


def lab_group(lab_id: str) -> str:
    """The relative path of a lab's group."""
    return f"{ROOT}/{lab_id}"


def node_group(lab_id: str, node: str) -> str:
    """The relative path of a node's group."""
    return f"{ROOT}/{lab_id}/{node}"


def node_entry_group(lab_id: str, node: str, where: Layout | None = None) -> str:
    """The group a process entering a running node joins (a shell, grading, the out-of-band
    sshd): the node's own group on v1; on v2 the leaf `enter` below it, because systemd-nspawn
    moves itself and the container into subgroups of the node's group and enables controllers
    there, after which that group may hold no process (writing cgroup.procs: EBUSY)."""
    group = node_group(lab_id, node)
    return f"{group}/{ENTRY_LEAF}" if (where or layout()).unified is not None else group


def require(where: Layout | None = None) -> Layout:
    """The layout, or PlatformError when memory and pids cannot be limited here."""
    where = where or layout()
    missing = [c for c in ("memory", "pids") if c not in where.controllers()]
    if missing:
        raise PlatformError(f"this machine offers no cgroup controller {', '.join(missing)}: node limits "
                            "cannot be enforced", "mount the cgroup controllers (labctl doctor lists them)")
    return where


def _enable_v2(where: Layout, relative: str) -> None:
    """Enable labctl's controllers for the children of the root and of each ancestor of
    `relative` (v2), parents first."""
    assert where.unified is not None
    wanted = " ".join(f"+{V2_NAMES[c]}" for c in where.controllers())
    with contextlib.suppress(OSError):  # systemd usually has them enabled at the root already
        (where.unified / "cgroup.subtree_control").write_text(wanted)
    current = where.unified
    for part in Path(relative).parts[:-1]:
        current = current / part
        current.mkdir(exist_ok=True)
        (current / "cgroup.subtree_control").write_text(wanted)


def create(relative: str, limits: Limits, where: Layout | None = None, *, entry_leaf: bool = False) -> None:
    """Make group `relative` in every tree and set its limits (idempotent); `entry_leaf` (a
    node's group) also makes, on v2, the empty leaf processes entering the node join (only
    made: the node's group keeps no controller enabled until systemd-nspawn, in it, does)."""
    where = where or require()
    if where.unified is not None:
        _enable_v2(where, relative)
        group = where.unified / relative
        group.mkdir(parents=True, exist_ok=True)
        if entry_leaf:
            (group / ENTRY_LEAF).mkdir(exist_ok=True)
        values = {"memory.max": limits.memory, "memory.swap.max": 0 if limits.memory else None,
                  "pids.max": limits.pids, "cpu.weight": limits.cpu_weight}
        for name, value in values.items():
            if value is None:
                continue
            if (group / name).exists():
                (group / name).write_text(str(value))
            elif name in ("memory.max", "pids.max"):  # never a node without its limits, silently
                raise PlatformError(f"cgroup {group} has no {name}: its controller is not enabled there",
                                    "enable the memory and pids controllers for labctl's cgroups (delegation)")
        return
    for tracker in where.trackers:
        (tracker / relative).mkdir(parents=True, exist_ok=True)
    for controller in where.controllers():
        group = where.v1[controller] / relative
        group.mkdir(parents=True, exist_ok=True)
        if controller == "memory":
            with contextlib.suppress(OSError):  # hierarchical accounting (always on in newer kernels)
                (group / "memory.use_hierarchy").write_text("1")
            if limits.memory is not None:
                (group / "memory.limit_in_bytes").write_text(str(limits.memory))
                swap = group / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    with contextlib.suppress(OSError):
                        swap.write_text(str(limits.memory))
        elif controller == "pids" and limits.pids is not None:
            (group / "pids.max").write_text(str(limits.pids))
        elif controller == "cpu" and limits.cpu_weight is not None:
            # v1 shares: 1024 is an even share, as weight 100 is in v2.
            (group / "cpu.shares").write_text(str(max(2, limits.cpu_weight * 1024 // 100)))


def enter_argv(relative: str, argv: list[str], where: Layout | None = None) -> list[str]:
    """`argv` prefixed so that the process joins group `relative` in every tree before it
    runs anything else (a shell writes its own PID, then execs `argv`). Exits 125 when the
    group is gone (the lab was removed)."""
    where = where or layout()
    joins = " && ".join(f"echo $$ > '{d}/cgroup.procs'" for d in where.dirs(relative))
    script = f"{joins} && exec \"$@\"; echo \"labctl: cannot join cgroup {relative}\" >&2; exit 125"
    return ["/bin/sh", "-c", script, "labctl-cgroup", *argv]


def join(relative: str, pid: int, where: Layout | None = None) -> None:
    """Move process `pid` into group `relative`."""
    for directory in (where or layout()).dirs(relative):
        (directory / "cgroup.procs").write_text(str(pid))


def _groups_below(directory: Path) -> list[Path]:
    """`directory` and every group below it, deepest first."""
    if not directory.is_dir():
        return []
    found = [Path(root) for root, _, _ in os.walk(directory)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pids(relative: str, where: Layout | None = None) -> set[int]:
    """Every process in group `relative` or below it."""
    found: set[int] = set()
    for directory in (where or layout()).dirs(relative):
        for group in _groups_below(directory):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return found


def sweep(relative: str, timeout: float = 10.0, where: Layout | None = None) -> list[str]:
    """Kill every process in group `relative` (and below), then remove the groups.

    Returns what could not be removed (empty when everything went), for the caller to name.
    """
    where = where or layout()
    deadline = time.monotonic() + timeout
    remaining = pids(relative, where)
    while remaining and time.monotonic() < deadline:
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
        remaining = pids(relative, where)
    left: list[str] = [f"process {pid}" for pid in sorted(remaining)]
    for directory in where.dirs(relative):
        for group in _groups_below(directory):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # EBUSY lasts a moment after the last process died (it is still exiting).
                    if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    left.append(f"cgroup {group} ({exc.strerror})")
                    break
    return left


def leftovers(relative: str, where: Layout | None = None) -> list[Path]:
    """Groups at or below `relative` that still exist (for leak counts)."""
    found: list[Path] = []
    for directory in (where or layout()).dirs(relative):
        found += _groups_below(directory)
    return found
