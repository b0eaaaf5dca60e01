"""Variants drawn from seeds, stages, templates and briefs (no lab needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.brief import diagram_dot, render_html, render_markdown
from labctl.errors import InvalidInputError, NotFoundError
from labctl.grading.spec import ManifestCheck
from labctl.grading.vault import attach_vault
from labctl.references import reference_problems
from labctl.scenario import MAIN_STAGE, load_scenario
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ROOT / "tests" / "data" / "scenarios" / "variants"


def test_without_a_seed_every_parameter_takes_its_default() -> None:
    values = load_scenario(str(VARIANTS)).values(None)
    assert values == {"manager": "alice", "teams": ["compta", "rh"], "octet": 42, "secret": "fixed-secret"}


def test_a_seed_always_draws_the_same_values_and_seeds_differ() -> None:
    scenario = load_scenario(str(VARIANTS))
    first, again = scenario.values("cand-001"), scenario.values("cand-001")
    assert first == again
    draws = [scenario.values(f"cand-{i:03}") for i in range(20)]
    assert len({(d["manager"], tuple(d["teams"]), d["octet"], d["secret"]) for d in draws}) == 20
    for draw in draws:
        assert draw["manager"] in {"alice", "bruno", "chloe", "driss", "emma"}
        assert len(set(draw["teams"])) == 2 and 10 <= draw["octet"] <= 250 and len(draw["secret"]) == 12


def test_grading_spec_is_filled_with_the_candidates_values() -> None:
    scenario = load_scenario(str(VARIANTS))
    values = scenario.values("cand-007")
    spec = labs.load_spec(scenario, load_topology(scenario.topology, values), values)
    marker = spec.checks[0]
    assert marker.path == f"/home/{values['manager']}/marker-{values['octet']}"  # type: ignore[attr-defined]
    assert values["manager"] in marker.description.fr


def test_a_template_naming_an_unknown_parameter_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios" / "variants"
    shutil.copytree(VARIANTS, folder)
    (folder / "grading.yml").write_text((folder / "grading.yml").read_text().replace("{{ octet }}", "{{ octt }}"))
    (folder / "scenario.yml").write_text((folder / "scenario.yml").read_text().replace(
        "../../labs/small.yml", str(ROOT / "tests" / "data" / "labs" / "small.yml")))
    scenario = load_scenario(str(folder))
    with pytest.raises(InvalidInputError) as error:
        labs.load_spec(scenario, None, scenario.values(None))
    assert "'octt' is undefined" in error.value.render()
    assert "the scenario's parameters are: manager, octet, secret, teams" in error.value.render()


def test_stages_and_faults() -> None:
    scenario = load_scenario(str(VARIANTS))
    assert [s.name for s in scenario.stages()] == ["build", "repair"]
    assert scenario.stage("repair").inject == ["wipe"]
    with pytest.raises(NotFoundError, match="no stage 'nope'"):
        scenario.stage("nope")
    with pytest.raises(NotFoundError) as error:
        scenario.fault("wip")
    assert error.value.hint == "did you mean 'wipe'?"
    assert [s.name for s in load_scenario("multi-site-routing").stages()] == [MAIN_STAGE]


def test_stage_checks_keep_the_stage_and_the_stageless() -> None:
    scenario = load_scenario(str(VARIANTS))
    spec = labs.load_spec(scenario)
    assert [c.id for c in labs.stage_checks(spec, "build").checks] == ["marker"]
    assert [c.id for c in labs.stage_checks(spec, "repair").checks] == ["marker", "restored"]
    assert reference_problems(scenario, spec) == []


def test_manifest_checks_get_the_vault_checksums(tmp_path: Path) -> None:
    spec = labs.load_spec(load_scenario(str(VARIANTS)))
    manifest = spec.checks[1]
    assert isinstance(manifest, ManifestCheck)
    attach_vault(spec, tmp_path)
    assert manifest.expected is None  # nothing recorded yet: the check will be ERROR
    (tmp_path / "originals.sha256").write_text(f"{'a' * 64}  /srv/data/one.txt\n{'b' * 64} */srv/data/two.txt\n")
    attach_vault(spec, tmp_path)
    assert manifest.expected == {"/srv/data/one.txt": "a" * 64, "/srv/data/two.txt": "b" * 64}


def test_brief_shows_the_candidates_values_and_the_diagram(tmp_path: Path) -> None:
    scenario = load_scenario(str(VARIANTS))
    values = scenario.values("cand-003")
    text = render_markdown(scenario, "fr", "cand-003", None)
    assert f"Responsable : {values['manager']}" in text and "## Schéma du réseau" in text
    assert '"r1" -- "h2"' in text  # the diagram is drawn from the topology
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed: the SVG diagram cannot be drawn")
    page = render_html(scenario, "en", "cand-003")
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page and "<svg" in page
    assert f"Manager: {values['manager']}" in page
    svg = tmp_path / "brief-topology.svg"
    render_markdown(scenario, "en", None, svg)
    assert svg.read_text().startswith("<svg")


def test_diagram_has_every_node_and_link() -> None:
    topology = load_topology(ROOT / "topologies" / "multi-site-routing.yml")
    dot = diagram_dot(topology)
    assert all(f'"{name}" [' in dot for name in topology.nodes)
    assert dot.count(" -- ") == len(topology.links)
