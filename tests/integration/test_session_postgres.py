"""Grading runs in a real PostgreSQL server, started by the test from Debian's packages."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.session.store import ResultStore

pytestmark = [pytest.mark.root]


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run PostgreSQL as the postgres user"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "needs Debian's postgresql package (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "needs psycopg (pip install 'psycopg[binary]')"
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    problem = _problem()
    if problem:
        pytest.skip(problem)
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="labctl-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, cwd="/")

    try:
        made = as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        assert made.returncode == 0, made.stderr
        started = as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                              f"-k {folder} -p {port} -c listen_addresses=''", "start")
        assert started.returncode == 0, started.stderr + (folder / "log").read_text()
        yield f"postgresql://postgres@/postgres?host={folder}&port={port}"
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _report(outcome: Outcome) -> GradeReport:
    return GradeReport("s-c1", "multi-site-routing", "2026-01-01T09:00:00Z", "2026-01-01T09:00:05Z",
                       [CheckResult("web", "A2.1-c1", "srv1", "Le site répond", "The site answers", 1, outcome,
                                    "HTTP 200" if outcome is Outcome.PASS else "connection refused")])


def test_postgres_keeps_every_run_and_refuses_changes(postgres_url: str) -> None:
    import psycopg

    store = ResultStore(postgres_url)
    first = store.add("pg", "c1", "on-demand", _report(Outcome.FAIL))
    second = store.add("pg", "c1", "final", _report(Outcome.PASS))
    assert second > first
    other = ResultStore(postgres_url)  # a second controller process sees the same runs
    runs = other.runs("pg", "c1")
    assert [(r.kind, r.score) for r in runs] == [("on-demand", 0.0), ("final", 1.0)]
    assert all(r.intact() for r in runs) and runs[0].report.results[0].evidence == "connection refused"
    latest = other.latest("pg", "c1")
    assert latest is not None and latest.id == second
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        with pytest.raises(psycopg.Error, match="no update"):
            raw.execute("UPDATE grading_runs SET score = 1")
        with pytest.raises(psycopg.Error, match="no delete"):
            raw.execute("DELETE FROM grading_runs")
    store.close()
    other.close()


def test_postgres_behind_the_journal_gets_every_run_once(postgres_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "results.journal"
    report = GradeReport("pgj-c1", "multi-site-routing", "a", "b",
                         [CheckResult("web", "A2.1-c1", "srv1", "x", "x", 1, Outcome.PASS, "HTTP 200")])
    store = ResultStore(postgres_url, journal=journal)
    assert store.add("pgj", "c1", "on-demand", report) is not None
    store.close()
    down = ResultStore(f"postgresql://postgres@/nodb?host={tmp_path}", journal=journal)  # no server there
    assert down.add("pgj", "c1", "final", report) is None  # kept in the journal
    assert [r.kind for r in down.runs("pgj")] == ["on-demand", "final"]  # read from the journal
    for _ in range(2):  # replayed into PostgreSQL once, not once per store
        back = ResultStore(postgres_url, journal=journal)
        assert [r.kind for r in back.runs("pgj")] == ["on-demand", "final"]
        back.close()
