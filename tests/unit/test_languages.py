"""--lang fr|en|both beyond grade: brief, status words, scenario verify's summary (no root)."""

from __future__ import annotations

from pathlib import Path

from labctl.brief import render_html, render_markdown
from labctl.cli import _in_french
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.lang import say
from labctl.scenario import load_scenario
from labctl.verify import VerifyOutcome

ROOT = Path(__file__).resolve().parents[2]


def test_say_keeps_french_first() -> None:
    assert (say("a", "b", "fr"), say("a", "b", "en"), say("a", "b", "both")) == ("a", "b", "a / b")


def test_brief_in_both_languages_french_first() -> None:
    scenario = load_scenario(str(ROOT / "tests" / "data" / "scenarios" / "variants"))
    both = render_markdown(scenario, "both", None, None)
    assert both.index("Responsable") < both.index("---") < both.index("## Schéma du réseau / Network diagram")
    english = render_markdown(scenario, "en", None, None)
    assert "Responsable" not in english and "Schéma" not in english
    page = render_html(scenario, "both", None)
    assert '<section lang="fr">' in page and '<section lang="en">' in page and "<title>Variantes / Variants" in page


def test_status_words_in_french() -> None:
    assert _in_french("running") == "en marche" and _in_french("router") == "routeur"
    assert _in_french("degraded (2 of 3 nodes running)") == "dégradé (2 nœuds sur 3 en marche)"
    assert _in_french("broken (interrupted while resetting; remove it: labctl down --lab x)") == \
        "interrompu (coupé en réinitialisation ; supprimez-le : labctl down --lab x)"
    assert _in_french("running (grade in progress)") == "en marche (grade en cours)"


def test_verify_summary_in_each_language() -> None:
    result = CheckResult(check_id="a", criterion="A2.3-c1", node="h1", description_fr="x", description_en="x",
                         weight=1, outcome=Outcome.FAIL, evidence="seen")
    outcome = VerifyOutcome("s", reports={"stage main, start": GradeReport("l", "s", "t0", "t1", [result]),
                                          "partial solution": GradeReport("l", "s", "t0", "t1", [result])})
    assert outcome.summary("fr") == "scénario s vérifié (étape main, départ: 1 FAIL/1, solution partielle: 1 FAIL/1)"
    assert outcome.summary("en") == "scenario s verified (stage main, start: 1 FAIL/1, partial solution: 1 FAIL/1)"
    assert outcome.summary("both") == outcome.summary("fr") + "\n" + outcome.summary("en")
    outcome.problems.append("stage main, start: a should FAIL but is PASS: seen")
    assert outcome.summary("fr").startswith("le scénario s ne se vérifie PAS (") and "does NOT" not in \
        outcome.summary("fr")
