"""What grading produces: one CheckResult per check, gathered in a GradeReport."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from labctl.errors import EXIT_CHECK_ERROR, EXIT_FAIL, EXIT_OK


class Outcome(StrEnum):
    """PASS: the state is right. FAIL: it is observed wrong. ERROR: it could not be observed."""

    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one check, with what was seen (`evidence`) and how it was obtained.

    `attempts` counts probes run (more than one when a FAIL was retried within `wait`);
    `duration_s` is the wall time from the first probe to the verdict.
    """

    check_id: str
    criterion: str
    node: str
    description_fr: str
    description_en: str
    weight: int
    outcome: Outcome
    evidence: str
    attempts: int = 1
    duration_s: float = 0.0
    stage: str | None = None
    observed: str = ""  # "outside" (the controller's own view of the node), "inside" (the node's programs)
    active: bool = False  # the check acted on the node before observing (e.g. tried to log in), then undid it


@dataclass(frozen=True)
class GradeReport:
    """Every check's result for one lab, with UTC ISO-8601 start and end times."""

    lab: str
    scenario: str
    started: str
    finished: str
    results: list[CheckResult] = field(default_factory=list)
    # per node, the system files the candidate changed (tamper.Tampering.to_dict()): only
    # nodes with changes, or whose writable layer could not be examined in full
    tampering: list[dict[str, Any]] = field(default_factory=list)

    @property
    def points_total(self) -> int:
        """Sum of the weights of every check."""
        return sum(r.weight for r in self.results)

    @property
    def points_earned(self) -> int:
        """Sum of the weights of the checks that passed."""
        return sum(r.weight for r in self.results if r.outcome is Outcome.PASS)

    @property
    def score(self) -> float:
        """Points earned over points total, from 0.0 to 1.0 (0.0 for an empty report)."""
        total = self.points_total
        return self.points_earned / total if total else 0.0

    @property
    def counts(self) -> dict[Outcome, int]:
        """How many checks ended in each outcome (every outcome present, maybe 0)."""
        return {o: sum(1 for r in self.results if r.outcome is o) for o in Outcome}

    @property
    def exit_code(self) -> int:
        """0 when every check passed, 1 when some FAILed (and none ERRORed), 10 on any ERROR.

        10, not 2: 2 means bad input or a usage error, which a CI job must tell apart from
        a node that could not be checked."""
        counts = self.counts
        if counts[Outcome.ERROR]:
            return EXIT_CHECK_ERROR
        return EXIT_FAIL if counts[Outcome.FAIL] else EXIT_OK

    def by_criterion(self) -> dict[str, list[CheckResult]]:
        """Results grouped by criterion id, criteria sorted by id, checks in spec order."""
        groups: dict[str, list[CheckResult]] = {}
        for result in self.results:
            groups.setdefault(result.criterion, []).append(result)
        return {key: groups[key] for key in sorted(groups, key=criterion_sort_key)}


def criterion_sort_key(criterion_id: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key for ids like A1.3-c2 so that A1.10 comes after A1.9."""
    parts = re.findall(r"\d+|\D+", criterion_id)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)
