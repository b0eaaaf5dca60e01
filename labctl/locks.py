"""One command at a time per lab and per session: advisory locks (flock) on files.

A command that changes a lab (up, reset, down, snapshot, stage, inject, play) holds the
lab's lock exclusively; `grade` holds it shared (several gradings may run together, never
during a reset). A second command waits up to LABCTL_LOCK_WAIT seconds (default 10), then
refuses with BusyError (exit 12) naming the command that holds it. The kernel releases a
lock when its holder dies, so a killed command never leaves a lab locked.

Lab names are claimed under one more lock (`labs/.names.lock`) so that two `up --name X` at
once cannot both take X.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from labctl import paths
from labctl.errors import BusyError, NotFoundError
from labctl.state import ProcessRef

DEFAULT_WAIT = 10.0
LOCK_FILE = "lock"


def wait_seconds() -> float:
    """How long a command waits for a lock (LABCTL_LOCK_WAIT, default 10 s)."""
    try:
        return max(0.0, float(os.environ.get("LABCTL_LOCK_WAIT", DEFAULT_WAIT)))
    except ValueError:
        return DEFAULT_WAIT


def _holder(path: Path) -> str:
    """Who holds the lock, as its last exclusive holder wrote it (if that process still runs)."""
    try:
        pid_text, start_text, command = path.read_text().split(" ", 2)
        if ProcessRef(pid=int(pid_text), start_time=int(start_text)).alive():
            return f": `labctl {command.strip()}` (process {pid_text}) holds it"
    except (OSError, ValueError):
        pass
    return ""


@contextlib.contextmanager
def hold(path: Path, what: str, command: str, *, shared: bool = False,
         wait: float | None = None) -> Iterator[int]:
    """Hold the lock file `path` (exclusive, or shared) while the block runs; yields its fd.

    `what` names the locked thing in the refusal ("lab small (abc123)").
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + (wait_seconds() if wait is None else wait)
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(f"{what} is busy{_holder(path)}; `labctl {command}` did not run",
                                    "wait for it to finish and try again (LABCTL_LOCK_WAIT=SECONDS waits "
                                    "longer)") from None
                time.sleep(0.05)
        if not shared:
            me = ProcessRef.of(os.getpid())
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {me.start_time if me else 0} {command}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def lab(directory: Path, name: str, command: str, *, shared: bool = False,
        wait: float | None = None) -> Iterator[None]:
    """Hold the lock of the lab in `directory`; NotFoundError if the lab went meanwhile."""
    path = directory / LOCK_FILE
    gone = NotFoundError(f"lab {name} was removed by another command", "list labs with: labctl status --all")
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(hold(path, f"lab {name} ({directory.name})", command, shared=shared, wait=wait))
        except FileNotFoundError:
            raise gone from None
        try:  # `down` removes the folder while it holds the lock: a waiter then holds a dead file
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise gone
        yield


def busy(directory: Path) -> str | None:
    """The command holding the lab in `directory` exclusively right now, or None."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(directory / LOCK_FILE).removeprefix(": ").removesuffix(" holds it") or "another command"
    finally:
        os.close(fd)


@contextlib.contextmanager
def names(command: str) -> Iterator[None]:
    """Hold the lock under which lab names are checked and claimed."""
    from labctl.state import sweep_unpublished

    paths.labs_dir().mkdir(parents=True, exist_ok=True)
    with hold(paths.labs_dir() / ".names.lock", "the list of labs", command):
        sweep_unpublished()
        yield


@contextlib.contextmanager
def session(directory: Path, name: str, command: str, wait: float | None = None) -> Iterator[None]:
    """Hold session `name`'s lock (one session command at a time)."""
    with hold(directory / LOCK_FILE, f"session {name}", command, wait=wait):
        yield
