"""Evidence a jury can read: the observed value comes first, in full up to a bound, and a check
that states its expectation in words (`expectation: {fr, en}`) is reported with that sentence
and the observed value, not with its regular expression or JSON path."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from labctl.grading.checks import evaluate
from labctl.grading.checks.base import SEEN_LIMIT, Verdict, shown, with_expectation
from labctl.grading.grader import GradeOptions, grade
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult, NodeSession
from labctl.grading.spec import CHECK_MODELS, GradingSpec

MTU_REGEX = r"\A1500 bytes to r2 10\.255\.0\.2: ok\n1500 bytes to r3 10\.255\.0\.6: ok$"
MTU_LOST = "1500 bytes to r2 10.255.0.2: lost\n1500 bytes to r3 10.255.0.6: ok\n"
MTU_WORDS = {"fr": "les deux liens WAN transportent des paquets de 1500 octets",
             "en": "both WAN links carry 1500-byte packets"}


def command(**keys: Any) -> Any:
    base = {"id": "wan-mtu", "criterion": "A1.3-c2", "description": {"fr": "f", "en": "e"}, "node": "r1",
            "type": "command", "command": "true"}
    return CHECK_MODELS["command"].model_validate({**base, **keys})


def test_the_observed_output_comes_before_a_long_pattern() -> None:
    verdict = evaluate(command(stdout_matches=MTU_REGEX), CommandResult(0, MTU_LOST, ""))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.evidence.startswith("output: 1500 bytes to r2 10.255.0.2: lost ⏎ 1500 bytes to r3 10.255.0.6: ok;")
    assert verdict.seen == "1500 bytes to r2 10.255.0.2: lost ⏎ 1500 bytes to r3 10.255.0.6: ok"


def test_an_observed_value_is_shown_in_full_up_to_a_bound() -> None:
    ospf = {"routes": {"10.2.0.0/24": [{"cost": 28, "area": "0.0.0.0", "nexthops": [{"ip": "10.255.0.2"}] * 3}]}}
    check = command(json_path='routes."10.2.0.0/24"[0].cost', equals=17)
    verdict = evaluate(check, CommandResult(0, json.dumps(ospf), ""))
    assert (verdict.outcome, verdict.evidence) == (Outcome.FAIL, 'routes."10.2.0.0/24"[0].cost is 28, expected 17')
    lines = "".join(f"line {n}: {'x' * 30}\n" for n in range(100))
    verdict = evaluate(command(stdout_matches="never"), CommandResult(0, lines, ""))
    assert "line 0: " in verdict.evidence and "line 20: " in verdict.evidence  # far past the old 120 characters
    assert f"… ({len(shown(lines, 10**6)) - SEEN_LIMIT} more characters)" in verdict.evidence
    assert len(verdict.seen) < SEEN_LIMIT + 40


def test_shown_keeps_lines_apart_and_drops_blank_ones() -> None:
    assert shown("a  b\n\n  c\n") == "a b ⏎ c"
    assert shown("") == ""


def test_an_expectation_in_words_replaces_the_pattern() -> None:
    words = (MTU_WORDS["fr"], MTU_WORDS["en"])
    failed = evaluate(command(stdout_matches=MTU_REGEX), CommandResult(0, MTU_LOST, ""))
    jury = with_expectation(failed, words)
    assert jury.evidence == ("constaté / observed: 1500 bytes to r2 10.255.0.2: lost ⏎ 1500 bytes to r3 "
                             "10.255.0.6: ok — attendu : les deux liens WAN transportent des paquets de 1500 "
                             "octets / expected: both WAN links carry 1500-byte packets")
    assert "\\A" not in jury.evidence and "10\\.255" not in jury.evidence
    error = Verdict(Outcome.ERROR, "timed out after 10 s")
    assert with_expectation(error, words) == error  # nothing was observed: the reason stays
    assert with_expectation(failed, None) == failed


class Shell:
    """A node session running commands on this machine (a real shell, as a node's would)."""

    def run(self, text: str, timeout: float) -> CommandResult:
        done = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=timeout, check=False)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def cli(self, text: str, timeout: float) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_reports_carry_the_expectation_with_the_observed_value() -> None:
    base = {"criterion": "A1.3-c2", "description": {"fr": "MTU", "en": "MTU"}, "node": "r1", "type": "command",
            "command": f"printf '{MTU_LOST}'", "stdout_matches": MTU_REGEX}
    spec = GradingSpec.model_validate({"scenario": "s", "checks": [
        {**base, "id": "in-words", "expectation": MTU_WORDS}, {**base, "id": "as-pattern"},
        {**base, "id": "escapes", "command": "printf '\\033[31mred'",
         "stdout_matches": "green", "exit_code": 0}]})

    def connect(node: str) -> NodeSession:
        return Shell()

    report = grade(spec, connect, lab="t", options=GradeOptions(command_timeout=10))
    words, pattern = report.results[:2]
    assert words.outcome is pattern.outcome is Outcome.FAIL
    assert words.evidence.startswith("constaté / observed: 1500 bytes to r2 10.255.0.2: lost")
    assert "expected: both WAN links carry 1500-byte packets" in words.evidence and MTU_REGEX not in words.evidence
    assert pattern.evidence.startswith("output: 1500 bytes to r2 10.255.0.2: lost") and MTU_REGEX in pattern.evidence
    assert report.results[2].evidence == "output: \\x1b[31mred; it does not match /green/"  # every result printable


def test_the_table_shows_the_expectation_in_the_chosen_language() -> None:
    from labctl.grading.checks.base import evidence_in
    from labctl.grading.report import render_table
    from labctl.grading.results import CheckResult, GradeReport

    words = (MTU_WORDS["fr"], MTU_WORDS["en"])
    # the node's output may imitate the marks: the expectation is what follows the last one
    output = "lost — attendu : rien / expected: nothing\n"
    failed = evaluate(command(stdout_matches=MTU_REGEX), CommandResult(0, output, ""))
    evidence = with_expectation(failed, words).evidence
    assert evidence_in(evidence, "en") == ("observed: lost — attendu : rien / expected: nothing — expected: both WAN "
                                           "links carry 1500-byte packets")
    assert evidence_in(evidence, "fr").endswith("— attendu : " + MTU_WORDS["fr"])
    assert evidence_in(evidence, "both") == evidence and evidence_in("plain", "en") == "plain"
    result = CheckResult("wan-mtu", "A1.3-c2", "r1", "MTU", "MTU", 1, Outcome.FAIL, evidence)
    report = GradeReport("lab", "s", "t0", "t1", [result])
    assert "↳ observed: lost" in render_table(report, lang="en")
    assert "↳ constaté : lost" in render_table(report, lang="fr")
    assert "↳ constaté / observed: lost" in render_table(report, lang="both")


def test_a_nodes_output_cannot_drive_the_jurys_terminal() -> None:
    from labctl.grading.checks.base import short

    hostile = "\x1b[2J\x1b[32mPASS\x1b[0m\x00\x07 ok\u202e"
    for text in (shown(hostile), short(hostile)):
        assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text
        assert "\\x1b[2J" in text and "\\u202e" in text
    assert shown("\x00" * 5000).endswith("… (4000 more characters)")
    assert shown("déjà vu — ok ⏎") == "déjà vu — ok ⏎"  # printable text is left alone
