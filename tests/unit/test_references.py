"""`labctl validate` checks every name a scenario refers to, and template errors carry the
template's own line (no root, no lab: each case is a copy of a small scenario with one mistake)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.errors import InvalidInputError, Problem
from labctl.references import check_references
from labctl.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "tests" / "data" / "scenarios" / "variants"
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the `variants` scenario that validates, with a partial solution and a playbook
    that copies a template; each test then breaks one thing."""
    copy = tmp_path / "scenarios" / "variants"
    shutil.copytree(VARIANTS, copy)
    (copy / "templates").mkdir()
    (copy / "templates" / "motd.j2").write_text("Bonjour {{ manager }}\n")
    (copy / "solution.yml").write_text(
        "- name: Solve\n  hosts: h1\n  gather_facts: false\n  tasks:\n"
        "    - name: A template\n      ansible.builtin.template:\n        src: motd.j2\n        dest: /etc/motd\n"
        "        mode: '0644'\n")
    text = (copy / "scenario.yml").read_text().replace("../../labs/small.yml", str(SMALL))
    text = text.replace("    initially_failing: [marker]\n  - name: repair",
                        "    initially_failing: [marker]\n    solution: solution.yml\n  - name: repair")
    (copy / "scenario.yml").write_text(text + "partial:\n  playbook: solution.yml\n  failing: [marker]\n")
    _problems(copy)  # the copy itself is right
    return copy


def _problems(folder: Path) -> list[Problem]:
    scenario = load_scenario(str(folder))
    values = scenario.values(None)
    try:
        check_references(scenario, labs.load_spec(scenario, None, values), values)
    except InvalidInputError as exc:
        return exc.problems
    return []


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


def _line_of(file: Path, text: str) -> int:
    return next(n for n, line in enumerate(file.read_text().splitlines(), 1) if text in line)


def _one(folder: Path) -> Problem:
    problems = _problems(folder)
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


def test_initially_failing_naming_an_unknown_check(folder: Path) -> None:
    _edit(folder / "scenario.yml", "initially_failing: [marker]\n    solution",
          "initially_failing: [markr]\n    solution")
    problem = _one(folder)
    assert problem.file == str(folder / "scenario.yml")
    assert problem.line == _line_of(folder / "scenario.yml", "[markr]")
    assert "unknown check 'markr'" in problem.message and problem.hint == "did you mean 'marker'?"


def test_initially_failing_naming_a_check_of_another_stage(folder: Path) -> None:
    _edit(folder / "scenario.yml", "initially_failing: [marker]\n    solution",
          "initially_failing: [marker, restored]\n    solution")
    problem = _one(folder)
    assert "check 'restored' is graded in stage repair, not in stage build" in problem.message
    assert problem.line == _line_of(folder / "scenario.yml", "[marker, restored]")


def test_partial_failing_naming_an_unknown_check(folder: Path) -> None:
    _edit(folder / "scenario.yml", "\n  failing: [marker]", "\n  failing: [marker, nope]")
    problem = _one(folder)
    assert problem.message.startswith("partial.failing: unknown check 'nope'")
    assert problem.line == _line_of(folder / "scenario.yml", "failing: [marker, nope]")


def test_a_stage_injecting_an_unknown_fault_and_a_partial_in_an_unknown_stage(folder: Path) -> None:
    _edit(folder / "scenario.yml", "inject: [wipe]", "inject: [wype]")
    _edit(folder / "scenario.yml", "  failing: [marker]", "  stage: repare\n  failing: [marker]")
    first, second = _problems(folder)
    assert "stage repair injects unknown fault 'wype'" in first.message and first.hint == "did you mean 'wipe'?"
    assert first.line == _line_of(folder / "scenario.yml", "inject: [wype]")
    assert "partial.stage: unknown stage 'repare'" in second.message and second.hint == "did you mean 'repair'?"
    assert second.line == _line_of(folder / "scenario.yml", "stage: repare")


def test_an_unknown_criterion(folder: Path) -> None:
    _edit(folder / "scenario.yml", "criteria: [A2.3-c1]", "criteria: [A2.3-c1, A2.3-c9]")
    problem = _one(folder)
    assert "unknown criterion 'A2.3-c9'" in problem.message and problem.hint and "A2.3-c1" in problem.hint


def test_a_check_in_an_unknown_stage_is_found_in_the_grading_spec(folder: Path) -> None:
    _edit(folder / "grading.yml", "stage: repair", "stage: repiar")
    problems = _problems(folder)
    stage = next(p for p in problems if "unknown stage 'repiar'" in p.message)
    assert stage.file == str(folder / "grading.yml")
    assert stage.line == _line_of(folder / "grading.yml", "stage: repiar")
    assert stage.hint == "did you mean 'repair'?"


def test_missing_playbooks_and_briefs(folder: Path) -> None:
    _edit(folder / "scenario.yml", "playbook: setup.yml", "playbook: fault-wipe.yml")
    (folder / "brief.en.md").unlink()
    brief, fault = _problems(folder)  # in the order of their lines
    assert fault.message.startswith("fault wipe: playbook: file not found")
    assert fault.line == _line_of(folder / "scenario.yml", "fault-wipe.yml")
    assert brief.message.startswith("brief (en): file not found") and "conventional place" in (brief.hint or "")


def test_a_lab_can_be_built_from_a_scenario_still_without_briefs_or_solutions(folder: Path) -> None:
    (folder / "brief.en.md").unlink()
    (folder / "solution.yml").unlink()
    scenario = load_scenario(str(folder))
    spec = labs.load_spec(scenario, None, scenario.values(None))
    assert len(_problems(folder)) == 3  # validate: the brief, the stage's solution, the partial's playbook
    check_references(scenario, spec, scenario.values(None), building=True)  # up: nothing it needs is missing
    _edit(folder / "scenario.yml", "playbook: setup.yml", "playbook: fault-wipe.yml")
    with pytest.raises(InvalidInputError):  # a fault's playbook is run by the lab: up refuses
        check_references(scenario := load_scenario(str(folder)), spec, scenario.values(None), building=True)


def test_a_template_the_solution_copies_must_exist(folder: Path) -> None:
    (folder / "templates" / "motd.j2").unlink()
    problem = _one(folder)
    assert problem.file == str(folder / "solution.yml")
    assert problem.line == _line_of(folder / "solution.yml", "ansible.builtin.template")
    assert "'motd.j2' not found" in problem.message


def test_a_hint_holding_a_placeholder(folder: Path) -> None:
    _edit(folder / "grading.yml", "    stage: repair",
          "    stage: repair\n    hint: {fr: \"Regardez {{ manager }}\", en: \"Look at the manifest\"}")
    problem = _one(folder)
    assert "check 'restored': its hint holds a placeholder" in problem.message
    assert problem.line == _line_of(folder / "grading.yml", "hint:")


def test_validate_exits_2_naming_each_problem(folder: Path) -> None:
    _edit(folder / "scenario.yml", "initially_failing: [marker]\n    solution",
          "initially_failing: [markr]\n    solution")
    _edit(folder / "scenario.yml", "criteria: [A2.3-c1]", "criteria: [A9.9-c9]")
    result = subprocess.run([sys.executable, "-m", "labctl", "validate", str(folder)], capture_output=True,
                            text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}, cwd=folder)
    assert result.returncode == 2, result.stderr
    assert f"{folder / 'scenario.yml'}:{_line_of(folder / 'scenario.yml', '[markr]')}: " in result.stderr
    assert "unknown criterion 'A9.9-c9'" in result.stderr and "2 problems found" in result.stderr


def test_shipped_scenarios_refer_to_nothing_missing() -> None:
    for folder in sorted((ROOT / "scenarios").iterdir()):
        assert _problems(folder) == [], folder.name


# ---- template errors at the template's own line ---------------------------------------------------
def test_an_undefined_variable_is_reported_at_its_line_of_the_grading_spec(folder: Path) -> None:
    _edit(folder / "grading.yml", "path: /home/{{ manager }}/marker-{{ octet }}",
          "path: /home/{{ manager }}/marker-{{ octt }}")
    scenario = load_scenario(str(folder))
    with pytest.raises(InvalidInputError) as error:
        labs.load_spec(scenario, None, scenario.values(None))
    (problem,) = error.value.problems
    assert problem.line == _line_of(folder / "grading.yml", "{{ octt }}") != 1
    assert "'octt' is undefined" in problem.message


def test_a_brief_error_is_reported_at_its_line(folder: Path) -> None:
    from labctl.brief import brief_markdown

    text = (folder / "brief.en.md").read_text()
    (folder / "brief.en.md").write_text(text + "\n\nYour account: {{ accounts.manager }}.\n")
    with pytest.raises(InvalidInputError) as error:
        brief_markdown(load_scenario(str(folder)), "en", None)
    (problem,) = error.value.problems
    assert problem.file == str(folder / "brief.en.md")
    assert problem.line == _line_of(folder / "brief.en.md", "accounts.manager") > 3


def test_a_forbidden_attribute_and_a_bad_operation_carry_their_lines(folder: Path) -> None:
    from labctl.sourcefile import render_template

    for body, found in (("{{ manager.__class__ }}", "template error"), ("{{ octet / 0 }}", "ZeroDivisionError")):
        with pytest.raises(InvalidInputError) as error:
            render_template(folder / "t.md", f"one\ntwo\n\nfour {body}\n", {"manager": "a", "octet": 1})
        (problem,) = error.value.problems
        assert problem.line == 4 and found in problem.message
