"""`labctl scenario verify`: a scenario proves it behaves as it declares.

For each stage, in order: enter it (injecting its faults); exactly the checks it lists as
initially failing must FAIL and the others PASS (none may ERROR); apply its solution;
every check of the stage must PASS (after the first stage's solution, `reset` must also
bring exactly its initially failing checks back; the solution is then applied again).
Then, on a fresh lab, the partial solution must leave
exactly its listed checks failing. A check that never FAILs in any of these phases proves
nothing, and is reported as a defect. When a stage has checks marked `persist: reboot`, its
nodes are restarted before each of its gradings: a partial solution that sets a state by hand
only (an address without /etc/network/interfaces, a service started but not enabled) proves
that such a check FAILs. Labs are always removed at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labctl import lab as labs
from labctl.lang import say
from labctl.progress import QUIET, Progress
from labctl.references import check_references
from labctl.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    from labctl.grading.results import GradeReport
    from labctl.state import LabState


@dataclass
class VerifyOutcome:
    """What verification found: each phase's report and every broken expectation."""

    scenario: str
    problems: list[str] = field(default_factory=list)
    reports: dict[str, GradeReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every expectation held."""
        return not self.problems

    def failed_somewhere(self) -> set[str]:
        """Checks that FAILed in at least one phase."""
        return {r.check_id for report in self.reports.values() for r in report.results
                if r.outcome.value == "FAIL"}

    def summary(self, lang: str = "en") -> str:
        """Human-readable result in `lang` (fr, en or both; the problems' details stay in English:
        they quote evidence)."""
        phases = {one: ", ".join(f"{phase_text(phase, one)}: {sum(r.outcome.value == 'FAIL' for r in report.results)}"
                                 f" FAIL/{len(report.results)}" for phase, report in self.reports.items())
                  for one in ("fr", "en")}
        if self.ok:
            return say(f"scénario {self.scenario} vérifié ({phases['fr']})",
                       f"scenario {self.scenario} verified ({phases['en']})", lang, "\n")
        return say(f"le scénario {self.scenario} ne se vérifie PAS ({phases['fr']}) :",
                   f"scenario {self.scenario} does NOT verify ({phases['en']}):", lang, "\n") + \
            "\n  " + "\n  ".join(self.problems)


PHASES_FR = {"start": "départ", "solved": "résolue", "after reset": "après réinitialisation"}


def phase_text(phase: str, lang: str) -> str:
    """A verification phase ("stage build, start", "partial solution") in `lang` (fr or en)."""
    if lang != "fr":
        return phase
    if phase == "partial solution":
        return "solution partielle"
    stage, _, when = phase.removeprefix("stage ").partition(", ")
    return f"étape {stage}, {PHASES_FR.get(when, when)}"


def expected_failures(phase: str, report: GradeReport, failing: set[str]) -> list[str]:
    """Listed checks that did not FAIL, unlisted checks that did not PASS (ERROR included)."""
    problems = []
    for result in report.results:
        outcome = result.outcome.value
        if result.check_id in failing and outcome != "FAIL":
            problems.append(f"{phase}: {result.check_id} should FAIL but is {outcome}: {result.evidence}")
        elif result.check_id not in failing and outcome != "PASS":
            problems.append(f"{phase}: {result.check_id} is {outcome} but is not listed as failing: "
                            f"{result.evidence}")
    return problems


def _grade(lab: LabState, stage: str, phase: str, progress: Progress) -> GradeReport:
    # The spec is read anew for each phase: faults may have recorded data in the vault.
    spec = labs.stage_checks(labs.lab_spec(lab), stage)
    after_reboot = any(check.persist for check in spec.checks)
    if after_reboot:  # what must survive a reboot is graded after one, in every phase
        labs.reboot(lab, progress)
    with progress.step(f"grade: {phase}" + (" (after a reboot)" if after_reboot else "")):
        return labs.grade(lab, spec, after_reboot=after_reboot)


def _stages(lab: LabState, scenario: Scenario, outcome: VerifyOutcome, progress: Progress) -> None:
    for index, stage in enumerate(scenario.stages()):
        if index:
            labs.enter_stage(lab, stage.name, progress)
        phase = f"stage {stage.name}, start"
        outcome.reports[phase] = report = _grade(lab, stage.name, phase, progress)
        outcome.problems += expected_failures(phase, report, set(stage.initially_failing))
        if stage.solution:
            with progress.step(f"apply the solution of stage {stage.name}"):
                labs.run_scenario_playbook(lab, scenario.path(stage.solution), progress)
        phase = f"stage {stage.name}, solved"
        outcome.reports[phase] = report = _grade(lab, stage.name, phase, progress)
        outcome.problems += expected_failures(phase, report, set())
        if index == 0:
            # The trainer's "next cohort" button must bring the starting state back.
            with progress.step("reset to the starting state"):
                labs.reset(lab, progress)
            phase = f"stage {stage.name}, after reset"
            outcome.reports[phase] = report = _grade(lab, stage.name, phase, progress)
            outcome.problems += expected_failures(phase, report, set(stage.initially_failing))
            # Solved again only for the stages that follow (a single-stage lab is removed next:
            # applying it again cost a solution run per verify, ~40 s for annuaire).
            if stage.solution and len(scenario.stages()) > 1:
                labs.run_scenario_playbook(lab, scenario.path(stage.solution), progress)


def _partial(lab: LabState, scenario: Scenario, outcome: VerifyOutcome, progress: Progress) -> None:
    partial = scenario.spec.partial
    assert partial is not None
    stage = partial.stage or scenario.stages()[0].name
    if stage != lab.stage:
        labs.enter_stage(lab, stage, progress)
    with progress.step("apply the partial solution"):
        labs.run_scenario_playbook(lab, scenario.path(partial.playbook), progress)
    phase = "partial solution"
    outcome.reports[phase] = report = _grade(lab, stage, phase, progress)
    outcome.problems += expected_failures(phase, report, set(partial.failing))


def verify(name: str, *, provider: str | None = None, seed: str | None = None,
           progress: Progress = QUIET, lab_name: str | None = None) -> VerifyOutcome:
    """Run the whole verification; every lab it builds is removed at the end.

    Its labs are called `lab_name` (refused if a lab has that name), else verify-SCENARIO
    (verify-SCENARIO-2... when taken)."""
    scenario = load_scenario(name)
    values = scenario.values(seed)
    spec = labs.load_spec(scenario, values=values)
    check_references(scenario, spec, values)  # a list naming a check that does not exist: exit 2 at once
    outcome = VerifyOutcome(scenario.name)
    phases = [_stages] + ([_partial] if scenario.spec.partial else [])
    for phase in phases:
        lab = labs.up(name, provider=provider, seed=seed, name=lab_name or f"verify-{scenario.name}",
                      exact_name=lab_name is not None, progress=progress)
        try:
            phase(lab, scenario, outcome, progress)
        finally:
            with progress.step("remove the lab"):
                labs.down(lab)
    never = sorted({c.id for c in spec.checks} - outcome.failed_somewhere())
    if never:
        outcome.problems.append(f"checks that never FAIL in any phase (they prove nothing): {', '.join(never)}")
    return outcome
