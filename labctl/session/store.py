"""Grading runs, kept forever: an embedded SQLite file by default, or PostgreSQL.

Every run is a new row; the table refuses UPDATE and DELETE (triggers), so a run once
recorded is never overwritten. URLs: `sqlite:///ABSOLUTE/PATH` or a path, and
`postgresql://user@host:port/db` (psycopg 3; `host=/run/postgresql` sockets work too).

With a journal (`labctl.session.journal`, what sessions use) a run is first written to the
journal, durably, then to the database under its unique key. A database locked past
BUSY_TIMEOUT_S, corrupt, truncated or on a full disk loses nothing: the run stays in the
journal, the next store replays every entry the database lacks (idempotent), and reads
come from the journal, with a warning saying why, while the database cannot be read.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError, PlatformError, profile_hint
from labctl.grading.report import from_json, to_json
from labctl.grading.results import GradeReport
from labctl.session import clock
from labctl.session.journal import Entry, Journal, JournalError, new_key

COLUMNS = ("id", "session", "candidate", "lab", "kind", "recorded", "started", "finished", "score",
           "earned", "total", "exit_code", "sha256", "report_json", "key")
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another program's lock on the SQLite file
SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS grading_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, candidate TEXT NOT NULL,
        lab TEXT NOT NULL, kind TEXT NOT NULL, recorded TEXT NOT NULL, started TEXT NOT NULL,
        finished TEXT NOT NULL, score REAL NOT NULL, earned INTEGER NOT NULL, total INTEGER NOT NULL,
        exit_code INTEGER NOT NULL, sha256 TEXT NOT NULL, report_json TEXT NOT NULL, key TEXT)""",
    "CREATE INDEX IF NOT EXISTS grading_runs_by_candidate ON grading_runs (session, candidate, id)",
    "ADD KEY COLUMN",  # databases made before the journal: see _add_key_column
    "CREATE UNIQUE INDEX IF NOT EXISTS grading_runs_by_key ON grading_runs (key)",
    """CREATE TRIGGER IF NOT EXISTS grading_runs_no_update BEFORE UPDATE ON grading_runs
        BEGIN SELECT RAISE(ABORT, 'grading runs are kept as recorded: no update'); END""",
    """CREATE TRIGGER IF NOT EXISTS grading_runs_no_delete BEFORE DELETE ON grading_runs
        BEGIN SELECT RAISE(ABORT, 'grading runs are kept as recorded: no delete'); END""",
]
POSTGRES_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS grading_runs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, session TEXT NOT NULL, candidate TEXT NOT NULL,
        lab TEXT NOT NULL, kind TEXT NOT NULL, recorded TEXT NOT NULL, started TEXT NOT NULL,
        finished TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, earned INTEGER NOT NULL,
        total INTEGER NOT NULL, exit_code INTEGER NOT NULL, sha256 TEXT NOT NULL, report_json TEXT NOT NULL,
        key TEXT)""",
    "CREATE INDEX IF NOT EXISTS grading_runs_by_candidate ON grading_runs (session, candidate, id)",
    "ALTER TABLE grading_runs ADD COLUMN IF NOT EXISTS key TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS grading_runs_by_key ON grading_runs (key)",
    """CREATE OR REPLACE FUNCTION labctl_grading_runs_frozen() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'grading runs are kept as recorded: no %', lower(TG_OP); END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS grading_runs_frozen ON grading_runs",
    """CREATE TRIGGER grading_runs_frozen BEFORE UPDATE OR DELETE ON grading_runs
        FOR EACH ROW EXECUTE FUNCTION labctl_grading_runs_frozen()""",
]


@dataclass(frozen=True)
class GradingRun:
    """One stored grading run of one candidate's lab."""

    id: int
    session: str
    candidate: str
    lab: str
    kind: str  # on-demand, final
    recorded: str
    score: float
    exit_code: int
    sha256: str
    report_json: str

    @property
    def report(self) -> GradeReport:
        """The run's full report (every check, with evidence)."""
        return from_json(self.report_json)

    def intact(self) -> bool:
        """True while the stored report still has the digest it was recorded with."""
        return hashlib.sha256(self.report_json.encode()).hexdigest() == self.sha256


class ResultsUnavailable(LabctlError):
    """Neither the journal nor the database could take or give the runs."""


def warn(message: str) -> None:
    """A problem the proctor must know about that does not stop the command."""
    print(f"labctl: warning: {message}", file=sys.stderr, flush=True)


class ResultStore:
    """Grading runs in SQLite or PostgreSQL (same table, same queries), behind a journal."""

    def __init__(self, url: str, journal: Path | None = None, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.journal = Journal(journal) if journal is not None else None
        self.busy_timeout = busy_timeout
        self._connection: Any = None
        self._replayed = False

    def _where(self) -> str:
        return self.url if self.postgres else str(self._sqlite_path())

    def _sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite://")) if self.url.startswith("sqlite://") else Path(self.url)

    def _db_errors(self) -> tuple[type[BaseException], ...]:
        errors: tuple[type[BaseException], ...] = (sqlite3.Error, PlatformError, OSError)
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                return errors
            errors += (psycopg.Error,)
        return errors

    def _connect(self) -> Any:
        if self._connection is not None:
            return self._connection
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise PlatformError("a PostgreSQL URL needs psycopg (exam sessions' profile)",
                                    profile_hint("--sessions")) from None
            try:
                self._connection = psycopg.connect(self.url, autocommit=True)
            except psycopg.Error as exc:
                raise PlatformError(f"cannot connect to {self.url}: {str(exc).strip()}") from None
            schema = POSTGRES_SCHEMA
        else:
            path = self._sqlite_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=self.busy_timeout, isolation_level=None,
                                         check_same_thread=False)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                checked = connection.execute("PRAGMA quick_check").fetchone()
                if checked is None or checked[0] != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed ({checked[0] if checked else '?'})")
            except sqlite3.Error:
                connection.close()
                raise
            self._connection = connection
            schema = SQLITE_SCHEMA
        try:
            with self._lock_schema():
                for statement in schema:
                    if statement == "ADD KEY COLUMN":
                        self._add_key_column()
                    else:
                        self._connection.execute(statement)
        except BaseException:
            self.close()
            raise
        return self._connection

    def _add_key_column(self) -> None:
        """SQLite has no ADD COLUMN IF NOT EXISTS: add `key` to a database made before the journal."""
        columns = [row[1] for row in self._connection.execute("PRAGMA table_info(grading_runs)")]
        if "key" not in columns:
            self._connection.execute("ALTER TABLE grading_runs ADD COLUMN key TEXT")

    def _lock_schema(self) -> Any:
        import contextlib

        if self.postgres:  # concurrent CREATE OR REPLACE FUNCTION races otherwise
            @contextlib.contextmanager
            def lock() -> Any:
                with self._connection.transaction():
                    self._connection.execute("SELECT pg_advisory_xact_lock(4242004)")
                    yield
            return lock()
        return contextlib.nullcontext()

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.postgres else text

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _describe(self, exc: BaseException) -> str:
        """What is wrong with the database, in a proctor's words."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, LabctlError):
            text = exc.message
        lowered = text.lower()
        if "locked" in lowered or "busy" in lowered:
            return f"{self._where()} is locked by another program (waited {self.busy_timeout:g} s): {text}"
        if "full" in lowered or "no space" in lowered:
            return f"the disk holding {self._where()} is full: {text}"
        if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
            return f"{self._where()} is corrupt or truncated: {text}"
        return f"{self._where()}: {text}"

    def _insert(self, entry: Entry) -> int | None:
        """Insert a run under its key; None if a row with that key is already there."""
        values = (entry.session, entry.candidate, entry.lab, entry.kind, entry.recorded, entry.started,
                  entry.finished, entry.score, entry.earned, entry.total, entry.exit_code, entry.sha256,
                  entry.report_json, entry.key)
        sql = ("INSERT INTO grading_runs (session, candidate, lab, kind, recorded, started, finished, score, "
               "earned, total, exit_code, sha256, report_json, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (key) DO NOTHING")
        connection = self._connect()
        if self.postgres:
            row = connection.execute(self._sql(sql) + " RETURNING id", values).fetchone()
            return int(row[0]) if row else None
        cursor = connection.execute(sql, values)
        return int(cursor.lastrowid) if cursor.rowcount else None

    def replay(self) -> int:
        """Write into the database every journal entry it lacks; returns how many."""
        if self.journal is None:
            return 0
        if not self.journal.path.exists():
            self._replayed = True
            return 0
        connection = self._connect()
        known = {row[0] for row in connection.execute("SELECT key FROM grading_runs WHERE key IS NOT NULL")}
        read = self.journal.read(known)
        if read.damaged:
            warn(f"results journal {self.journal.path}: line(s) {', '.join(map(str, read.damaged))} cut short "
                 "or damaged were skipped (a write interrupted by a crash or a full disk)")
        for entry in read.entries:
            self._insert(entry)
        self._replayed = True
        return len(read.entries)

    def add(self, session: str, candidate: str, kind: str, report: GradeReport) -> int | None:
        """Record a run: journal first (durable), then the database. Returns the database id,
        or None when the database cannot take it now (the journal holds it; a warning says why)."""
        text = to_json(report)
        entry = Entry(key=new_key(), session=session, candidate=candidate, lab=report.lab, kind=kind,
                      recorded=clock.stamp(), started=report.started, finished=report.finished,
                      score=round(report.score, 4), earned=report.points_earned, total=report.points_total,
                      exit_code=report.exit_code, sha256=hashlib.sha256(text.encode()).hexdigest(), report_json=text)
        journal_error: JournalError | None = None
        if self.journal is not None:
            try:
                self.journal.append(entry)
            except JournalError as exc:
                journal_error = exc
        try:
            if self.journal is not None and journal_error is None and not self._replayed:
                self.replay()  # runs an earlier command could not store, and this one
                row = self._connect().execute(self._sql("SELECT id FROM grading_runs WHERE key = ?"),
                                              (entry.key,)).fetchone()
                run_id = int(row[0]) if row else None
            else:
                run_id = self._insert(entry)
        except self._db_errors() as exc:
            if self.journal is None or journal_error is not None:
                lost = f"; and {journal_error.message}" if journal_error else ""
                raise ResultsUnavailable(f"the grading run of {candidate} (score {entry.score:.0%}) could not be "
                                         f"stored: {self._describe(exc)}{lost}",
                                         "free space or the lock, then grade again") from None
            self.close()
            warn(f"the run of {candidate} is safe in the journal {self.journal.path} but not in the database: "
                 f"{self._describe(exc)}; the next session command writes it there")
            return None
        if journal_error is not None:
            warn(f"{journal_error.message}; the run of {candidate} is in the database only")
        return run_id

    def runs(self, session: str, candidate: str | None = None) -> list[GradingRun]:
        """Every run of the session (or of one candidate), oldest first; from the journal
        (with a warning) when the database cannot be read."""
        try:
            if self.journal is not None and not self._replayed:
                self.replay()  # runs an earlier command could not store
            sql = ("SELECT id, session, candidate, lab, kind, recorded, score, exit_code, sha256, report_json "
                   "FROM grading_runs WHERE session = ?")
            params: tuple[str, ...] = (session,)
            if candidate is not None:
                sql += " AND candidate = ?"
                params += (candidate,)
            rows = self._connect().execute(self._sql(sql + " ORDER BY id"), params).fetchall()
        except self._db_errors() as exc:
            if self.journal is None:
                raise ResultsUnavailable(f"cannot read the grading runs: {self._describe(exc)}") from None
            self.close()
            entries = self.journal.read().entries
            warn(f"cannot read the results database: {self._describe(exc)}; the {len(entries)} run(s) shown come "
                 f"from the journal {self.journal.path}. To rebuild the database from it, move "
                 f"{self._where()} aside; the next session command recreates it.")
            return [GradingRun(number, e.session, e.candidate, e.lab, e.kind, e.recorded, e.score, e.exit_code,
                               e.sha256, e.report_json)
                    for number, e in enumerate(entries, start=1)
                    if e.session == session and (candidate is None or e.candidate == candidate)]
        return [GradingRun(int(r[0]), r[1], r[2], r[3], r[4], r[5], float(r[6]), int(r[7]), r[8], r[9]) for r in rows]

    def latest(self, session: str, candidate: str) -> GradingRun | None:
        """The candidate's final run if there is one, else their latest run."""
        runs = self.runs(session, candidate)
        finals = [r for r in runs if r.kind == "final"]
        chosen = finals or runs
        return chosen[-1] if chosen else None
