"""A session as recorded on disk: LABCTL_HOME/sessions/<name>/session.json (atomic writes).

Every change goes through `Session.update`, which holds an exclusive lock on the session's
folder while it reads, changes and writes, so concurrent commands (a proctor's `extend`
while the dashboard ticks) never lose each other's writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from labctl import paths
from labctl.errors import InvalidInputError, LabctlError, NotFoundError, Problem
from labctl.session import clock
from labctl.session.roster import ID_HINT, ID_PATTERN, Roster


class SessionError(LabctlError):
    """A session operation cannot be done in the session's current state (exit 11)."""


def sessions_dir() -> Path:
    """Where every session's folder lives."""
    return paths.home() / "sessions"


class CandidateRecord(BaseModel):
    """One candidate of a session, their lab and their clock adjustments."""

    id: str
    name: str
    tiers_temps: bool = False
    extra_minutes: int = 0
    lab_name: str = ""
    lab_id: str | None = None
    variant: int | None = None  # with a session's --variants: which one (1..N); None: their own
    variant_seed: str | None = None  # what that variant's values are drawn from
    login: str | None = None  # the gateway account, while access is open
    access: str = "none"  # none, open, closed
    closed_at: str | None = None
    final_run: int | None = None  # the grading run made at the end time

    @property
    def seed(self) -> str:
        """What the candidate's variant values are drawn from: their id, or their pooled variant's seed."""
        return self.variant_seed or self.id

    def end(self, session: Session) -> Any:
        """When this candidate's time ends (None before the session starts)."""
        if session.started is None:
            return None
        return clock.end_time(session.started, session.duration_s, self.tiers_temps, self.extra_minutes)

    def seconds_left(self, session: Session) -> float | None:
        """Seconds until the end (negative once over; None before the start)."""
        end = self.end(session)
        return None if end is None else (end - clock.now()).total_seconds()


class Session(BaseModel):
    """An exam session: a scenario, a roster, a duration, one lab per candidate."""

    name: str
    id: str = Field(default_factory=lambda: secrets.token_hex(2))
    scenario: str
    spec: str | None = None  # a grading spec, for a bare topology
    provider: str | None = None
    variants: int | None = None  # None: every candidate their own variant; N: N variants shared in turn
    duration_s: int
    db_url: str | None = None  # None: the session's own SQLite file
    created: str = Field(default_factory=clock.stamp)
    started: str | None = None
    status: str = "creating"  # creating, ready, started, failed, destroyed
    candidates: list[CandidateRecord] = Field(default_factory=list)

    @property
    def directory(self) -> Path:
        """The session's folder (root-only)."""
        return sessions_dir() / self.name

    def candidate(self, candidate_id: str) -> CandidateRecord:
        """The candidate `candidate_id`; a clear error lists the session's candidates."""
        for record in self.candidates:
            if record.id == candidate_id:
                return record
        raise NotFoundError(f"session {self.name} has no candidate '{candidate_id}' "
                            f"(candidates: {', '.join(c.id for c in self.candidates)})")

    def save(self) -> None:
        """Write the session atomically (root-only)."""
        paths.write_atomic(self.directory / "session.json", self.model_dump_json(indent=2) + "\n", mode=0o600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the session's lock (an flock on its folder's lock file)."""
        with open(self.directory / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def update(self, change: Callable[[Session], None]) -> Session:
        """Reload under the lock, apply `change`, save; returns the fresh session."""
        with self.locked():
            fresh = load_session(self.name)
            change(fresh)
            fresh.save()
        return fresh


def check_name(name: str, what: str = "session name") -> str:
    """`name` if it is a valid session name; an InvalidInputError otherwise."""
    if not ID_PATTERN.match(name):
        raise InvalidInputError([Problem(f"--name {name}", 0, f"bad {what} {name!r}", ID_HINT)])
    return name


def new_session(name: str, scenario: str, roster: Roster, duration_s: int, *, spec: str | None = None,
                provider: str | None = None, db_url: str | None = None) -> Session:
    """Claim the session's folder (atomically: two sessions never share a name) and record it."""
    check_name(name)
    root = sessions_dir()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    try:
        (root / name).mkdir(mode=0o700)
    except FileExistsError:
        raise SessionError(f"a session named '{name}' already exists",
                           "choose another --name, or remove it: labctl session destroy " + name) from None
    session = Session(name=name, scenario=scenario, spec=spec, provider=provider, duration_s=duration_s,
                      db_url=db_url,
                      candidates=[CandidateRecord(id=c.id, name=c.name, tiers_temps=c.tiers_temps,
                                                  lab_name=f"{name}-{c.id}") for c in roster.candidates])
    session.save()
    return session


def load_session(name: str) -> Session:
    """The session named `name`, read from disk."""
    path = sessions_dir() / name / "session.json"
    try:
        return Session.model_validate_json(path.read_text())
    except FileNotFoundError:
        known = ", ".join(all_session_names()) or "none"
        raise NotFoundError(f"no session named '{name}' (sessions: {known})",
                            "create one with: labctl session create --scenario NAME --roster FILE") from None


def all_session_names() -> list[str]:
    """Names of the sessions recorded on this machine."""
    root = sessions_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/session.json"))


def default_name(scenario: str) -> str:
    """A fresh session name from the scenario and today's date."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(scenario).name)[:20] + "-" + clock.now().strftime("%Y%m%d")
    taken = set(all_session_names())
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def dump(session: Session) -> dict[str, Any]:
    """Plain data for JSON output."""
    data: dict[str, Any] = json.loads(session.model_dump_json())
    return data
