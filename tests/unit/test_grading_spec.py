"""Grading spec files: the valid example loads; every kind of mistake is reported, all at
once, as file:line with a hint (golden files in tests/golden/grading/<case>.yml + .err).

Set UPDATE_GOLDEN=1 to rewrite the .err files after a deliberate change of wording.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labctl.errors import InvalidInputError, NotFoundError
from labctl.grading.criteria import all_criteria, criterion
from labctl.grading.debversion import compare_versions, split_version
from labctl.grading.loader import load_grading_spec
from labctl.grading.spec import CHECK_MODELS, GradingSpec, OspfNeighborCheck, grading_json_schema
from labctl.topology.model import Topology

GOLDEN = Path(__file__).parents[1] / "golden" / "grading"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yml") if p.stem not in ("topology", "valid"))


def topology() -> Topology:
    """The topology the golden specs refer to."""
    return Topology.model_validate(yaml.safe_load((GOLDEN / "topology.yml").read_text()))


def rendered(case: str, topo: Topology | None) -> str:
    """The error a user reads for a golden case, with the directory left out."""
    path = GOLDEN / f"{case}.yml"
    with pytest.raises(InvalidInputError) as caught:
        load_grading_spec(path, topo)
    assert caught.value.exit_code == 2
    return caught.value.render().replace(str(path), path.name) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_golden_error_messages(case: str) -> None:
    expected_file = GOLDEN / f"{case}.err"
    text = rendered(case, topology())
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(text, encoding="utf-8")
    assert text == expected_file.read_text(encoding="utf-8")


def test_golden_cases_cover_every_problem_kind() -> None:
    everything = "".join((GOLDEN / f"{case}.err").read_text() for case in CASES)
    for words in ("did you mean", "unknown criterion", "closest ids", "unknown node",
                  "duplicate check id", "invalid regular expression", "unknown check type",
                  "types are:", "missing required key", "is a switch", "run on routers",
                  "not valid YAML", "duplicate key", "is a key of reach checks",
                  "the probe point's switch"):
        assert words in everything, words


def test_several_errors_are_reported_in_one_run() -> None:
    text = rendered("several-errors", topology())
    assert text.count("several-errors.yml:") == 10
    assert text.endswith("10 problems found; nothing was created.\n")


def test_valid_spec_loads_with_every_type() -> None:
    spec = load_grading_spec(GOLDEN / "valid.yml", topology())
    assert isinstance(spec, GradingSpec) and spec.scenario == "multi-site-routing"
    assert {c.type for c in spec.checks} == set(CHECK_MODELS)  # type: ignore[attr-defined]
    ospf = spec.checks[0]
    assert isinstance(ospf, OspfNeighborCheck)
    assert (ospf.weight, ospf.wait, ospf.state, ospf.stage) == (2, 30, "Full", None)
    assert spec.checks[-1].stage == "after-fix" and spec.checks[1].weight == 1
    assert spec.nodes() == ["r1", "pc1", "srv1", "r2"]


def test_without_topology_nodes_are_not_checked() -> None:
    spec = load_grading_spec(str(GOLDEN / "unknown-node.yml"))
    assert spec.checks[0].node == "rr1"


def test_missing_file_is_a_problem() -> None:
    with pytest.raises(InvalidInputError, match="1 problem"):
        load_grading_spec(GOLDEN / "no-such-spec.yml")


def test_json_schema_has_every_type() -> None:
    schema = grading_json_schema()
    assert schema["title"] == "GradingSpec"
    assert set(schema["properties"]) == {"scenario", "checks"}
    titles = {definition["title"] for definition in schema["$defs"].values()}
    assert {m.__name__ for m in CHECK_MODELS.values()} <= titles


def test_criteria_come_from_the_referentiel() -> None:
    found = criterion("A1.3-c2")
    assert (found.activity, found.block, found.lab) == ("A1.3", "B1", "live")
    assert found.text.startswith("L'interconnexion entre les différents matériels")
    assert len(all_criteria()) > 40 and all_criteria() is all_criteria()


def test_unknown_criterion_names_the_closest() -> None:
    with pytest.raises(NotFoundError) as caught:
        criterion("A2.3-c9")
    assert caught.value.hint is not None and "A2.3-c1" in caught.value.hint


VERSION_ORDER = [  # (a, b, order of a against b), as `dpkg --compare-versions` says
    ("1.0", "1.0-1", -1), ("1.0~rc1", "1.0", -1), ("1:0.9", "2.0", 1), ("5.2.15-2+b2", "5.2.15-2", 1),
    ("2.30-1", "2.3-1", 1), ("1.0a", "1.0+", -1), ("1.0", "1.0.0", -1), ("1.2~~", "1.2~", -1),
    ("9.2p1-2+deb12u3", "9.2p1-2+deb12u2", 1), ("1.0-1", "1.0-1~bpo1", 1), ("0:1.0", "1.0", 0),
    ("1.0.a", "1.0a", 1), ("10", "9", 1), ("1.01", "1.1", 0), ("8.4.4-1.1~deb12u2", "8.4.4-1.1", -1),
]


@pytest.mark.parametrize(("a", "b", "order"), VERSION_ORDER)
def test_debian_version_order(a: str, b: str, order: int) -> None:
    assert (compare_versions(a, b), compare_versions(b, a)) == (order, -order)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg")
@pytest.mark.parametrize(("a", "b", "order"), VERSION_ORDER)
def test_debian_version_order_agrees_with_dpkg(a: str, b: str, order: int) -> None:
    relation = {-1: "lt", 0: "eq", 1: "gt"}[order]
    assert subprocess.run(["dpkg", "--compare-versions", a, relation, b], check=False).returncode == 0


def test_debian_version_parts() -> None:
    assert split_version("1:9.2p1-2+deb12u3") == (1, "9.2p1", "2+deb12u3")
    assert split_version("1.2-3-4") == (0, "1.2-3", "4")
    with pytest.raises(ValueError):
        split_version("version one")
