"""Référentiel coverage: which checks evidence which criterion, and the README's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.coverage import coverage, readme_section, render_markdown, render_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(str(p.parent) for p in (ROOT / "scenarios").glob("*/scenario.yml"))


@pytest.fixture(scope="module")
def shipped():  # type: ignore[no-untyped-def]
    return coverage(SHIPPED)


def test_readme_table_is_the_generated_one(shipped) -> None:  # type: ignore[no-untyped-def]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = readme_section(readme)
    assert found is not None, "README.md lost its coverage markers"
    assert found == render_markdown(shipped), (
        "README's coverage table is stale: regenerate it with `labctl criteria --coverage --markdown`")


def test_a_check_evidences_its_criterion_and_gaps_are_named(shipped) -> None:  # type: ignore[no-untyped-def]
    by_id = {entry.criterion.id: entry for entry in shipped.criteria}
    assert "r1-ospf-r2-full" in by_id["A1.3-c2"].checks["multi-site-routing"]
    assert "script-reuse" in by_id["A2.2-c2"].checks["annuaire"]
    assert not by_id["A3.3-c3"].covered  # group policy: no scenario shows it (see annuaire's notes)
    assert all(entry.criterion.lab in ("live", "partial") for entry in shipped.criteria)
    text = render_text(shipped)
    assert "A3.3-c3" in text.split("not evidenced")[1]
    covered, total = shipped.counts()
    assert f"evidence {covered} of the {total}" in text
    assert total == sum(1 for e in shipped.criteria)


def test_a_criterion_listed_without_any_check_is_not_counted(tmp_path: Path) -> None:
    # A copy of a scenario that claims one more criterion in scenario.yml but has no check for it.
    import shutil

    root = tmp_path / "repo"
    for part in ("scenarios/backup-restore", "topologies", "grading", "playbooks/backup-restore"):
        shutil.copytree(ROOT / part, root / part)
    claimed = root / "scenarios/backup-restore/scenario.yml"
    text = claimed.read_text(encoding="utf-8")
    claimed.write_text(text.replace("criteria: [", "criteria: [A3.3-c1, ", 1), encoding="utf-8")
    assert "A3.3-c1" in claimed.read_text(encoding="utf-8")
    found = {e.criterion.id: e for e in coverage([str(claimed.parent)]).criteria}
    assert not found["A3.3-c1"].covered
    assert found["A3.3-c1"].listed_only == ["backup-restore"]
    assert found["A2.2-c4"].covered


def test_cli_json_and_usage() -> None:
    runner = CliRunner()
    chosen = [arg for s in SHIPPED for arg in ("--scenario", s)]
    result = runner.invoke(cli, ["criteria", "--coverage", "--json", *chosen])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "A3.3-c3" in data["uncovered"]
    assert data["covered"] == len([c for c in data["criteria"] if c["covered"]])
    assert runner.invoke(cli, ["criteria", "--markdown"]).exit_code == 2
    plain = runner.invoke(cli, ["criteria"])
    assert plain.exit_code == 0 and "A5.4-c1" in plain.output
