"""The audit log: every proctor action (create, start, extend, inject, grade, reset, rebuild,
destroy...) with UTC time and user, one JSON line each, appended.

Each entry carries the SHA-256 of the previous line, so removing or editing an entry breaks
the chain and `verify_chain` says where.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from labctl.session import clock

GENESIS = "0" * 64


def acting_user() -> str:
    """Who acts: the user behind sudo (SUDO_USER), else the login name."""
    user = os.environ.get("SUDO_USER")
    if user:
        return user
    try:
        return os.getlogin()
    except OSError:
        return getpass.getuser()


class AuditLog:
    """The append-only, hash-chained log of a session's proctor actions."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _last_hash(self) -> str:
        if not self.path.exists():
            return GENESIS
        lines = [line for line in self.path.read_bytes().splitlines() if line.strip()]
        return hashlib.sha256(lines[-1]).hexdigest() if lines else GENESIS

    def record(self, action: str, **details: Any) -> dict[str, Any]:
        """Append one action (callers hold the session lock, so the chain stays linear)."""
        entry = {"time": clock.stamp(), "user": acting_user(), "action": action,
                 "details": details, "previous": self._last_hash()}
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def verify_chain(self) -> list[str]:
        """Problems in the chain ([] when intact): line numbers whose link is broken."""
        problems = []
        previous = GENESIS
        lines = [line for line in self.path.read_bytes().splitlines() if line.strip()] if self.path.exists() else []
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                problems.append(f"{self.path}:{number}: not a JSON entry")
                previous = hashlib.sha256(line).hexdigest()
                continue
            if entry.get("previous") != previous:
                problems.append(f"{self.path}:{number}: the entry before it was changed or removed")
            previous = hashlib.sha256(line).hexdigest()
        return problems
