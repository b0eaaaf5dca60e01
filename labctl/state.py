"""What a lab created, recorded on disk before and as it is created.

`up` writes the plan and every process it starts into `labs/<id>/state.json` (atomically),
so `down` can remove a lab after a crash, a Ctrl-C or a killed process, and is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from labctl import paths
from labctl.errors import NotFoundError
from labctl.plan import LabPlan


class ProcessRef(BaseModel):
    """A process labctl started, identified by PID and start time (PIDs get reused)."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """A reference to the running process `pid`, or None if it is gone."""
        start = process_start_time(pid)
        return cls(pid=pid, start_time=start) if start is not None else None

    def alive(self) -> bool:
        """True while this very process (not a later one with the same PID) runs."""
        return process_start_time(self.pid) == self.start_time


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class NodeState(BaseModel):
    """The processes behind one running node."""

    launcher: ProcessRef | None = None  # the shell waiting for systemd-nspawn, then its rebooter (reboots.py)
    init: ProcessRef | None = None  # the node's PID 1 (its namespaces are entered through it)
    host_key: str = ""  # the node's SSH host public key ("ssh-ed25519 AAAA...")
    hypervisor: str | None = None  # where the node runs, for providers with several hosts (libvirt)


class LabState(BaseModel):
    """A lab as recorded on disk."""

    id: str
    name: str
    provider: str
    status: str = "creating"  # creating, running, failed, destroying
    created: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    source: str = ""  # the topology file or scenario it was built from
    scenario: str | None = None
    image: str = ""  # the root filesystem nodes run on (set when built)
    seed: str | None = None  # the candidate's seed the variant values were drawn from
    values: dict[str, Any] = Field(default_factory=dict)  # the scenario's parameter values for this lab
    stage: str | None = None  # the scenario stage the lab is in
    injected: list[str] = Field(default_factory=list)  # faults injected so far, in order
    snapshot_point: dict[str, Any] | None = None  # stage and faults when the snapshot was taken
    image_name: str | None = None  # the scenario's image, if it needs packages beyond the base
    packages: list[str] = Field(default_factory=list)  # those packages
    plan: LabPlan
    nodes: dict[str, NodeState] = Field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """The lab's folder."""
        return paths.labs_dir() / self.id

    @property
    def vault(self) -> Path:
        """Controller-side records out of every candidate's reach (e.g. checksums before a fault)."""
        return self.directory / "vault"

    @property
    def key_file(self) -> Path:
        """labctl's private SSH key for this lab's nodes."""
        return self.directory / "id_ed25519"

    def node_dir(self, node: str) -> Path:
        """Per-node folder: its writable layer and logs."""
        return self.directory / "nodes" / node

    def upper_dir(self, node: str) -> Path:
        """The node's writable layer (the overlay's upper folder): what the node changed
        compared with the image. Read it only through here: its place may move."""
        legacy = self.node_dir(node) / "upper"  # labs made before nodes had a disk of their own
        return legacy if legacy.is_dir() else self.node_dir(node) / "layer" / "upper"

    def save(self) -> None:
        """Write the state atomically."""
        paths.write_json_atomic(self.directory / "state.json", json.loads(self.model_dump_json()))

    def publish(self) -> None:
        """Create the lab's folder with its first state in one step (a rename): a command
        killed meanwhile leaves no folder without a state, only a hidden `.new-<id>` folder
        that `sweep_unpublished` removes."""
        staging = paths.labs_dir() / f".new-{self.id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        paths.write_json_atomic(staging / "state.json", json.loads(self.model_dump_json()))
        os.rename(staging, self.directory)

    def remove(self) -> None:
        """Forget the lab (its folder), once everything it made is gone. The state goes last,
        and only once nothing else is left: a command killed meanwhile leaves a lab that is
        still listed (`destroying`), which the next `down` finishes, never a folder no
        command knows."""
        state = self.directory / "state.json"
        for child in self.directory.iterdir() if self.directory.exists() else []:
            if child == state:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if [child for child in self.directory.iterdir() if child != state] if self.directory.exists() else []:
            return  # something could not go (a mount made meanwhile): the caller reports it
        state.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # gone already, or a file made meanwhile: the caller reports it
            self.directory.rmdir()


def load_lab(lab_id: str) -> LabState:
    """The state of lab `lab_id`.

    A command killed while it published the state's first version leaves only the complete
    temporary file (written and synced before the rename): that one is the state then.
    """
    folder = paths.labs_dir() / lab_id
    candidates = [folder / "state.json"]
    candidates += sorted(folder.glob(".state.json.*"), key=_mtime, reverse=True)
    for path in candidates:
        try:
            return LabState.model_validate_json(path.read_text())
        except (OSError, ValueError):  # gone, or a temporary file cut short
            continue
    raise NotFoundError(f"no lab with id '{lab_id}'", "list labs with: labctl status --all")


def sweep_unpublished() -> None:
    """Remove folders of labs whose creation was cut short before they were published (call
    it under the names lock: no command is publishing one then)."""
    root = paths.labs_dir()
    for staging in root.glob(".new-*") if root.exists() else []:
        shutil.rmtree(staging, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def all_labs() -> list[LabState]:
    """Every lab recorded on this machine, oldest first."""
    root = paths.labs_dir()
    labs = []
    for folder in (root.iterdir() if root.exists() else []):
        if folder.is_dir() and not folder.name.startswith("."):
            with contextlib.suppress(NotFoundError):  # a folder with no readable state: nothing was built
                labs.append(load_lab(folder.name))
    return sorted(labs, key=lambda lab: (lab.created, lab.id))


def find_lab(selector: str | None) -> LabState:
    """The lab named or identified by `selector`; without one, the only lab there is."""
    labs = all_labs()
    if selector:
        for lab in labs:
            if selector in (lab.id, lab.name):
                return lab
        known = ", ".join(f"{lab.name} ({lab.id})" for lab in labs) or "none"
        raise NotFoundError(f"no lab named '{selector}' (labs: {known})")
    if not labs:
        raise NotFoundError("no lab is running", "start one with: labctl up SCENARIO")
    if len(labs) > 1:
        names = ", ".join(f"{lab.name} ({lab.id})" for lab in labs)
        raise NotFoundError(f"{len(labs)} labs are running: {names}", "choose one with --lab NAME")
    return labs[0]


def unique_name(wanted: str) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`... if a lab already has that name."""
    taken = {lab.name for lab in all_labs()}
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"
