"""Exit codes: one meaning each, the same table in `labctl --help` and the README (no root)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import labctl
from labctl import errors
from labctl.cli import main
from labctl.grading.results import CheckResult, GradeReport, Outcome

ROOT = Path(__file__).resolve().parents[2]


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out + out.err


def _report(*outcomes: Outcome) -> GradeReport:
    results = [CheckResult(check_id=f"c{i}", criterion="A2.3-c1", node="h1", description_fr="x",
                           description_en="x", weight=1, outcome=o, evidence="seen")
               for i, o in enumerate(outcomes)]
    return GradeReport(lab="l", scenario="s", started="t0", finished="t1", results=results)


def test_the_table_is_in_help_and_in_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _exit(["--help"], capsys)
    assert code == 0
    table = errors.exit_codes_text()
    help_lines = [line.strip() for line in text.splitlines()]
    for line in table.splitlines():
        assert line.strip() in help_lines, f"--help lacks: {line.strip()}"
    readme = (ROOT / "README.md").read_text()
    for line in table.splitlines():
        assert line.strip() in readme, f"README lacks: {line.strip()}"


def test_grade_error_has_a_code_no_input_or_usage_error_shares() -> None:
    assert _report(Outcome.PASS).exit_code == errors.EXIT_OK == 0
    assert _report(Outcome.PASS, Outcome.FAIL).exit_code == errors.EXIT_FAIL == 1
    assert _report(Outcome.FAIL, Outcome.ERROR).exit_code == errors.EXIT_CHECK_ERROR == 10
    assert errors.EXIT_CHECK_ERROR not in (errors.EXIT_INPUT, errors.EXIT_ERROR, errors.EXIT_FAIL)
    assert len(set(errors.EXIT_CODES)) == len(errors.EXIT_CODES)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(["--no-such-option"], capsys)[0] == errors.EXIT_INPUT
    assert _exit(["grade", "--lang", "xx"], capsys)[0] == errors.EXIT_INPUT
    assert _exit(["no-such-command"], capsys)[0] == errors.EXIT_INPUT
    code, text = _exit(["validate", "/nonexistent/labctl-input.yml"], capsys)
    assert code in (errors.EXIT_INPUT, errors.EXIT_NOT_FOUND), text
    assert "Traceback" not in text


def test_a_generic_error_exits_11_not_1(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_: object) -> None:
        raise errors.LabctlError("something else went wrong")

    monkeypatch.setattr("labctl.cli._validate_one", boom)
    code, text = _exit(["validate", "x.yml"], capsys)
    assert code == errors.EXIT_ERROR == 11
    assert "something else went wrong" in text


def test_every_error_class_has_a_documented_code() -> None:
    for module in pkgutil.walk_packages(labctl.__path__, "labctl."):
        if module.name.endswith(("libvirt_oob", "__main__")):  # programs, not library modules
            continue
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional dependency (libvirt) absent here
            continue
    seen: list[type[errors.LabctlError]] = []
    todo: list[type[errors.LabctlError]] = [errors.LabctlError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    assert len(seen) > 8
    undocumented = {c.__qualname__: c.exit_code for c in seen if c.exit_code not in errors.EXIT_CODES}
    assert not undocumented
    assert all(c.exit_code not in (errors.EXIT_OK, errors.EXIT_FAIL, errors.EXIT_CHECK_ERROR) for c in seen), \
        [(c.__qualname__, c.exit_code) for c in seen]
