"""The `labctl session` and `labctl report` command groups (heavy imports inside commands)."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from labctl.errors import EXIT_TAMPERED

F = TypeVar("F", bound=Callable[..., Any])


def _one_at_a_time(command: str) -> Callable[[F], F]:
    """Run the command holding the session's lock (one session command at a time: a second
    one waits LABCTL_LOCK_WAIT seconds, then exits 12 naming the first)."""
    def wrap(function: F) -> F:
        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            from labctl import locks
            from labctl.session.model import sessions_dir

            name = kwargs["name"]
            directory = sessions_dir() / name
            if not directory.is_dir():  # the command says the session does not exist
                return function(*args, **kwargs)
            with locks.session(directory, name, f"session {command} {name}"):
                return function(*args, **kwargs)
        return locked  # type: ignore[return-value]
    return wrap


DB_HELP = "Result database URL: sqlite:///PATH (default: the session's own file) or postgresql://..."


def _progress(ctx: click.Context) -> Any:
    from labctl.progress import Progress

    return Progress(quiet=bool(getattr(ctx.find_root().obj, "quiet", False)))


def _session(name: str) -> Any:
    from labctl.session.model import load_session

    return load_session(name)


@click.group()
def session() -> None:
    """Exam sessions: one isolated lab per candidate, timed, graded, reset for the next cohort.

    \b
      labctl session create --scenario multi-site-routing --roster roster.csv --duration 3h
      labctl session start S        the clock starts; candidates connect
      labctl session status S       lab health, time left, stage of each candidate
      labctl session grade S        on demand (automatic at each end time: tick / serve)
      labctl session report S --format html|json|csv
      labctl session reset S        every lab back to its starting state
      labctl session destroy S
    """


@session.command("create")
@click.option("--scenario", required=True, help="Scenario name or folder (or a topology file with --spec).")
@click.option("--roster", type=click.Path(path_type=Path), required=True, help="CSV: id,name[,tiers_temps].")
@click.option("--duration", required=True, help="Exam time, e.g. 3h, 90m, 2h30m.")
@click.option("--name", help="Session name (default: scenario and date).")
@click.option("--spec", type=click.Path(path_type=Path), help="Grading spec (for a bare topology).")
@click.option("--provider", help="Where nodes run (default: the topology's, else local).")
@click.option("--db", "db_url", help=DB_HELP)
@click.option("--variants", type=click.IntRange(min=1), default=None,
              help="Share N variants among the candidates, in roster order (neighbours differ): each is set up "
                   "once and copied, far faster. Default: every candidate their own variant.")
@click.option("--parallel", type=int, default=None, help="Labs built at once (default: 2 per core, at most 8).")
@click.pass_context
def create_cmd(ctx: click.Context, scenario: str, roster: Path, duration: str, name: str | None, spec: Path | None,
               provider: str | None, db_url: str | None, variants: int | None, parallel: int | None) -> None:
    """Validate the roster, then build one lab per candidate, all or nothing.

    Each candidate's variant is drawn from their id; with --variants N, N variants are shared.
    """
    from labctl.session import clock, model, room
    from labctl.session.roster import load_roster

    candidates = load_roster(roster)  # every problem reported before anything is built
    seconds = clock.parse_duration(duration)
    chosen = model.check_name(name) if name else model.default_name(scenario)
    started = time.monotonic()
    built = room.create(scenario, candidates, seconds, chosen, spec=str(spec.resolve()) if spec else None,
                        provider=provider, db_url=db_url, variants=variants,
                        workers=parallel or room.DEFAULT_WORKERS,
                        progress=_progress(ctx))
    click.echo(f"session {built.name}: {len(built.candidates)} labs built in {time.monotonic() - started:.1f} s; "
               f"next: labctl session start {built.name}")


@session.command("start")
@click.argument("name")
@click.option("--access/--no-access", default=True, show_default=True,
              help="Open a gateway SSH account per candidate and write their access sheets.")
@_one_at_a_time("start")
def start_cmd(name: str, access: bool) -> None:
    """Start the clock; candidates' accounts open."""
    from labctl.session import room

    started = room.start(_session(name), access=access)
    click.echo(f"session {name} started at {started.started} (UTC)")
    if access:
        from labctl.session import access as gateway

        click.echo(f"access sheets (print them): {started.directory / 'sheets'}/")
        if not gateway.sshd_managed() and gateway.running_sshd() is None:
            click.echo("warning: no SSH server runs on this host: candidates cannot connect until it does "
                       "(start it: /usr/sbin/sshd, or service ssh start)", err=True)


@session.command("extend")
@click.argument("name")
@click.argument("candidate")
@click.option("--minutes", type=int, required=True, help="Extra minutes (negative to correct a mistake).")
@_one_at_a_time("extend")
def extend_cmd(name: str, candidate: str, minutes: int) -> None:
    """Grant a candidate extra time."""
    from labctl.session import clock, room

    session_now = _session(name)
    record = room.extend(session_now, candidate, minutes)
    end = record.end(_session(name))
    ends = clock.stamp(end) if end else "start + duration"
    click.echo(f"{candidate}: +{record.extra_minutes} min in all; ends at {ends}")


@session.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(name: str, as_json: bool) -> None:
    """Each candidate: lab health, time left, stage, access, latest score (from disk)."""
    import dataclasses

    from labctl.session import room

    current = _session(name)
    rows = room.status(current)
    if as_json:
        click.echo(json.dumps({"session": current.name, "started": current.started, "status": current.status,
                               "candidates": [{**dataclasses.asdict(r), "time_left": r.time_left} for r in rows]},
                              indent=2))
        return
    click.echo(f"session {current.name} — {current.status} — scenario {Path(current.scenario).name} — "
               f"started {current.started or 'not yet'}")
    click.echo(f"  {'CANDIDATE':<14} {'LAB HEALTH':<18} {'TIME LEFT':<11} {'STAGE':<10} {'ACCESS':<7} SCORE")
    for r in rows:
        extra = (" TT" if r.tiers_temps else "") + (f" +{r.extra_minutes}m" if r.extra_minutes else "")
        extra += f" v{r.variant}" if r.variant else ""
        score = f"{r.score * 100:.1f}% ({r.runs} runs)" if r.score is not None else "—"
        click.echo(f"  {r.id + extra:<14} {r.health:<18} {r.time_left:<11} {r.stage or '—':<10} {r.access:<7} {score}")


@session.command("grade")
@click.argument("name")
@click.argument("candidates", nargs=-1)
@click.option("--parallel", type=int, default=None, help="Labs graded at once (default: 32).")
@click.pass_context
@_one_at_a_time("grade")
def grade_cmd(ctx: click.Context, name: str, candidates: tuple[str, ...], parallel: int | None) -> None:
    """Grade candidates' labs now (all by default); every run is kept. Also does what `tick` does."""
    from labctl.session import room

    current = _session(name)
    closed = room.tick(current, _progress(ctx))
    if closed:
        click.echo(f"end of time reached: final grading done and access closed for {', '.join(closed)}")
    runs = room.grade(_session(name), list(candidates) or None, workers=parallel or room.GRADE_WORKERS,
                      progress=_progress(ctx))
    click.echo(f"graded {len(runs)} lab(s): runs " + ", ".join(
        f"{c}#{r if r is not None else 'journal'}" for c, r in sorted(runs.items())))


@session.command("tick")
@click.argument("name")
@click.pass_context
@_one_at_a_time("tick")
def tick_cmd(ctx: click.Context, name: str) -> None:
    """Cut the access of every candidate whose time is over, all at once, then grade them (run it from cron)."""
    from labctl.session import room

    closed = room.tick(_session(name), _progress(ctx))
    click.echo(f"closed: {', '.join(closed)}" if closed else "nobody's time is over yet")


@session.command("inject")
@click.argument("name")
@click.argument("fault")
@click.argument("candidates", nargs=-1)
@click.pass_context
@_one_at_a_time("inject")
def inject_cmd(ctx: click.Context, name: str, fault: str, candidates: tuple[str, ...]) -> None:
    """Inject one of the scenario's faults into candidates' labs (all by default)."""
    from labctl.session import room

    room.inject(_session(name), fault, list(candidates) or None, progress=_progress(ctx))
    click.echo(f"fault {fault} injected")


@session.command("reset")
@click.argument("name")
@click.option("--parallel", type=int, default=None, help="Labs reset at once.")
@click.pass_context
@_one_at_a_time("reset")
def reset_cmd(ctx: click.Context, name: str, parallel: int | None) -> None:
    """Every lab back to its starting state (snapshot), side by side."""
    from labctl.session import room

    started = time.monotonic()
    current = _session(name)
    room.reset(current, workers=parallel or room.DEFAULT_WORKERS, progress=_progress(ctx))
    click.echo(f"session {name}: {len(current.candidates)} labs reset in {time.monotonic() - started:.1f} s")


@session.command("rebuild")
@click.argument("name")
@click.argument("candidate")
@click.pass_context
@_one_at_a_time("rebuild")
def rebuild_cmd(ctx: click.Context, name: str, candidate: str) -> None:
    """Rebuild one candidate's lab (e.g. after a crash) from their seed."""
    from labctl.session import room

    built = room.rebuild(_session(name), candidate, _progress(ctx))
    click.echo(f"{candidate}: lab {built.name} ({built.id}) rebuilt")


@session.command("destroy")
@click.argument("name")
@click.pass_context
@_one_at_a_time("destroy")
def destroy_cmd(ctx: click.Context, name: str) -> None:
    """Remove every lab and gateway account (safe to repeat); results and audit log stay."""
    from labctl.session import room

    room.destroy(_session(name), progress=_progress(ctx))
    click.echo(f"session {name}: labs and accounts removed; results kept in {_session(name).directory}")


@session.command("list")
def list_cmd() -> None:
    """Sessions on this machine."""
    from labctl.session.model import all_session_names

    for name in all_session_names():
        s = _session(name)
        click.echo(f"{name:<30} {s.status:<10} {len(s.candidates):>3} candidates  {Path(s.scenario).name}")


@session.command("audit")
@click.argument("name")
def audit_cmd(name: str) -> None:
    """The proctor actions recorded for the session; exit 9 if the log was tampered with."""
    from labctl.session import room

    log = room.audit_log(_session(name))
    for entry in log.entries():
        details = json.dumps({k: v for k, v in entry["details"].items() if k != "session"}, ensure_ascii=False)
        click.echo(f"{entry['time']}  {entry['user']:<10} {entry['action']:<12} {details}")
    problems = log.verify_chain()
    for problem in problems:
        click.echo(f"TAMPERED: {problem}", err=True)
    sys.exit(EXIT_TAMPERED if problems else 0)


@session.command("report")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "csv"]), default="html", show_default=True)
@click.option("--lang", type=click.Choice(["fr", "en", "both"]), default="fr", show_default=True,
              help="Language of the reports; both writes each report in French and in English.")
@click.option("--candidate", "candidates", multiple=True, help="Only these candidates (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Folder (default: the session's reports/).")
def report_cmd(name: str, fmt: str, lang: str, candidates: tuple[str, ...], output: Path | None) -> None:
    """Signed reports: one per candidate and one for the session, grouped by criterion."""
    from labctl.lang import languages
    from labctl.session import reports, room
    from labctl.session.signature import Signer

    current = _session(name)
    for c in candidates:
        current.candidate(c)
    folder = output or current.directory / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    store = room.results_store(current)
    try:
        runs = {c.id: store.latest(current.name, c.id) for c in current.candidates}
    finally:
        store.close()
    signer = Signer(current.directory / "signing.key")
    chosen = list(candidates) or [c.id for c in current.candidates]
    written = []
    for one in languages(lang):
        for cid in chosen:
            written.append((folder / f"{name}-{cid}.{one}.{fmt}", reports.session_document(current, runs, one, [cid])))
        if not candidates:
            written.append((folder / f"{name}.{one}.{fmt}", reports.session_document(current, runs, one)))
    for path, document in written:
        path.write_text(reports.render_document(document, fmt), encoding="utf-8")
        signer.sign_file(path, current.name)
    room.record(current, "report", format=fmt, lang=lang, files=[p.name for p, _ in written])
    click.echo(f"wrote {len(written)} signed report(s) to {folder}/ (key {signer.public_file})")


@session.command("serve")
@click.argument("name")
@click.option("--port", type=int, default=8470, show_default=True, help="Port on 127.0.0.1.")
@click.option("--password-file", type=click.Path(path_type=Path),
              help="File holding the proctor password (default: LABCTL_PROCTOR_PASSWORD, else a new one shown once).")
@click.option("--no-auto-grade", is_flag=True, help="Do not grade candidates at their end time.")
def serve_cmd(name: str, port: int, password_file: Path | None, no_auto_grade: bool) -> None:
    """The proctor's live dashboard on http://127.0.0.1:PORT/ (password protected)."""
    import os

    from labctl.session import access, dashboard

    _session(name)
    password = (password_file.read_text().strip() if password_file else os.environ.get("LABCTL_PROCTOR_PASSWORD"))
    if not password:
        password = access.new_password(16)
        click.echo(f"proctor password (user: any): {password}")

    def ready(bound: int) -> None:
        click.echo(f"dashboard of session {name}: http://127.0.0.1:{bound}/  (Ctrl-C to stop)", err=True)

    try:
        dashboard.serve(name, password, port, auto_grade=not no_auto_grade,
                        report=lambda text: click.echo(text, err=True), ready=ready)
    except KeyboardInterrupt:
        click.echo("dashboard stopped", err=True)


@session.command("gateway", hidden=True)
@click.option("--home", type=click.Path(path_type=Path), required=True)
@click.argument("name")
def gateway_cmd(home: Path, name: str) -> None:
    """What a candidate's SSH login runs (through sudo): pick a node of their own lab."""
    import os

    os.environ["LABCTL_HOME"] = str(home)
    from labctl.session import gateway

    sys.exit(gateway.run(name))


@click.group()
def report() -> None:
    """Signed reports: check that a report is exactly what labctl signed."""


@report.command("verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--key", "key_file", type=click.Path(path_type=Path),
              help="The session's public key (signing.pub) the report must be signed with.")
@click.option("--session", "session_name", help="Trust this session's key (on this machine).")
def verify_cmd(file: Path, key_file: Path | None, session_name: str | None) -> None:
    """Exit 0 if FILE matches its signature (FILE.sig); exit 9 saying what changed otherwise."""
    import base64

    from labctl.session.signature import verify_file

    trusted = None
    if key_file:
        trusted = base64.b64decode(key_file.read_text().strip())
    elif session_name:
        trusted = base64.b64decode((_session(session_name).directory / "signing.pub").read_text().strip())
    found = verify_file(file, trusted_key=trusted)
    pin = "trusted key" if found.pinned else "key in the signature (give --key or --session to pin it)"
    click.echo(f"OK: {file} is as signed by session {found.session} on {found.signed}, key {found.key_id} ({pin})")
