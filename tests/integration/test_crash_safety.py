"""Crash-safe lifecycle: `up`, `reset`, `snapshot` and `down` SIGKILLed at each step boundary or
at random instants; the next `down` leaves nothing of the lab (processes, namespaces, links, mounts, loop
devices, cgroups, files), and `status` never calls a lab with stopped nodes `running`.

Bounded: 57 kills of a 3-node lab, 1.5 to 3 minutes on 2 busy cores. The count of kills and the
leaks found are printed (pytest -s) for the record.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl import cgroups, paths
from labctl import lab as labs
from labctl.providers import get_provider
from labctl.providers.nodedisk import loops_under, mounts_under
from labctl.state import LabState, all_labs

from .conftest import SMALL, kernel_objects, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
LABCTL = [sys.executable, "-m", "labctl"]
ENV = dict(os.environ)
UP_STEPS, RESET_STEPS = 5, 6  # progress lines `up` and `reset` print for the small lab
RANDOM_UP, RANDOM_RESET, RANDOM_SNAPSHOT, RANDOM_DOWN = 13, 13, 4, 16


def leaks(lab_id: str, name: str) -> list[str]:
    """Whatever of lab `lab_id` is still on the machine."""
    found = [f"{kind}: {item}" for kind, items in kernel_objects(lab_id, name).items() for item in items]
    found += [f"cgroup {group}" for group in cgroups.leftovers(cgroups.lab_group(lab_id))]
    found += [f"loop device {device}" for device in loops_under(paths.labs_dir() / lab_id)]
    if (paths.labs_dir() / lab_id).exists():
        found.append(f"folder {paths.labs_dir() / lab_id}")
    return found


def _kill_at(*args: str, boundary: int | None = None, delay: float | None = None) -> None:
    """Run labctl `args` and SIGKILL it after its `boundary`-th finished step, or after `delay` s."""
    proc = subprocess.Popen([*LABCTL, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        if boundary is not None:
            assert proc.stderr is not None
            seen = 0
            for line in proc.stderr:
                if line.startswith(("✓", "✗")):
                    seen += 1
                    if seen == boundary:
                        break
        else:
            time.sleep(delay or 0)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def _labs_named(name: str) -> list[LabState]:
    return [lab for lab in all_labs() if lab.name == name]


def _check_truth(lab: LabState) -> None:
    """`status`'s word for the lab is `running` only if every node runs."""
    states = get_provider(lab.provider).node_states(lab)
    if labs.condition(lab, states) == "running":
        assert set(states.values()) == {"running"}, states


def _lab_folders() -> set[str]:
    return {p.name for p in paths.labs_dir().iterdir() if not p.name.startswith(".")}


def _down_and_count(name: str, before: set[str]) -> list[str]:
    """Remove every lab named `name` (and any new lab folder), return what leaked."""
    found: list[str] = []
    new = _lab_folders() - before
    for lab in _labs_named(name):
        _check_truth(lab)
        new.add(lab.id)
        result = subprocess.run([*LABCTL, "down", "--lab", lab.id], env=ENV, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
    for lab_id in new:
        found += leaks(lab_id, name)
    return found


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A labctl home of the test's own (sharing the machine's node images): every lab folder
    in it is the test's, whatever else runs on the machine."""
    home = tmp_path / "home"
    home.mkdir()
    paths.images_dir().mkdir(parents=True, exist_ok=True)  # built there on first use, if this runs first
    (home / "images").symlink_to(paths.images_dir())
    monkeypatch.setenv("LABCTL_HOME", str(home))
    ENV.update(LABCTL_HOME=str(home), PYTHONPATH=str(Path(__file__).parents[2]))
    yield
    for point in mounts_under(home):  # labs/ became a shared mount point with the first node disk
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_killed_up_reset_and_down_leave_nothing_after_down() -> None:
    rng = random.Random(int(os.environ.get("LABCTL_CRASH_SEED", "1213")))
    name = "crash"
    paths.labs_dir().mkdir(parents=True, exist_ok=True)
    before = _lab_folders()
    kills = 0
    leaked: list[str] = []
    started = time.monotonic()
    try:
        # `up`: at each step boundary, then at random instants over its length (~1-2 s)
        plans: list[dict[str, float | int]] = [{"boundary": k} for k in range(1, UP_STEPS + 1)]
        plans += [{"delay": rng.uniform(0.3, 2.5)} for _ in range(RANDOM_UP)]
        for plan in plans:
            _kill_at("up", str(SMALL), "--name", name, **plan)  # type: ignore[arg-type]
            kills += 1
            leaked += _down_and_count(name, before)
        # `reset` of a built lab: same
        plans = [{"boundary": k} for k in range(1, RESET_STEPS + 1)]
        plans += [{"delay": rng.uniform(0.3, 2.0)} for _ in range(RANDOM_RESET)]
        for plan in plans:
            labs.up(str(SMALL), name=name, exact_name=True)
            lab = _labs_named(name)[0]
            labs.snapshot(lab)
            _kill_at("reset", "--lab", name, **plan)  # type: ignore[arg-type]
            kills += 1
            leaked += _down_and_count(name, before)
        # `snapshot`: at random instants over its length (~0.5 s)
        for _ in range(RANDOM_SNAPSHOT):
            labs.up(str(SMALL), name=name, exact_name=True)
            _kill_at("snapshot", "--lab", name, delay=rng.uniform(0.3, 1.0))
            kills += 1
            leaked += _down_and_count(name, before)
        # `down`: at random instants over its length (~0.5 s)
        for _ in range(RANDOM_DOWN):
            labs.up(str(SMALL), name=name, exact_name=True)
            _kill_at("down", "--lab", name, delay=rng.uniform(0.3, 1.2))
            kills += 1
            leaked += _down_and_count(name, before)
    finally:
        for lab in _labs_named(name):
            labs.down(lab)
    print(f"\ncrash safety: {kills} kills (up, reset, snapshot, down) in {time.monotonic() - started:.0f} s; "
          f"leaks after down: {len(leaked)}")
    assert kills >= 50
    assert leaked == [], "\n".join(leaked)
