"""GradeReport: score and exit code; rendering as a jury table, JSON and JUnit XML."""

from __future__ import annotations

import dataclasses
import io
import json
import xml.etree.ElementTree as ET

import pytest

from labctl.grading.report import (
    colour_wanted,
    from_json,
    render_table,
    summary_lines,
    to_dict,
    to_json,
    to_junit,
)
from labctl.grading.results import CheckResult, GradeReport, Outcome, criterion_sort_key


def result(check_id: str, criterion: str, outcome: Outcome, weight: int = 1,
           evidence: str = "seen", node: str = "r1", attempts: int = 1) -> CheckResult:
    return CheckResult(check_id=check_id, criterion=criterion, node=node,
                       description_fr=f"Vérifie {check_id}", description_en=f"Checks {check_id}",
                       weight=weight, outcome=outcome, evidence=evidence, attempts=attempts,
                       duration_s=0.25, stage=None)


def sample() -> GradeReport:
    return GradeReport(
        lab="exam-42", scenario="multi-site-routing",
        started="2026-11-30T09:00:00.000Z", finished="2026-11-30T09:00:31.500Z",
        results=[
            result("route-lan2", "A2.3-c1", Outcome.FAIL, evidence="no route to 10.2.0.0/24",
                   attempts=60),
            result("ospf-r1-r2", "A1.3-c2", Outcome.PASS, weight=2,
                   evidence="neighbor 10.255.255.2 state Full/DR"),
            result("pc1-srv1", "A2.3-c1", Outcome.PASS, node="pc1"),
            result("sshd-config", "A3.2-c2", Outcome.ERROR, node="srv1",
                   evidence="cannot connect to srv1: No route to host"),
            result("forwarding", "A1.3-c2", Outcome.PASS, node="r2"),
        ])


def test_score_counts_and_exit_code() -> None:
    report = sample()
    assert (report.points_earned, report.points_total) == (4, 6)
    assert report.score == pytest.approx(4 / 6)
    assert report.counts == {Outcome.PASS: 3, Outcome.FAIL: 1, Outcome.ERROR: 1}
    assert report.exit_code == 10
    no_error = GradeReport("l", "s", "a", "b", [r for r in report.results
                                                if r.outcome is not Outcome.ERROR])
    assert no_error.exit_code == 1
    assert GradeReport("l", "s", "a", "b", [report.results[1]]).exit_code == 0
    assert GradeReport("l", "s", "a", "b", []).score == 0.0


def test_criteria_sort_by_number() -> None:
    ids = ["A1.10-c1", "A1.9-c2", "A1.9-c10", "A1.9-c1", "A2.1-c1"]
    assert sorted(ids, key=criterion_sort_key) == ["A1.9-c1", "A1.9-c2", "A1.9-c10", "A1.10-c1",
                                                   "A2.1-c1"]


def test_json_round_trip_and_documented_keys() -> None:
    report = sample()
    text = to_json(report)
    assert from_json(text) == report
    assert to_json(from_json(text)) == text
    data = json.loads(text)
    assert list(data) == ["format", "lab", "scenario", "started", "finished", "score", "points",
                          "counts", "exit_code", "tampering", "results"]
    assert data["format"] == "labctl.grade-report/1"
    assert (data["score"], data["points"], data["exit_code"]) == (0.6667, {"earned": 4, "total": 6}, 10)
    assert data["counts"] == {"PASS": 3, "FAIL": 1, "ERROR": 1}
    assert list(data["results"][0]) == ["id", "criterion", "node", "description", "weight",
                                        "outcome", "evidence", "attempts", "duration_s", "stage", "observed", "active"]
    assert data["results"][1]["description"] == {"fr": "Vérifie ospf-r1-r2",
                                                 "en": "Checks ospf-r1-r2"}
    assert "Vérifie" in text  # UTF-8, not \u escapes
    assert to_dict(report)["results"][0]["id"] == "route-lan2"  # spec order kept


def test_from_json_refuses_other_documents() -> None:
    with pytest.raises(ValueError, match=r"not a labctl\.grade-report/1"):
        from_json('{"format": "something-else"}')


def test_junit_is_valid_xml_with_one_suite_per_criterion() -> None:
    root = ET.fromstring(to_junit(sample()))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["A1.3-c2", "A2.3-c1", "A3.2-c2"]
    assert [c.get("name") for c in suites["A1.3-c2"].findall("testcase")] == ["ospf-r1-r2",
                                                                               "forwarding"]
    a23 = suites["A2.3-c1"]
    assert (a23.get("tests"), a23.get("failures"), a23.get("errors")) == ("2", "1", "0")
    failure = a23.find("testcase[@name='route-lan2']/failure")
    assert failure is not None and failure.get("message") == "no route to 10.2.0.0/24"
    error = suites["A3.2-c2"].find("testcase/error")
    assert error is not None and "No route to host" in (error.text or "")
    assert suites["A1.3-c2"].find("testcase/failure") is None
    prop = suites["A1.3-c2"].find("properties/property[@name='criterion']")
    assert prop is not None and (prop.get("value") or "").startswith("L'interconnexion")
    assert sum(len(s.findall("testcase")) for s in suites.values()) == 5


def test_table_groups_checks_by_criterion_with_evidence_for_non_pass() -> None:
    text = render_table(sample())
    lines = text.splitlines()
    heads = [line for line in lines if line[:1] == "A"]
    assert [h.split()[0] for h in heads] == ["A1.3-c2", "A2.3-c1", "A3.2-c2"]
    assert heads[0].startswith("A1.3-c2  L'interconnexion entre les différents matériels")
    assert heads[0].endswith("(3/3)") and heads[1].endswith("(1/2)")
    assert len(heads[0]) < 100 and "…" in heads[0]
    block = text.split("A2.3-c1")[1].split("A3.2-c2")[0]
    assert "  ÉCHEC/FAIL    r1    route-lan2   Vérifie route-lan2 / Checks route-lan2\n" in block
    assert "↳ no route to 10.2.0.0/24 [60 essais / 60 attempts]" in block
    assert "  RÉUSSI/PASS   pc1   pc1-srv1     Vérifie pc1-srv1" in block
    assert "state Full/DR" not in text  # no evidence under a PASS
    assert "\033[" not in text
    assert lines[-2].startswith("Note : 4/6 points (66,7 %) — 3 réussi(s), 1 échoué(s), 1 en erreur")
    assert lines[-1] == "Score: 4/6 points (66.7%) — 3 passed, 1 failed, 1 errors"


@pytest.mark.parametrize(("lang", "present", "absent"), [
    ("fr", "Vérifie ospf-r1-r2", "Checks ospf-r1-r2"),
    ("en", "Checks ospf-r1-r2", "Vérifie ospf-r1-r2"),
])
def test_table_language(lang: str, present: str, absent: str) -> None:
    text = render_table(sample(), lang=lang)  # type: ignore[arg-type]
    assert present in text and absent not in text


FRENCH_ONLY = ["L'interconnexion", "Note :", "réussi(s)", "RÉUSSI", "ÉCHEC", "ERREUR", "Vérifie", "essais",
               "Indice", "Observation :"]
ENGLISH_ONLY = ["Interconnection between", "Score:", "passed", "PASS", "FAIL", "ERROR", "Checks", "attempts",
                "Hint:", "Observed:"]


def _observed_sample() -> GradeReport:
    return dataclasses.replace(sample(), results=[dataclasses.replace(r, observed="outside")
                                                  for r in sample().results])


def test_no_french_survives_in_english_and_no_english_in_french() -> None:
    from labctl.grading.spec import Description

    hints = {"route-lan2": Description(fr="Regardez show ip route.", en="Look at show ip route.")}
    english = render_table(_observed_sample(), lang="en", hints=hints)
    french = render_table(_observed_sample(), lang="fr", hints=hints)
    assert [w for w in FRENCH_ONLY if w in english] == []
    assert [w for w in ENGLISH_ONLY if w in french] == []
    assert all(w in english for w in ENGLISH_ONLY) and all(w in french for w in FRENCH_ONLY)
    assert "A2.3-c1  Network links work as the given network diagram says" in english
    assert english.splitlines()[-1].startswith("Score: 4/6 points") and "Note" not in english


def test_both_shows_french_first_then_english() -> None:
    from labctl.grading.spec import Description

    hints = {"route-lan2": Description(fr="Regardez show ip route.", en="Look at show ip route.")}
    both = render_table(_observed_sample(), hints=hints)
    assert all(w in both for w in FRENCH_ONLY + ENGLISH_ONLY)
    head = both.split("A2.3-c1  ", 1)[1].splitlines()
    assert head[0].startswith("Les liens réseaux") and head[1].strip().startswith("Network links work")
    assert both.index("Note :") < both.index("Score:") and both.index("Indice :") < both.index("Hint:")


def test_colour_only_when_asked() -> None:
    coloured = render_table(sample(), colour=True)
    assert "\033[32mRÉUSSI/PASS " in coloured and "\033[31mÉCHEC/FAIL " in coloured
    assert "\033[33mERREUR/ERROR" in coloured


def test_colour_wanted_only_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert colour_wanted(io.StringIO()) is False

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_wanted(Terminal()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_wanted(Terminal()) is False


def test_summary_of_a_perfect_run() -> None:
    report = GradeReport("l", "s", "a", "b", [result("x", "A1.3-c2", Outcome.PASS)])
    assert summary_lines(report)[1] == "Score: 1/1 points (100.0%) — 1 passed, 0 failed, 0 errors"


def test_hints_show_under_checks_that_do_not_pass_only_when_asked() -> None:
    from labctl.grading.spec import Description

    hints = {"route-lan2": Description(fr="Regardez show ip route.", en="Look at show ip route."),
             "ospf-r1-r2": Description(fr="Jamais montré : PASS.", en="Never shown: PASS.")}
    assert "Indice" not in render_table(sample()) and "Hint" not in render_table(sample())
    text = render_table(sample(), hints=hints)
    block = text.split("A2.3-c1")[1].split("A3.2-c2")[0]
    assert "↳ no route to 10.2.0.0/24 [60 essais / 60 attempts]\n         ? Indice : Regardez show ip route.\n" \
           "         ? Hint: Look at show ip route.\n" in block
    assert "Jamais montré" not in text and "Never shown" not in text
    french = render_table(sample(), lang="fr", hints=hints)
    assert "Indice : Regardez" in french and "Hint:" not in french


def test_every_shipped_check_has_a_hint_in_both_languages() -> None:
    from pathlib import Path

    from labctl.sourcefile import read_yaml

    specs = sorted((Path(__file__).resolve().parents[2] / "grading").glob("*.yml"))
    assert len(specs) >= 4
    for path in specs:
        data, _, problems = read_yaml(path)
        assert not problems
        bare = [c["id"] for c in data["checks"] if not (c.get("hint", {}).get("fr") and c["hint"].get("en"))]
        assert bare == [], f"{path.name}: checks without a hint: {bare}"


def test_where_checks_were_observed_and_what_was_tampered_with_reach_every_format() -> None:
    base = sample()
    results = [dataclasses.replace(r, observed="inside" if r.check_id == "sshd-config" else "outside")
               for r in base.results]
    tampering = [{"node": "srv1", "complete": True, "note": "",
                  "changes": [{"path": "/usr/bin/vtysh", "kind": "replaced", "category": "executable"}]}]
    report = dataclasses.replace(base, results=results, tampering=tampering)
    assert from_json(to_json(report)) == report
    table = render_table(report)
    assert "srv1: /usr/bin/vtysh remplacé" in table and "srv1: /usr/bin/vtysh replaced" in table
    assert "Observed: 4 check(s) from outside the nodes, 1 inside them (sshd-config)" in table
    assert "observé dans le nœud, par ses propres programmes / observed inside the node" in table
    junit = to_junit(report)
    assert 'name="tampering.srv1" value="/usr/bin/vtysh replaced"' in junit
    assert "observed from outside the node" in junit
    # reports written before these keys existed still read back
    old = json.loads(to_json(base))
    del old["tampering"]
    for r in old["results"]:
        del r["observed"]
    assert from_json(json.dumps(old)) == base
