"""The results journal: every grading run, on disk (fsync) before it is reported or stored.

A session's results database can be locked by another program, corrupted, truncated or
on a full disk; a grading run must survive all of it. So each run is first appended to
`results.journal` beside the database: one JSON line per run, with a unique key and the
SHA-256 of its own content, written with O_APPEND and fsync'd (the folder too when the
file is new). The database is then a copy that can always be rebuilt: `ResultStore`
replays into it every journal entry whose key it does not hold (idempotent), and reads
the journal instead when the database cannot be read.

A line cut short (the process killed mid-write, the disk full) is detected by its
checksum and skipped, and the next append starts on a fresh line: every complete entry
before and after it stays readable.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError

FORMAT = "labctl.results-journal/1"
# An entry's key, found without parsing its (large) report: keys are sorted, so "key" comes
# before "report_json", and a JSON string never holds an unescaped quote.
_KEY = re.compile(rb'"key": "([0-9a-f]{32})"')


class JournalError(LabctlError):
    """The journal could not be written (disk full, read-only, permissions)."""


@dataclass(frozen=True)
class Entry:
    """One journaled grading run: what the database's row holds, plus its key."""

    key: str
    session: str
    candidate: str
    lab: str
    kind: str
    recorded: str
    started: str
    finished: str
    score: float
    earned: int
    total: int
    exit_code: int
    sha256: str
    report_json: str

    def to_line(self) -> bytes:
        body = json.dumps({"format": FORMAT, **self.__dict__}, ensure_ascii=False, sort_keys=True)
        check = hashlib.sha256(body.encode()).hexdigest()
        return f'{{"check": "{check}", "entry": {body}}}\n'.encode()


def new_key() -> str:
    """A key no other run has (the database's unique column: replaying twice adds nothing)."""
    return uuid.uuid4().hex


@dataclass
class ReadResult:
    """The entries of a journal, and the lines that could not be read (torn or damaged)."""

    entries: list[Entry]
    damaged: list[int]  # line numbers


class Journal:
    """An append-only, fsync'd JSON-lines file of grading runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: Entry) -> None:
        """Write `entry` durably; JournalError (with the reason) if the disk refuses."""
        line = entry.to_line()
        try:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # graders in threads and processes append whole lines in turn
                if not new and not _ends_with_newline(self.path):
                    line = b"\n" + line  # the last write was cut short: start afresh
                written = 0
                while written < len(line):
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                _fsync_dir(self.path.parent)
        except OSError as exc:
            raise JournalError(f"cannot write the results journal {self.path}: {exc.strerror or exc}",
                               "free some space (df -h) or fix the folder's permissions; "
                               "the run was not stored") from None

    def read(self, known: set[str] | None = None) -> ReadResult:
        """Every complete entry, in order, but those whose key is in `known` (not even parsed:
        a room's journal is read by every grading); damaged lines are counted, not fatal."""
        entries: list[Entry] = []
        damaged: list[int] = []
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ReadResult([], [])
        except OSError as exc:
            raise JournalError(f"cannot read the results journal {self.path}: {exc.strerror or exc}") from None
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            if known:
                found = _KEY.search(line)
                if found and found.group(1).decode() in known:
                    continue
            entry = _parse(line)
            if entry is None:
                damaged.append(number)
            else:
                entries.append(entry)
        return ReadResult(entries, damaged)


def _parse(line: bytes) -> Entry | None:
    try:
        outer = json.loads(line)
        body = json.dumps(outer["entry"], ensure_ascii=False, sort_keys=True)
        if hashlib.sha256(body.encode()).hexdigest() != outer["check"]:
            return None
        data: dict[str, Any] = dict(outer["entry"])
        if data.pop("format", None) != FORMAT:
            return None
        return Entry(**data)
    except (ValueError, KeyError, TypeError):
        return None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
