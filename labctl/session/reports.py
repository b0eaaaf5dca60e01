"""Jury reports per candidate and per session (French by default, English on request),
grouped by référentiel criterion with the evidence of every check; JSON and CSV exports;
the candidate's access sheet. HTML comes from templates in labctl/data/session/.
"""

from __future__ import annotations

import csv
import io
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from labctl.grading.report import active_text, criterion_text, observed_text, to_dict
from labctl.grading.results import Outcome
from labctl.session import clock
from labctl.session.model import CandidateRecord, Session
from labctl.session.store import GradingRun

FORMAT = "labctl.session-report/1"
LABELS: dict[str, dict[str, str]] = {
    "fr": {"title": "Procès-verbal d'évaluation", "session": "Session", "scenario": "Scénario",
           "candidate": "Candidat", "name": "Nom", "score": "Note", "points": "points", "criterion": "Critère",
           "check": "Vérification", "node": "Nœud", "outcome": "Résultat", "evidence": "Constat",
           "run": "Correction n°", "kind": "Type", "recorded": "Enregistrée le", "tiers_temps": "Tiers temps",
           "extra": "Temps supplémentaire (min)", "end": "Fin d'épreuve", "not_graded": "Non corrigé",
           "yes": "oui", "no": "non", "generated": "Édité le", "summary": "Synthèse de la session",
           "final": "finale", "on-demand": "à la demande", "PASS": "RÉUSSI", "FAIL": "ÉCHEC", "ERROR": "ERREUR",
           "sha": "Empreinte SHA-256 de la correction", "signed": "Ce document est signé (Ed25519) : "
           "vérifier avec labctl report verify FICHIER",
           "tampering": "Fichiers système modifiés par le candidat (un contrôle qui s'en sert est en ERREUR)",
           "incomplete": "examen incomplet", "kind_replaced": "remplacé", "kind_added": "ajouté",
           "kind_deleted": "supprimé", "kind_modified": "droits ou propriétaire modifiés"},
    "en": {"title": "Assessment record", "session": "Session", "scenario": "Scenario", "candidate": "Candidate",
           "name": "Name", "score": "Score", "points": "points", "criterion": "Criterion", "check": "Check",
           "node": "Node", "outcome": "Outcome", "evidence": "Evidence", "run": "Grading run #", "kind": "Kind",
           "recorded": "Recorded", "tiers_temps": "One-third extra time", "extra": "Extra time (min)",
           "end": "End of exam", "not_graded": "Not graded", "yes": "yes", "no": "no", "generated": "Generated",
           "summary": "Session summary", "final": "final", "on-demand": "on demand", "PASS": "PASS",
           "FAIL": "FAIL", "ERROR": "ERROR", "sha": "SHA-256 of the grading run",
           "signed": "This document is signed (Ed25519): check it with labctl report verify FILE",
           "tampering": "System files the candidate changed (a check relying on one is ERROR)",
           "incomplete": "not fully examined", "kind_replaced": "replaced", "kind_added": "added",
           "kind_deleted": "deleted", "kind_modified": "permissions or owner changed"},
}


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("labctl", "data/session"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    """Render one of labctl/data/session/*.j2."""
    return str(_environment().get_template(template).render(**context))


def candidate_entry(session: Session, candidate: CandidateRecord, run: GradingRun | None, lang: str) -> dict[str, Any]:
    """One candidate's report as plain data: identity, clock, run, criteria with checks and evidence."""
    end = candidate.end(session)
    entry: dict[str, Any] = {"id": candidate.id, "name": candidate.name, "tiers_temps": candidate.tiers_temps,
                             "extra_minutes": candidate.extra_minutes, "end": clock.stamp(end) if end else None,
                             "variant": candidate.variant,
                             "run": None, "score": None, "points": None, "criteria": [], "tampering": []}
    if run is None:
        return entry
    report = run.report
    data = to_dict(report)
    entry.update(run={"id": run.id, "kind": run.kind, "recorded": run.recorded, "sha256": run.sha256,
                      "intact": run.intact(), "started": report.started, "finished": report.finished},
                 score=data["score"], points=data["points"], counts=data["counts"], tampering=data["tampering"])
    for criterion_id, results in report.by_criterion().items():
        entry["criteria"].append({
            "id": criterion_id, "text": criterion_text(criterion_id, None, lang),
            "earned": sum(r.weight for r in results if r.outcome is Outcome.PASS),
            "total": sum(r.weight for r in results),
            "checks": [{"id": r.check_id, "node": r.node, "outcome": r.outcome.value, "weight": r.weight,
                        "description": r.description_fr if lang == "fr" else r.description_en,
                        "evidence": r.evidence, "stage": r.stage,
                        "observed": observed_text(r.observed, "fr" if lang == "fr" else "en") if r.observed else "",
                        "active": active_text("fr" if lang == "fr" else "en") if r.active else ""}
                       for r in results]})
    return entry


def session_document(session: Session, runs: dict[str, GradingRun | None], lang: str,
                     candidates: list[str] | None = None) -> dict[str, Any]:
    """The report document for the chosen candidates (all by default)."""
    chosen = [c for c in session.candidates if candidates is None or c.id in candidates]
    return {"format": FORMAT, "lang": lang, "session": session.name, "scenario": Path(session.scenario).name,
            "started": session.started, "duration_s": session.duration_s, "generated": clock.stamp(),
            "candidates": [candidate_entry(session, c, runs.get(c.id), lang) for c in chosen]}


def to_json(document: dict[str, Any]) -> str:
    """The document as JSON."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def to_csv(document: dict[str, Any]) -> str:
    """One row per candidate and check (a candidate never graded has one row without check)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["session", "candidate", "name", "tiers_temps", "extra_minutes", "run", "kind", "score",
                     "criterion", "check", "node", "weight", "outcome", "evidence"])
    for c in document["candidates"]:
        head = [document["session"], c["id"], c["name"], int(c["tiers_temps"]), c["extra_minutes"],
                c["run"]["id"] if c["run"] else "", c["run"]["kind"] if c["run"] else "",
                "" if c["score"] is None else c["score"]]
        if not c["criteria"]:
            writer.writerow([*head, "", "", "", "", "", ""])
        for criterion in c["criteria"]:
            for check in criterion["checks"]:
                writer.writerow([*head, criterion["id"], check["id"], check["node"], check["weight"],
                                 check["outcome"], check["evidence"]])
    return out.getvalue()


def to_html(document: dict[str, Any]) -> str:
    """A printable HTML report (one section per candidate, criteria as tables)."""
    return render("report.html.j2", doc=document, t=LABELS[document["lang"]])


def render_document(document: dict[str, Any], fmt: str) -> str:
    """The document in `fmt`: html, json or csv."""
    return {"html": to_html, "json": to_json, "csv": to_csv}[fmt](document)


def access_sheet(session: Session, candidate: CandidateRecord, password: str, host: str, port: int | None) -> str:
    """The candidate's printable access sheet: host, login, password and their own brief."""
    from labctl import brief
    from labctl.scenario import is_scenario, load_scenario

    body = ""
    if is_scenario(session.scenario):
        page = brief.render_html(load_scenario(session.scenario), "fr", candidate.seed)  # their variant's brief
        found = re.search(r"<main>(.*)</main>", page, re.S)
        body = found.group(1) if found else ""
    command = f"ssh {'-p ' + str(port) + ' ' if port else ''}{candidate.login}@{host}"
    return render("access_sheet.html.j2", session=session, candidate=candidate, password=password, host=host,
                  port=port or 22, command=command, brief=body, duration=clock.format_left(session.duration_s))
