"""`labctl scenario verify`: a scenario proves it behaves as it declares.

up -> grade: every check listed as initially failing must FAIL (and none may ERROR) ->
solution -> grade: every check must PASS -> down (always, even on failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labctl import lab as labs
from labctl.errors import VerificationError
from labctl.progress import QUIET, Progress
from labctl.scenario import load_scenario

if TYPE_CHECKING:
    from labctl.grading.results import GradeReport


@dataclass
class VerifyOutcome:
    """What verification found: the two reports and every broken expectation."""

    scenario: str
    problems: list[str] = field(default_factory=list)
    before: GradeReport | None = None
    after: GradeReport | None = None

    @property
    def ok(self) -> bool:
        """True when both expectations held."""
        return not self.problems

    def summary(self) -> str:
        """Human-readable result."""
        if self.ok:
            assert self.before is not None and self.after is not None
            failing = sum(1 for r in self.before.results if r.outcome.value == "FAIL")
            return (f"scenario {self.scenario} verified: {failing} checks FAIL in the starting state "
                    f"as declared, all {len(self.after.results)} PASS after the solution")
        return f"scenario {self.scenario} does NOT verify:\n  " + "\n  ".join(self.problems)


def starting_state_problems(report: GradeReport, expected_failing: set[str]) -> list[str]:
    """Listed checks that did not FAIL, unlisted checks that did not PASS, and ERRORs."""
    problems = []
    for result in report.results:
        outcome = result.outcome.value
        if result.check_id in expected_failing and outcome != "FAIL":
            problems.append(f"starting state: {result.check_id} should FAIL but is {outcome}: {result.evidence}")
        elif result.check_id not in expected_failing and outcome != "PASS":
            problems.append(f"starting state: {result.check_id} is {outcome} but is not listed as "
                            f"initially failing: {result.evidence}")
    return problems


def solved_state_problems(report: GradeReport) -> list[str]:
    """Every check that is not PASS after the solution."""
    return [f"after solution: {r.check_id} is {r.outcome.value}: {r.evidence}"
            for r in report.results if r.outcome.value != "PASS"]


def verify(name: str, *, provider: str | None = None, progress: Progress = QUIET) -> VerifyOutcome:
    """Run the whole verification; the lab is always removed at the end."""
    scenario = load_scenario(name)
    outcome = VerifyOutcome(scenario.name)
    unknown = set(scenario.spec.initially_failing) - {c.id for c in labs.load_spec(scenario).checks}
    if unknown:
        raise VerificationError(f"scenario.yml lists unknown checks as initially failing: {sorted(unknown)}")
    lab = labs.up(name, provider=provider, name=f"verify-{scenario.name}", progress=progress)
    try:
        spec = labs.lab_spec(lab)
        with progress.step("grade the starting state"):
            outcome.before = labs.grade(lab, spec)
        outcome.problems += starting_state_problems(outcome.before, set(scenario.spec.initially_failing))
        with progress.step(f"apply the solution ({scenario.solution.name})"):
            labs.run_scenario_playbook(lab, scenario.solution, progress)
        with progress.step("grade the solved state"):
            outcome.after = labs.grade(lab, spec)
        outcome.problems += solved_state_problems(outcome.after)
    finally:
        with progress.step("remove the lab"):
            labs.down(lab)
    return outcome
