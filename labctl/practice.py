"""Practising at home: a candidate's own labs and the local history of their grading runs.

`labctl practice start NAME --seed ME` builds the scenario with `labctl up`'s code and records
the lab here; from then on every `labctl grade` of that lab (the same grading code) adds a run
to the history: when, the score, and which checks were still not passing. `labctl practice
history` shows the score over time per scenario.

The history is one SQLite file in the user's data folder (`$XDG_DATA_HOME/labctl`, else
`~/.local/share/labctl`; with sudo, the invoking user's; `LABCTL_PRACTICE_DIR` overrides). Each
run is one transaction in rollback-journal mode with synchronous=FULL: a crash (power cut,
SIGKILL) mid-write leaves the runs recorded before it, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from labctl.errors import LabctlError
from labctl.grading.results import GradeReport, Outcome
from labctl.lang import say
from labctl.scenario import Scenario
from labctl.state import LabState

FILE_NAME = "practice.sqlite"
BUSY_TIMEOUT_S = 10.0  # two gradings of one lab may finish together: the second waits its turn
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS labs (
        lab_id TEXT NOT NULL, created TEXT NOT NULL, name TEXT NOT NULL, scenario TEXT NOT NULL,
        seed TEXT, started TEXT NOT NULL, PRIMARY KEY (lab_id, created))""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, recorded TEXT NOT NULL, scenario TEXT NOT NULL,
        seed TEXT, lab TEXT NOT NULL, stage TEXT, points_earned INTEGER NOT NULL,
        points_total INTEGER NOT NULL, passed INTEGER NOT NULL, failed INTEGER NOT NULL,
        errors INTEGER NOT NULL, not_passing TEXT NOT NULL)""",
]


class HistoryError(LabctlError):
    """The practice history cannot be read or written."""


@dataclass(frozen=True)
class NotPassing:
    """A check that did not PASS in a run."""

    check_id: str
    outcome: str
    description_fr: str
    description_en: str


@dataclass(frozen=True)
class Run:
    """One grading run of a practice lab."""

    recorded: str  # UTC, ISO 8601
    scenario: str
    seed: str | None
    lab: str
    stage: str | None
    points_earned: int
    points_total: int
    passed: int
    failed: int
    errors: int
    not_passing: tuple[NotPassing, ...]

    @property
    def score(self) -> float:
        """Points earned over points total (0.0 for an empty run)."""
        return self.points_earned / self.points_total if self.points_total else 0.0

    def to_dict(self) -> dict[str, object]:
        """For `labctl practice history --json`."""
        return {"recorded": self.recorded, "scenario": self.scenario, "seed": self.seed, "lab": self.lab,
                "stage": self.stage, "score": round(self.score, 4), "points_earned": self.points_earned,
                "points_total": self.points_total, "passed": self.passed, "failed": self.failed,
                "errors": self.errors, "not_passing": [vars(n) for n in self.not_passing]}


def _invoking_user() -> pwd.struct_passwd | None:
    """The user who ran `sudo labctl ...` (labs need root), or None when not run through sudo."""
    uid = os.environ.get("SUDO_UID")
    if os.geteuid() != 0 or not uid or not uid.isdigit():
        return None
    try:
        return pwd.getpwuid(int(uid))
    except KeyError:
        return None


def data_dir() -> Path:
    """The folder of the history: LABCTL_PRACTICE_DIR, else the (invoking) user's data folder."""
    if os.environ.get("LABCTL_PRACTICE_DIR"):
        return Path(os.environ["LABCTL_PRACTICE_DIR"])
    user = _invoking_user()
    if user is not None:  # sudo: the candidate's own folder, not root's
        return Path(user.pw_dir) / ".local" / "share" / "labctl"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "labctl"


def default_seed() -> str:
    """The seed a candidate gets without --seed: their login name (the same variant every time)."""
    user = _invoking_user()
    if user is not None:
        return user.pw_name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


class History:
    """The practice history in one SQLite file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / FILE_NAME

    @contextlib.contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        try:
            if create:
                self._make_folder()
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"practice history {self.path}: {exc}",
                               "set LABCTL_PRACTICE_DIR to a folder you can write") from None
        try:
            connection.execute("PRAGMA synchronous=FULL")  # a committed run is on disk
            if create:
                with _transaction(connection):
                    for statement in SCHEMA:
                        connection.execute(statement)
                self._give_to_user()
            yield connection
        except sqlite3.Error as exc:
            raise HistoryError(f"practice history {self.path}: {exc}",
                               f"move {self.path} away to start a new history") from None
        finally:
            connection.close()

    def _make_folder(self) -> None:
        missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        user = _invoking_user()
        if user is not None and os.environ.get("LABCTL_PRACTICE_DIR") is None:
            for folder in missing:  # created by root for the candidate: theirs
                if Path(user.pw_dir) in folder.parents:
                    os.chown(folder, user.pw_uid, user.pw_gid)

    def _give_to_user(self) -> None:
        user = _invoking_user()
        if user is not None and self.path.exists() and self.path.stat().st_uid == 0 \
                and os.environ.get("LABCTL_PRACTICE_DIR") is None:
            os.chown(self.path, user.pw_uid, user.pw_gid)

    def add_lab(self, lab: LabState, scenario: str) -> None:
        """Record `lab` (just built by `practice start`) as a practice lab of `scenario`."""
        with self._connect(create=True) as db, _transaction(db):
            db.execute("INSERT OR REPLACE INTO labs VALUES (?, ?, ?, ?, ?, ?)",
                       (lab.id, lab.created, lab.name, scenario, lab.seed, _now()))

    def practice_scenario(self, lab: LabState) -> str | None:
        """The scenario `lab` practises, if `practice start` built it; else None."""
        try:
            with self._connect(create=False) as db:
                row = db.execute("SELECT scenario FROM labs WHERE lab_id = ? AND created = ?",
                                 (lab.id, lab.created)).fetchone()
        except FileNotFoundError:
            return None
        return str(row[0]) if row else None

    def record(self, lab: LabState, report: GradeReport, stage: str | None) -> Run | None:
        """Add a grading run of `lab` when it is a practice lab (one transaction); else None."""
        scenario = self.practice_scenario(lab)
        if scenario is None:
            return None
        counts = report.counts
        not_passing = tuple(NotPassing(r.check_id, r.outcome.value, r.description_fr, r.description_en)
                            for r in report.results if r.outcome is not Outcome.PASS)
        run = Run(_now(), scenario, lab.seed, lab.name, stage, report.points_earned, report.points_total,
                  counts[Outcome.PASS], counts[Outcome.FAIL], counts[Outcome.ERROR], not_passing)
        with self._connect(create=True) as db, _transaction(db):
            db.execute("INSERT INTO runs (recorded, scenario, seed, lab, stage, points_earned, points_total, "
                       "passed, failed, errors, not_passing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (run.recorded, run.scenario, run.seed, run.lab, run.stage, run.points_earned,
                        run.points_total, run.passed, run.failed, run.errors,
                        json.dumps([vars(n) for n in not_passing], ensure_ascii=False)))
        return run

    def runs(self, scenario: str | None = None) -> list[Run]:
        """Every recorded run, oldest first (of one scenario when named)."""
        try:
            with self._connect(create=False) as db:
                rows = db.execute("SELECT recorded, scenario, seed, lab, stage, points_earned, points_total, "
                                  "passed, failed, errors, not_passing FROM runs "
                                  "WHERE ? IS NULL OR scenario = ? ORDER BY id", (scenario, scenario)).fetchall()
        except FileNotFoundError:
            return []
        return [Run(recorded=row[0], scenario=row[1], seed=row[2], lab=row[3], stage=row[4], points_earned=row[5],
                    points_total=row[6], passed=row[7], failed=row[8], errors=row[9],
                    not_passing=tuple(NotPassing(**n) for n in json.loads(row[10]))) for row in rows]


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- what `labctl practice` prints (French first, English alongside) ------------------------
SPOILER_WARNING = ("Attention : la solution gâche l'exercice ; vous ne saurez plus si vous auriez trouvé seul.\n"
                   "Warning: the solution spoils the exercise; you will not know whether you would have found it.")


def _minutes(duration: int | None) -> str:
    if duration is None:
        return "-"
    hours, minutes = divmod(duration, 60)
    return f"{hours} h {minutes:02d}" if hours and minutes else f"{hours} h" if hours else f"{minutes} min"


def render_scenarios(lang: str) -> str:
    """Every scenario that can be named: name, suggested time, criteria, title."""
    from labctl.scenario import load_scenario, scenario_names

    lines = []
    for name in scenario_names():
        try:
            scenario = load_scenario(name)
        except LabctlError as exc:  # one broken scenario does not hide the others
            lines.append(f"{name}\n  ({exc.message})")
            continue
        spec = scenario.spec
        lines.append(f"{name}  ({_minutes(spec.duration)})")
        lines.append(f"  {say(spec.title.fr, spec.title.en, lang)}")
        lines.append(f"  {say('critères', 'criteria', lang)}: {', '.join(spec.criteria)}")
    if not lines:
        lines.append(say("aucun scénario trouvé", "no scenario found", lang))
    lines += ["", say("Commencer : sudo labctl practice start NOM --seed VOUS",
                      "Start: sudo labctl practice start NAME --seed YOU", lang)]
    return "\n".join(lines) + "\n"


def next_steps(lab: LabState, seed: str, lang: str, scenario: str, others: Sequence[LabState] = ()) -> str:
    """What to do once the lab is up. When `others` (the machine's other labs) exist, every command
    names this lab (without --lab, labctl would ask which), and an earlier lab of the same
    scenario is pointed out with how to remove it."""
    at = f" --lab {lab.name}" if others else ""
    commands = [(f"sudo labctl ssh{at} NODE", "travailler comme le jour de l'examen (labctl status : les nœuds)",
                 "work as on exam day (labctl status: the nodes)"),
                (f"sudo labctl grade{at} --hints", "vous évaluer (gardé dans votre historique)",
                 "grade yourself (kept in your history)"),
                (f"labctl brief {scenario} --seed {seed}", "relire votre sujet", "read your brief again"),
                ("labctl practice history", "votre progression", "your progress"),
                (f"sudo labctl reset{at}", f"recommencer (sudo labctl down{at} : tout supprimer)",
                 f"start again (sudo labctl down{at}: remove it all)")]
    width = max(len(command) for command, _, _ in commands) + 2
    fr = [f"Votre laboratoire {lab.name} est prêt (variante : {seed})."]
    en = [f"Your lab {lab.name} is ready (variant: {seed})."]
    for command, what_fr, what_en in commands:
        fr.append(f"  {command.replace('NODE', 'NŒUD'):<{width}}{what_fr}")
        en.append(f"  {command:<{width}}{what_en}")
    earlier = [other.name for other in others if other.scenario == lab.scenario]
    if earlier:
        down = f"sudo labctl down --lab {earlier[0] if len(earlier) == 1 else 'NAME'}"
        fr.append(f"Vous avez encore {', '.join(earlier)} de ce scénario : {down.replace('NAME', 'NOM')} le supprime.")
        en.append(f"You still have {', '.join(earlier)} of this scenario: {down} removes it.")
    chosen = {"fr": fr, "en": en}.get(lang, [*fr, "", *en])
    return "\n".join(chosen)


def recorded_line(run: Run) -> str:
    """Said after a practice grading: it is in the history."""
    return (f"practice: {run.points_earned}/{run.points_total} ({run.score:.0%}) gardé dans votre historique / "
            f"kept in your history: labctl practice history {run.scenario}")


def render_history(runs: list[Run], lang: str) -> str:
    """Per scenario: each run's score and what did not pass, then the progress."""
    if not runs:
        return say("Aucune notation enregistrée : sudo labctl practice start NOM, puis sudo labctl grade.",
                   "No grading recorded yet: sudo labctl practice start NAME, then sudo labctl grade.", lang) + "\n"
    lines: list[str] = []
    for scenario in dict.fromkeys(r.scenario for r in runs):
        mine = [r for r in runs if r.scenario == scenario]
        lines.append(scenario)
        for run in mine:
            when = run.recorded.replace("T", " ").removesuffix("Z")[:16]
            stage = f"  stage {run.stage}" if run.stage and run.stage != "main" else ""
            lines.append(f"  {when} UTC  seed {run.seed or '-'}  {run.score:>4.0%}  "
                         f"({run.points_earned}/{run.points_total}){stage}  "
                         f"{run.passed} PASS {run.failed} FAIL {run.errors} ERROR")
            if run.not_passing:
                label = say("encore à corriger", "still not passing", lang)
                lines.append(f"      {label}: {', '.join(n.check_id for n in run.not_passing)}")
        scores = [r.score for r in mine]
        lines.append("  " + say(f"progression : {scores[0]:.0%} → {scores[-1]:.0%} (meilleure {max(scores):.0%}, "
                                f"{len(mine)} notation(s))",
                                f"progress: {scores[0]:.0%} → {scores[-1]:.0%} (best {max(scores):.0%}, "
                                f"{len(mine)} run(s))", lang))
        lines.append("")
    return "\n".join(lines)


def render_solution(scenario: Scenario) -> str:
    """Each stage's reference solution playbook: its path, then its text."""
    from labctl import sourcelimits

    parts = []
    for stage in scenario.stages():
        if stage.solution:
            path = scenario.path(stage.solution)
            parts.append(f"# stage {stage.name}: {path}\n{sourcelimits.read_text(path)}")
    return "\n".join(parts) if parts else f"scenario {scenario.name} ships no solution\n"
