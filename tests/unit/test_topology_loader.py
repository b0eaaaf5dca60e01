"""load_topology: every problem reported at once, at file:line, with hints (golden files).

tests/golden/topology/<case>.yml is a topology file. A bad case's expected output is
<case>.err (InvalidInputError.render(), paths relative to that directory); a good case
(`good_*.yml`) has <case>.out, the resolved addressing. UPDATE_GOLDEN=1 rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labctl.errors import InvalidInputError
from labctl.topology import loader
from labctl.topology.addressing import segments
from labctl.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "topology"
BAD = sorted(p for p in GOLDEN.glob("*.yml") if not p.name.startswith("good_"))
GOOD = sorted(GOLDEN.glob("good_*.yml"))
SHIPPED = sorted((ROOT / "topologies").glob("*.yml"))


def check_golden(expected_file: Path, actual: str) -> None:
    """Compare `actual` with the golden file, or rewrite it when UPDATE_GOLDEN=1."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_text(actual + "\n", encoding="utf-8")
        return
    assert expected_file.exists(), f"{expected_file.name} missing: run with UPDATE_GOLDEN=1"
    assert actual + "\n" == expected_file.read_text(encoding="utf-8")


def load_error(case: Path, monkeypatch: pytest.MonkeyPatch) -> InvalidInputError:
    """The InvalidInputError of loading `case` from its own directory (relative paths)."""
    monkeypatch.chdir(case.parent)
    with pytest.raises(InvalidInputError) as caught:
        loader.load_topology(case.name)
    return caught.value


def addressing_summary(topology: Topology) -> str:
    """The resolved segments, subnets and addresses, one line each."""
    lines = []
    for segment in segments(topology):
        kind = f"switch {segment.switch}" if segment.switch else "point-to-point"
        v6 = f" {segment.subnet6}" if segment.subnet6 else ""
        lines.append(f"{segment.name}: {segment.subnet}{v6} ({kind}, links {list(segment.links)})")
        lines.extend(f"  {e.label} {' '.join(e.shown_addresses())}" for e in segment.endpoints)
    lines += [f"{name}: loopback {' '.join(str(a) for a in (node.loopback, node.loopback6) if a)}"
              for name, node in topology.lab_nodes().items() if node.loopback or node.loopback6]
    lines += [f"link {i + 1}: mtu {link.mtu}" for i, link in enumerate(topology.links) if link.mtu]
    for name, node in topology.lab_nodes().items():
        for sub in node.subinterfaces:
            shown = ["dhcp"] if sub.dhcp else [str(sub.address)] if sub.address else []
            lines.append(" ".join([f"{name}: {sub.interface}", *shown, *([str(sub.address6)] if sub.address6 else [])]))
    lines += [f"link {i + 1}: vlan {link.vlan}" if link.vlan else f"link {i + 1}: trunk {link.trunk}"
              for i, link in enumerate(topology.links) if link.vlan or link.trunk]
    return "\n".join(lines)


def test_there_are_enough_golden_cases() -> None:
    assert len(BAD) >= 10 and len(GOOD) >= 2


@pytest.mark.parametrize("case", BAD, ids=lambda p: p.stem)
def test_bad_topology_reports(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = load_error(case, monkeypatch)
    assert error.exit_code == 2
    assert error.problems, "an InvalidInputError always lists its problems"
    check_golden(case.with_suffix(".err"), error.render())


@pytest.mark.parametrize("case", GOOD, ids=lambda p: p.stem)
def test_good_topology_resolves(case: Path) -> None:
    check_golden(case.with_suffix(".out"), addressing_summary(loader.load_topology(case)))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_topology_loads(path: Path) -> None:
    # A scenario's topology may be a template: load it with the scenario's default values.
    from labctl.scenario import load_scenario, scenario_names

    users = [s for s in map(load_scenario, scenario_names()) if s.topology == path.resolve()]
    topology = loader.load_topology(path, users[0].values(None) if users else None)
    # every interface is addressed: an address, or DHCP when the topology says so (agence's ws1)
    assert all(e.address or e.dhcp for node in topology.lab_nodes() for e in topology.interfaces(node))


def test_several_errors_are_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    error = load_error(GOLDEN / "several_errors.yml", monkeypatch)
    messages = "\n".join(p.message for p in error.problems)
    for expected in ("duplicate key 'r1'", "unknown key 'adress'", "is not a valid IPv4",
                     "node name 'Gw'", "already used by link 1", "joins two switches",
                     "too long", "reserved", "to itself", "not defined under `nodes`",
                     "share one subnet", "management network", "network address",
                     "takes no interface", "needs an interface"):
        assert expected in messages
    assert len(error.problems) >= 15
    assert all(p.file == "several_errors.yml" and p.line > 1 for p in error.problems)


def test_problems_point_at_the_offending_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = load_error(GOLDEN / "interface_reused.yml", monkeypatch)
    assert [(p.line, p.message) for p in error.problems] == [
        (14, "r1:eth1 is already used by link 1 (line 8)"),
        (14, "r2:eth2 is already used by link 3 (line 11)"),
    ]


def test_unknown_node_hint_suggests_the_closest_name(monkeypatch: pytest.MonkeyPatch) -> None:
    error = load_error(GOLDEN / "unknown_node.yml", monkeypatch)
    hints = [p.hint for p in error.problems]
    assert hints == ["did you mean 'router1'?", "nodes are: lan, pc1, router1"]


def test_allocation_checks_wait_for_a_complete_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A salvaged file lacks parts that change allocation: no route or pool problems."""
    error = load_error(GOLDEN / "model_errors.yml", monkeypatch)
    assert not any("gateway" in p.message or "no free" in p.message for p in error.problems)
    assert any("needs an interface" in p.message for p in error.problems)


def test_accepts_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("name: t\nnodes: {a: {kind: host}, b: {kind: host}}\n"
                    "links: [{endpoints: [a:eth1, b:eth1]}]\n", encoding="utf-8")
    assert loader.load_topology(str(path)) == loader.load_topology(path)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("- just\n- a list\n", "Input should be a valid dictionary"),
])
def test_unusable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        loader.load_topology(path)
    assert message in caught.value.render()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="1 problem found") as caught:
        loader.load_topology(tmp_path / "nope.yml")
    assert caught.value.problems[0].message == "file not found"


def test_the_package_exports_load_topology(tmp_path: Path) -> None:
    from labctl import topology

    path = tmp_path / "t.yml"
    path.write_text("name: t\nnodes: {a: {kind: host}}\n", encoding="utf-8")
    assert topology.load_topology(path).name == "t"


def test_links_to_a_node_of_unknown_kind_are_not_guessed(tmp_path: Path) -> None:
    """`kind: swtich` drops the node and its links: they are not taken for p2p links."""
    path = tmp_path / "t.yml"
    path.write_text("name: t\nnodes:\n  r1: {kind: router}\n  pc1: {kind: host}\n"
                    "  lan: {kind: swtich}\nlinks:\n"
                    "  - endpoints: [r1:eth1@10.1.0.1/24, lan]\n"
                    "  - endpoints: [pc1:eth1@10.1.0.2/24, lan]\n", encoding="utf-8")
    with pytest.raises(InvalidInputError) as caught:
        loader.load_topology(path)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (5, "nodes.lan.kind: Input should be 'host', 'router' or 'switch'"),
    ]


def test_libyaml_and_pure_python_read_every_shipped_file_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """labctl reads with libyaml when PyYAML has it (a room's grading reads specs 30 times):
    same data, same lines as PyYAML's own parser."""
    import yaml

    from labctl import sourcefile

    files = sorted(p for folder in ("topologies", "grading", "scenarios") for p in (ROOT / folder).rglob("*.yml"))
    assert len(files) >= 10
    fast = {path: sourcefile.read_yaml(path) for path in files}
    monkeypatch.setattr(sourcefile, "LOADER", yaml.SafeLoader)
    for path in files:
        data, lines, problems = sourcefile.read_yaml(path)
        assert (data, lines._lines, problems) == (fast[path][0], fast[path][1]._lines, fast[path][2]), path
