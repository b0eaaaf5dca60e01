"""Tamper evidence: what the candidate changed among a node's system files.

A local node's root is an overlay: the shared read-only image (lower) under the node's
own writable layer (upper, `LabState.upper_dir(node)`). Everything root in the node
wrote is in the upper; a deleted file is a whiteout there (a 0:0 character device), a
folder emptied of the image's content is an opaque folder. Comparing the upper with the
image tells, from outside the node, which system executables, libraries and login/sshd/
PAM start-up files the candidate replaced, added, deleted or re-permissioned: none of it
can be hidden from inside the node.

What labctl itself placed before the candidate got the lab (host keys, /etc/hosts, the
setup playbook's work) is in the lab's starting snapshot of the upper; with a `baseline`
(that snapshot) only differences from the starting state are listed, so a fresh lab shows
nothing.

`relied_on(check, tampering)` says which of these changes a check's probe relied on when
it ran inside the node: the grader then makes the check ERROR ("tampered: /usr/bin/vtysh
replaced"), never PASS. Reading is bounded (entries walked, seconds) and never follows a
symbolic link or opens anything but regular files.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labctl.grading.spec import CheckBase
from labctl.image import CLI_USER
from labctl.state import LabState

Kind = Literal["replaced", "added", "deleted", "modified", "unexamined"]
Category = Literal["executable", "library", "start-up file"]
Channel = Literal["ssh", "nsenter"]

# Folders whose files are programs a probe may run (usr-merged Debian: /bin is usr/bin).
EXEC_DIRS = ("usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin", "bin", "sbin",
             "usr/lib/frr", "usr/libexec", "usr/lib/openssh")
# Folders of shared libraries (only *.so* files there count as libraries).
LIB_DIRS = ("usr/lib", "usr/lib64", "usr/local/lib", "lib", "lib64")
# Files (or whole folders) read when someone logs in, a shell starts, sshd or PAM run, or
# the dynamic loader starts any program.
LOADER_FILES = ("etc/ld.so.preload", "etc/ld.so.conf", "etc/ld.so.conf.d")
LOGIN_FILES = (
    "etc/profile", "etc/profile.d", "etc/bash.bashrc", "etc/bash.bash_logout", "etc/environment",
    "etc/inputrc", "etc/shells", "etc/passwd", "etc/pam.d", "etc/pam.conf", "etc/security",
    "etc/ssh/sshd_config", "etc/ssh/sshd_config.d", "etc/ssh/sshrc", "etc/ssh/labctl_authorized_keys",
    "etc/frr/vtysh.conf",
    "root/.bashrc", "root/.profile", "root/.bash_profile", "root/.bash_login", "root/.bash_logout",
    "root/.ssh", "root/.inputrc", "root/.vtysh_history",
    "home/labctl/.bashrc", "home/labctl/.profile", "home/labctl/.bash_profile",
    "home/labctl/.bash_login", "home/labctl/.ssh",
)
WATCHED = EXEC_DIRS + LIB_DIRS + LOADER_FILES + LOGIN_FILES
# What every probe run inside the node goes through, whatever its command.
SHELL_PROGRAMS = ("/usr/bin/sh", "/usr/bin/dash", "/usr/bin/bash", "/usr/bin/env",
                  "/usr/bin/nsenter")
SSH_PROGRAMS = ("/usr/sbin/sshd", "/usr/lib/openssh/sshd-session")
CLI_PROGRAM = "/usr/bin/vtysh"
PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
PASSWD, PASSWD_LIMIT = "etc/passwd", 4 << 20
MAX_ENTRIES = 50_000  # upper entries examined at most per node
MAX_SECONDS = 5.0  # per node: CPU time of the examining thread (a loaded machine does not shorten it) ...
MAX_WALL_SECONDS = 60.0  # ... and wall-clock time, however slowly the machine gives it CPU
CHUNK = 1 << 20
KIND_FR = {"replaced": "remplacé", "added": "ajouté", "deleted": "supprimé",
           "modified": "droits ou propriétaire modifiés", "unexamined": "non examiné en entier"}
UNEXAMINED = "/"  # the path of the change standing for a writable layer not fully examined
WORD = re.compile(r"[A-Za-z0-9_.+/-]+")


@dataclass(frozen=True)
class Change:
    """One system file of a node that differs from its starting state."""

    path: str  # absolute inside the node
    kind: Kind
    category: Category

    def describe(self) -> str:
        """English, for evidence: `/usr/bin/vtysh replaced`."""
        if self.kind == "unexamined":
            return "the node's writable layer could not be examined in full"
        return f"{self.path} {self.kind}"

    def describe_fr(self) -> str:
        """French, for the jury: `/usr/bin/vtysh remplacé`."""
        if self.kind == "unexamined":
            return "la couche modifiable du nœud n'a pas pu être examinée en entier"
        return f"{self.path} {KIND_FR[self.kind]}"


@dataclass(frozen=True)
class Tampering:
    """A node's changed system files; `complete` is False when a bound stopped the walk
    (`note` says which): what was not examined may hide more."""

    node: str
    changes: tuple[Change, ...] = ()
    complete: bool = True
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        """For reports and signed session results."""
        return {"node": self.node, "complete": self.complete, "note": self.note,
                "changes": [{"path": c.path, "kind": c.kind, "category": c.category}
                            for c in self.changes]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Tampering:
        """Back from `to_dict`."""
        raw = data.get("changes") or []
        assert isinstance(raw, list)
        return cls(node=str(data["node"]), complete=bool(data.get("complete", True)),
                   note=str(data.get("note", "")),
                   changes=tuple(Change(str(c["path"]), c["kind"], c["category"]) for c in raw))


class _Budget:
    """Bounds of one node's walk: entries, the examining thread's CPU seconds, and wall seconds.
    CPU, not wall-clock time: 30 labs graded at once at load ~70 outran a 5 s wall-clock budget
    on routers whose layers hold a few hundred entries (23 of 600 verdicts ERROR, "not examined
    in full"); what a hostile layer costs is CPU (entries, content compared), bounded all the same."""

    def __init__(self, max_entries: int, max_seconds: float, max_wall_seconds: float = MAX_WALL_SECONDS) -> None:
        self.left = max_entries
        self.max_entries, self.max_seconds, self.max_wall_seconds = max_entries, max_seconds, max_wall_seconds
        self._cpu_deadline = time.thread_time() + max_seconds
        self._wall_deadline = time.monotonic() + max_wall_seconds
        self.exceeded = ""

    def out_of_time(self) -> bool:
        """Whether the walk has used up its time (and why, in `exceeded`)."""
        if not self.exceeded:
            if time.thread_time() > self._cpu_deadline:
                took = f"{self.max_seconds:g} s of CPU"
            elif time.monotonic() > self._wall_deadline:
                took = f"{self.max_wall_seconds:g} s"
            else:
                return False
            self.exceeded = f"examining the writable layer took over {took}: not all examined"
        return bool(self.exceeded)

    def spend(self, entries: int = 1) -> bool:
        """Count entries listed (0: only look at the clocks); False once a bound is reached."""
        if self.exceeded:
            return False
        self.left -= entries
        if self.left < 0:
            self.exceeded = f"more than {self.max_entries} entries in the writable layer: not all examined"
        return not self.out_of_time()


@dataclass
class _Entry:
    """One path as a layered view shows it: absent, or a file of some kind with its attributes."""

    mode: int = 0  # 0: absent
    uid: int = 0
    gid: int = 0
    size: int = 0
    target: str = ""  # a symbolic link's target
    layer: Path | None = None  # the layer holding its content (None: the image's)

    @property
    def present(self) -> bool:
        return self.mode != 0


def changes(node: str, upper: Path, lower: Path, baseline: Path | None = None, *,
            placed: dict[str, bytes] | None = None,
            max_entries: int = MAX_ENTRIES, max_seconds: float = MAX_SECONDS) -> Tampering:
    """The node's system files that differ between its starting state and now.

    Now is `lower` overlaid with `upper`; the starting state is `lower` overlaid with
    `baseline` (the lab's snapshot of the upper taken after setup), or the image alone.
    `placed`: files labctl itself put in the upper (absolute path -> content); while they
    hold exactly that content they are no change.
    """
    budget = _Budget(max_entries, max_seconds)
    layers_now = [upper]
    layers_then = [baseline] if baseline is not None else []
    paths = sorted(set(_layer_paths(upper, lower, budget)) | set(_layer_paths(baseline, lower, budget)))
    found: list[Change] = []
    for relative in paths:
        if not budget.spend(0):
            break
        category = _category(relative)
        if category is None:
            continue
        then, now = _view(layers_then, lower, relative), _view(layers_now, lower, relative)
        kind = _difference(then, now, lower, relative, budget)
        if kind == "replaced" and relative == PASSWD and _same_logins(then, now, lower):
            kind = None  # accounts added or changed, but not those labctl and probes log in as
        if kind is not None and not _as_placed(upper, relative, (placed or {}).get("/" + relative)):
            found.append(Change("/" + relative, kind, category))
    return Tampering(node, tuple(found), complete=not budget.exceeded, note=budget.exceeded)


def _as_placed(upper: Path, relative: str, content: bytes | None) -> bool:
    """Whether the upper's file holds exactly what labctl placed there."""
    if content is None:
        return False
    fd = _open_regular(upper, relative)
    if fd is None:
        return False
    try:
        return os.read(fd, len(content) + 1) == content
    finally:
        os.close(fd)


def _layer_paths(layer: Path | None, lower: Path, budget: _Budget) -> Iterator[str]:
    """Relative paths of every entry of a layer under the watched places, and of what the
    image has under an opaque folder of the layer (hidden by it: deleted)."""
    if layer is None:
        return
    for watched in WATCHED:
        if _ancestor_hides(layer, watched):  # the image's files there are gone
            yield watched
            yield from _image_entries(lower, watched, budget)
        if not _lexists(layer, watched):
            continue
        yield watched
        yield from _walk(layer, watched, budget, lower)


def _ancestor_hides(layer: Path, relative: str) -> bool:
    """Whether a parent folder of `relative` is, in `layer`, a whiteout, a file or opaque."""
    parts = relative.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        info = _lstat_under(layer, parent)
        if info is not None and (not stat.S_ISDIR(info.st_mode) or _dir_opaque(layer, parent)):
            return True
    return False


def _image_entries(lower: Path, relative: str, budget: _Budget) -> Iterator[str]:
    """Every entry of the image under folder `relative`."""
    return _walk(lower, relative, budget, None)


def _walk(root: Path, relative: str, budget: _Budget, lower: Path | None) -> Iterator[str]:
    """Every entry under folder `relative` of `root`, links not followed; with `lower` (an
    upper layer's image), also the image's entries under each opaque folder."""
    fd = _open_dir_nofollow(root, relative)
    if fd is None:
        return
    try:
        for top, dirs, files, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            if not budget.spend(1 + len(dirs) + len(files)):
                return
            base = relative if top == "." else f"{relative}/{top[2:]}"
            yield from (f"{base}/{name}" for name in dirs + files)
            if lower is not None and _opaque(dir_fd):
                yield from _walk(lower, base, budget, None)
    finally:
        os.close(fd)


def _open_dir_nofollow(root: Path, relative: str) -> int | None:
    """A descriptor of folder `relative` ('' for `root` itself) under `root`, each component
    opened without following symbolic links; None if it is not a folder there."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    for part in filter(None, relative.split("/")):
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
    return fd


def _lstat_under(root: Path, relative: str) -> os.stat_result | None:
    """lstat of `relative` under `root`, no symbolic link followed on the way; None when it
    does not exist there (or a parent is not a folder)."""
    parent, _, name = relative.rpartition("/")
    fd = _open_dir_nofollow(root, parent)
    if fd is None:
        return None
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)


def _lexists(root: Path, relative: str) -> bool:
    return _lstat_under(root, relative) is not None


def _opaque(dir_fd: int) -> bool:
    """Whether an upper folder hides the image's folder of the same path (overlay opaque)."""
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError:
            continue
    return False


def _dir_opaque(root: Path, relative: str) -> bool:
    fd = _open_dir_nofollow(root, relative)
    if fd is None:
        return False
    try:
        return _opaque(fd)
    finally:
        os.close(fd)


def _metacopy(root: Path, relative: str) -> bool:
    """Whether a regular file of an upper layer is an overlay metadata-only copy (its
    content is the image's)."""
    fd = _open_regular(root, relative)
    if fd is None:
        return False
    try:
        for name in ("trusted.overlay.metacopy", "user.overlay.metacopy"):
            try:
                os.getxattr(fd, name)
                return True
            except OSError:
                continue
        return False
    finally:
        os.close(fd)


def _view(layers: list[Path], lower: Path, relative: str) -> _Entry:
    """`relative` as an overlay of `layers` (topmost first) over `lower` shows it."""
    parts = relative.split("/")
    for layer in layers:
        hides_below = False
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            info = _lstat_under(layer, parent)
            if info is None:
                continue
            if not stat.S_ISDIR(info.st_mode):  # a whiteout or a file where a folder was
                return _Entry()
            hides_below = hides_below or _dir_opaque(layer, parent)
        entry = _layer_entry(layer, relative, upper=True)
        if entry is not None:
            return entry
        if hides_below:
            return _Entry()
    return _layer_entry(lower, relative, upper=False) or _Entry()


def _layer_entry(root: Path, relative: str, *, upper: bool) -> _Entry | None:
    """The entry of one layer (a whiteout reads as absent), or None when the layer has none."""
    info = _lstat_under(root, relative)
    if info is None:
        return None
    if upper and _is_whiteout(info):
        return _Entry()
    target = ""
    if stat.S_ISLNK(info.st_mode):
        parent, _, leaf = relative.rpartition("/")
        fd = _open_dir_nofollow(root, parent)
        if fd is not None:
            try:
                target = os.readlink(leaf, dir_fd=fd)
            except OSError:
                target = ""
            finally:
                os.close(fd)
    metacopy = upper and stat.S_ISREG(info.st_mode) and _metacopy(root, relative)
    return _Entry(info.st_mode, info.st_uid, info.st_gid, info.st_size, target,
                  None if metacopy else root)


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _same_logins(then: _Entry, now: _Entry, lower: Path) -> bool:
    """Whether root's and the CLI user's lines of /etc/passwd (shell, home) are unchanged."""
    def logins(entry: _Entry) -> list[str]:
        fd = _open_regular(entry.layer or lower, PASSWD)
        if fd is None:
            return []
        try:
            text = os.read(fd, PASSWD_LIMIT).decode(errors="replace")
        finally:
            os.close(fd)
        return sorted(line for line in text.splitlines() if line.split(":", 1)[0] in ("root", CLI_USER))
    return logins(then) == logins(now)


def _difference(then: _Entry, now: _Entry, lower: Path, relative: str, budget: _Budget) -> Kind | None:
    """How `now` differs from `then`, or None when it does not."""
    if not then.present and not now.present:
        return None
    if not then.present:
        return "added"
    if not now.present:
        return "deleted"
    if stat.S_IFMT(then.mode) != stat.S_IFMT(now.mode):
        return "replaced"
    if stat.S_ISLNK(now.mode):
        if then.target != now.target:
            return "replaced"
    elif stat.S_ISREG(now.mode) and not _same_content(then, now, lower, relative, budget):
        return "replaced"
    if (stat.S_IMODE(then.mode), then.uid, then.gid) != (stat.S_IMODE(now.mode), now.uid, now.gid) \
            and not stat.S_ISLNK(now.mode):
        return "modified"
    return None


def _same_content(then: _Entry, now: _Entry, lower: Path, relative: str, budget: _Budget) -> bool:
    """Byte-for-byte equality of two regular files (a metadata-only copy has the image's content)."""
    then_root, now_root = then.layer or lower, now.layer or lower
    if then_root == now_root:
        return True
    if then.size != now.size:
        return False
    first, second = _open_regular(then_root, relative), _open_regular(now_root, relative)
    try:
        if first is None or second is None:
            return False
        while True:
            if budget.out_of_time():
                return False
            a, b = os.read(first, CHUNK), os.read(second, CHUNK)
            if a != b:
                return False
            if not a:
                return True
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)


def _open_regular(root: Path, relative: str) -> int | None:
    """A regular file opened for reading without following links or blocking on a FIFO."""
    parent, _, leaf = relative.rpartition("/")
    dir_fd = _open_dir_nofollow(root, parent or ".")
    if dir_fd is None:
        return None
    try:
        fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY,
                     dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EACCES):
            raise
        return None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _category(relative: str) -> Category | None:
    """What kind of system file a path is, or None when it is not one tampering matters for."""
    if _under(relative, LOADER_FILES + LOGIN_FILES):
        return "start-up file"
    if _under(relative, EXEC_DIRS):
        return "executable"
    if _under(relative, LIB_DIRS):
        name = relative.rsplit("/", 1)[-1]
        return "library" if ".so" in name or name.startswith("ld-linux") else None
    return None


def _under(relative: str, places: Iterable[str]) -> bool:
    return any(relative == p or relative.startswith(p + "/") for p in places)


# ---- which changes a check relied on ---------------------------------------------------
def programs_of(command: str) -> set[str]:
    """Names and absolute paths a shell command may run: every word of it (over-counting
    only makes a check ERROR where it might have been trusted, never PASS where it should not)."""
    return set(WORD.findall(command))


def relied_on(check: CheckBase, tampering: Iterable[Tampering] | Tampering, *,
              channel: Channel = "ssh", command: str | None = None, cli: bool = False) -> list[Change]:
    """The changes the check's probe relied on when it ran inside its node.

    `command` is the probe's shell command (or router CLI command with `cli`); `channel`
    is how it got there: `ssh` (sshd, PAM, the login user's start-up files) or `nsenter`
    (a clean non-login shell entered from the host: no start-up file is read). Every
    probe relies on the shell, the dynamic loader's configuration and every library not
    merely added; its command's programs are matched by name against changed executables
    (a program added earlier in PATH shadows the image's). A whole layer not examined
    (`complete` False) is reported as a change of its own.
    """
    reports = [tampering] if isinstance(tampering, Tampering) else list(tampering)
    relevant = [c for t in reports if t.node == check.node for c in t.changes]
    words = programs_of(command or "")
    if cli:
        words.add(CLI_PROGRAM)
    names = {w for w in words if "/" not in w}
    paths = {w for w in words if w.startswith("/")} | set(SHELL_PROGRAMS)
    if channel == "ssh":
        paths |= set(SSH_PROGRAMS)
    found = [Change(UNEXAMINED, "unexamined", "executable") for t in reports if t.node == check.node and not t.complete]
    for change in relevant:
        if change.category == "start-up file":
            hit = channel == "ssh" or _under(change.path.lstrip("/"), LOADER_FILES)
        elif change.category == "library":
            hit = change.kind != "added"
        else:
            hit = _runs(change.path, paths, names)
        if hit:
            found.append(change)
    return found


def _runs(path: str, paths: set[str], names: set[str]) -> bool:
    """Whether a changed executable is one the probe runs (by path, or by name in PATH)."""
    candidates = {path, _usr_merged(path)}
    if candidates & ({_usr_merged(p) for p in paths} | paths):
        return True
    folder, _, name = path.rpartition("/")
    return name in names and (folder in PATH_DIRS or folder == "/usr/lib/frr")


def _usr_merged(path: str) -> str:
    """/bin/x and /usr/bin/x are one file on usr-merged Debian."""
    for short_dir in ("/bin/", "/sbin/", "/lib/", "/lib64/"):
        if path.startswith(short_dir):
            return "/usr" + path
    return path


def incomplete(tampering: Iterable[Tampering], node: str) -> str:
    """Why a node's layer was not fully examined, or '' when it was."""
    return next((t.note for t in tampering if t.node == node and not t.complete), "")


def tampered_evidence(found: list[Change]) -> tuple[str, str]:
    """The ERROR evidence for a check that relied on changed files: English, French."""
    return ("tampered: " + ", ".join(c.describe() for c in found),
            "falsifié : " + ", ".join(c.describe_fr() for c in found))


def node_tampering(lab: LabState, node: str) -> Tampering:
    """What the candidate changed among `node`'s system files since the lab's starting
    snapshot (or since the image, for a lab that has none)."""
    baseline = lab.node_dir(node) / "snapshot" / "upper"
    key = lab.key_file.with_suffix(".pub")
    placed = {f"/etc/ssh/labctl_authorized_keys/{user}": key.read_bytes()
              for user in ("root", CLI_USER)} if key.is_file() else {}
    if lab.plan.node(node).init == "light":  # its reboot, poweroff... (a lab with no snapshot has them too)
        from labctl.providers.reboots import light_commands

        placed.update({path: content.encode() for path, (content, _) in light_commands().items()})
    return changes(node, lab.upper_dir(node), Path(lab.image),
                   baseline if baseline.is_dir() else None, placed=placed)
