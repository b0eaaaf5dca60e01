"""What a proctor does to a whole room: build, start, grade, reset, rebuild and remove the
candidates' labs, side by side with bounded concurrency. Each action is audited.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from labctl.errors import LabctlError, NotFoundError
from labctl.progress import QUIET, Progress
from labctl.session import clock
from labctl.session.audit import AuditLog
from labctl.session.model import CandidateRecord, Session, SessionError, load_session, new_session
from labctl.session.roster import Roster
from labctl.session.store import ResultStore
from labctl.state import LabState, load_lab

if TYPE_CHECKING:
    from labctl.lab import Source
    from labctl.scenario import Scenario

T = TypeVar("T")
DEFAULT_WORKERS = max(2, min(8, (os.cpu_count() or 2) * 2))  # building and resetting labs: CPU-bound
GRADE_WORKERS = 32  # grading mostly waits (on the network, on convergence budgets): a room at once


@dataclass(frozen=True)
class Failure:
    """One candidate's failed operation."""

    candidate: str
    error: BaseException

    def render(self) -> str:
        """`candidate: message`."""
        error = self.error
        message = error.render() if isinstance(error, LabctlError) else f"{type(error).__name__}: {error}"
        return f"{self.candidate}: {message}"


class RoomError(LabctlError):
    """Some candidates' operations failed; carries each failure."""

    exit_code = 6

    def __init__(self, what: str, failures: list[Failure]) -> None:
        self.failures = failures
        super().__init__(f"{what} failed for {len(failures)} candidate(s):\n  " +
                         "\n  ".join(f.render() for f in failures))


def side_by_side(items: Iterable[T], work: Callable[[T], object], *, workers: int, label: Callable[[T], str],
                 progress: Progress = QUIET, what: str | Callable[[T], str] = "",
                 then: Callable[[T], Iterable[T]] | None = None) -> list[Failure]:
    """Run `work` on every item with at most `workers` at once; report progress; collect failures.

    `then(item)` gives the items that wait for `item`: they join the same pool once it has
    succeeded, so the workers never idle at a barrier. After a failure nothing new starts.
    """
    todo = list(items)
    failures: list[Failure] = []
    if not todo:
        return failures
    total, done = len(todo), 0
    with ThreadPoolExecutor(max_workers=max(1, workers if then else min(workers, len(todo)))) as pool:
        running = {pool.submit(work, item): item for item in todo}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                done += 1
                error = future.exception() if not future.cancelled() else \
                    SessionError("not started: another lab failed first")
                if error is not None:
                    failures.append(Failure(label(item), error))
                elif then is not None and not failures:
                    followers = list(then(item))
                    total += len(followers)
                    running.update({pool.submit(work, follower): follower for follower in followers})
                verb = what(item) if callable(what) else what
                progress.note(f"{verb} {done}/{total}: {label(item)} {'FAILED' if error else 'done'}")
            if failures:
                for future in running:
                    future.cancel()
    return failures


def results_store(session: Session) -> ResultStore:
    """The session's result store (its own SQLite file unless a URL was given), behind the
    journal `results.journal` in the session's folder, which holds every run first."""
    return ResultStore(session.db_url or f"sqlite://{session.directory / 'results.sqlite'}",
                       journal=session.directory / "results.journal")


def audit_log(session: Session) -> AuditLog:
    """The session's audit log."""
    return AuditLog(session.directory / "audit.jsonl")


def record(session: Session, action: str, **details: object) -> None:
    """Audit one proctor action."""
    with session.locked():
        audit_log(session).record(action, session=session.name, **details)


def candidate_lab(record: CandidateRecord) -> LabState | None:
    """The candidate's lab as recorded on disk, or None if it is gone."""
    if not record.lab_id:
        return None
    try:
        return load_lab(record.lab_id)
    except NotFoundError:
        return None


def _build(session: Session, record: CandidateRecord, progress: Progress, origin: LabState | None = None) -> LabState:
    from labctl import lab as labs

    if origin is None:
        built = labs.up(session.scenario, provider=session.provider, name=record.lab_name, seed=record.seed)
    else:  # a candidate sharing a variant: a copy of its first lab's starting state
        built = labs.clone(origin, name=record.lab_name)
    try:
        if session.spec:  # a bare topology: nothing to set up, but reset needs a snapshot
            labs.snapshot(built)
    except BaseException:
        labs.down(built)
        raise

    def remember(fresh: Session) -> None:
        fresh.candidate(record.id).lab_id = built.id
        fresh.candidate(record.id).lab_name = built.name

    session.update(remember)
    return built


def create(scenario: str, roster: Roster, duration_s: int, name: str, *, spec: str | None = None,
           provider: str | None = None, db_url: str | None = None, variants: int | None = None,
           workers: int = DEFAULT_WORKERS, progress: Progress = QUIET) -> Session:
    """One lab per candidate, side by side; all or nothing.

    Each candidate's variant is drawn from their id, unless `variants` is given: then the
    session draws that many distinct variants and hands them out in roster order (neighbours
    differ), sets up one lab per variant and copies it for the others (lab.clone).
    """
    from labctl import lab as labs

    source = labs.resolve_source(scenario)  # a bad scenario stops us before the session exists
    if source.scenario is None and spec is None:
        raise SessionError(f"{scenario} is a topology, not a scenario: give its grading spec with --spec")
    if source.scenario is not None:
        labs.load_spec(source.scenario)
    seeds = variant_seeds(source.scenario, variants, name) if variants else []
    if seeds and len(seeds) < len(roster):
        _require_copies(source, provider)
    session = new_session(name, str(source.scenario.folder if source.scenario else source.topology.resolve()),
                          roster, duration_s, spec=spec, provider=provider, db_url=db_url)
    if seeds:
        def share(fresh: Session) -> None:
            fresh.variants = len(seeds)
            for index, c in enumerate(fresh.candidates):
                c.variant, c.variant_seed = index % len(seeds) + 1, seeds[index % len(seeds)]

        session = session.update(share)
    record(session, "create", scenario=session.scenario, candidates=len(roster), duration_s=duration_s,
           variants=session.variants)
    if db_url:
        results_store(session).close()  # a bad URL fails now, not at the first grading
    failures = _build_all(session, workers, progress)
    if failures:
        with progress.step("remove the labs already built (all or nothing)"):
            destroy(load_session(session.name), audit=False)  # with the labs built meanwhile
        import shutil

        shutil.rmtree(session.directory, ignore_errors=True)
        raise RoomError("building the labs", failures)
    return session.update(lambda s: setattr(s, "status", "ready"))


def _require_copies(source: Source, provider: str | None) -> None:
    """Shared variants copy set-up labs: refuse at once a provider that cannot."""
    from labctl.providers import get_provider
    from labctl.topology import load_topology

    values = source.scenario.values(None) if source.scenario else None
    chosen = get_provider(provider or load_topology(source.topology, values).provider)
    if not chosen.copies_labs:
        raise SessionError(f"the {chosen.name} provider cannot copy a set-up lab, which --variants needs",
                           "leave --variants out: every lab is then set up on its own")


def _build_all(session: Session, workers: int, progress: Progress) -> list[Failure]:
    """Build and set up the first lab of each variant (every lab, when each candidate has their
    own); each one's copies for the candidates who share its variant start as soon as it is ready."""
    firsts = {c.variant or c.id: c for c in reversed(session.candidates)}
    origins: dict[str, LabState] = {}

    def first_of(c: CandidateRecord) -> CandidateRecord:
        return firsts[c.variant or c.id]

    def build(c: CandidateRecord) -> None:
        if first_of(c) is c:
            origins[c.id] = load_lab(_build(session, c, progress).id)  # as its copies will see it on disk
        else:  # a candidate sharing a variant: a copy of its first lab's starting state
            _build(session, c, progress, origin=origins[first_of(c).id])

    return side_by_side(firsts.values(), build, workers=workers, label=lambda c: c.id, progress=progress,
                        what=lambda c: "build lab" if first_of(c) is c else "copy lab",
                        then=lambda c: [o for o in session.candidates if first_of(o) is c and o is not c])


def variant_seeds(scenario: Scenario | None, count: int, salt: str) -> list[str]:
    """`count` seeds drawing pairwise different variants of `scenario` (for a session's --variants)."""
    if count < 1:
        raise SessionError(f"--variants {count}: give at least 1")
    if scenario is None:
        if count > 1:
            raise SessionError("a bare topology has a single variant", "give --variants 1, or leave it out")
        return [f"{salt}-variant-1"]
    seeds: dict[str, str] = {}
    for attempt in range(count * 50):
        seed = f"{salt}-variant-{attempt + 1}"
        seeds.setdefault(json.dumps(scenario.values(seed), sort_keys=True), seed)
        if len(seeds) == count:
            return list(seeds.values())
    raise SessionError(f"scenario {scenario.name} gives only {len(seeds)} different variants in {count * 50} draws",
                       f"ask for --variants {len(seeds)} or fewer")


def start(session: Session, *, access: bool = False) -> Session:
    """Start the clock (once); with `access`, open every candidate's gateway account."""
    if session.started is not None:
        raise SessionError(f"session {session.name} started at {session.started}",
                           "grant extra time with: labctl session extend")

    def begin(fresh: Session) -> None:
        fresh.started = clock.stamp()
        fresh.status = "started"

    session = session.update(begin)
    record(session, "start", started=session.started, access=access)
    if access:
        from labctl.session import access as gateway

        gateway.open_accounts(session)
        session = gateway.refresh(session)
    return session


def extend(session: Session, candidate: str, minutes: int) -> CandidateRecord:
    """Grant `minutes` of extra time to a candidate (negative takes back a mistake)."""
    session.candidate(candidate)

    def grant(fresh: Session) -> None:
        fresh.candidate(candidate).extra_minutes += minutes

    session = session.update(grant)
    record(session, "extend", candidate=candidate, minutes=minutes,
           total_extra_minutes=session.candidate(candidate).extra_minutes)
    return session.candidate(candidate)


@dataclass(frozen=True)
class CandidateStatus:
    """What the proctor sees of one candidate."""

    id: str
    name: str
    tiers_temps: bool
    extra_minutes: int
    lab: str
    health: str  # ok, crashed (nodes...), missing, not built
    nodes: dict[str, str]
    stage: str | None
    seconds_left: float | None
    end: str | None
    access: str
    login: str | None
    score: float | None
    runs: int
    variant: int | None = None  # with shared variants: which one

    @property
    def time_left(self) -> str:
        """H:MM:SS left, 'not started' or 'over'."""
        if self.seconds_left is None:
            return "not started"
        return "over" if self.seconds_left <= 0 else clock.format_left(self.seconds_left)


def lab_health(lab: LabState | None) -> tuple[str, dict[str, str]]:
    """ok when every node runs; rebooting while nodes the candidate rebooted come back; crashed
    with the stopped nodes (why, when the node ended itself: `stopped (powered off)` is the
    candidate's poweroff, which `labctl restart NODE` undoes without a rebuild); missing when the
    lab is gone."""
    from labctl.providers import get_provider

    if lab is None:
        return "missing", {}
    states = get_provider(lab.provider).node_states(lab)
    down = {node: state for node, state in states.items() if state != "running"}
    if lab.status != "running" and not down:
        return lab.status, states
    if not down:
        return "ok", states
    if set(down.values()) == {"rebooting"}:
        return "rebooting: " + ", ".join(down), states
    return "crashed: " + ", ".join(node + (f" ({state})" if state.startswith("stopped (") else "")
                                   for node, state in down.items()), states


def status(session: Session) -> list[CandidateStatus]:
    """Each candidate's lab health, stage, time left and latest score, from disk only."""
    store = results_store(session)
    runs = store.runs(session.name)
    store.close()
    rows = []
    for c in session.candidates:
        lab = candidate_lab(c)
        health, nodes = lab_health(lab) if c.lab_id else ("not built", {})
        mine = [r for r in runs if r.candidate == c.id]
        finals = [r for r in mine if r.kind == "final"]
        chosen = finals or mine
        latest = chosen[-1] if chosen else None
        end = c.end(session)
        rows.append(CandidateStatus(c.id, c.name, c.tiers_temps, c.extra_minutes, c.lab_name, health, nodes,
                                    lab.stage if lab else None, c.seconds_left(session),
                                    clock.stamp(end) if end else None, c.access, c.login,
                                    latest.score if latest else None, len(mine), c.variant))
    return rows


def grade_candidate(session: Session, candidate: str, kind: str = "on-demand") -> int | None:
    """Grade one candidate's lab (its current stage's checks) and store the run (journal first);
    returns its database id, or None while the database cannot take it (the journal holds it)."""
    from pathlib import Path

    from labctl import lab as labs

    c = session.candidate(candidate)
    lab = candidate_lab(c)
    if lab is None:
        raise NotFoundError(f"candidate {candidate}'s lab is gone", f"rebuild it: labctl session rebuild "
                            f"{session.name} {candidate}")
    spec = labs.stage_checks(labs.lab_spec(lab, Path(session.spec) if session.spec else None), lab.stage)
    with labs.held(lab, f"session grade {session.name}", shared=True) as current:  # never during a reset
        report = labs.grade(current, spec)
    store = results_store(session)
    try:
        return store.add(session.name, candidate, kind, report)
    finally:
        store.close()


def grade(session: Session, candidates: list[str] | None = None, *, kind: str = "on-demand",
          workers: int = GRADE_WORKERS, progress: Progress = QUIET) -> dict[str, int | None]:
    """Grade the candidates' labs side by side; returns run ids by candidate."""
    chosen = [session.candidate(c) for c in candidates] if candidates else session.candidates
    runs: dict[str, int | None] = {}

    def one(c: CandidateRecord) -> None:
        runs[c.id] = grade_candidate(session, c.id, kind)

    failures = side_by_side(chosen, one, workers=workers, label=lambda c: c.id, progress=progress, what="grade")
    record(session, "grade", kind=kind, candidates=[c.id for c in chosen], runs=runs,
           failed=[f.candidate for f in failures])
    if failures:
        raise RoomError("grading", failures)
    return runs


def tick(session: Session, progress: Progress = QUIET) -> list[str]:
    """At the end time: access cut for every due candidate at once, then their final
    gradings side by side (session/cutoff.py); their labs are kept."""
    from labctl.session import cutoff

    if session.started is None:
        return []
    due = [c.id for c in session.candidates if c.access != "closed" and c.final_run is None
           and (c.seconds_left(session) or 0) <= 0 and c.lab_id]
    if not due:
        return []
    logins = [c.login for c in session.candidates if c.id in due and c.login]
    stamp = clock.stamp()

    def close(fresh: Session) -> None:  # one write: the gateway refuses all of them from now on
        for cid in due:
            fresh.candidate(cid).access = "closed"
            fresh.candidate(cid).closed_at = stamp

    session = session.update(close)
    ended = cutoff.cut(logins)
    record(session, "end-of-time-cut", candidates=due, at=stamp, processes_ended=ended.killed,
           locked=ended.locked, lock_failures=ended.failures)
    for login, why in ended.failures.items():
        progress.note(f"{login}: account not locked: {why}")
    runs: dict[str, int | None] = {}

    def final(cid: str) -> None:
        runs[cid] = grade_candidate(session, cid, "final")

    failures = cutoff.side_by_side_all(due, final, GRADE_WORKERS)
    for cid, exc in failures.items():
        progress.note(f"{cid}: final grading failed: {exc.message if isinstance(exc, LabctlError) else exc}")

    def remember(fresh: Session) -> None:
        for cid in due:
            fresh.candidate(cid).final_run = runs.get(cid)

    session = session.update(remember)
    for cid in due:
        record(session, "end-of-time", candidate=cid, run=runs.get(cid))
    bugs = [exc for exc in failures.values() if not isinstance(exc, LabctlError)]
    if bugs:
        raise bugs[0]  # every candidate was cut and graded first
    return due


def reset(session: Session, *, workers: int = DEFAULT_WORKERS, progress: Progress = QUIET) -> None:
    """Every lab back to its snapshot, side by side; the clock and access are cleared for the next cohort."""
    from labctl import lab as labs

    def one(c: CandidateRecord) -> None:
        lab = candidate_lab(c)
        if lab is None:
            raise NotFoundError(f"lab {c.lab_name} is gone", f"labctl session rebuild {session.name} {c.id}")
        with labs.held(lab, f"session reset {session.name}") as current:
            labs.reset(current)

    failures = side_by_side(session.candidates, one, workers=workers, label=lambda c: c.id, progress=progress,
                            what="reset")
    record(session, "reset", failed=[f.candidate for f in failures])
    if failures:
        raise RoomError("reset", failures)


def inject(session: Session, fault: str, candidates: list[str] | None = None, *,
           workers: int = DEFAULT_WORKERS, progress: Progress = QUIET) -> None:
    """Inject a scenario fault into the candidates' labs (all by default)."""
    from labctl import lab as labs

    chosen = [session.candidate(c) for c in candidates] if candidates else session.candidates

    def one(c: CandidateRecord) -> None:
        lab = candidate_lab(c)
        if lab is None:
            raise NotFoundError(f"lab {c.lab_name} is gone")
        with labs.held(lab, f"session inject {session.name}") as current:
            labs.inject(current, fault)

    failures = side_by_side(chosen, one, workers=workers, label=lambda c: c.id, progress=progress, what="inject")
    record(session, "inject", fault=fault, candidates=[c.id for c in chosen], failed=[f.candidate for f in failures])
    if failures:
        raise RoomError(f"injecting {fault}", failures)


def rebuild(session: Session, candidate: str, progress: Progress = QUIET) -> LabState:
    """Remove one candidate's lab (crashed or not) and build it again from its seed."""
    from labctl import lab as labs

    c = session.candidate(candidate)
    old = candidate_lab(c)
    if old is not None:
        with progress.step(f"remove lab {old.name}"), labs.held(old, f"session rebuild {session.name}") as current:
            labs.down(current)
    with progress.step(f"build lab {c.lab_name} again (seed {c.seed})"):
        built = _build(session, c, progress)
    record(session, "rebuild", candidate=candidate, old_lab=old.id if old else None, new_lab=built.id)
    return built


def destroy(session: Session, *, workers: int = DEFAULT_WORKERS, progress: Progress = QUIET,
            audit: bool = True) -> None:
    """Every lab down and every gateway account removed; safe to repeat. Results and logs stay."""
    from labctl import lab as labs
    from labctl.session import access as gateway

    if audit:
        record(session, "destroy")
    gateway.remove_accounts(session)

    def one(c: CandidateRecord) -> None:
        lab = candidate_lab(c)
        if lab is not None:
            with labs.held(lab, f"session destroy {session.name}") as current:
                labs.down(current)

    failures = side_by_side(session.candidates, one, workers=workers, label=lambda c: c.id, progress=progress,
                            what="remove lab")
    if failures:
        raise RoomError("removing labs", failures)
    if session.directory.exists() and (session.directory / "session.json").exists():
        session.update(lambda s: setattr(s, "status", "destroyed"))
