"""Locks without labs: a held session or lab lock makes a second command wait, then exit 12
naming the holder; the lock goes with its holder; a removed lab is not found, not locked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labctl import locks
from labctl.errors import EXIT_BUSY, BusyError, NotFoundError

ROOT = Path(__file__).resolve().parents[2]


def test_a_held_session_makes_session_commands_exit_12(tmp_path: Path) -> None:
    folder = tmp_path / "sessions" / "exam"
    folder.mkdir(parents=True)
    env = os.environ | {"LABCTL_HOME": str(tmp_path), "LABCTL_LOCK_WAIT": "0.3", "PYTHONPATH": str(ROOT)}
    with locks.session(folder, "exam", "session grade exam"):
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "labctl", "session", "tick", "exam"], env=env,
                                capture_output=True, text=True, timeout=60)
        waited = time.monotonic() - started
    assert result.returncode == EXIT_BUSY, result.stderr
    assert f"session exam is busy: `labctl session grade exam` (process {os.getpid()}) holds it" in result.stderr
    assert waited >= 0.3
    after = subprocess.run([sys.executable, "-m", "labctl", "session", "tick", "exam"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert after.returncode != EXIT_BUSY  # released: the command runs (and finds no session file)


def test_shared_holders_coexist_and_exclude_a_writer(tmp_path: Path) -> None:
    lab = tmp_path / "abc123"
    lab.mkdir()
    with locks.lab(lab, "small", "grade", shared=True), locks.lab(lab, "small", "grade", shared=True):
        assert locks.busy(lab) is None  # readers only
        with pytest.raises(BusyError, match=r"lab small \(abc123\) is busy"), \
                locks.lab(lab, "small", "reset", wait=0.1):
            pass
    with locks.lab(lab, "small", "reset"):
        assert locks.busy(lab) is not None and "labctl reset" in str(locks.busy(lab))
    assert locks.busy(lab) is None


def test_a_lab_removed_while_waiting_is_not_found(tmp_path: Path) -> None:
    lab = tmp_path / "gone12"
    with pytest.raises(NotFoundError, match="removed by another command"), \
            locks.lab(lab, "gone", "reset", wait=0.1):
        pass
