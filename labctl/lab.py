"""Lab lifecycle: the operations the CLI offers, as plain functions returning values.

up: source (scenario or topology file) -> LabState (built, set up, in its first stage);
grade: LabState -> GradeReport; inject / enter_stage: scenario faults and stages;
down: LabState -> None.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl import locks
from labctl.errors import NameTakenError, NotFoundError
from labctl.plan import new_lab_id, plan_lab
from labctl.progress import QUIET, Progress
from labctl.providers import get_provider
from labctl.providers.base import Provider
from labctl.scenario import Scenario, is_scenario, load_scenario
from labctl.sourcefile import read_yaml
from labctl.state import LabState, all_labs, find_lab, load_lab, unique_name
from labctl.topology import load_topology
from labctl.topology.validate import vlan_uses

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
    if "/" not in reference and not reference.endswith((".yml", ".yaml")) and not Path(reference).exists():
        load_scenario(reference)  # a bare name: "no scenario 'X'", the search path and the closest name
    return Source(Path(reference), None)


def up(reference: str, *, provider: str | None = None, name: str | None = None, seed: str | None = None,
       setup: bool = True, progress: Progress = QUIET, exact_name: bool = False, replace: bool = False) -> LabState:
    """Validate everything, build the lab, run the scenario's setup; all or nothing.

    A taken `name` becomes `name-2`..., unless `exact_name`: then up refuses (NameTakenError),
    or with `replace` removes that lab first. The new lab is locked until up returns.
    """
    source = resolve_source(reference)
    scenario = source.scenario
    values = scenario.values(seed) if scenario else {}
    topology = load_topology(source.topology, values)
    if scenario:
        from labctl.references import check_references

        # a bad grading spec, or a name the scenario refers to that leads nowhere, stops us before building
        check_references(scenario, load_spec(scenario, topology, values), values, building=True)
    chosen = get_provider(provider or topology.provider)
    chosen.require()  # before a name is claimed: nothing to undo if the machine cannot do it
    uses = vlan_uses(topology)
    if uses:
        lines = read_yaml(source.topology, values)[1]
        chosen.refuse_vlans([(f"{lines.file}:{lines.line(use.path)}", use) for use in uses])
    lab_id = new_lab_id()
    with contextlib.ExitStack() as held:
        with locks.names("up"):
            wanted = name or (scenario.name if scenario else topology.name)
            lab_name = _claim_name(wanted, exact_name and name is not None, replace, progress)
            lab = LabState(
                id=lab_id, name=lab_name, provider=chosen.name, source=str(source.topology.resolve()),
                scenario=str(scenario.folder) if scenario else None, seed=seed, values=values,
                plan=plan_lab(topology, lab_id, lab_name),
                image_name=(scenario.spec.image.name or scenario.name) if scenario else None,
                packages=scenario.spec.image.packages if scenario else [],
            )
            lab.publish()  # the name is taken from here on
            held.enter_context(locks.lab(lab.directory, lab.name, "up"))
        _build_and_set_up(lab, chosen, scenario if setup else None, progress)
    return lab


def _claim_name(wanted: str, exact: bool, replace: bool, progress: Progress) -> str:
    """The name a new lab gets (called under the names lock): `wanted` if free; else
    `wanted-N`, or (exact) a refusal, or (replace) `wanted` once its lab is removed."""
    if not exact:
        return unique_name(wanted)
    existing = next((lab for lab in all_labs() if lab.name == wanted), None)
    if existing is None:
        return wanted
    if not replace:
        raise NameTakenError(f"a lab named {wanted} exists ({existing.id}, {existing.status})",
                             f"choose another --name, remove it (labctl down --lab {wanted}) or replace it (--replace)")
    with progress.step(f"remove lab {wanted} ({existing.id}), which this one replaces"), \
            locked(existing.id, "up --replace") as current:
        down(current)
    return wanted


def _build_and_set_up(lab: LabState, chosen: Provider, scenario: Scenario | None, progress: Progress) -> None:
    chosen.create(lab, progress)
    if scenario:
        try:
            if scenario.setup.is_file():
                with progress.step(f"set up the starting state ({scenario.setup.name})"):
                    run_scenario_playbook(lab, scenario.setup, progress)
            enter_stage(lab, scenario.stages()[0].name, progress)
            snapshot(lab, progress)
        except BaseException:
            with progress.step("remove the lab"):
                chosen.destroy(lab)
            raise


@contextlib.contextmanager
def locked(selector: str | None, command: str, *, shared: bool = False) -> Iterator[LabState]:
    """The lab named or identified by `selector` (see find_lab), locked for `command`, as
    it is once the lock is held (another command may have changed it meanwhile)."""
    with held(find_lab(selector), command, shared=shared) as current:
        yield current


@contextlib.contextmanager
def held(lab: LabState, command: str, *, shared: bool = False) -> Iterator[LabState]:
    """`lab` locked for `command`, as it is once the lock is held."""
    with locks.lab(lab.directory, lab.name, command, shared=shared):
        yield load_lab(lab.id)


def condition(lab: LabState, node_states: dict[str, str]) -> str:
    """What the lab really is, for `status`: its recorded status checked against its lock
    and its nodes. `running` only when every node runs; `degraded` when some do, `stopped`
    when none does; `broken (...)` when a command was cut short (nothing holds the lab while
    the record says it is still being created, reset or removed)."""
    holder = locks.busy(lab.directory)
    if holder is not None:
        return f"{lab.status} ({holder} in progress)"
    if lab.status in ("creating", "resetting", "destroying"):
        return f"broken (interrupted while {lab.status}; remove it: labctl down --lab {lab.name})"
    if lab.status != "running":
        return lab.status
    running = sum(1 for state in node_states.values() if state == "running")
    if running == len(node_states):
        return "running"
    return "stopped" if running == 0 else f"degraded ({running} of {len(node_states)} nodes running)"


def clone(origin: LabState, *, name: str | None = None, progress: Progress = QUIET) -> LabState:
    """A new lab in `origin`'s starting state (its snapshot), without running the setup again.

    Same source, variant values, stage and vault as the origin had at its snapshot; its own
    id, names, host keys and labctl key. What the origin's candidate did after the snapshot
    is not copied. Seconds instead of a setup playbook per lab: exam sessions with a few
    variants set each up once and copy it for the candidates who share it.
    """

    if origin.snapshot_point is None:
        raise NotFoundError(f"lab {origin.name} has no snapshot to copy",
                            "labctl up takes one after setup (or take one: labctl snapshot)")
    lab_id = new_lab_id()
    topology = load_topology(Path(origin.source), origin.values)
    provider = get_provider(origin.provider)
    provider.require()
    with contextlib.ExitStack() as held:
        with locks.names("copy"):
            lab_name = unique_name(name or origin.name)
            lab = LabState(
                id=lab_id, name=lab_name, provider=origin.provider, source=origin.source, scenario=origin.scenario,
                seed=origin.seed, values=origin.values, plan=plan_lab(topology, lab_id, lab_name),
                image_name=origin.image_name, packages=origin.packages,
                stage=origin.snapshot_point["stage"], injected=list(origin.snapshot_point["injected"]),
            )
            lab.publish()
            held.enter_context(locks.lab(lab.directory, lab.name, "copy"))
        _copy(lab, origin, provider, progress)
    return lab


def _copy(lab: LabState, origin: LabState, provider: Provider, progress: Progress) -> None:
    import shutil

    provider.create(lab, progress, origin=origin)
    try:
        saved = origin.directory / "vault.snapshot"
        if saved.exists():
            shutil.copytree(saved, lab.vault)
        snapshot(lab, progress)
    except BaseException:  # all or nothing, as `up`
        with progress.step("remove the lab"):
            provider.destroy(lab)
        raise


def playbook_variables(lab: LabState) -> dict[str, Any]:
    """What every playbook run against `lab` gets: parameter values and labctl's own."""
    lab.vault.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {**lab.values, "labctl_seed": lab.seed or "", "labctl_stage": lab.stage or "",
            "labctl_vault": str(lab.vault)}


def run_scenario_playbook(lab: LabState, playbook: Path, progress: Progress = QUIET) -> None:
    """Run a playbook against the lab, with the lab's variables."""
    from labctl.provision import run_playbook

    run_playbook(lab, get_provider(lab.provider), playbook, extravars=playbook_variables(lab),
                 progress=progress)


def lab_scenario(lab: LabState) -> Scenario:
    """The scenario `lab` was built from."""
    if not lab.scenario:
        raise NotFoundError(f"lab {lab.name} was built from a topology, not a scenario",
                            "build it from a scenario: labctl up scenarios/NAME")
    return load_scenario(lab.scenario)


def inject(lab: LabState, fault: str, progress: Progress = QUIET) -> None:
    """Run the scenario's fault playbook against the lab and record it."""
    scenario = lab_scenario(lab)
    definition = scenario.fault(fault)
    with progress.step(f"inject fault {fault}: {definition.description.fr} / {definition.description.en}"):
        run_scenario_playbook(lab, scenario.path(definition.playbook), progress)
    lab.injected.append(fault)
    lab.save()


def enter_stage(lab: LabState, stage: str, progress: Progress = QUIET) -> None:
    """Move the lab to `stage`, injecting the faults the stage starts with."""
    definition = lab_scenario(lab).stage(stage)
    previous = lab.stage
    lab.stage = definition.name  # fault playbooks see the stage they open (labctl_stage)
    try:
        for fault in definition.inject:
            inject(lab, fault, progress)
    except BaseException:
        lab.stage = previous  # a stage whose faults did not all land has not started
        raise
    finally:
        lab.save()


def snapshot(lab: LabState, progress: Progress = QUIET) -> None:
    """Record the lab's state (nodes, vault, stage) as the one `reset` goes back to."""
    import shutil

    get_provider(lab.provider).snapshot(lab, progress)
    saved = lab.directory / "vault.snapshot"
    shutil.rmtree(saved, ignore_errors=True)
    if lab.vault.exists():
        shutil.copytree(lab.vault, saved)
    lab.snapshot_point = {"stage": lab.stage, "injected": list(lab.injected)}
    lab.save()


def reset(lab: LabState, progress: Progress = QUIET) -> None:
    """Bring the lab back to its snapshot: the starting state, for the next candidate."""
    import shutil

    if lab.snapshot_point is None:
        raise NotFoundError(f"lab {lab.name} has no snapshot to reset to",
                            "take one with: labctl snapshot (labctl up takes one after setup)")
    get_provider(lab.provider).revert(lab, progress)
    shutil.rmtree(lab.vault, ignore_errors=True)
    if (lab.directory / "vault.snapshot").exists():
        shutil.copytree(lab.directory / "vault.snapshot", lab.vault)
    lab.stage = lab.snapshot_point["stage"]
    lab.injected = list(lab.snapshot_point["injected"])
    lab.save()


def down(lab: LabState, progress: Progress = QUIET) -> None:
    """Remove the lab and everything it made."""
    get_provider(lab.provider).destroy(lab, progress)


def load_spec(scenario: Scenario, topology: Topology | None = None,
              values: dict[str, Any] | None = None) -> GradingSpec:
    """The scenario's grading spec for these variant values, validated against its topology."""
    from labctl.grading.loader import load_grading_spec

    return load_grading_spec(scenario.grading, topology, scenario.values(None) if values is None else values)


def lab_spec(lab: LabState, spec_file: Path | None = None) -> GradingSpec:
    """The grading spec for `lab` (the one given, or its scenario's) with the lab's values."""
    from labctl.grading.loader import load_grading_spec
    from labctl.grading.vault import attach_vault

    topology = load_topology(lab.source, lab.values)
    if spec_file is not None:
        spec = load_grading_spec(spec_file, topology, lab.values)
    elif not lab.scenario:
        raise NotFoundError(f"lab {lab.name} was built from a topology, not a scenario: it has no grading spec",
                            "give one with --spec grading/FILE.yml")
    else:
        spec = load_spec(load_scenario(lab.scenario), topology, lab.values)
    return attach_vault(spec, lab.vault)


def stage_checks(spec: GradingSpec, stage: str | None) -> GradingSpec:
    """The checks graded in `stage`: its own and those without a stage (all, for None)."""
    if stage is None:
        return spec
    return spec.model_copy(update={"checks": [c for c in spec.checks if c.stage in (None, stage)]})


def reboot(lab: LabState, progress: Progress = QUIET, nodes: list[str] | None = None) -> None:
    """Restart every node of the lab (or `nodes`), side by side, and wait until each answers again."""
    from concurrent.futures import ThreadPoolExecutor

    provider = get_provider(lab.provider)
    known = [node.name for node in lab.plan.nodes]
    unknown = [node for node in nodes or [] if node not in known]
    if unknown:
        raise NotFoundError(f"lab {lab.name} has no node {', '.join(unknown)} (its nodes: {', '.join(known)})")
    nodes = nodes or known
    with progress.step(f"restart {len(nodes)} nodes"), \
            ThreadPoolExecutor(max_workers=max(1, min(8, len(nodes)))) as pool:
        for future in [pool.submit(provider.restart_node, lab, node) for node in nodes]:
            future.result()


def grade(lab: LabState, spec: GradingSpec,
          on_result: Callable[[CheckResult], None] | None = None, *,
          from_outside: bool | None = None, after_reboot: bool = False) -> GradeReport:
    """Run the spec's checks against the live lab, nodes concurrently. Checks marked
    `persist: reboot` are judged only `after_reboot` (the caller restarted the nodes: `reboot`).

    Where the provider lets the controller observe nodes from outside (local), checks read the
    truth from the kernel and the node's files (labctl.grading.outside); otherwise, or with
    `from_outside=False` (benchmarks), one SSH session per node runs each check's probe with a
    clean shell (labctl.grading.inside).
    """
    from labctl.connect import open_session
    from labctl.grading.grader import GradeOptions
    from labctl.grading.grader import grade as run_grader

    provider = get_provider(lab.provider)
    options = GradeOptions(after_reboot=after_reboot)
    if not (provider.observes_from_outside if from_outside is None else from_outside):
        from labctl.grading.inside import InsideSession

        return run_grader(spec, lambda node: InsideSession(open_session(provider.access(lab, node))),
                          lab=lab.name, progress=on_result, options=options)
    from labctl.grading.outside import LabView, OutsideSession

    view = LabView(lab)
    try:
        report = run_grader(spec, lambda node: OutsideSession(
            view, node, lambda: open_session(provider.access(lab, node))), lab=lab.name, progress=on_result,
            options=options)
        for node in spec.nodes():  # the jury sees every graded node's changed system files
            view.tampering(node)
        return dataclasses.replace(report, tampering=[t.to_dict() for t in view.tampered_nodes()])
    finally:
        view.close()
