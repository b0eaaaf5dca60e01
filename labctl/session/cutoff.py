"""The end of a candidate's time is the end of their access, for every due candidate at once.

Grading a room takes minutes; a candidate whose account stayed open while the labs before
theirs were graded kept working past their end time, and what they did counted. So at the
end time, before any grading:

1. every due candidate is marked closed in the session, in one write (the gateway refuses
   them from then on: it reads that mark before every node it opens);
2. their open sessions end, all in one sweep of the process table: the gateway and the SSH
   client it runs, the out-of-band helper, and what runs in the node under that session
   (the node's sshd and the shell and programs started from it, which outlive a closed
   connection when no terminal hangs them up);
3. their accounts are locked (new logins fail before the gateway even starts);

and only then are their labs graded, side by side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Cut:
    """What ending a set of candidates' access did."""

    killed: int  # processes ended (host side and inside nodes)
    locked: list[str]  # accounts locked
    failures: dict[str, str]  # login -> why its account could not be locked


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def session_processes(logins: Iterable[str], uids: Iterable[int] = ()) -> set[int]:
    """Every process of these candidates' sessions: processes owned by their accounts or run
    for them through sudo (SUDO_USER in their environment), and all their descendants (in
    nodes too: a node's processes are the host's processes)."""
    marks = {f"SUDO_USER={login}".encode() for login in logins}
    owners = set(uids)
    roots: set[int] = set()
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            if proc.stat().st_uid in owners:
                roots.add(int(proc.name))
                continue
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if environ & marks:
            roots.add(int(proc.name))
    found, todo = set(roots), list(roots)
    while todo:
        for child in _children(todo.pop()):
            if child not in found and child != me:
                found.add(child)
                todo.append(child)
    return found


def end_sessions(logins: Iterable[str], uids: Iterable[int] = ()) -> int:
    """SIGKILL every process of these candidates' sessions (found first, then killed at
    once: nothing gets time to start anything new); returns how many were killed."""
    pids = session_processes(logins, uids)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def lock_accounts(logins: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Lock and expire these accounts (those that exist); returns the locked ones and failures."""
    import pwd

    locked, failures = [], {}
    for login in logins:
        try:
            pwd.getpwnam(login)
        except KeyError:
            continue
        done = subprocess.run(["usermod", "--lock", "--expiredate", "1", login], capture_output=True, text=True)
        if done.returncode == 0:
            locked.append(login)
        else:
            failures[login] = done.stderr.strip() or f"usermod exited {done.returncode}"
    return locked, failures


def cut(logins: list[str]) -> Cut:
    """End these candidates' sessions and lock their accounts (steps 2 and 3 of the module doc)."""
    import pwd

    uids = []
    for login in logins:
        with contextlib.suppress(KeyError):
            uids.append(pwd.getpwnam(login).pw_uid)
    killed = end_sessions(logins, uids)
    locked, failures = lock_accounts(logins)
    killed += end_sessions(logins, uids)  # whatever slipped in while the accounts were locked
    return Cut(killed, locked, failures)


def side_by_side_all(items: list[str], work: Callable[[str], object], workers: int) -> dict[str, BaseException]:
    """Run `work` on every item, `workers` at once, every item tried whatever others do;
    returns the failures by item."""
    failures: dict[str, BaseException] = {}
    if not items:
        return failures
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="final") as pool:
        futures = {item: pool.submit(work, item) for item in items}
        for item, future in futures.items():
            error = future.exception()
            if error is not None:
                failures[item] = error
    return failures
