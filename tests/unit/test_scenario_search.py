"""Where scenarios are found by name: --scenarios DIR, LABCTL_SCENARIOS, ./scenarios, then the
scenarios installed with labctl; a name found twice is refused, naming both (no root, no lab)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "tests" / "data" / "scenarios" / "variants"
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"


def _own_scenario(repo: Path, name: str, title: str) -> Path:
    """A trainer's repository holding one scenario called `name` (a copy of `variants`)."""
    folder = repo / "scenarios" / name
    shutil.copytree(VARIANTS, folder)
    text = (folder / "scenario.yml").read_text().replace("../../labs/small.yml", str(SMALL))
    (folder / "scenario.yml").write_text(text.replace("name: variants", f"name: {name}")
                                         .replace('fr: "Variantes"', f'fr: "{title}"'))
    return folder


def labctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "LABCTL_SCENARIOS"}
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True, cwd=cwd,
                          env=clean | {"PYTHONPATH": str(ROOT)} | (env or {}))


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with no scenarios folder."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def test_a_scenario_outside_the_repository_is_found_by_option_or_environment(tmp_path: Path, elsewhere: Path) -> None:
    _own_scenario(tmp_path / "trainer-repo", "agence-test", "Mon agence")
    assert labctl("validate", "agence-test", cwd=elsewhere).returncode == 2  # not on the search path: a file name
    missing = labctl("brief", "agence-test", cwd=elsewhere)
    assert missing.returncode == 3 and "searched:" in missing.stderr and "LABCTL_SCENARIOS" in missing.stderr
    by_option = labctl("--scenarios", str(tmp_path / "trainer-repo" / "scenarios"), "brief", "agence-test",
                       cwd=elsewhere)
    assert by_option.returncode == 0, by_option.stderr
    by_env = labctl("brief", "agence-test", cwd=elsewhere,
                    env={"LABCTL_SCENARIOS": f"/nonexistent:{tmp_path / 'trainer-repo' / 'scenarios'}"})
    assert by_env.returncode == 0, by_env.stderr and by_env.stdout == by_option.stdout
    listed = labctl("scenario", "list", cwd=elsewhere, env={"LABCTL_SCENARIOS": str(tmp_path / "trainer-repo"
                                                                                    / "scenarios")})
    assert "agence-test" in listed.stdout and "multi-site-routing" in listed.stdout  # the installed ones too
    assert "(LABCTL_SCENARIOS)" in listed.stdout and "(installed with labctl)" in listed.stdout


def test_an_unknown_option_folder_is_bad_input(elsewhere: Path) -> None:
    result = labctl("--scenarios", str(elsewhere / "nope"), "scenario", "list", cwd=elsewhere)
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_a_name_found_twice_is_refused_naming_both(tmp_path: Path, elsewhere: Path) -> None:
    first = _own_scenario(tmp_path / "one", "agence-test", "Un")
    second = _own_scenario(tmp_path / "two", "agence-test", "Deux")
    result = labctl("--scenarios", str(tmp_path / "one" / "scenarios"), "brief", "agence-test", cwd=elsewhere,
                    env={"LABCTL_SCENARIOS": str(tmp_path / "two" / "scenarios")})
    assert result.returncode == 2
    assert f"{first / 'scenario.yml'}:1: scenario name 'agence-test' is found 2 times" in result.stderr
    assert str(second / "scenario.yml") in result.stderr and "name it by its folder" in result.stderr
    listed = labctl("--scenarios", str(tmp_path / "one" / "scenarios"), "scenario", "list", cwd=elsewhere,
                    env={"LABCTL_SCENARIOS": str(tmp_path / "two" / "scenarios")})
    assert listed.stdout.count("[found 2 times: name it by its folder]") == 2
    by_folder = labctl("brief", str(second), cwd=elsewhere)  # a folder is never ambiguous
    assert by_folder.returncode == 0, by_folder.stderr


def test_the_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl import scenario

    for name in ("opt", "env", "cwd"):
        (tmp_path / name / "scenarios").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("LABCTL_SCENARIOS", f"{tmp_path / 'env' / 'scenarios'}::{tmp_path / 'opt' / 'scenarios'}")
    scenario.set_option_roots([tmp_path / "opt" / "scenarios"])
    try:
        assert [(str(root), origin) for root, origin in scenario.search_path()] == [
            (str(tmp_path / "opt" / "scenarios"), "--scenarios"),
            (str(tmp_path / "env" / "scenarios"), "LABCTL_SCENARIOS"),  # the repeated folder counts once
            (str(tmp_path / "cwd" / "scenarios"), "current directory"),
            (str(ROOT / "scenarios"), "installed with labctl")]
    finally:
        scenario.set_option_roots([])
