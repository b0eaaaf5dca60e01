"""Every name a scenario refers to, checked before anything is built.

A scenario names things in several files: scenario.yml names checks (initially failing,
partial), stages, faults, criteria and playbooks; the grading spec names stages and carries
hints; playbooks name the templates and files they copy. A wrong name found only while a
lab runs costs a trainer a `scenario verify` (minutes); found here it costs a second. Each
problem is `file:line: what is wrong` with the fix (exit 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from labctl import sourcelimits
from labctl.errors import InvalidInputError, LabctlError, Problem
from labctl.grading.criteria import all_criteria, closest_criteria
from labctl.grading.spec import GradingSpec
from labctl.scenario import MAIN_STAGE, Scenario
from labctl.sourcefile import Lines, read_yaml

# Ansible modules that read a file from the controller, and the folder each looks in first.
COPY_MODULES = {"template": "templates", "ansible.builtin.template": "templates",
                "copy": "files", "ansible.builtin.copy": "files"}
INCLUDE_MODULES = {"include_tasks", "import_tasks", "ansible.builtin.include_tasks",
                   "ansible.builtin.import_tasks", "import_playbook", "ansible.builtin.import_playbook"}
MAX_INCLUDES = 50  # playbooks followed per scenario: a loop of includes ends here


def check_references(scenario: Scenario, spec: GradingSpec, values: dict[str, Any] | None = None, *,
                     building: bool = False) -> None:
    """Raise InvalidInputError listing every reference of `scenario` that leads nowhere.

    `building` (labctl up): the files a lab is built and run with only (setup, faults); a
    scenario still being written may lack its briefs, solutions or partial solution."""
    problems = reference_problems(scenario, spec, values, building=building)
    if problems:
        raise InvalidInputError(problems)


def reference_problems(scenario: Scenario, spec: GradingSpec,
                       values: dict[str, Any] | None = None, *, building: bool = False) -> list[Problem]:
    """Every broken reference of `scenario` (whose grading spec, rendered with `values`, is `spec`)."""
    lines = scenario.lines or Lines(str(scenario.folder / "scenario.yml"))
    return [*_criteria(scenario, lines), *_faults_and_stages(scenario, lines), *_check_lists(scenario, spec, lines),
            *_check_stages(scenario, spec, values), *_hints(scenario, spec, values), *_files(scenario, lines, building)]


def _did_you_mean(name: str, known: Iterable[str], what: str) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"{what}: {', '.join(known)}" if known else f"there are no {what}"


def _criteria(scenario: Scenario, lines: Lines) -> Iterator[Problem]:
    for index, criterion in enumerate(scenario.spec.criteria):
        if criterion not in all_criteria():
            close = closest_criteria(criterion)
            yield lines.problem(("criteria", index), f"criteria: unknown criterion '{criterion}' "
                                f"(not in labctl/data/referentiel.yaml)",
                                f"closest ids: {', '.join(close)}" if close else "ids look like A1.3-c2")


def _faults_and_stages(scenario: Scenario, lines: Lines) -> Iterator[Problem]:
    faults = scenario.spec.faults
    for s_index, stage in enumerate(scenario.spec.stages):
        for f_index, fault in enumerate(stage.inject):
            if fault not in faults:
                yield lines.problem(("stages", s_index, "inject", f_index),
                                    f"stage {stage.name} injects unknown fault '{fault}'",
                                    _did_you_mean(fault, faults, "faults (under `faults:`)"))
    partial = scenario.spec.partial
    names = [s.name for s in scenario.stages()]
    if partial and partial.stage and partial.stage not in names:
        yield lines.problem(("partial", "stage"), f"partial.stage: unknown stage '{partial.stage}'",
                            _did_you_mean(partial.stage, names, "stages"))


def _check_lists(scenario: Scenario, spec: GradingSpec, lines: Lines) -> Iterator[Problem]:
    """Checks named in initially_failing and partial.failing: they exist and are graded in that stage."""
    stages = scenario.stages()
    lists: list[tuple[tuple[str | int, ...], str, str, list[str]]] = []
    if scenario.spec.stages:
        lists += [(("stages", i, "initially_failing"), f"stage {s.name}: initially_failing", s.name,
                   s.initially_failing) for i, s in enumerate(stages)]
    else:
        lists.append((("initially_failing",), "initially_failing", MAIN_STAGE, scenario.spec.initially_failing))
    partial = scenario.spec.partial
    if partial:
        lists.append((("partial", "failing"), "partial.failing", partial.stage or stages[0].name, partial.failing))
    checks = {c.id: c for c in spec.checks}
    for where, label, stage, names in lists:
        graded = [c.id for c in spec.checks if c.stage in (None, stage)]
        for index, name in enumerate(names):
            if name not in checks:
                yield lines.problem((*where, index), f"{label}: unknown check '{name}' "
                                    f"(not in {scenario.grading.name})",
                                    _did_you_mean(name, graded, f"checks of stage {stage}"))
            elif name not in graded:
                yield lines.problem((*where, index), f"{label}: check '{name}' is graded in stage "
                                    f"{checks[name].stage}, not in stage {stage}",
                                    f"list it under stage {checks[name].stage}, or change its `stage:` "
                                    f"in {scenario.grading.name}")


def _grading_lines(scenario: Scenario, values: dict[str, Any] | None) -> Lines:
    """The grading spec's line index (placeholders stay on their line: rendered or not, the same lines)."""
    return read_yaml(scenario.grading, scenario.values(None) if values is None else values)[1]


def _check_stages(scenario: Scenario, spec: GradingSpec, values: dict[str, Any] | None) -> Iterator[Problem]:
    names = [s.name for s in scenario.stages()]
    wrong = [(i, c) for i, c in enumerate(spec.checks) if c.stage is not None and c.stage not in names]
    if not wrong:
        return
    lines = _grading_lines(scenario, values)
    for index, check in wrong:
        yield lines.problem(("checks", index, "stage"), f"check '{check.id}': unknown stage '{check.stage}'",
                            _did_you_mean(check.stage or "", names, f"stages of scenario {scenario.name}"))


def _hints(scenario: Scenario, spec: GradingSpec, values: dict[str, Any] | None) -> Iterator[Problem]:
    """A hint must be the same for every variant: no placeholder on its lines."""
    hinted = [(i, c) for i, c in enumerate(spec.checks) if c.hint is not None]
    if not hinted:
        return
    raw = sourcelimits.read_text(scenario.grading).splitlines()
    lines = _grading_lines(scenario, values)
    for index, check in hinted:
        where = {lines.line(("checks", index, "hint", *key)) for key in ((), ("fr",), ("en",))}
        for line in sorted(where):
            if 0 < line <= len(raw) and any(mark in raw[line - 1] for mark in ("{{", "{%")):
                yield Problem(str(scenario.grading), line,
                              f"check '{check.id}': its hint holds a placeholder; a hint is the same for "
                              f"every candidate", "say where to look and which command shows it, "
                              "not the variant's values")


def _files(scenario: Scenario, lines: Lines, building: bool = False) -> Iterator[Problem]:
    """Playbooks and briefs named (or expected at their conventional places) exist, and so do the
    templates and files those playbooks copy."""
    spec = scenario.spec
    named: list[tuple[tuple[str | int, ...], str, Path]] = []
    if spec.setup:
        named.append((("setup",), "setup playbook", scenario.setup))
    if not spec.stages:
        named.append((("solution",), "solution playbook", scenario.solution))
    named += [(("stages", i, "solution"), f"stage {s.name}: solution playbook", scenario.path(s.solution))
              for i, s in enumerate(spec.stages) if s.solution]
    named += [(("faults", name, "playbook"), f"fault {name}: playbook", scenario.path(f.playbook))
              for name, f in spec.faults.items()]
    if spec.partial:
        named.append((("partial", "playbook"), "partial: playbook", scenario.path(spec.partial.playbook)))
    named += [(("brief", lang), f"brief ({lang})", scenario.brief_path(lang)) for lang in ("fr", "en")]
    if building:
        named = [entry for entry in named if entry[0][0] in ("setup", "faults")]
    playbooks: list[Path] = [scenario.setup] if not spec.setup and scenario.setup.is_file() else []
    for where, what, path in named:
        key = str(where[0])
        if not path.is_file():
            conventional = key in ("setup", "solution", "brief") and key not in spec.model_fields_set
            fix = (f"write it there (its conventional place), or name another file with `{key}:` in scenario.yml"
                   if conventional else "fix the path (relative to the scenario folder)")
            yield lines.problem(where, f"{what}: file not found: {path}", fix)
        elif key != "brief":
            playbooks.append(path)
    yield from _playbook_sources(playbooks)


def _playbook_sources(playbooks: list[Path]) -> Iterator[Problem]:
    """Templates, files and included task files that playbooks name, which must exist."""
    seen: set[Path] = set()
    queue = [(p.resolve(), p.resolve().parent) for p in playbooks]
    while queue and len(seen) < MAX_INCLUDES:
        file, base = queue.pop(0)
        if file in seen:
            continue
        seen.add(file)
        try:
            data, lines, _ = read_yaml(file)
        except (LabctlError, OSError):
            continue  # Ansible reports a playbook it cannot read, with its own words
        for path, module, args in _module_calls(data, ()):
            key = "file" if module in INCLUDE_MODULES else "src"
            source = args.get(key) if isinstance(args, dict) else args if module in INCLUDE_MODULES else None
            if not isinstance(source, str) or "{{" in source or source.startswith("/"):
                continue
            if isinstance(args, dict) and args.get("remote_src") in (True, "yes", "true"):
                continue
            folder = COPY_MODULES.get(module, "")
            places = [d / sub / source for d in dict.fromkeys((file.parent, base)) for sub in (folder, "")]
            found = next((p for p in places if p.exists()), None)
            if found is None:
                yield lines.problem(path, f"{module}: '{source}' not found (looked in "
                                    f"{', '.join(str(p.parent) for p in dict.fromkeys(places))})",
                                    "fix the path: relative to the playbook, or under its "
                                    f"{folder or 'own'} folder")
            elif module in INCLUDE_MODULES:
                queue.append((found.resolve(), base))


def _module_calls(data: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    """(location, module, arguments) of every task calling a module that names a controller file."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            yield from _module_calls(item, (*path, index))
    elif isinstance(data, dict):
        for key, value in data.items():
            if key in COPY_MODULES or key in INCLUDE_MODULES:
                yield (*path, key), str(key), value
            elif isinstance(value, list | dict):
                yield from _module_calls(value, (*path, key))
