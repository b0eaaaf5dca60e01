"""The grading engine: run a spec's checks against a live lab and gather a GradeReport.

One session per node, opened once and reused for all its checks; nodes are graded
concurrently (one worker each), and a node's checks run in spec order. Every check runs
once; those that FAIL and have `wait` are retried until their deadline (grading start +
wait), then reported with their last evidence. Retries back off from `retry_interval`,
doubling up to `retry_max_interval`: a state that converges is still seen within seconds,
and a state that stays wrong costs a handful of probes instead of one every half second
(30 labs graded at once spent 63 CPU-seconds re-probing their broken checks at 0.5 s).
An ERROR is final only once a second probe confirms it (past the deadline too): a probe
that could not conclude on a busy machine (a timeout, a router CLI that did not answer)
is no verdict for a jury. A node that cannot be reached (after a second try) makes its own
checks ERROR; other nodes carry on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from labctl.errors import InvalidInputError, Problem
from labctl.grading.checks import Verdict, evaluate, probe
from labctl.grading.checks.base import error, printable, with_expectation
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.grading.session import CommandResult, CommandTimeout, NodeSession, NodeUnreachable
from labctl.grading.spec import CheckBase, GradingSpec
from labctl.retries import NodeSilent, RetryPolicy, connect_with_retries

Connect = Callable[[str], NodeSession]
Progress = Callable[[CheckResult], None]
CONFIRM_ERROR = 2  # probes that must ERROR before an ERROR is final
INSIDE = "inside"  # a probe's verdict: programs of the node observed it
CONNECT_TRIES = 2  # a node is unreachable once this many connections failed
PROBES_AT_ONCE = 8  # a node's first probes run at once when its session allows it
BUDGET_MARGIN = 120.0  # a run's default budget: its longest wait plus this
BUDGET_ENV = "LABCTL_GRADE_BUDGET"
OVER_BUDGET = "budget de notation dépassé / grading budget exceeded ({budget:g} s)"


@dataclass(frozen=True)
class GradeOptions:
    """Tuning of a grading run: per-command timeout, the retry back-off of waiting checks and
    the run's wall-clock budget (None: $LABCTL_GRADE_BUDGET, else the spec's longest wait +
    120 s), after which the checks not yet judged are ERROR "grading budget exceeded"."""

    command_timeout: float = 30.0
    budget: float | None = None
    # probes at 0, 1, 3, 7 s and at the deadline (15 s for multi-site-routing): a network
    # that converges in ~2 s is seen at 3 s; a wrong one costs 5 probes, not 7 (0.5 .. 4 s)
    retry_interval: float = 1.0
    retry_max_interval: float = 8.0
    after_reboot: bool = False  # the nodes were restarted for this run: `persist: reboot` checks are judged

    def budget_for(self, spec: GradingSpec) -> float:
        """Seconds the whole run may take (see the class doc)."""
        if self.budget is not None:
            return self.budget
        text = os.environ.get(BUDGET_ENV, "").strip()
        if text:
            try:
                budget = float(text)
            except ValueError:
                budget = -1.0
            if not budget > 0:
                raise InvalidInputError([Problem(
                    BUDGET_ENV, 0, f"{text!r} is not a number of seconds above 0",
                    f"e.g. {BUDGET_ENV}=300, or unset it for the spec's longest wait + 120 s")])
            return budget
        return max((check.wait for check in spec.checks), default=0.0) + BUDGET_MARGIN

    def next_retry(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th probe of a check that still FAILs."""
        return min(self.retry_max_interval, self.retry_interval * 2.0 ** max(0, attempts - 1))


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the millisecond, with a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def grade(
    spec: GradingSpec, connect: Connect, *, lab: str,
    progress: Progress | None = None, options: GradeOptions | None = None,
) -> GradeReport:
    """Grade lab `lab` against `spec`; `connect(node)` opens a node's session.

    `progress` is called once per check as soon as its result is final (from worker
    threads, one call at a time; an exception it raises ends the grading). Results come
    back in spec order.
    """
    started, origin = utc_now(), time.monotonic()
    lock = threading.Lock()

    def notify(result: CheckResult) -> None:
        """Report one final result, one thread at a time."""
        if progress is not None:
            with lock:
                progress(result)

    options = options or GradeOptions()
    budget = options.budget_for(spec)
    judged = [c for c in spec.checks if options.after_reboot or c.persist is None]
    runs = [NodeRun(node, [c for c in judged if c.node == node], connect, origin,
                    replace(options, budget=budget), notify) for node in spec.nodes()]
    with ThreadPoolExecutor(max_workers=max(1, len(runs)), thread_name_prefix="grade") as pool:
        by_check = {id(check): result for run_results in pool.map(NodeRun.run, runs)
                    for check, result in run_results}
    for check in spec.checks:
        if id(check) not in by_check:  # `persist: reboot` without a reboot
            by_check[id(check)] = _result(check, error(
                "not judged: graded only after the nodes restart (labctl grade --reboot) / "
                "non évalué : seulement après un redémarrage des nœuds (labctl grade --reboot)"), 1, 0.0)
            notify(by_check[id(check)])
    results = [by_check[id(check)] for check in spec.checks]
    return GradeReport(lab=lab, scenario=spec.scenario, started=started, finished=utc_now(),
                       results=results)


def _result(check: CheckBase, verdict: Verdict, attempts: int, duration: float) -> CheckResult:
    return CheckResult(
        check_id=check.id, criterion=check.criterion, node=check.node,
        description_fr=check.description.fr, description_en=check.description.en,
        weight=check.weight, outcome=verdict.outcome, evidence=printable(verdict.evidence),
        attempts=attempts, duration_s=duration, stage=check.stage, observed=verdict.observed, active=check.acts,
    )


@dataclass
class Attempted:
    """A check probed at least once and waiting for its final verdict."""

    check: CheckBase
    started: float
    verdict: Verdict
    attempts: int = 1
    next_at: float = 0.0
    errors: int = 0  # probes that ended in ERROR

    def settled(self, now: float, deadline: float) -> bool:
        """Whether the last verdict is final: a PASS; a FAIL at the deadline; an ERROR at the
        deadline that a second probe confirmed."""
        if self.verdict.outcome is Outcome.PASS:
            return True
        return now >= deadline and (self.verdict.outcome is Outcome.FAIL or self.errors >= CONFIRM_ERROR)


class NodeRun:
    """The grading of one node: its session and its checks, in order, then retries."""

    def __init__(self, node: str, checks: list[CheckBase], connect: Connect, origin: float,
                 options: GradeOptions, notify: Progress) -> None:
        self.node, self.checks, self.connect = node, checks, connect
        self.origin, self.options, self.notify = origin, options, notify
        self.budget = options.budget if options.budget is not None else float("inf")
        self.done: list[tuple[CheckBase, CheckResult]] = []

    def left(self) -> float:
        """Seconds left of the run's budget."""
        return self.origin + self.budget - time.monotonic()

    def out_of_budget(self, waiting: list[Attempted], untried: list[CheckBase]) -> None:
        """The run's budget is spent: every check not judged yet is ERROR, with its last probe."""
        self.error_remaining(OVER_BUDGET.format(budget=self.budget), waiting, untried)

    def run(self) -> list[tuple[CheckBase, CheckResult]]:
        """Grade every check of the node; never raises for a node problem."""
        session = self.open()
        if session is None:
            return self.done
        try:
            self.first_pass(session)
        finally:
            with contextlib.suppress(Exception):  # a dead node's session may fail to close
                session.close()
        return self.done

    def open(self) -> NodeSession | None:
        """The node's session, tried a second time after a failure; when both fail, None and
        the node's checks ERROR, saying how long the node stayed silent and why."""
        policy = RetryPolicy(tries=CONNECT_TRIES, budget_s=max(15.0, 2 * self.options.retry_interval),
                             first_pause_s=self.options.retry_interval)
        try:
            return connect_with_retries(self.node, lambda: self.connect(self.node), policy)
        except NodeSilent as silent:
            reason = (f"cannot connect to {self.node}: no answer for {silent.seconds:.1f} s "
                      f"({silent.tries} tries): {silent.last}")
        for check in self.checks:
            self.finish(check, error(reason), attempts=0, started=time.monotonic())
        return None

    def first_pass(self, session: NodeSession) -> None:
        """Run each check once, in order (at once, for a session whose probes may run
        concurrently); keep FAILing checks with a wait for retries."""
        waiting: list[Attempted] = []
        early: dict[int, tuple[float, float, Verdict | NodeUnreachable]] = {}
        # active checks act on the node: each runs alone, after the node's other checks
        self.checks = [c for c in self.checks if not c.acts] + [c for c in self.checks if c.acts]
        passive = [c for c in self.checks if not c.acts]
        if getattr(session, "concurrent", False) and len(passive) > 1:
            def first(check: CheckBase) -> tuple[float, float, Verdict | NodeUnreachable]:
                started = time.monotonic()
                try:
                    verdict = self.attempt(session, check)
                    return started, time.monotonic(), verdict
                except NodeUnreachable as exc:
                    return started, time.monotonic(), exc
            with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(self.checks)),
                                    thread_name_prefix=f"probe-{self.node}") as pool:
                early = dict(enumerate(pool.map(first, passive)))
        for index, check in enumerate(self.checks):
            started = ended = time.monotonic()
            if index not in early and self.left() <= 0:
                self.out_of_budget(waiting, self.checks[index:])
                return
            try:
                if index in early:  # its own probe's time, not the slowest of the node's
                    started, ended, outcome = early[index]
                    if isinstance(outcome, NodeUnreachable):
                        raise outcome
                    verdict = outcome
                else:
                    verdict = self.attempt(session, check)
                    ended = time.monotonic()
            except NodeUnreachable as exc:
                self.lose_node(exc, waiting, self.checks[index:])
                return
            item = Attempted(check, started, verdict, next_at=started + self.options.next_retry(1),
                             errors=int(verdict.outcome is Outcome.ERROR))
            if item.settled(started, self.deadline(check)):
                self.finish(check, verdict, attempts=1, started=started, ended=ended)
            else:
                waiting.append(item)
        self.retry(session, waiting)

    def retry(self, session: NodeSession, waiting: list[Attempted]) -> None:
        """Probe waiting checks again, soonest first, until each verdict is settled."""
        while waiting:
            item = min(waiting, key=lambda w: w.next_at)
            time.sleep(max(0.0, min(item.next_at - time.monotonic(), self.left())))
            if self.left() <= 0:
                self.out_of_budget(waiting, [])
                return
            try:
                item.verdict = self.attempt(session, item.check)
            except NodeUnreachable as exc:
                self.lose_node(exc, waiting, [])
                return
            item.attempts += 1
            item.errors += item.verdict.outcome is Outcome.ERROR
            now, deadline = time.monotonic(), self.deadline(item.check)
            if item.settled(now, deadline):
                waiting.remove(item)
                self.finish(item.check, item.verdict, item.attempts, item.started)
            elif now >= deadline:  # an ERROR past the deadline: its confirming probe
                item.next_at = now + self.options.retry_interval
            else:
                item.next_at = min(now + self.options.next_retry(item.attempts), deadline)

    def attempt(self, session: NodeSession, check: CheckBase) -> Verdict:
        """Probe once and evaluate; only NodeUnreachable escapes (it ends the node)."""
        # no probe outlives the run's budget (a node that stalls every command cannot stretch it)
        timeout = min(check.timeout or self.options.command_timeout, max(0.5, self.left()))
        observe = getattr(session, "observe", None)
        if observe is not None:  # a session that observes the node itself (from outside)
            try:
                observed: Verdict | None = observe(check, timeout)
                if observed is not None:  # None: this check type is probed inside the node
                    return observed
            except NodeUnreachable:
                raise
            except CommandTimeout:
                return error(f"timed out after {timeout:g} s")
            except Exception as exc:  # one observation failing is that check's ERROR
                return error(f"observation failed ({_reason(exc)})")
        command = probe(check)
        try:
            if command.cli:
                result = CommandResult(0, session.cli(command.command, timeout), "")
            else:
                result = session.run(command.command, timeout)
        except NodeUnreachable:
            raise
        except CommandTimeout:
            return error(f"timed out after {timeout:g} s: {command.command}")
        except Exception as exc:  # a session failing on one command is that check's ERROR
            channel = "router CLI" if command.cli else "command"
            return error(f"{channel} failed ({_reason(exc)}): {command.command}")
        try:
            return replace(evaluate(check, result), observed=INSIDE)
        except Exception as exc:  # an evaluation bug must not stop the grading
            return error(f"internal error while evaluating: {_reason(exc)}")

    def lose_node(self, exc: NodeUnreachable, waiting: list[Attempted],
                  untried: list[CheckBase]) -> None:
        """The node went away: waiting and untried checks ERROR with the reason."""
        self.error_remaining(f"{self.node} became unreachable: {_reason(exc)}", waiting, untried)

    def error_remaining(self, reason: str, waiting: list[Attempted], untried: list[CheckBase]) -> None:
        """Waiting checks (with their last probe) and untried ones end as ERROR `reason`."""
        for item in waiting:
            last = f" (last attempt: {item.verdict.outcome}: {item.verdict.evidence})"
            self.finish(item.check, error(reason + last), item.attempts, item.started)
        for check in untried:
            self.finish(check, error(reason), attempts=0, started=time.monotonic())
        waiting.clear()

    def deadline(self, check: CheckBase) -> float:
        """When a FAILing check stops being retried (monotonic clock)."""
        return self.origin + check.wait

    def finish(self, check: CheckBase, verdict: Verdict, attempts: int, started: float,
               ended: float | None = None) -> None:
        """Record the final result of a check (probed from `started` to `ended`, default now)
        and report progress."""
        if check.expectation is not None:
            verdict = with_expectation(verdict, (check.expectation.fr, check.expectation.en))
        result = _result(check, verdict, attempts, round((ended or time.monotonic()) - started, 3))
        self.done.append((check, result))
        self.notify(result)


def _reason(exc: BaseException) -> str:
    """An exception as a short reason: its message, or its type when it has none."""
    text = exc.render() if hasattr(exc, "render") else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__
