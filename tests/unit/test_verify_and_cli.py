"""Verification rules and the CLI's handling of files, errors and exit codes (no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.verify import expected_failures

ROOT = Path(__file__).resolve().parents[2]


def _report(**outcomes: Outcome) -> GradeReport:
    results = [CheckResult(check_id=cid, criterion="A2.3-c1", node="h1", description_fr="x", description_en="x",
                           weight=1, outcome=o, evidence=f"seen {o.value}") for cid, o in outcomes.items()]
    return GradeReport(lab="l", scenario="s", started="t0", finished="t1", results=results)


def test_starting_state_must_fail_exactly_the_listed_checks() -> None:
    good = _report(a=Outcome.FAIL, b=Outcome.PASS)
    assert expected_failures("start", good, {"a"}) == []
    listed_but_passing = expected_failures("start", _report(a=Outcome.PASS, b=Outcome.PASS), {"a"})
    assert listed_but_passing == ["start: a should FAIL but is PASS: seen PASS"]
    unlisted_failing = expected_failures("start", _report(a=Outcome.FAIL, b=Outcome.FAIL), {"a"})
    assert unlisted_failing == ["start: b is FAIL but is not listed as failing: seen FAIL"]
    error = expected_failures("start", _report(a=Outcome.ERROR, b=Outcome.PASS), {"a"})
    assert error == ["start: a should FAIL but is ERROR: seen ERROR"]


def test_solved_state_must_pass_everything() -> None:
    assert expected_failures("solved", _report(a=Outcome.PASS, b=Outcome.PASS), set()) == []
    assert expected_failures("solved", _report(a=Outcome.PASS, b=Outcome.ERROR), set()) == [
        "solved: b is ERROR but is not listed as failing: seen ERROR"]


def labctl(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True, cwd=cwd,
                          env=os.environ | {"PYTHONPATH": str(ROOT), "LABCTL_HOME": str(cwd / ".labctl-home")})


def test_validate_good_files() -> None:
    result = labctl("validate", "tests/data/labs/small.yml", "tests/data/labs/small-grading.yml")
    assert result.returncode == 0, result.stderr
    assert "tests/data/labs/small.yml: ok (topology small" in result.stdout


def test_a_scenarios_own_files_validate_with_its_default_values() -> None:
    shipped = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("topologies/*.yml"), *ROOT.glob("grading/*.yml")])
    result = labctl("validate", *shipped)
    assert result.returncode == 0, result.stderr  # their templates ({{ gateway }}...) need the scenario's values
    assert "grading/multi-site-routing.yml: ok (used by scenario multi-site-routing" in result.stdout


def test_validate_bad_file_exits_2_with_every_problem_and_no_traceback() -> None:
    bad = "tests/golden/topology/several_errors.yml"
    result = labctl("validate", bad)
    assert result.returncode == 2
    assert result.stderr.count(f"{bad}:") >= 3
    assert "Traceback" not in result.stderr
    assert "nothing was created" in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = labctl("--debug", "validate", "tests/golden/topology/several_errors.yml")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_schema_is_json_schema() -> None:
    for kind in ("topology", "grading"):
        result = labctl("schema", kind)
        assert result.returncode == 0, result.stderr
        assert "$schema" in json.loads(result.stdout) or "properties" in json.loads(result.stdout)


def test_missing_lab_is_exit_3(tmp_path: Path) -> None:
    result = labctl("grade", "--lab", "nope", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("labctl: error: no lab named 'nope'")


def test_unknown_scenario_suggests_a_name(tmp_path: Path) -> None:
    result = labctl("scenario", "verify", "multi-site-routin")
    assert result.returncode == 3
    assert "did you mean 'multi-site-routing'" in result.stderr
