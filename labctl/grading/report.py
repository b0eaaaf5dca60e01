"""Rendering a GradeReport: a terminal table for the jury, JSON, and JUnit XML.

JSON (`to_json`, read back by `from_json`) has these keys, in this order:
  format      "labctl.grade-report/1"
  lab, scenario, started, finished (UTC ISO 8601)
  score       points earned / points total, 0..1 (rounded to 4 places)
  points      {"earned": int, "total": int}
  counts      {"PASS": int, "FAIL": int, "ERROR": int}
  exit_code   0 all PASS, 1 some FAIL, 10 some ERROR
  tampering   list, per node whose system files the candidate changed, of {"node",
              "complete", "note", "changes": [{"path", "kind", "category"}]}
  results     list, in spec order, of {"id", "criterion", "node",
              "description": {"fr", "en"}, "weight", "outcome", "evidence",
              "attempts", "duration_s", "stage", "observed", "active"}; `active` is true for a
              check that acted on the node before observing (and undid it); `observed` says where the
              check's evidence came from: "outside" (the controller's own view of the node:
              kernel, files, processes), "inside" (programs run in the node), "" unknown
JUnit XML (`to_junit`) has one testsuite per criterion and one testcase per check, with a
<failure> for FAIL and an <error> for ERROR.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, TextIO

from labctl.grading.checks.base import evidence_in
from labctl.grading.criteria import all_criteria
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.grading.spec import Description
from labctl.grading.tamper import KIND_FR
from labctl.lang import Lang, languages, say
from labctl.lang import lines as in_lang

FORMAT = "labctl.grade-report/1"
# An outcome as the table prints it, French then English (JSON and JUnit keep PASS/FAIL/ERROR)
OUTCOME_WORDS = {Outcome.PASS: ("RÉUSSI", "PASS"), Outcome.FAIL: ("ÉCHEC", "FAIL"), Outcome.ERROR: ("ERREUR", "ERROR")}
COLOURS = {Outcome.PASS: "\033[32m", Outcome.FAIL: "\033[31m", Outcome.ERROR: "\033[33m"}
BOLD, RESET = "\033[1m", "\033[0m"


def colour_wanted(stream: TextIO) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def criterion_text(criterion_id: str, limit: int | None = 80, lang: str = "fr") -> str:
    """The criterion's text in `lang` (fr: the official wording; en: our translation; both: the
    two, French first), each cut to `limit` characters ('' for an unknown id)."""
    found = all_criteria().get(criterion_id)

    def cut(text: str) -> str:
        return text if limit is None or len(text) <= limit else text[: limit - 1].rstrip() + "…"

    if found is None:
        return ""
    return say(cut(found.text), cut(found.text_en or found.text), lang)


def outcome_text(outcome: Outcome, lang: str = "both") -> str:
    """PASS/FAIL/ERROR in words of `lang` (both: ÉCHEC/FAIL)."""
    french, english = OUTCOME_WORDS[outcome]
    return say(french, english, lang, "/")


def _description(result: CheckResult, lang: Lang) -> str:
    """The check's description in the chosen language, or French / English."""
    return say(result.description_fr, result.description_en, lang)


def _paint(text: str, code: str, colour: bool) -> str:
    return f"{code}{text}{RESET}" if colour else text


def render_table(report: GradeReport, *, lang: Lang = "both", colour: bool = False,
                 hints: Mapping[str, Description] | None = None) -> str:
    """The jury's view: checks grouped by criterion, evidence under each non-PASS check; with
    `hints` (check id -> hint: a candidate practising), the hint under it too."""
    node_width = max((len(r.node) for r in report.results), default=4)
    id_width = max((len(r.check_id) for r in report.results), default=2)
    outcome_width = max(len(outcome_text(o, lang)) for o in Outcome)
    lines = [f"Lab {report.lab} — {report.scenario} — {report.started} → {report.finished}", ""]
    for criterion_id, results in report.by_criterion().items():
        earned = sum(r.weight for r in results if r.outcome is Outcome.PASS)
        total = sum(r.weight for r in results)
        first, *others = languages(lang)
        head = f"{criterion_id}  {criterion_text(criterion_id, lang=first)}  ({earned}/{total})"
        lines.append(_paint(head, BOLD, colour))
        lines += [f"{'':<{len(criterion_id)}}  {criterion_text(criterion_id, lang=other)}" for other in others]
        for r in results:
            outcome = _paint(f"{outcome_text(r.outcome, lang):<{outcome_width}}", COLOURS[r.outcome], colour)
            lines.append(f"  {outcome}  {r.node:<{node_width}}  {r.check_id:<{id_width}}  "
                         f"{_description(r, lang)}" + (f" [{active_text(lang)}]" if r.active else ""))
            if r.outcome is not Outcome.PASS:
                tries = f" [{say(f'{r.attempts} essais', f'{r.attempts} attempts', lang)}]" if r.attempts > 1 else ""
                lines.append(f"         ↳ {evidence_in(r.evidence, lang)}{tries}")
                if r.observed:
                    lines.append(f"           ({observed_text(r.observed, lang)})")
                hint = (hints or {}).get(r.check_id)
                if hint is not None:
                    lines += [f"         ? {text}" for text in _hint_lines(hint, lang)]
        lines.append("")
    lines += tampering_lines(report, lang) + observed_lines(report, lang) + summary_lines(report, lang)
    return "\n".join(lines) + "\n"


OBSERVED = {
    "outside": ("observé depuis l'extérieur du nœud", "observed from outside the node"),
    "inside": ("observé dans le nœud, par ses propres programmes", "observed inside the node, by its own programs"),
}


def tampering_lines(report: GradeReport, lang: Lang = "both") -> list[str]:
    """The system files the candidate changed, per node (fr / en), then a blank line."""
    if not report.tampering:
        return []
    lines = {"fr": ["Fichiers système modifiés par le candidat :"],
             "en": ["System files the candidate changed:"]}
    for node in report.tampering:
        changes = node.get("changes") or []
        more = ", …" if len(changes) > 12 else ""
        for key in lines:
            shown = ", ".join(f"{c['path']} {KIND_FR.get(c['kind'], c['kind']) if key == 'fr' else c['kind']}"
                              for c in changes[:12]) + more
            note = f" ({node['note']})" if node.get("note") else ""
            lines[key].append(f"  {node['node']}: {shown or '-'}{note}")
    chosen = in_lang(lines["fr"], lines["en"], lang)
    return [*chosen, ""]


def active_text(lang: Lang = "both") -> str:
    """The mark of a check that acted on the node (fr / en)."""
    return say("actif : a agi sur le nœud, puis l'a défait", "active: acted on the node, then undid it", lang)


def observed_text(observed: str, lang: Lang = "both") -> str:
    """Where a check's evidence was observed, in words (fr / en)."""
    french, english = OBSERVED.get(observed, (observed, observed))
    return say(french, english, lang)


def observed_lines(report: GradeReport, lang: Lang = "both") -> list[str]:
    """How many checks were observed from outside the nodes, and which ran inside them."""
    outside = [r for r in report.results if r.observed == "outside"]
    inside = [r.check_id for r in report.results if r.observed == "inside"]
    if not outside and not inside:
        return []
    listed = f" ({', '.join(inside)})" if inside else ""
    fr = f"Observation : {len(outside)} contrôle(s) depuis l'extérieur des nœuds, {len(inside)} dans les nœuds{listed}"
    en = f"Observed: {len(outside)} check(s) from outside the nodes, {len(inside)} inside them{listed}"
    return in_lang([fr], [en], lang)


def _hint_lines(hint: Description, lang: Lang) -> list[str]:
    french, english = f"Indice : {hint.fr}", f"Hint: {hint.en}"
    return in_lang([french], [english], lang)


def summary_lines(report: GradeReport, lang: Lang = "both") -> list[str]:
    """The score and counts, in `lang` (both: French then English)."""
    counts = report.counts
    earned, total = report.points_earned, report.points_total
    percent = report.score * 100
    fr = (f"Note : {earned}/{total} points ({percent:.1f} %".replace(".", ",") + ") — "
          f"{counts[Outcome.PASS]} réussi(s), {counts[Outcome.FAIL]} échoué(s), "
          f"{counts[Outcome.ERROR]} en erreur")
    en = (f"Score: {earned}/{total} points ({percent:.1f}%) — {counts[Outcome.PASS]} passed, "
          f"{counts[Outcome.FAIL]} failed, {counts[Outcome.ERROR]} errors")
    return in_lang([fr], [en], lang)


def _result_dict(r: CheckResult) -> dict[str, Any]:
    return {"id": r.check_id, "criterion": r.criterion, "node": r.node,
            "description": {"fr": r.description_fr, "en": r.description_en},
            "weight": r.weight, "outcome": r.outcome.value, "evidence": r.evidence,
            "attempts": r.attempts, "duration_s": r.duration_s, "stage": r.stage, "observed": r.observed,
            "active": r.active}


def to_dict(report: GradeReport) -> dict[str, Any]:
    """The report as plain data, with the documented keys in a fixed order."""
    counts = report.counts
    return {
        "format": FORMAT, "lab": report.lab, "scenario": report.scenario,
        "started": report.started, "finished": report.finished,
        "score": round(report.score, 4),
        "points": {"earned": report.points_earned, "total": report.points_total},
        "counts": {o.value: counts[o] for o in Outcome},
        "exit_code": report.exit_code,
        "tampering": report.tampering,
        "results": [_result_dict(r) for r in report.results],
    }


def to_json(report: GradeReport) -> str:
    """The report as JSON (UTF-8 text, 2-space indent, keys as documented above)."""
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"


def from_json(text: str) -> GradeReport:
    """Read back a report written by `to_json` (derived keys are recomputed)."""
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document (format: {data.get('format')!r})")
    results = [CheckResult(
        check_id=r["id"], criterion=r["criterion"], node=r["node"],
        description_fr=r["description"]["fr"], description_en=r["description"]["en"],
        weight=r["weight"], outcome=Outcome(r["outcome"]), evidence=r["evidence"],
        attempts=r["attempts"], duration_s=r["duration_s"], stage=r["stage"],
        observed=r.get("observed", ""), active=bool(r.get("active", False)),
    ) for r in data["results"]]
    return GradeReport(lab=data["lab"], scenario=data["scenario"], started=data["started"],
                       finished=data["finished"], results=results, tampering=data.get("tampering", []))


def _suite_attributes(results: list[CheckResult]) -> dict[str, str]:
    return {"tests": str(len(results)),
            "failures": str(sum(r.outcome is Outcome.FAIL for r in results)),
            "errors": str(sum(r.outcome is Outcome.ERROR for r in results)),
            "skipped": "0", "time": f"{sum(r.duration_s for r in results):.3f}"}


def _testcase(suite: ET.Element, r: CheckResult) -> None:
    attributes = {"name": r.check_id, "classname": f"{r.criterion}.{r.node}",
                  "time": f"{r.duration_s:.3f}"}
    case = ET.SubElement(suite, "testcase", attributes)
    if r.outcome is not Outcome.PASS:
        tag = "failure" if r.outcome is Outcome.FAIL else "error"
        element = ET.SubElement(case, tag, {"message": r.evidence, "type": r.outcome.value})
        element.text = r.evidence
    out = ET.SubElement(case, "system-out")
    out.text = (f"{r.description_fr}\n{r.description_en}\nnode: {r.node}, weight: {r.weight}, "
                f"attempts: {r.attempts}\n{r.evidence}" + (f"\n{observed_text(r.observed)}" if r.observed else ""))


def to_junit(report: GradeReport) -> str:
    """JUnit XML: one testsuite per criterion, one testcase per check."""
    root = ET.Element("testsuites", {"name": f"labctl grade {report.lab} ({report.scenario})",
                                     **_suite_attributes(report.results)})
    del root.attrib["skipped"]
    for criterion_id, results in report.by_criterion().items():
        suite = ET.SubElement(root, "testsuite", {"name": criterion_id,
                                                  "timestamp": report.started,
                                                  **_suite_attributes(results)})
        props = ET.SubElement(suite, "properties")
        text = criterion_text(criterion_id, None)
        ET.SubElement(props, "property", {"name": "criterion", "value": text})
        ET.SubElement(props, "property", {"name": "lab", "value": report.lab})
        for node in report.tampering:
            changed = ", ".join(f"{c['path']} {c['kind']}" for c in node.get("changes") or [])
            ET.SubElement(props, "property", {"name": f"tampering.{node['node']}", "value": changed or node["note"]})
        for r in results:
            _testcase(suite, r)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
