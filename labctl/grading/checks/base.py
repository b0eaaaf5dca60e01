"""What every check type provides: a probe to run on the node and a pure evaluation.

A check type pairs `probe(check) -> Probe` (the read-only command to run) with
`evaluate(check, result) -> Verdict` (what the saved output means). Evaluation never
touches a node, so it is tested from recorded outputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import CheckBase

C = TypeVar("C", bound=CheckBase)
NOT_FOUND_CODES = (126, 127)


@dataclass(frozen=True)
class Probe:
    """A read-only command for the node: a shell command, or (`cli`) a router CLI command."""

    command: str
    cli: bool = False


@dataclass(frozen=True)
class Verdict:
    """An outcome and the evidence for it (what was seen, and what was expected), and where it
    was observed: "outside" the node (the controller's view), "inside" it (its own programs),
    or "" when the session does not say."""

    outcome: Outcome
    evidence: str
    observed: str = ""
    # the value observed, in full (bounded), where the evidence compares it with technical terms
    # (a regex, a JSON path): shown with the check's `expectation` instead of them
    seen: str = ""


class Unobservable(Exception):
    """The output cannot be understood: the check's outcome is ERROR, not FAIL."""


@dataclass(frozen=True)
class CheckType(Generic[C]):
    """A check type: its name in spec files, its probe builder and its evaluation."""

    name: str
    probe: Callable[[C], Probe]
    evaluate: Callable[[C, CommandResult], Verdict]


def judged(ok: bool, evidence: str) -> Verdict:
    """PASS when `ok`, FAIL otherwise, with the same evidence."""
    return Verdict(Outcome.PASS if ok else Outcome.FAIL, evidence)


def error(evidence: str) -> Verdict:
    """An ERROR verdict: the state could not be observed."""
    return Verdict(Outcome.ERROR, evidence)


SEEN_LIMIT = 1000  # characters of an observed value shown in evidence


def shown(text: str, limit: int = SEEN_LIMIT) -> str:
    """An observed output for evidence: its non-blank lines joined by " ⏎ ", each line's spaces
    kept single, cut at `limit` characters with the count of those left out."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    flat = " ⏎ ".join(line for line in lines if line)
    if len(flat) <= limit:
        return printable(flat)
    return f"{printable(flat[:limit])}… ({len(flat) - limit} more characters)"


def printable(text: str) -> str:
    """`text` with every character a terminal would act on (escape sequences, NULs, controls)
    written as an escape (\\x1b): a node's output cannot colour, move or clear a jury's screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)


OBSERVED_MARK, EXPECTED_MARK, ENGLISH_MARK = "constaté / observed: ", " — attendu : ", " / expected: "


def evidence_in(evidence: str, lang: str) -> str:
    """An evidence `with_expectation` wrote, in one language (`fr`, `en`) or both as stored; any
    other evidence as it is. The observed value (the node's output) comes first and may hold
    anything: the expectation is the part after the last mark."""
    if lang not in ("fr", "en") or not evidence.startswith(OBSERVED_MARK) or EXPECTED_MARK not in evidence:
        return evidence
    observed, _, expected = evidence[len(OBSERVED_MARK):].rpartition(EXPECTED_MARK)
    french, _, english = expected.partition(ENGLISH_MARK)
    if lang == "fr":
        return f"constaté : {observed} — attendu : {french}"
    return f"observed: {observed} — expected: {english}"


def with_expectation(verdict: Verdict, expectation: tuple[str, str] | None) -> Verdict:
    """The verdict's evidence as a jury reads it when the check states its expectation in words:
    what was observed (in full, bounded), then what was expected, French first. An ERROR keeps
    its reason (nothing was observed)."""
    if expectation is None or verdict.outcome is Outcome.ERROR:
        return verdict
    french, english = expectation
    observed = verdict.seen or verdict.evidence
    return replace(verdict, evidence=f"{OBSERVED_MARK}{observed}{EXPECTED_MARK}{french}{ENGLISH_MARK}{english}")


def short(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return printable(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def matching_line(pattern: str, text: str) -> str | None:
    """The line of `text` where `pattern` first matches (re.search, ^ and $ at each line), or None.

    How `stdout_matches` (command) and `body_matches` (http) read an output.
    """
    match = re.search(pattern, text, re.MULTILINE)
    if not match:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start:end if end != -1 else None]


def tool_failure(result: CommandResult, tool: str) -> Verdict:
    """ERROR for a probe tool that is missing or failed without observing anything."""
    if result.exit_code in NOT_FOUND_CODES:
        return error(f"`{tool}` is not available on the node (exit {result.exit_code}): "
                     f"{short(result.stderr or result.stdout)}")
    detail = short(result.stderr or result.stdout) or "no output"
    return error(f"`{tool}` failed with exit code {result.exit_code}: {detail}")


def parse_json(text: str, what: str) -> Any:
    """`text` parsed as JSON, or Unobservable naming `what` was expected."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unobservable(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}): "
                           f"{short(text, 120)}") from None
