"""Lab lifecycle: the operations the CLI offers, as plain functions returning values.

up: source (scenario or topology file) -> LabState (built, set up);
grade: LabState -> GradeReport; down: LabState -> None; verify: scenario -> findings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.plan import new_lab_id, plan_lab
from labctl.progress import QUIET, Progress
from labctl.providers import get_provider
from labctl.scenario import Scenario, is_scenario, load_scenario
from labctl.state import LabState, unique_name
from labctl.topology import load_topology

if TYPE_CHECKING:
    from collections.abc import Callable

    from labctl.grading.results import CheckResult, GradeReport
    from labctl.grading.spec import GradingSpec
    from labctl.topology.model import Topology


@dataclass(frozen=True)
class Source:
    """What a lab is built from: a scenario, or a bare topology file."""

    topology: Path
    scenario: Scenario | None


def resolve_source(reference: str) -> Source:
    """A scenario (folder, scenario.yml or name) or a topology file."""
    if is_scenario(reference):
        scenario = load_scenario(reference)
        return Source(scenario.topology, scenario)
    return Source(Path(reference), None)


def up(reference: str, *, provider: str | None = None, name: str | None = None,
       setup: bool = True, progress: Progress = QUIET) -> LabState:
    """Validate everything, build the lab, run the scenario's setup; all or nothing."""
    source = resolve_source(reference)
    topology = load_topology(source.topology)
    if source.scenario:
        load_spec(source.scenario, topology)  # a bad grading spec stops us before building
    chosen = get_provider(provider or topology.provider)
    lab_id = new_lab_id()
    lab_name = unique_name(name or (source.scenario.name if source.scenario else topology.name))
    lab = LabState(
        id=lab_id, name=lab_name, provider=chosen.name, source=str(source.topology.resolve()),
        scenario=str(source.scenario.folder) if source.scenario else None,
        plan=plan_lab(topology, lab_id, lab_name),
        image_name=(source.scenario.spec.image.name or source.scenario.name) if source.scenario else None,
        packages=source.scenario.spec.image.packages if source.scenario else [],
    )
    chosen.create(lab, progress)
    if source.scenario and setup and source.scenario.setup.is_file():
        try:
            with progress.step(f"set up the starting state ({source.scenario.setup.name})"):
                run_scenario_playbook(lab, source.scenario.setup, progress)
        except BaseException:
            with progress.step("remove the lab"):
                chosen.destroy(lab)
            raise
    return lab


def run_scenario_playbook(lab: LabState, playbook: Path, progress: Progress = QUIET) -> None:
    """Run a playbook against the lab."""
    from labctl.provision import run_playbook

    run_playbook(lab, get_provider(lab.provider), playbook, progress=progress)


def down(lab: LabState, progress: Progress = QUIET) -> None:
    """Remove the lab and everything it made."""
    get_provider(lab.provider).destroy(lab, progress)


def load_spec(scenario: Scenario, topology: Topology | None = None) -> GradingSpec:
    """The scenario's grading spec, validated against its topology."""
    from labctl.grading.loader import load_grading_spec

    return load_grading_spec(scenario.grading, topology)


def lab_spec(lab: LabState, spec_file: Path | None = None) -> GradingSpec:
    """The grading spec for `lab`: the one given, or its scenario's."""
    from labctl.errors import NotFoundError
    from labctl.grading.loader import load_grading_spec

    if spec_file is not None:
        return load_grading_spec(spec_file, load_topology(lab.source))
    if not lab.scenario:
        raise NotFoundError(f"lab {lab.name} was built from a topology, not a scenario: it has no grading spec",
                            "give one with --spec grading/FILE.yml")
    return load_spec(load_scenario(lab.scenario), load_topology(lab.source))


def grade(lab: LabState, spec: GradingSpec,
          on_result: Callable[[CheckResult], None] | None = None) -> GradeReport:
    """Run the spec's checks against the live lab (one SSH session per node, concurrently)."""
    from labctl.connect import open_session
    from labctl.grading.grader import grade as run_grader

    provider = get_provider(lab.provider)
    return run_grader(spec, lambda node: open_session(provider.access(lab, node)),
                      lab=lab.name, progress=on_result)
