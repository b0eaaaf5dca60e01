"""Grading runs, kept forever: an embedded SQLite file by default, or PostgreSQL.

Every run is a new row; the table refuses UPDATE and DELETE (triggers), so a run once
recorded is never overwritten. URLs: `sqlite:///ABSOLUTE/PATH` or a path, and
`postgresql://user@host:port/db` (psycopg 3; `host=/run/postgresql` sockets work too).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.errors import PlatformError
from labctl.grading.report import from_json, to_json
from labctl.grading.results import GradeReport
from labctl.session import clock

COLUMNS = ("id", "session", "candidate", "lab", "kind", "recorded", "started", "finished", "score",
           "earned", "total", "exit_code", "sha256", "report_json")
SQLITE_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS grading_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, candidate TEXT NOT NULL,
        lab TEXT NOT NULL, kind TEXT NOT NULL, recorded TEXT NOT NULL, started TEXT NOT NULL,
        finished TEXT NOT NULL, score REAL NOT NULL, earned INTEGER NOT NULL, total INTEGER NOT NULL,
        exit_code INTEGER NOT NULL, sha256 TEXT NOT NULL, report_json TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS grading_runs_by_candidate ON grading_runs (session, candidate, id)",
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
        total INTEGER NOT NULL, exit_code INTEGER NOT NULL, sha256 TEXT NOT NULL, report_json TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS grading_runs_by_candidate ON grading_runs (session, candidate, id)",
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


class ResultStore:
    """Grading runs in SQLite or PostgreSQL (same table, same queries)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self._connection: Any = None

    def _connect(self) -> Any:
        if self._connection is not None:
            return self._connection
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise PlatformError("a PostgreSQL URL needs psycopg", "pip install 'psycopg[binary]'") from None
            try:
                self._connection = psycopg.connect(self.url, autocommit=True)
            except psycopg.Error as exc:
                raise PlatformError(f"cannot connect to {self.url}: {str(exc).strip()}") from None
            schema = POSTGRES_SCHEMA
        else:
            path = Path(self.url.removeprefix("sqlite://")) if self.url.startswith("sqlite://") else Path(self.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            schema = SQLITE_SCHEMA
        with self._lock_schema():
            for statement in schema:
                self._connection.execute(statement)
        return self._connection

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
            self._connection.close()
            self._connection = None

    def add(self, session: str, candidate: str, kind: str, report: GradeReport) -> int:
        """Record a run; returns its id. Runs are only ever added."""
        text = to_json(report)
        digest = hashlib.sha256(text.encode()).hexdigest()
        values = (session, candidate, report.lab, kind, clock.stamp(), report.started, report.finished,
                  round(report.score, 4), report.points_earned, report.points_total, report.exit_code, digest, text)
        sql = ("INSERT INTO grading_runs (session, candidate, lab, kind, recorded, started, finished, score, "
               "earned, total, exit_code, sha256, report_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        connection = self._connect()
        if self.postgres:
            row = connection.execute(self._sql(sql) + " RETURNING id", values).fetchone()
            return int(row[0])
        return int(connection.execute(sql, values).lastrowid)

    def runs(self, session: str, candidate: str | None = None) -> list[GradingRun]:
        """Every run of the session (or of one candidate), oldest first."""
        sql = ("SELECT id, session, candidate, lab, kind, recorded, score, exit_code, sha256, report_json "
               "FROM grading_runs WHERE session = ?")
        params: tuple[str, ...] = (session,)
        if candidate is not None:
            sql += " AND candidate = ?"
            params += (candidate,)
        rows = self._connect().execute(self._sql(sql + " ORDER BY id"), params).fetchall()
        return [GradingRun(int(r[0]), r[1], r[2], r[3], r[4], r[5], float(r[6]), int(r[7]), r[8], r[9]) for r in rows]

    def latest(self, session: str, candidate: str) -> GradingRun | None:
        """The candidate's final run if there is one, else their latest run."""
        runs = self.runs(session, candidate)
        finals = [r for r in runs if r.kind == "final"]
        chosen = finals or runs
        return chosen[-1] if chosen else None
