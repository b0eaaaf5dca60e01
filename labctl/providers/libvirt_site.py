"""Where libvirt labs run: the site's hypervisors, and placing a lab on one by free memory.

An exam centre lists its hypervisors in a site file (YAML; LABCTL_LIBVIRT_SITE, else
/etc/labctl/hypervisors.yml):

    hypervisors:
      - name: hv1
        uri: qemu+ssh://root@hv1.example/system
        memory_mib: 65536          # what labctl may commit there (default: the host's RAM)
        pool_path: /var/lib/labctl/pool
      - name: hv2
        uri: qemu+ssh://root@hv2.example/system

Without a site file, LABCTL_LIBVIRT_URI (default qemu:///system) is the only hypervisor.
A lab's nodes all run on one hypervisor (its isolated networks are bridges of that host);
each new lab goes to the hypervisor with the most free memory that fits it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabctlError, ProviderError

DEFAULT_URI = "qemu:///system"
DEFAULT_SITE = Path("/etc/labctl/hypervisors.yml")
DEFAULT_POOL_PATH = "/var/lib/labctl/pool"
RESERVED_MIB = 1024  # left to the hypervisor itself when no capacity is given


@dataclass(frozen=True)
class Hypervisor:
    """One libvirt host labs may run on."""

    name: str
    uri: str
    memory_mib: int | None = None  # capacity labctl may commit; None: the host's RAM minus a reserve
    pool_path: str = DEFAULT_POOL_PATH

    @property
    def is_local(self) -> bool:
        """True when the hypervisor is this machine (its sockets and addresses are reachable here)."""
        return "://" in self.uri and self.uri.split("://", 1)[1].startswith("/")

    @property
    def ssh_host(self) -> str | None:
        """user@host of a qemu+ssh:// URI (to reach out-of-band sockets), else None."""
        if not self.uri.startswith("qemu+ssh://"):
            return None
        return self.uri.split("://", 1)[1].split("/", 1)[0] or None


def site_file() -> Path:
    """The site file labctl reads (it may not exist)."""
    return Path(os.environ.get("LABCTL_LIBVIRT_SITE", str(DEFAULT_SITE)))


def load_site(path: Path | None = None) -> list[Hypervisor]:
    """The site's hypervisors: the site file's, else the one LABCTL_LIBVIRT_URI names."""
    path = path or site_file()
    if "LABCTL_LIBVIRT_URI" in os.environ or not path.exists():
        return [Hypervisor(name="default", uri=os.environ.get("LABCTL_LIBVIRT_URI", DEFAULT_URI))]
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LabctlError(f"cannot read the hypervisor site file {path}: {exc}") from None
    entries = data.get("hypervisors") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise LabctlError(f"{path}: expected a non-empty list under 'hypervisors'",
                          "see README.md, section Real virtual machines (libvirt)")
    result = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str):
            raise LabctlError(f"{path}: hypervisor #{index + 1} needs a 'uri'")
        memory = entry.get("memory_mib")
        if memory is not None and (not isinstance(memory, int) or memory <= 0):
            raise LabctlError(f"{path}: hypervisor {entry.get('name', index + 1)}: "
                              "memory_mib must be a positive integer")
        result.append(Hypervisor(name=str(entry.get("name") or f"hv{index + 1}"), uri=entry["uri"],
                                 memory_mib=memory, pool_path=str(entry.get("pool_path") or DEFAULT_POOL_PATH)))
    names = [h.name for h in result]
    if len(set(names)) != len(names):
        raise LabctlError(f"{path}: hypervisor names must be unique ({', '.join(names)})")
    return result


def committed_mib(conn: Any) -> int:
    """Memory (MiB) of every domain defined on a connection (running or not)."""
    return sum(dom.maxMemory() // 1024 for dom in conn.listAllDomains())


def free_mib(hypervisor: Hypervisor, conn: Any) -> int:
    """What labctl may still commit on `hypervisor`: its capacity minus defined domains."""
    capacity = hypervisor.memory_mib
    if capacity is None:
        capacity = int(conn.getInfo()[1]) - RESERVED_MIB
    return capacity - committed_mib(conn)


def place(need_mib: int, candidates: list[tuple[Hypervisor, Any]],
          unreachable: dict[str, str] | None = None) -> Hypervisor:
    """The hypervisor with the most free memory that fits `need_mib` (ties: site order)."""
    unreachable = unreachable or {}
    scored = [(free_mib(h, conn), -i, h) for i, (h, conn) in enumerate(candidates)]
    fitting = [s for s in scored if s[0] >= need_mib]
    if not fitting:
        free = ", ".join(f"{h.name}: {f} MiB free" for f, _, h in scored) or "none reachable"
        down = "".join(f"; {name} unreachable ({why})" for name, why in unreachable.items())
        raise ProviderError(f"no hypervisor has {need_mib} MiB free for this lab ({free}{down})",
                            "remove labs (labctl down), or add hypervisors / capacity to the site file")
    return max(fitting, key=lambda s: (s[0], s[1]))[2]
