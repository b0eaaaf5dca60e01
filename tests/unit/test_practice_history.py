"""The practice history: a candidate's grading runs, kept in one SQLite file, never lost on a crash.

The crash tests kill (SIGKILL) a real process writing the real file: once at a random instant
of a stream of recordings, once inside a recording's transaction; the history must then open,
pass SQLite's integrity check, and hold every run committed before the kill, each whole.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.plan import plan_lab
from labctl.practice import History, HistoryError, data_dir, render_history
from labctl.state import LabState
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"


@pytest.fixture(autouse=True)
def practice_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_PRACTICE_DIR", str(tmp_path / "practice"))
    return tmp_path / "practice"


def _lab(lab_id: str = "prc001", seed: str = "alice") -> LabState:
    """The same lab at every call (a lab is known by its id and creation time, as its state.json keeps them)."""
    return LabState(id=lab_id, name=f"lab-{lab_id}", provider="local", seed=seed, created="2026-12-03T10:00:00Z",
                    plan=plan_lab(load_topology(SMALL), lab_id, f"lab-{lab_id}"))


def _report(passing: int, failing: int) -> GradeReport:
    results = [CheckResult(f"c{i}", "A1.3-c2", "r1", f"vérif {i}", f"check {i}", 1,
                           Outcome.PASS if i < passing else Outcome.FAIL, "seen")
               for i in range(passing + failing)]
    return GradeReport("lab", "multi-site-routing", "2026-12-03T10:00:00Z", "2026-12-03T10:00:01Z", results)


def test_only_the_labs_practice_started_are_recorded(practice_dir: Path) -> None:
    history = History()
    assert history.record(_lab(), _report(1, 1), "main") is None  # an exam or trainer lab: nothing kept
    assert not practice_dir.exists()  # not even a file
    history.add_lab(_lab(), "multi-site-routing")
    run = history.record(_lab(), _report(1, 3), "main")
    assert run is not None and run.score == 0.25 and [n.check_id for n in run.not_passing] == ["c1", "c2", "c3"]
    other = _lab("prc002")  # another lab, never started with practice
    assert history.record(other, _report(4, 0), "main") is None
    same_id_later = _lab().model_copy(update={"created": "2099-01-01T00:00:00Z"})  # the id drawn again
    assert history.record(same_id_later, _report(4, 0), "main") is None


def test_runs_come_back_in_order_with_what_still_failed() -> None:
    history = History()
    history.add_lab(_lab(), "multi-site-routing")
    for passing in (0, 2, 4):
        history.record(_lab(), _report(passing, 4 - passing), "main")
    runs = history.runs("multi-site-routing")
    assert [r.score for r in runs] == [0.0, 0.5, 1.0]
    assert [len(r.not_passing) for r in runs] == [4, 2, 0]
    assert runs[1].not_passing[0].description_en == "check 2" and runs[0].seed == "alice"
    assert history.runs("patching") == []
    shown = render_history(runs, "en")
    assert "progress: 0% → 100% (best 100%, 3 run(s))" in shown and "still not passing: c2, c3" in shown
    assert "encore à corriger" in render_history(runs, "both")


def test_the_cli_shows_the_history_and_its_json() -> None:
    history = History()
    history.add_lab(_lab(), "multi-site-routing")
    history.record(_lab(), _report(3, 1), "main")
    shown = CliRunner().invoke(cli, ["practice", "history", "--json"])
    assert shown.exit_code == 0, shown.output
    runs = json.loads(shown.output)
    assert runs[0]["score"] == 0.75 and runs[0]["not_passing"][0]["check_id"] == "c3"
    assert "75%" in CliRunner().invoke(cli, ["practice", "history", "multi-site-routing"]).output


def test_the_solution_is_shown_only_with_the_flag() -> None:
    refused = CliRunner().invoke(cli, ["practice", "solution", "multi-site-routing"])
    assert refused.exit_code == 2 and "--show-solution" in refused.output and "hosts:" not in refused.output
    shown = CliRunner().invoke(cli, ["practice", "solution", "multi-site-routing", "--show-solution"])
    assert shown.exit_code == 0 and "hosts:" in shown.output
    assert "Warning: the solution spoils the exercise" in shown.output  # (stderr, mixed in by the runner)


def test_the_list_names_every_scenario_with_its_time_and_criteria() -> None:
    shown = CliRunner().invoke(cli, ["practice"])
    assert shown.exit_code == 0, shown.output
    assert "multi-site-routing  (45 min)" in shown.output and "A1.3-c2, A2.1-c1, A2.3-c1" in shown.output
    assert "backup-restore  (1 h 30)" in shown.output


_WRITER = """
import sys, time
from labctl.practice import History, _transaction
sys.path.insert(0, {tests!r})
from test_practice_history import _lab, _report
history = History()
history.add_lab(_lab(), "multi-site-routing")
if sys.argv[1] == "stream":
    for i in range(10000):
        history.record(_lab(), _report(i % 5, 4), "main")
        print(i, flush=True)
else:  # inside a transaction: half a run written, then killed
    for i in range(3):
        history.record(_lab(), _report(i, 4), "main")
    with history._connect(create=True) as db, _transaction(db):
        db.execute("INSERT INTO runs (recorded, scenario, seed, lab, stage, points_earned, points_total, "
                   "passed, failed, errors, not_passing) VALUES ('x', 'multi-site-routing', 's', 'l', 'main', "
                   "1, 2, 1, 1, 0, '[]')")
        print("inside", flush=True)
        time.sleep(60)
"""


def _writer(mode: str) -> subprocess.Popen[str]:
    script = _WRITER.format(tests=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", script, mode], stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})


def _intact(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def test_a_crash_at_a_random_instant_loses_no_committed_run(practice_dir: Path) -> None:
    writer = _writer("stream")
    assert writer.stdout is not None
    wanted = random.randint(5, 40)
    committed = -1
    for line in writer.stdout:
        committed = int(line)
        if committed >= wanted:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    runs = History().runs()  # the first open after the crash rolls a hot journal back
    _intact(practice_dir / "practice.sqlite")
    assert len(runs) >= committed + 1, f"killed after run {committed} was committed; history has {len(runs)}"
    for i, run in enumerate(runs):  # each one whole, in order
        assert (run.points_earned, run.points_total, run.failed) == (i % 5, i % 5 + 4, 4)
        assert len(run.not_passing) == 4


def test_a_crash_inside_a_recording_keeps_the_runs_before_it_and_nothing_of_it(practice_dir: Path) -> None:
    writer = _writer("inside")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "inside"
    assert (practice_dir / "practice.sqlite-journal").exists()  # the half-written run is on disk
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    runs = History().runs()
    _intact(practice_dir / "practice.sqlite")
    assert [r.points_earned for r in runs] == [0, 1, 2]  # the three committed runs, not the half one
    History().record(_lab(), _report(4, 0), "main")  # and the history goes on
    assert len(History().runs()) == 4


def test_a_damaged_history_is_a_clear_error(practice_dir: Path) -> None:
    practice_dir.mkdir()
    (practice_dir / "practice.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(HistoryError) as raised:
        History().runs()
    assert "practice.sqlite" in raised.value.message and raised.value.hint


def test_the_history_lives_in_the_users_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LABCTL_PRACTICE_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert data_dir() == tmp_path / "xdg" / "labctl"


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo's SUDO_UID counts only for root")
def test_under_sudo_the_history_and_seed_are_the_invoking_users(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    import pwd

    someone = next((p for p in pwd.getpwall() if p.pw_uid >= 1000 and p.pw_uid != 65534), pwd.getpwnam("nobody"))
    monkeypatch.delenv("LABCTL_PRACTICE_DIR")
    monkeypatch.setenv("SUDO_UID", str(someone.pw_uid))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "root-xdg"))  # root's own: not where it goes
    from labctl.practice import default_seed

    assert data_dir() == Path(someone.pw_dir) / ".local" / "share" / "labctl"
    assert default_seed() == someone.pw_name


def test_the_next_steps_name_the_lab_only_when_labctl_would_ask_which() -> None:
    """Alone on the machine, `sudo labctl grade --hints` grades the candidate's lab; beside another
    lab it would stop with "N labs are running": then every command names the lab, and an earlier
    lab of the same scenario (practice start run twice) is pointed out with how to remove it."""
    from labctl.practice import next_steps

    mine = _lab("prc001").model_copy(update={"scenario": "/s/multi-site-routing", "name": "multi-site-routing-2"})
    alone = next_steps(mine, "alice", "en", "multi-site-routing")
    assert "  sudo labctl grade --hints " in alone and "--lab" not in alone
    assert "labctl brief multi-site-routing --seed alice" in alone  # the brief again, their variant
    earlier = _lab("prc002").model_copy(update={"scenario": "/s/multi-site-routing", "name": "multi-site-routing"})
    other = _lab("prc003").model_copy(update={"scenario": "/s/agence", "name": "agence"})
    beside = next_steps(mine, "alice", "both", "multi-site-routing", [earlier, other])
    assert "sudo labctl grade --lab multi-site-routing-2 --hints" in beside
    assert "sudo labctl ssh --lab multi-site-routing-2 NŒUD" in beside
    assert ("You still have multi-site-routing of this scenario: sudo labctl down --lab multi-site-routing "
            "removes it.") in beside and "agence" not in beside
    assert beside.index("Votre laboratoire") < beside.index("Your lab")  # French first
