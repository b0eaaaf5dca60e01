"""The roster: who sits the exam, read from a CSV file and validated before anything is built.

Header (case-insensitive, in any order): `id` (or `candidate`), `name` (or `nom`), and an
optional extra-time column `tiers_temps` (or `extra_time`) holding yes/no, oui/non, 1/0 or
empty. Every problem is reported at once as `file:line: what is wrong`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labctl import sourcelimits
from labctl.errors import InvalidInputError, Problem

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
ID_HINT = "ids are 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit"
COLUMNS = {"id": ("id", "candidate", "candidat", "candidate_id"), "name": ("name", "nom"),
           "tiers_temps": ("tiers_temps", "tiers-temps", "extra_time", "extra-time")}
TRUE = {"1", "yes", "oui", "true", "vrai", "x", "y", "o"}
FALSE = {"", "0", "no", "non", "false", "faux", "n"}


@dataclass(frozen=True)
class Candidate:
    """One candidate: id (the lab's seed), name, and whether one third extra time is granted."""

    id: str
    name: str
    tiers_temps: bool = False


@dataclass(frozen=True)
class Roster:
    """The candidates of a session, in file order."""

    source: str
    candidates: tuple[Candidate, ...]

    def __len__(self) -> int:
        return len(self.candidates)


def _columns(header: list[str], file: str) -> tuple[dict[str, int], list[Problem]]:
    found: dict[str, int] = {}
    problems: list[Problem] = []
    for index, raw in enumerate(header):
        key = raw.strip().lower().lstrip("\ufeff")
        for column, aliases in COLUMNS.items():
            if key in aliases:
                if column in found:
                    problems.append(Problem(file, 1, f"column '{raw.strip()}' repeats column '{column}'"))
                found[column] = index
    for column in ("id", "name"):
        if column not in found:
            problems.append(Problem(file, 1, f"missing column '{column}'",
                                    "the header must name the columns: id,name[,tiers_temps] "
                                    f"(got: {','.join(header)})"))
    return found, problems


def parse_roster(text: str, file: str = "roster.csv") -> Roster:
    """The roster in `text`; raises InvalidInputError listing every problem with file:line.

    Strict CSV: a quote left open, a field running over lines, a NUL or control character
    is refused with its line (never two rows read as one candidate)."""
    numbered = list(sourcelimits.csv_rows(text, file))
    rows = [row for _, row in numbered]
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise InvalidInputError([Problem(file, 1, "empty roster: no header line",
                                         "first line: id,name,tiers_temps")])
    columns, problems = _columns(rows[0], file)
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    for line, row in numbered[1:]:
        if not any(cell.strip() for cell in row):
            continue
        if problems and ("id" not in columns or "name" not in columns):
            break
        if len(row) < len(rows[0]):
            problems.append(Problem(file, line, f"{len(row)} fields where the header has {len(rows[0])}"))
            continue
        if len(row) > len(rows[0]) and any(cell.strip() for cell in row[len(rows[0]):]):
            problems.append(Problem(file, line, f"{len(row)} fields where the header has {len(rows[0])}",
                                    'a comma inside a name? put the name in quotes: "Dupont, Jean"'))
            continue
        cid, name = row[columns["id"]].strip(), row[columns["name"]].strip()
        flag = row[columns["tiers_temps"]].strip().lower() if "tiers_temps" in columns else ""
        line_problems = []
        if not ID_PATTERN.match(cid):
            line_problems.append(Problem(file, line, f"bad candidate id {cid!r}", ID_HINT))
        elif cid.lower() in seen:
            line_problems.append(Problem(file, line, f"duplicate candidate id '{cid}' (first on line "
                                         f"{seen[cid.lower()]})", "each candidate appears once"))
        if not name:
            line_problems.append(Problem(file, line, f"candidate '{cid}' has no name"))
        if flag not in TRUE | FALSE:
            line_problems.append(Problem(file, line, f"tiers_temps must be yes or no, not {flag!r}",
                                         "oui/non, yes/no, 1/0, or empty for no"))
        if ID_PATTERN.match(cid):
            seen.setdefault(cid.lower(), line)
        problems += line_problems
        if not line_problems:
            candidates.append(Candidate(cid, name, flag in TRUE))
    if not problems and not candidates:
        problems.append(Problem(file, 1, "the roster lists no candidate"))
    if problems:
        raise InvalidInputError(problems)
    return Roster(file, tuple(candidates))


def load_roster(path: Path) -> Roster:
    """Read and validate the roster file at `path`."""
    return parse_roster(sourcelimits.read_text(path, bom=True), str(path))
