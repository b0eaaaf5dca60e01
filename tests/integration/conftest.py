"""Integration tests build real labs on the local provider; they skip where it cannot run."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.state import LabState, all_labs

DATA = Path(__file__).resolve().parent.parent / "data"
SMALL = DATA / "labs" / "small.yml"
SMALL_SPEC = DATA / "labs" / "small-grading.yml"


def _local_provider_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the local provider creates namespaces and containers)"
    from labctl.providers import get_provider

    missing = [p for p in get_provider("local").preflight() if p.required and not p.ok]
    return "; ".join(f"{p.name}: {p.detail}" for p in missing) or None


PROBLEM = _local_provider_problem()
pytestmark_local = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


def kernel_objects(lab_id: str, lab_name: str | None = None) -> dict[str, list[str]]:
    """Everything of a lab visible on the machine: namespaces, links, mounts, processes (by the
    lab id in their command line, or, with `lab_name`, by the node file inside their root:
    a container whose launcher is gone shows neither id nor name in its command line)."""
    netns = [n.split()[0] for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout.splitlines() if lab_id in n]
    links = [line for line in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                             text=True).stdout.splitlines() if lab_id in line]
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if lab_id in line]
    procs = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if lab_id in cmdline:
                procs.append(f"{proc.name}: {cmdline}")
            elif lab_name is not None:
                with contextlib.suppress(OSError):
                    if f"LABCTL_LAB={lab_name}\n" in (proc / "root/etc/labctl/node.env").read_text():
                        procs.append(f"{proc.name}: {cmdline} (a node of {lab_name})")
    return {"netns": netns, "links": links, "mounts": mounts, "processes": procs}


def lab_of(directory: Path, topology: str, name: str) -> Iterator[LabState]:
    """A lab of `topology` (YAML text) named `name`, for a fixture to yield: removed afterwards,
    leaving no namespace, link, mount, process or cgroup behind."""
    from labctl import cgroups

    source = directory / f"{name}.yml"
    source.write_text(topology)
    built = labs.up(str(source), name=name)
    yield built
    if any(existing.id == built.id for existing in all_labs()):
        labs.down(built)
    left = kernel_objects(built.id, built.name)
    assert not any(left.values()), left
    assert not cgroups.leftovers(cgroups.lab_group(built.id))


@pytest.fixture
def make_lab() -> Iterator[object]:
    """Build labs with labctl.lab.up; every lab made is removed after the test."""
    made: list[LabState] = []

    def build(source: str | Path = SMALL, **kwargs: object) -> LabState:
        lab = labs.up(str(source), **kwargs)  # type: ignore[arg-type]
        made.append(lab)
        return lab

    yield build
    for lab in made:
        if any(existing.id == lab.id for existing in all_labs()):
            labs.down(lab)


def inside(lab: object, node: str, command: str) -> str:
    """Run a command as the node's root (as the candidate would), with a clean shell; its output."""
    from labctl.grading.outside import LabView, OutsideSession

    view = LabView(lab)
    try:
        session = OutsideSession(view, node, lambda: None)  # type: ignore[arg-type,return-value]
        result = session.run(command, 30)
    finally:
        view.close()
    assert result.exit_code == 0, (command, result)
    return result.stdout
