"""systemd units of a node, resolved from its files the way systemd resolves them at boot.

The grader asks "will this unit start when the node boots?" without running systemctl in the
node (a candidate with root can replace it): it reads the node's unit folders from outside
(grading/nodeview.py) and follows systemd's own rules (systemd.unit(5), systemd 252):

- unit folders in precedence order: /etc/systemd/system, /run/systemd/system,
  /usr/local/lib/systemd/system, /lib/systemd/system (= /usr/lib on Debian 12); the first
  folder holding a file of the unit's name gives its fragment;
- a fragment that is a symbolic link to /dev/null, or an empty file, masks the unit: it never
  starts, whatever wants it;
- a unit starts at boot when a unit started at boot wants or requires it: a link of its name in
  that unit's `NAME.wants/` or `NAME.requires/` folder (in any unit folder; what `systemctl
  enable` makes from [Install] WantedBy=), or `Wants=`/`Requires=` in that unit's fragment or
  drop-ins (`NAME.d/*.conf`). The walk starts at default.target (a link to the boot's target)
  and follows these edges, bounded;
- what lies in /run is gone after a reboot: a link there does not make a unit start at boot.

Everything read is bounded (files, links, units walked); a unit file that cannot be read makes
the answer "cannot tell" (an ERROR for the check), never a guess.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass

FOLDERS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
           "/usr/lib/systemd/system")
PERSISTENT = tuple(f for f in FOLDERS if not f.startswith("/run/"))
MAX_UNITS = 400  # units walked from default.target at most (a Debian server reaches ~100)
EDGES = ("Wants", "Requires")


@dataclass(frozen=True)
class Entry:
    """A file of a unit folder as seen from outside: a link (with its target) or a file (its size)."""

    link: str | None = None
    size: int = 0


class NodeFiles:
    """What the resolution reads from a node: folder listings, entries, unit files' text."""

    def __init__(self, listdir: Callable[[str], list[str]], entry: Callable[[str], Entry | None],
                 text: Callable[[str], str]) -> None:
        self.listdir, self.entry, self.text = listdir, entry, text


@dataclass(frozen=True)
class Enablement:
    """Whether a unit starts at boot, and why (for the evidence)."""

    state: str  # enabled, disabled, masked, not-found
    reason: str

    @property
    def starts_at_boot(self) -> bool:
        """True when the unit is started when the node boots."""
        return self.state == "enabled"


def unit_name(name: str) -> str:
    """`cron` -> `cron.service`; a name with a unit suffix stays as it is."""
    return name if "." in name else f"{name}.service"


def fragment(files: NodeFiles, unit: str, folders: Iterable[str] = FOLDERS) -> tuple[str, Entry] | None:
    """The highest-precedence file of `unit` (path, entry), or None when no folder has one; an
    instance (`getty@tty1.service`) falls back to its template (`getty@.service`)."""
    folders = tuple(folders)
    names = [unit]
    prefix, at, rest = unit.partition("@")
    if at and not rest.startswith("."):
        names.append(f"{prefix}@{rest[rest.rfind('.'):]}")
    for name in names:
        for folder in folders:
            path = f"{folder}/{name}"
            found = files.entry(path)
            if found is not None:
                return path, found
    return None


def masked(found: tuple[str, Entry]) -> bool:
    """A fragment linked to /dev/null, or empty, masks its unit."""
    path, entry = found
    if entry.link is not None:
        return posixpath.normpath(posixpath.join(posixpath.dirname(path), entry.link)) == "/dev/null"
    return entry.size == 0


def directives(text: str, names: tuple[str, ...]) -> list[str]:
    """The unit names listed by `names=` lines of a unit file (an empty assignment resets)."""
    values: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        key, sep, value = line.partition("=")
        if not sep or key.strip() not in names:
            continue
        words = value.split()
        if not words:
            values.clear()
            continue
        values += words
    return values


def _wanted_by_folders(files: NodeFiles, unit: str, folders: Iterable[str]) -> list[str]:
    """Units linked in `unit`'s .wants/ and .requires/ folders."""
    found: list[str] = []
    for folder in folders:
        for kind in ("wants", "requires"):
            found += files.listdir(f"{folder}/{unit}.{kind}")
    return found


def _wanted_by_file(files: NodeFiles, unit: str, folders: Iterable[str]) -> list[str]:
    """Units named by Wants=/Requires= in `unit`'s fragment and drop-ins."""
    found = fragment(files, unit, folders)
    if found is None or masked(found):
        return []
    texts = [files.text(found[0])]
    for folder in folders:
        drop_ins = f"{folder}/{unit}.d"
        texts += [files.text(f"{drop_ins}/{name}") for name in sorted(files.listdir(drop_ins))
                  if name.endswith(".conf")]
    return directives("\n".join(texts), EDGES)


def started_at_boot(files: NodeFiles, folders: Iterable[str] = PERSISTENT) -> dict[str, str]:
    """Every unit a boot starts (name -> the unit that wants it), walking from default.target."""
    folders = tuple(folders)
    reached = {"default.target": "the boot"}
    queue = ["default.target"]
    while queue and len(reached) < MAX_UNITS:
        unit = queue.pop(0)
        found = fragment(files, unit, folders)
        if found is None or masked(found):
            continue
        name = unit
        if found[1].link is not None:  # an alias: default.target -> graphical.target, sshd -> ssh
            name = posixpath.basename(found[1].link)
            if name not in reached:
                reached[name] = unit
                queue.append(name)
        for wanted in _wanted_by_folders(files, unit, folders) + _wanted_by_file(files, unit, folders):
            if wanted not in reached:
                reached[wanted] = name
                queue.append(wanted)
    return reached


def enablement(files: NodeFiles, unit: str) -> Enablement:
    """Whether `unit` starts when the node boots, by systemd's rules (see the module doc)."""
    unit = unit_name(unit)
    found = fragment(files, unit, PERSISTENT)
    if found is None:
        return Enablement("not-found", f"no unit file {unit} in {', '.join(PERSISTENT[:-1])}")
    if masked(found):
        return Enablement("masked", f"{unit} is masked ({found[0]} -> /dev/null)")
    reached = started_at_boot(files)
    if unit in reached:
        return Enablement("enabled", f"{unit} starts at boot (wanted by {reached[unit]}; unit file {found[0]})")
    return Enablement("disabled", f"{unit} does not start at boot: no unit started at boot wants it "
                                  f"(unit file {found[0]})")
