"""Exam sessions without labs: roster, clock, result store, signatures, audit log, reports, dashboard."""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from labctl.errors import InvalidInputError
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.session import clock, reports
from labctl.session.audit import AuditLog
from labctl.session.model import Session, SessionError, load_session, new_session
from labctl.session.roster import load_roster, parse_roster
from labctl.session.signature import SignatureError, Signer, verify_file
from labctl.session.store import ResultStore


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def report(lab: str = "s-c1", outcome: Outcome = Outcome.FAIL) -> GradeReport:
    results = [CheckResult("ospf-r1-r2", "A1.3-c2", "r1", "Adjacence OSPF r1-r2", "OSPF adjacency r1-r2", 2,
                           outcome, "neighbor 2.2.2.2 absent"),
               CheckResult("web", "A2.1-c1", "srv1", "Le site répond", "The site answers", 1, Outcome.PASS,
                           "HTTP 200")]
    return GradeReport(lab, "multi-site-routing", "2026-01-01T09:00:00Z", "2026-01-01T09:00:05Z", results)


# ---- roster -----------------------------------------------------------------------------
def test_roster_reads_ids_names_and_tiers_temps() -> None:
    roster = parse_roster("id,name,tiers_temps\nc01,Alice,oui\nc02,Bruno,\nc03,Chloé,no\n")
    assert [(c.id, c.name, c.tiers_temps) for c in roster.candidates] == [
        ("c01", "Alice", True), ("c02", "Bruno", False), ("c03", "Chloé", False)]


def test_roster_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    file = tmp_path / "roster.csv"
    file.write_text("candidat,nom,tiers_temps\nc01,Alice,\nc01,Alicia,\nbad id,Eve,\nc04,,\nc05,Zoé,peut-être\n")
    with pytest.raises(InvalidInputError) as caught:
        load_roster(file)
    rendered = caught.value.render()
    assert caught.value.exit_code == 2
    assert f"{file}:3: duplicate candidate id 'c01' (first on line 2)" in rendered
    assert f"{file}:4: bad candidate id 'bad id'" in rendered
    assert f"{file}:5: candidate 'c04' has no name" in rendered
    assert f"{file}:6: tiers_temps must be yes or no" in rendered
    assert "nothing was created" in rendered


def test_roster_missing_column_and_empty_file() -> None:
    with pytest.raises(InvalidInputError, match="1 problem") as caught:
        parse_roster("id,prenom\nc01,Alice\n", "r.csv")
    assert "r.csv:1: missing column 'name'" in caught.value.render()
    with pytest.raises(InvalidInputError):
        parse_roster("", "r.csv")
    with pytest.raises(InvalidInputError, match="1 problem"):
        parse_roster("id,name\n", "r.csv")


def test_roster_ids_differing_only_in_case_are_duplicates() -> None:
    with pytest.raises(InvalidInputError):
        parse_roster("id,name\nAB1,x\nab1,y\n")


# ---- clock ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("3h", 10800), ("90m", 5400), ("2h30m", 9000), ("45", 2700),
                                               ("30s", 30)])
def test_durations(text: str, seconds: int) -> None:
    assert clock.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "h", "0m", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInputError):
        clock.parse_duration(text)


def test_tiers_temps_adds_one_third_and_extra_minutes_add_up() -> None:
    start = "2026-06-01T08:00:00Z"
    assert clock.stamp(clock.end_time(start, 3 * 3600, False, 0)) == "2026-06-01T11:00:00Z"
    assert clock.stamp(clock.end_time(start, 3 * 3600, True, 0)) == "2026-06-01T12:00:00Z"
    assert clock.stamp(clock.end_time(start, 3 * 3600, True, 15)) == "2026-06-01T12:15:00Z"
    assert clock.format_left(3725) == "1:02:05" and clock.format_left(-5) == "0:00:00"


def test_clock_survives_a_restart_it_only_reads_disk(tmp_path: Path) -> None:
    roster = parse_roster("id,name,tiers_temps\nc1,A,non\nc2,B,oui\n")
    session = new_session("s1", "multi-site-routing", roster, 3600)
    started = clock.now() - timedelta(minutes=50)
    session.update(lambda s: setattr(s, "started", clock.stamp(started)))
    fresh = load_session("s1")  # a new process would do exactly this
    left1 = fresh.candidate("c1").seconds_left(fresh)
    left2 = fresh.candidate("c2").seconds_left(fresh)
    assert left1 is not None and 590 <= left1 <= 600
    assert left2 is not None and 590 + 1200 <= left2 <= 600 + 1200


def test_two_sessions_never_share_a_name() -> None:
    roster = parse_roster("id,name\nc1,A\n")
    new_session("same", "x", roster, 60)
    with pytest.raises(SessionError, match="already exists"):
        new_session("same", "x", roster, 60)


def test_concurrent_updates_are_not_lost() -> None:
    roster = parse_roster("id,name\nc1,A\n")
    session = new_session("busy", "x", roster, 60)

    def add(s: Session) -> None:
        s.candidate("c1").extra_minutes += 1

    threads = [threading.Thread(target=lambda: session.update(add)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load_session("busy").candidate("c1").extra_minutes == 20


# ---- results ----------------------------------------------------------------------------
def test_sqlite_store_keeps_every_run_and_refuses_changes(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    store = ResultStore(f"sqlite://{db}")
    first = store.add("s", "c1", "on-demand", report())
    second = store.add("s", "c1", "final", report(outcome=Outcome.PASS))
    store.add("s", "c2", "on-demand", report("s-c2"))
    assert second > first
    runs = store.runs("s", "c1")
    assert [r.kind for r in runs] == ["on-demand", "final"] and all(r.intact() for r in runs)
    latest = store.latest("s", "c1")
    assert latest is not None and latest.id == second and latest.score == 1.0
    assert latest.report.results[0].evidence == "neighbor 2.2.2.2 absent"
    store.close()
    raw = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="no update"):
        raw.execute("UPDATE grading_runs SET score = 1 WHERE id = ?", (first,))
    with pytest.raises(sqlite3.DatabaseError, match="no delete"):
        raw.execute("DELETE FROM grading_runs")
    assert ResultStore(str(db)).runs("s") and len(ResultStore(str(db)).runs("s")) == 3


# ---- signatures -------------------------------------------------------------------------
def test_signed_report_verifies_and_any_change_is_detected(tmp_path: Path) -> None:
    signer = Signer(tmp_path / "keys" / "signing.key")
    signer.ensure()
    assert oct(signer.private_file.stat().st_mode & 0o777) == "0o600"
    file = tmp_path / "report.json"
    file.write_text('{"score": 0.5}\n')
    signer.sign_file(file, "s1")
    found = verify_file(file, trusted_key=signer.public_raw())
    assert found.session == "s1" and found.pinned
    file.write_text('{"score": 0.9}\n')
    with pytest.raises(SignatureError, match="MODIFIED"):
        verify_file(file)
    file.write_text('{"score": 0.5}\n')
    sig = file.with_name("report.json.sig")
    data = json.loads(sig.read_text())
    data["session"] = "other"
    sig.write_text(json.dumps(data))
    with pytest.raises(SignatureError, match="altered"):
        verify_file(file)


def test_a_report_resigned_with_another_key_fails_against_the_trusted_key(tmp_path: Path) -> None:
    mine, forger = Signer(tmp_path / "a" / "k.key"), Signer(tmp_path / "b" / "k.key")
    mine.ensure()
    file = tmp_path / "r.csv"
    file.write_text("c1,0.9\n")
    forger.sign_file(file, "s1")
    verify_file(file)  # self-consistent...
    with pytest.raises(SignatureError, match="not the trusted key"):
        verify_file(file, trusted_key=mine.public_raw())
    with pytest.raises(SignatureError, match="no signature"):
        verify_file(tmp_path / "a" / "k.key")


def test_report_verify_command_exit_codes(tmp_path: Path) -> None:
    from labctl.cli import main

    signer = Signer(tmp_path / "k.key")
    file = tmp_path / "r.html"
    file.write_text("<p>18/20</p>")
    signer.sign_file(file, "s1")
    (tmp_path / "pub").write_text(base64.b64encode(signer.public_raw()).decode())
    with pytest.raises(SystemExit) as ok:
        main(["report", "verify", str(file), "--key", str(tmp_path / "pub")])
    assert ok.value.code == 0
    file.write_text("<p>20/20</p>")
    with pytest.raises(SystemExit) as bad:
        main(["report", "verify", str(file)])
    assert bad.value.code == 9


# ---- audit ------------------------------------------------------------------------------
def test_audit_log_records_user_and_detects_tampering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "proctor1")
    log = AuditLog(tmp_path / "audit.jsonl")
    for action in ("create", "start", "extend", "grade"):
        log.record(action, candidate="c1")
    entries = log.entries()
    assert [e["action"] for e in entries] == ["create", "start", "extend", "grade"]
    assert all(e["user"] == "proctor1" and e["time"].endswith("Z") for e in entries)
    assert log.verify_chain() == []
    lines = log.path.read_text().splitlines()
    del lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify_chain() and ":2:" in log.verify_chain()[0]


# ---- reports ----------------------------------------------------------------------------
def test_reports_group_by_criterion_with_evidence_in_french_and_english() -> None:
    roster = parse_roster("id,name,tiers_temps\nc1,Alice,oui\nc2,Bruno,non\n")
    session = new_session("rep", "multi-site-routing", roster, 3600)
    store = ResultStore(str(session.directory / "r.sqlite"))
    store.add("rep", "c1", "final", report())
    runs = {"c1": store.latest("rep", "c1"), "c2": None}
    fr = reports.session_document(session, runs, "fr")
    assert [c["id"] for c in fr["candidates"][0]["criteria"]] == ["A1.3-c2", "A2.1-c1"]
    html_fr = reports.to_html(fr)
    assert 'lang="fr"' in html_fr and "ÉCHEC" in html_fr and "neighbor 2.2.2.2 absent" in html_fr
    assert "Non corrigé" in html_fr and "<caption>" in html_fr and 'scope="col"' in html_fr
    html_en = reports.to_html(reports.session_document(session, runs, "en"))
    assert 'lang="en"' in html_en and "OSPF adjacency r1-r2" in html_en and "Not graded" in html_en
    assert "Interconnection between the network devices" in html_en and "interconnexion entre" not in html_en
    rows = reports.to_csv(fr).splitlines()
    assert rows[0].startswith("session,candidate") and len(rows) == 1 + 2 + 1
    assert json.loads(reports.to_json(fr))["candidates"][0]["score"] == pytest.approx(1 / 3, abs=1e-3)


def test_the_signed_results_carry_the_tampering_for_the_jury() -> None:
    roster = parse_roster("id,name\nc1,Alice\n")
    session = new_session("tamper", "multi-site-routing", roster, 3600)
    store = ResultStore(str(session.directory / "r.sqlite"))
    tampered = [{"node": "r1", "complete": True, "note": "", "changes": [
        {"path": "/usr/bin/vtysh", "kind": "replaced", "category": "executable"}]}]
    store.add("tamper", "c1", "final", dataclasses.replace(report(), tampering=tampered))
    run = store.latest("tamper", "c1")
    assert run is not None and run.intact() and run.report.tampering == tampered
    fr = reports.session_document(session, {"c1": run}, "fr")
    assert fr["candidates"][0]["tampering"] == tampered
    html = reports.to_html(fr)
    assert "Fichiers système modifiés par le candidat" in html and "/usr/bin/vtysh — remplacé" in html
    assert "/usr/bin/vtysh — replaced" in reports.to_html(reports.session_document(session, {"c1": run}, "en"))


def test_the_signed_record_says_where_each_check_was_observed() -> None:
    roster = parse_roster("id,name\nc1,Alice\n")
    session = new_session("observed", "multi-site-routing", roster, 3600)
    store = ResultStore(str(session.directory / "r.sqlite"))
    graded = report()
    graded = dataclasses.replace(graded, results=[dataclasses.replace(graded.results[0], observed="outside"),
                                                  dataclasses.replace(graded.results[1], observed="inside")])
    store.add("observed", "c1", "final", graded)
    run = store.latest("observed", "c1")
    assert run is not None and run.report == graded  # stored, signed and read back whole
    html_fr = reports.to_html(reports.session_document(session, {"c1": run}, "fr"))
    assert "observé depuis l&#39;extérieur du nœud" in html_fr and "observé dans le nœud" in html_fr
    html_en = reports.to_html(reports.session_document(session, {"c1": run}, "en"))
    assert "observed from outside the node" in html_en and "observed inside the node" in html_en


# ---- dashboard --------------------------------------------------------------------------
def test_dashboard_needs_the_password_and_lists_candidates() -> None:
    from labctl.session.dashboard import Dashboard

    roster = parse_roster("id,name,tiers_temps\nc1,Alice,oui\nc2,Bruno,\n")
    new_session("dash", "multi-site-routing", roster, 3600)
    server = Dashboard("dash", "s3cret", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=5)
        assert denied.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Basic " +
                                                       base64.b64encode(b"proctor:wrong").decode()})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=5)
        request = urllib.request.Request(url, headers={"Authorization": "Basic " +
                                                       base64.b64encode(b"proctor:s3cret").decode()})
        body = urllib.request.urlopen(request, timeout=5).read().decode()
        assert server.server_address[0] == "127.0.0.1"
        assert 'lang="fr"' in body and 'http-equiv="refresh"' in body and "<caption>" in body
        assert '<th scope="row"><a href="/candidate/c1">c1</a></th>' in body and "pas commencé" in body
    finally:
        server.shutdown()
        server.server_close()


def test_variant_seeds_draw_pairwise_different_variants() -> None:
    from labctl.scenario import load_scenario
    from labctl.session.room import variant_seeds

    scenario = load_scenario("multi-site-routing")
    seeds = variant_seeds(scenario, 6, "exam-1")
    assert len(seeds) == 6
    assert len({json.dumps(scenario.values(s), sort_keys=True) for s in seeds}) == 6
    assert variant_seeds(scenario, 6, "exam-1") == seeds  # the same session name draws the same seeds
    assert variant_seeds(scenario, 6, "exam-2") != seeds


def test_variant_seeds_refuse_more_variants_than_the_scenario_has() -> None:
    from labctl.session.room import variant_seeds

    class ThreeWays:  # a scenario whose only parameter has three choices
        name = "three-ways"

        def values(self, seed: str) -> dict[str, int]:
            return {"choice": sum(seed.encode()) % 3}

    assert len(variant_seeds(ThreeWays(), 3, "exam")) == 3  # type: ignore[arg-type]
    with pytest.raises(SessionError, match="only 3 different variants") as refused:
        variant_seeds(ThreeWays(), 4, "exam")  # type: ignore[arg-type]
    assert "--variants 3 or fewer" in refused.value.render()
    with pytest.raises(SessionError, match="single variant"):
        variant_seeds(None, 2, "exam")
    assert len(variant_seeds(None, 1, "exam")) == 1


def test_a_candidates_seed_is_their_id_unless_a_variant_is_shared() -> None:
    roster = parse_roster("id,name\nc1,A\nc2,B\n")
    session = new_session("seeds-1", "x", roster, 3600)
    first, second = session.candidates
    assert first.seed == "c1"
    second.variant, second.variant_seed = 2, "seeds-1-variant-7"
    assert second.seed == "seeds-1-variant-7"


def test_shared_variants_on_a_provider_that_cannot_copy_labs_stop_before_anything_is_built() -> None:
    from labctl.session import room
    from labctl.session.model import all_session_names

    roster = parse_roster("id,name\nc1,A\nc2,B\nc3,C\n")
    with pytest.raises(SessionError, match="libvirt provider cannot copy"):
        room.create("multi-site-routing", roster, 3600, "no-copy-1", provider="libvirt", variants=2)
    assert "no-copy-1" not in all_session_names()


def test_side_by_side_starts_followers_as_soon_as_their_leader_is_done() -> None:
    from labctl.session.room import side_by_side

    leader_b_may_finish = threading.Event()
    finished: list[str] = []

    def work(item: str) -> None:
        if item == "B":  # a slow leader: A's followers must not wait for it
            assert leader_b_may_finish.wait(10)
        if item == "a2":
            leader_b_may_finish.set()
        finished.append(item)

    followers = {"A": ["a1", "a2"], "B": ["b1"]}
    failures = side_by_side(["A", "B"], work, workers=2, label=str, then=lambda item: followers.get(item, []))
    assert failures == []
    assert sorted(finished) == ["A", "B", "a1", "a2", "b1"]
    assert finished.index("a2") < finished.index("B") < finished.index("b1")


def test_side_by_side_starts_nothing_new_after_a_failure() -> None:
    from labctl.session.room import side_by_side

    started: list[str] = []

    def work(item: str) -> None:
        started.append(item)
        if item == "A":
            raise RuntimeError("setup failed")

    failures = side_by_side(["A"], work, workers=1, label=str, then=lambda item: ["a1"])
    assert [f.candidate for f in failures] == ["A"] and "setup failed" in failures[0].render()
    assert started == ["A"]
