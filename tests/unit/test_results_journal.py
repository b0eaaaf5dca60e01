"""Grading runs are never lost: the journal holds each run before the database, whatever
happens to the database (locked, corrupt, truncated, disk full) or to the writer (killed)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.cli import main
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.session.journal import Journal
from labctl.session.model import new_session
from labctl.session.roster import parse_roster
from labctl.session.store import ResultStore, ResultsUnavailable


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def report(lab: str = "s-c1", outcome: Outcome = Outcome.FAIL, evidence: str = "neighbor absent") -> GradeReport:
    results = [CheckResult("ospf", "A1.3-c2", "r1", "Adjacence OSPF", "OSPF adjacency", 2, outcome, evidence),
               CheckResult("web", "A2.1-c1", "srv1", "Le site répond", "The site answers", 1, Outcome.PASS, "200")]
    return GradeReport(lab, "multi-site-routing", "2026-01-01T09:00:00Z", "2026-01-01T09:00:05Z", results)


def rows(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM grading_runs").fetchone()[0])


def stores(tmp_path: Path, timeout: float = 10) -> tuple[Path, Path, ResultStore]:
    db, journal = tmp_path / "results.sqlite", tmp_path / "results.journal"
    return db, journal, ResultStore(f"sqlite://{db}", journal=journal, busy_timeout=timeout)


def test_every_run_is_journaled_and_replay_is_idempotent(tmp_path: Path) -> None:
    db, journal, store = stores(tmp_path)
    assert store.add("s", "c1", "on-demand", report()) == 1
    assert store.add("s", "c2", "final", report("s-c2", Outcome.PASS)) == 2
    store.close()
    assert len(Journal(journal).read().entries) == 2
    db.unlink()  # the database lost altogether: rebuilt from the journal
    for _ in range(3):  # replayed once, not once per store
        again = ResultStore(f"sqlite://{db}", journal=journal)
        assert [(r.candidate, r.kind) for r in again.runs("s")] == [("c1", "on-demand"), ("c2", "final")]
        again.close()
    assert rows(db) == 2
    assert ResultStore(f"sqlite://{db}", journal=journal).latest("s", "c2").report.score == 1.0  # type: ignore[union-attr]


def test_a_locked_database_waits_a_bounded_time_and_loses_nothing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db, journal, store = stores(tmp_path, timeout=0.5)
    store.add("s", "c1", "on-demand", report())
    store.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        started = time.monotonic()
        locked = ResultStore(f"sqlite://{db}", journal=journal, busy_timeout=0.5)
        assert locked.add("s", "c2", "final", report("s-c2")) is None
        waited = time.monotonic() - started
        locked.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert waited < 10, waited  # bounded by the busy timeout (0.5 s here), not 31 s
    assert "is locked by another program" in capsys.readouterr().err
    assert [e.candidate for e in Journal(journal).read().entries] == ["c1", "c2"]
    later = ResultStore(f"sqlite://{db}", journal=journal)
    assert [r.candidate for r in later.runs("s")] == ["c1", "c2"]  # replayed once the lock is gone
    later.close()
    assert rows(db) == 2


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_damaged_database_is_named_and_the_journal_still_serves_every_run(
        damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, journal, store = stores(tmp_path)
    for index in range(30):  # several pages, so that a truncation cuts inside the table
        store.add("s", f"c{index % 3}", "on-demand", report(evidence="x" * 2000 + str(index)))
    store.close()
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    if damage == "corrupt":
        with open(db, "r+b") as handle:
            handle.seek(0)
            handle.write(os.urandom(200))
            handle.seek(size // 2)
            handle.write(os.urandom(4096))
    else:
        os.truncate(db, size // 2)
    damaged = ResultStore(f"sqlite://{db}", journal=journal)
    assert damaged.add("s", "c0", "final", report(outcome=Outcome.PASS)) is None  # kept in the journal
    err = capsys.readouterr().err
    assert "is corrupt or truncated" in err and str(db) in err
    runs = damaged.runs("s")
    err = capsys.readouterr().err
    assert len(runs) == 31 and "come from the journal" in err and "move" in err
    assert damaged.latest("s", "c0").kind == "final"  # type: ignore[union-attr]
    assert all(run.intact() for run in runs)


def test_session_status_and_report_work_from_what_survives(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    session = new_session("jr", "multi-site-routing", parse_roster("id,name\nc1,Alice\nc2,Bruno\n"), 3600)
    from labctl.session import room

    store = room.results_store(session)
    store.add("jr", "c1", "final", report("jr-c1"))
    store.close()
    (session.directory / "results.sqlite").write_bytes(b"this is not a database" * 100)
    for argv in (["session", "status", "jr"], ["session", "report", "jr", "--format", "json"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        out = capsys.readouterr()
        assert done.value.code == 0, out.err
        assert "come from the journal" in out.err
    written = (session.directory / "reports" / "jr-c1.fr.json").read_text()
    assert "neighbor absent" in written


def test_a_full_disk_for_the_journal_keeps_the_run_in_the_database(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "results.sqlite"
    full = tmp_path / "results.journal"
    full.symlink_to("/dev/full")  # every write: ENOSPC, from the kernel
    store = ResultStore(f"sqlite://{db}", journal=full)
    assert store.add("s", "c1", "final", report()) == 1
    assert "No space left on device" in capsys.readouterr().err
    store.close()
    assert rows(db) == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real full disk for both the journal and the database."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_a_clear_error_and_a_torn_entry_breaks_nothing(small_disk: Path) -> None:
    db, journal, store = stores(small_disk)
    first = store.add("s", "c1", "on-demand", report())
    assert first == 1
    store.close()
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    full = ResultStore(f"sqlite://{db}", journal=journal)
    with pytest.raises(ResultsUnavailable) as refused:
        full.add("s", "c2", "final", report("s-c2", evidence="y" * 20000))
    full.close()
    assert "could not be stored" in refused.value.message and "No space left" in refused.value.message
    assert refused.value.exit_code == 11
    filler.unlink()  # space again: the next run is journaled and readable after the torn one
    again = ResultStore(f"sqlite://{db}", journal=journal)
    assert again.add("s", "c3", "final", report("s-c3")) is not None
    read = Journal(journal).read()
    assert [e.candidate for e in read.entries] == ["c1", "c3"]
    assert [r.candidate for r in again.runs("s")] == ["c1", "c3"]
    again.close()


WRITER = """
import sys
from pathlib import Path
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.session.store import ResultStore
results = [CheckResult("c", "A1.3-c2", "r1", "x", "x", 1, Outcome.PASS, "e" * 30000)]
store = ResultStore("sqlite://" + sys.argv[1], journal=Path(sys.argv[2]))
print("ready", flush=True)
while True:
    store.add("s", "c1", "on-demand", GradeReport("l", "s", "a", "b", results))
"""


def test_a_writer_killed_mid_write_leaves_every_complete_run_readable(tmp_path: Path) -> None:
    db, journal = tmp_path / "results.sqlite", tmp_path / "results.journal"
    for delay in (0.3, 0.45, 0.6):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(journal)], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    read = Journal(journal).read()
    assert len(read.entries) >= 3 and len(read.damaged) <= 3, read.damaged  # at most the line each kill cut
    print(f"{len(read.entries)} entries, damaged lines {read.damaged}")
    store = ResultStore(f"sqlite://{db}", journal=journal)
    store.add("s", "c2", "final", report())
    runs = store.runs("s")
    store.close()
    assert len(runs) == len(read.entries) + 1 and runs[-1].candidate == "c2"
    assert {e.key for e in Journal(journal).read().entries} == {row for (row,) in sqlite3.connect(db).execute(
        "SELECT key FROM grading_runs")}


def test_an_entry_cut_short_is_skipped_and_the_next_starts_on_its_own_line(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    db, journal, store = stores(tmp_path)
    store.add("s", "c1", "on-demand", report())
    store.close()
    whole = journal.read_bytes()
    with open(journal, "ab") as handle:
        handle.write(whole[:60])  # a second entry, cut before its key (no newline)
    again = ResultStore(f"sqlite://{db}", journal=journal)
    again.add("s", "c2", "final", report("s-c2"))
    read = Journal(journal).read()
    assert [e.candidate for e in read.entries] == ["c1", "c2"] and read.damaged == [2]
    assert [r.candidate for r in again.runs("s")] == ["c1", "c2"]
    assert "line(s) 2 cut short or damaged were skipped" in capsys.readouterr().err
    again.close()


def test_graders_appending_at_once_never_interleave(tmp_path: Path) -> None:
    import threading

    journal = tmp_path / "results.journal"

    def grader(index: int) -> None:
        store = ResultStore(f"sqlite://{tmp_path}/results.sqlite", journal=journal)
        for run in range(5):
            store.add("s", f"c{index}", "on-demand", report(evidence="z" * (5000 + 997 * run)))
        store.close()

    threads = [threading.Thread(target=grader, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read = Journal(journal).read()
    assert len(read.entries) == 40 and not read.damaged
    assert rows(tmp_path / "results.sqlite") == 40
