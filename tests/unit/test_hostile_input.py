"""Hostile files get exit 2 and a `file:line` message, fast, and create nothing (no root).

First each case the issue measured (alias bombs, nesting depth 1000, non-UTF-8 bytes, a
5000-digit integer, merge keys, `a{99999999999}`, `timeout: true`, `exit_code: 1e100`,
`range: [0, 1e30]`, rosters with an open quote or a NUL), then a property-based fuzz
(hypothesis) over topology, grading spec, scenario and roster files: no exit 70, no run over
5 s, nothing created. Bounded: ~40 s in all on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl import sourcelimits
from labctl.cli import main
from labctl.errors import EXIT_INPUT, EXIT_INTERNAL, InvalidInputError
from labctl.session.roster import load_roster, parse_roster

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = (ROOT / "tests/data/labs/small.yml").read_text()
GRADING = (ROOT / "tests/data/labs/small-grading.yml").read_text()
VARIANTS = ROOT / "tests/data/scenarios/variants"
ROSTER = "id,name,tiers_temps\nc01,Dupont Jean,non\nc02,Martin Lea,oui\n"
SLOW = 5.0  # seconds: the bar for any one file


class TooSlow(Exception):
    pass


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty LABCTL_HOME that must still be empty afterwards, and a guard on every run's time."""
    folder = tmp_path / "home"
    monkeypatch.setenv("LABCTL_HOME", str(folder))

    def expired(*_: Any) -> None:
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, expired)
    yield folder
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
    assert not folder.exists() or not any(folder.rglob("*")), "validating a file created state"


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    """`labctl validate PATH` in this process: exit code, messages, and CPU seconds (the bar is
    on the work done, which a loaded CI machine does not stretch); SIGALRM past 3 x SLOW of wall time."""
    started = time.process_time()
    signal.setitimer(signal.ITIMER_REAL, 3 * SLOW)
    try:
        with pytest.raises(SystemExit) as done:
            main(["validate", str(path)])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out + out.err, time.process_time() - started


def _grading_with(extra: str, check_type: str = "type: reach\n    target: 10.20.0.2") -> str:
    return GRADING.replace(check_type, extra, 1)


def _scenario(tmp: Path, scenario: str | None = None, grading: str | None = None) -> Path:
    folder = tmp / "scenarios" / "fz"
    shutil.copytree(VARIANTS, folder, dirs_exist_ok=True)
    text = (scenario or (VARIANTS / "scenario.yml").read_text()).replace(
        "../../labs/small.yml", str(ROOT / "tests/data/labs/small.yml"))
    (folder / "scenario.yml").write_text(text)
    if grading is not None:
        (folder / "grading.yml").write_text(grading)
    return folder


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
CASES: dict[str, tuple[bytes, str]] = {
    "alias bomb": (BOMB.encode(), "once aliases are expanded"),
    "too many aliases": (("a: &a x\nb: [" + ", ".join(["*a"] * 150) + "]\n").encode(), "aliases"),
    "nesting 1000": (("name: " + "[" * 1000 + "]" * 1000 + "\n").encode(), "nested"),
    "nesting in blocks": (("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n").encode(),
                          "nested"),
    "non-UTF-8": (b"name: small\nnodes:\n  r1: {kind: r\xffouter}\n", ":3: not UTF-8 text: byte 0xff at column 15"),
    "5000 digits": (("name: small\nx: " + "9" * 5000 + "\n").encode(), ":2: integer with more than"),
    "merge key": (b"name: small\nbase: &b {kind: router}\nnodes:\n  r1: {<<: *b}\n", ":4: merge keys (<<)"),
    "bad date": (b"name: small\nwhen: 2020-99-99\n", ":2: cannot read the value '2020-99-99'"),
    "too large": (b"name: small\n" + b"#" * (sourcelimits.MAX_FILE_BYTES + 1), "file too large"),
    "regex overflow": (_grading_with("type: command\n    command: 'true'\n    stdout_matches: 'a{99999999999}'")
                       .encode(), "invalid regular expression"),
    "timeout true": (GRADING.replace("    wait: 5\n", "    wait: 5\n    timeout: true\n", 1).encode(),
                     "not true/false"),
    "exit_code 1e100": (_grading_with("type: command\n    command: 'true'\n    exit_code: 1e100").encode(),
                        "exit_code"),
    "exit_code 256": (_grading_with("type: command\n    command: 'true'\n    exit_code: 256").encode(),
                      "less than or equal to 255"),
    "wait .inf": (GRADING.replace("    wait: 5\n", "    wait: .inf\n", 1).encode(), "wait"),
    "weight huge": (GRADING.replace("    wait: 5\n", "    weight: 99999999999999999999\n", 1).encode(), "weight"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_yaml_exits_2_with_its_line_fast(case: str, tmp_path: Path, home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data, expected = CASES[case]
    file = tmp_path / "hostile.yml"
    file.write_bytes(data)
    code, text, seconds = validate(file, capsys)
    assert code == EXIT_INPUT, text
    assert expected in text, text
    assert f"{file}:" in text and "Traceback" not in text
    assert seconds < SLOW, f"{case}: {seconds:.1f} s"


@pytest.mark.parametrize(("parameter", "expected"), [
    ("{range: [0, 1e30], default: 1}", "parameters.octet.range"),  # YAML 1.1: a string
    ("{range: [0, 1.0e+30], default: 1}", "parameters.octet.range.1"),
    ("{range: [true, 5], default: 1}", "not true/false"),
    ("{range: [9, 1], default: 1}", "the low end comes first"),
    ("{token: 99999999999, default: x}", "token"),
    ("{choices: [a, b], sample: 99999999999, default: a}", "sample"),
])
def test_scenario_parameters_are_bounded(parameter: str, expected: str, tmp_path: Path, home: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    text = (VARIANTS / "scenario.yml").read_text().replace("{range: [10, 250], default: 42}", parameter)
    code, out, seconds = validate(_scenario(tmp_path, text), capsys)
    assert code == EXIT_INPUT and expected in out, out
    assert seconds < SLOW


@pytest.mark.parametrize("template", [
    "{{ 'a' * 10**10 }}", "{{ manager * 999999999 }}", "{{ range(10**9) | list }}",
    "{{ manager.__class__.__mro__ }}", "{{ 10 ** 1000000 }}", "{% for i in range(99999) %}"
    "{% for j in range(99999) %}xx{% endfor %}{% endfor %}",
])
def test_templates_run_in_a_bounded_sandbox(template: str, tmp_path: Path, home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    grading = (VARIANTS / "grading.yml").read_text().replace("{{ manager }}'s file exists", template, 1)
    code, out, seconds = validate(_scenario(tmp_path, grading=grading), capsys)
    assert code == EXIT_INPUT, out
    assert "template error" in out
    assert seconds < SLOW


def test_the_shipped_files_still_validate(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = [*ROOT.glob("scenarios/*"), ROOT / "tests/data/labs/small.yml",
               ROOT / "tests/data/labs/small-grading.yml"]
    for file in shipped:
        code, out, _ = validate(file, capsys)
        assert code == 0, out


# ---- rosters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ('id,name\nc01,"Dupont\nc02,Martin\n', ":2: "),      # an open quote: never one candidate "Dupont\nc02,Martin"
    ('id,name\nc01,"Dupont"x\n', ":2: bad CSV"),
    ("id,name\nc01,Dup\x00ont\n", ":2: control character U+0000"),
    ("id,name\nc01,Dupont\x1b[31m\n", ":2: control character U+001B"),
    ("id,name\nc01,Dupont, Jean\n", ":2: 3 fields where the header has 2"),
])
def test_a_hostile_roster_is_refused_with_its_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_roster(text, "roster.csv")
    assert expected in refused.value.render()
    assert refused.value.exit_code == EXIT_INPUT


def test_a_roster_file_not_utf8_names_the_byte(tmp_path: Path) -> None:
    file = tmp_path / "r.csv"
    file.write_bytes(b"id,name\nc01,Dupont\nc02,Mart\xe9\n")
    with pytest.raises(InvalidInputError) as refused:
        load_roster(file)
    assert f"{file}:3: not UTF-8 text: byte 0xe9 at column 9" in refused.value.render()
    file.write_bytes("\ufeffid,name\nc01,Dupont\n".encode())  # a BOM, as spreadsheets write
    assert [c.id for c in load_roster(file).candidates] == ["c01"]


# ---- fuzz ------------------------------------------------------------------------------------
HOSTILE_VALUES = [
    "true", "false", "null", "~", "1e100", "-1e100", ".inf", "-.inf", ".nan", "-1", "0", "1e30",
    "99999999999999999999999999999999999", "9" * 4400, "0x" + "f" * 40, "0o777777777777777777777777777777777",
    "2020-99-99", "2020-01-01 25:61:61", "*nope", "&a x", "!!python/object:os.system x", "!!binary ===",
    "<<", "{<<: {a: 1}}", "'a{99999999999}'", "'(a+)+$'", "'['", "[" * 300 + "]" * 300,
    "{{ 'a' * 10**10 }}", "'{{ range(10**9) | list }}'", "'{{ x.__class__ }}'", "'{% for %}'",
    "'\x00'", "\"\\x00\"", "\"\\u0000\"", "'" + "x" * 5000 + "'", "[1, [2, [3, [4]]]]", "{a: {b: {c: {}}}}",
    "|\n  text", ">\n  folded", "!!str 1", "!!int x", "!!float x", "!!timestamp x", "? [a]\n: b",
]
HOSTILE_BYTES = [b"\xff", b"\xc3", b"\x00", b"\t", b"\r", b"\x1b", b"\xef\xbb\xbf", b"\n---\n", b"\n...\n",
                 b"%YAML 1.1\n", b" &a ", b" *a ", b": ", b"- ", b"\"", b"'", b"{", b"[", b"#"]


@st.composite
def mutated(draw: st.DrawFn, base: str) -> bytes:
    """`base` with a few edits: a value replaced by a hostile one, hostile bytes inserted,
    lines duplicated or dropped, or an alias bomb appended."""
    lines = base.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["value", "bytes", "line", "drop", "bomb", "text"]))
        line = lines[where]
        if action == "value" and ":" in line:
            lines[where] = line.split(":", 1)[0] + ": " + draw(st.sampled_from(HOSTILE_VALUES))
        elif action == "bytes":
            cut = draw(st.integers(0, len(line)))
            junk = draw(st.sampled_from(HOSTILE_BYTES)).decode("latin-1")
            lines[where] = line[:cut] + junk + line[cut:]
        elif action == "line":
            lines.insert(where, line * draw(st.integers(2, 50)))
        elif action == "drop" and len(lines) > 1:
            del lines[where]
        elif action == "bomb":
            levels, width = draw(st.integers(2, 10)), draw(st.integers(2, 12))
            bomb = ["z0: &z0 [" + ", ".join(["x"] * width) + "]"]
            bomb += [f"z{i}: &z{i} [" + ", ".join([f"*z{i - 1}"] * width) + "]" for i in range(1, levels)]
            lines[where:where] = bomb
        elif action == "text":
            lines.insert(where, draw(st.text(max_size=40)))
    return "\n".join(lines).encode("utf-8", "surrogatepass").replace(b"\xc3\xbf", b"\xff")


FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check(file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, seconds = validate(file, capsys)
    assert code != EXIT_INTERNAL, text
    assert code in (0, EXIT_INPUT), text
    assert "Traceback" not in text
    assert seconds < SLOW, f"{seconds:.1f} s for {file.read_bytes()[:200]!r}"


@settings(FUZZ, max_examples=160)
@given(data=st.sampled_from([TOPOLOGY, GRADING]).flatmap(mutated))
def test_fuzz_topology_and_grading_files(data: bytes, tmp_path: Path, home: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file.yml"
    file.write_bytes(data)
    _check(file, capsys)


@FUZZ
@given(scenario=mutated((VARIANTS / "scenario.yml").read_text()),
       grading=mutated((VARIANTS / "grading.yml").read_text()))
def test_fuzz_scenarios(scenario: bytes, grading: bytes, tmp_path: Path, home: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _scenario(tmp_path, grading="")
    (folder / "scenario.yml").write_bytes(scenario.replace(b"../../labs/small.yml",
                                                           str(ROOT / "tests/data/labs/small.yml").encode()))
    (folder / "grading.yml").write_bytes(grading)
    _check(folder, capsys)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated(ROSTER))
def test_fuzz_rosters(data: bytes, tmp_path: Path) -> None:
    file = tmp_path / "roster.csv"
    file.write_bytes(data)
    started = time.process_time()
    try:
        roster = load_roster(file)
    except InvalidInputError as refused:
        assert refused.exit_code == EXIT_INPUT
        assert all(p.file == str(file) and p.line >= 0 for p in refused.problems)
    else:
        lines = [line for line in data.split(b"\n")[1:] if line.strip()]
        assert len(roster.candidates) <= len(lines)  # never more candidates than lines
        for candidate in roster.candidates:
            assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in candidate.name + candidate.id), candidate
    assert time.process_time() - started < SLOW
    assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["roster.csv"]


def test_a_brief_not_utf8_or_hostile_exits_2(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _scenario(tmp_path)
    (folder / "brief.fr.md").write_bytes(b"# Brief\n\nLe poste de {{ manager }} \xe9tait\n")
    with pytest.raises(SystemExit) as done:
        main(["brief", str(folder)])
    out = capsys.readouterr().err
    assert done.value.code == EXIT_INPUT and f"{folder / 'brief.fr.md'}:3: not UTF-8 text" in out, out
    (folder / "brief.fr.md").write_text("# Brief\n{{ manager * 10**9 }}\n")
    with pytest.raises(SystemExit) as done:
        main(["brief", str(folder)])
    assert done.value.code == EXIT_INPUT and "template error" in capsys.readouterr().err
