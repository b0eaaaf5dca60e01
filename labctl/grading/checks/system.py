"""Check types about a node's system: command, service, file, package, user."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from typing import Any

from labctl.grading.checks.base import (
    CheckType,
    Probe,
    Unobservable,
    Verdict,
    judged,
    matching_line,
    parse_json,
    short,
    shown,
    tool_failure,
)
from labctl.grading.debversion import compare_versions
from labctl.grading.session import CommandResult
from labctl.grading.spec import CommandCheck, FileCheck, PackageCheck, ServiceCheck, UserCheck, parse_json_path
from labctl.grading.units import unit_name

CONTENT_LIMIT = 1024 * 1024
CONTENT_MARK = "--- content ---"
LIVE_STATES = "D,R,S,T,t,I"  # every process state but zombie (Z) and dead (X)
INSTALLED_STATES = "iWt"  # dpkg: installed, triggers-awaited, triggers-pending


def json_lookup(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a json_path (`spec.parse_json_path`: keys, quoted keys, list indexes); (found, value)."""
    value = data
    for step in parse_json_path(path):
        if isinstance(value, dict) and step.kind != "index" and step.text in value:
            value = value[step.text]
        elif (isinstance(value, list) and step.kind != "key" and re.fullmatch(r"\d+", step.text)
              and int(step.text) < len(value)):
            value = value[int(step.text)]
        else:
            return False, None
    return True, value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def evaluate_command(check: CommandCheck, result: CommandResult) -> Verdict:
    """Exit code, then output regex, then the JSON value at json_path."""
    code = result.exit_code
    if code in (126, 127) and check.exit_code != code:
        return tool_failure(result, check.command.split()[0] if check.command.split() else "")
    output = shown(result.stdout) or "no output"
    if code != check.exit_code:
        detail = shown(result.stderr or result.stdout)
        return replace(judged(False, f"exit code {code}, expected {check.exit_code}"
                                     + (f"; output: {detail}" if detail else "")),
                       seen=f"exit code {code}" + (f", output: {detail}" if detail else ""))
    seen = [f"exit code {code}"]
    if check.stdout_matches is not None:
        line = matching_line(check.stdout_matches, result.stdout)
        if line is None:  # the output first: a long pattern does not push it out of sight
            return replace(judged(False, f"output: {output}; it does not match /{check.stdout_matches}/"),
                           seen=output)
        seen.append(f"output matches /{check.stdout_matches}/: {shown(line)}")
    if check.json_path is not None:
        data = parse_json(result.stdout, "the command's output")
        found, value = json_lookup(data, check.json_path)
        if not found:
            return replace(judged(False, f"no value at {check.json_path} in the output: {output}"),
                           seen=f"nothing at {check.json_path}; output: {output}")
        text = shown(json.dumps(value, ensure_ascii=False))
        if "equals" in check.model_fields_set and not json_equal(value, check.equals):
            expected = json.dumps(check.equals, ensure_ascii=False)
            return replace(judged(False, f"{check.json_path} is {text}, expected {shown(expected)}"),
                           seen=f"{check.json_path} = {text}")
        seen.append(f"{check.json_path} = {text}")
        return replace(judged(True, "; ".join(seen)), seen=f"{check.json_path} = {text}")
    return replace(judged(True, "; ".join(seen)), seen=output)


def probe_service(check: ServiceCheck) -> Probe:
    """`pgrep -x NAME` but for zombies: exit 0 with pids, 1 when no live process has that name.

    A daemon that died but was not reaped is a zombie (state Z): it does not count.
    """
    if check.unit is not None:
        unit = shlex.quote(unit_name(check.unit))
        return Probe(f"echo enabled=$(systemctl is-enabled {unit} 2>&1); "
                     f"echo active=$(systemctl is-active {unit} 2>&1)")
    return Probe(f"pgrep -x -r {LIVE_STATES} -- {shlex.quote(str(check.process))}")


def judge_unit(check: ServiceCheck, enabled: tuple[bool, str] | None, active: tuple[bool, str] | None) -> Verdict:
    """`check`'s verdict from what was found: (starts at boot, why) and (runs, what runs)."""
    unit = unit_name(str(check.unit))
    ok, seen = True, []
    for expected, found, yes, no in ((check.enabled, enabled, "enabled (starts at boot)", "not enabled at boot"),
                                     (check.active, active, "active (running)", "not active")):
        if expected is None or found is None:
            continue
        seen.append(found[1])
        if found[0] != expected:
            ok = False
            seen[-1] += f"; expected {yes if expected else no}"
    return judged(ok, f"{unit}: " + "; ".join(seen))


def evaluate_service(check: ServiceCheck, result: CommandResult) -> Verdict:
    """Running when pgrep found a pid; a unit: systemctl's is-enabled and is-active answers."""
    if check.unit is not None:
        answers = dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)
        if "enabled" not in answers or "active" not in answers:
            return tool_failure(result, "systemctl")
        enabled, active = answers["enabled"].strip(), answers["active"].strip()
        return judge_unit(check, (enabled in ("enabled", "enabled-runtime", "static", "alias", "indirect")
                                  and enabled != "enabled-runtime", f"is-enabled: {enabled}"),
                          (active == "active", f"is-active: {active}"))
    if result.exit_code not in (0, 1):
        return tool_failure(result, "pgrep")
    pids = result.stdout.split()
    if result.exit_code == 0 and pids:
        seen = f"process {check.process} running (pid {', '.join(pids[:5])})"
        return judged(check.running, seen + ("" if check.running else ", expected stopped"))
    seen = f"no process named {check.process}"
    return judged(not check.running, seen + ("" if not check.running else ", expected running"))


def probe_file(check: FileCheck) -> Probe:
    """One script: `absent`, or a stat line, then the checksum and content when asked."""
    path = shlex.quote(check.path)
    parts = [f"p={path}", 'if [ ! -e "$p" ]; then echo absent; exit 0; fi',
             "stat -L -c 'stat %a %U %G %F' -- \"$p\" || exit 3"]
    if check.sha256 is not None:
        parts.append('if [ -f "$p" ]; then sha256sum -- "$p" || exit 3; fi')
    if check.contains is not None:
        parts.append(f'if [ -f "$p" ]; then echo {shlex.quote(CONTENT_MARK)}; '
                     f'head -c {CONTENT_LIMIT} -- "$p" || exit 3; fi')
    return Probe("export LC_ALL=C; " + "; ".join(parts))


def _file_facts(stdout: str) -> dict[str, str]:
    """Parse the file probe's output into mode, owner, group, kind, sha256, content."""
    head, mark, content = stdout.partition(CONTENT_MARK + "\n")
    lines = head.splitlines()
    if not lines or not lines[0].startswith("stat "):
        raise Unobservable(f"unexpected file probe output: {short(stdout, 120)}")
    fields = lines[0].split(maxsplit=4)
    if len(fields) != 5:
        raise Unobservable(f"unexpected stat output: {lines[0]}")
    facts = {"mode": f"{int(fields[1], 8):04o}", "owner": fields[2], "group": fields[3],
             "kind": fields[4]}
    if len(lines) > 1:
        facts["sha256"] = lines[1].split()[0].lower()
    if mark:
        facts["content"] = content
    return facts


def evaluate_file(check: FileCheck, result: CommandResult) -> Verdict:
    """Existence, then each attribute asked for; every mismatch is listed."""
    if result.exit_code != 0:
        return tool_failure(result, "stat")
    if result.stdout.strip() == "absent":
        return judged(not check.exists, f"{check.path} does not exist"
                                        + (", expected it to exist" if check.exists else ""))
    if not check.exists:
        return judged(False, f"{check.path} exists, expected it not to")
    return file_verdict(check, _file_facts(result.stdout))


def file_verdict(check: FileCheck, facts: dict[str, str]) -> Verdict:
    """An existing file's facts (kind, mode, owner, group, sha256 and content when read) against
    the check; the content read is the observed value when the check looks into it."""
    wrong = _file_mismatches(check, facts)
    seen = f"{check.path}: {facts['kind']}, mode {facts['mode']}, owner {facts['owner']}, group {facts['group']}"
    if check.contains is None or "content" not in facts:
        return judged(not wrong, seen + (f"; {'; '.join(wrong)}" if wrong else ""))
    content = shown(facts["content"]) or "empty"
    unmatched = any(w.startswith("content does not match") for w in wrong)  # then the content read is shown
    evidence = seen + (f"; {'; '.join(wrong)}" if wrong else "") + (f"; content: {content}" if unmatched else "")
    return replace(judged(not wrong, evidence), seen=f"{check.path}: {content}")


def _file_mismatches(check: FileCheck, facts: dict[str, str]) -> list[str]:
    """What differs from the check, as short sentences."""
    wrong = []
    if check.mode is not None and int(check.mode, 8) != int(facts["mode"], 8):
        wrong.append(f"mode {facts['mode']}, expected {int(check.mode, 8):04o}")
    for key in ("owner", "group"):
        expected = getattr(check, key)
        if expected is not None and expected != facts[key]:
            wrong.append(f"{key} {facts[key]}, expected {expected}")
    regular = facts["kind"].startswith("regular")
    if check.sha256 is not None:
        if not regular:
            wrong.append(f"sha256 asked but it is a {facts['kind']}")
        elif facts.get("sha256") != check.sha256.lower():
            wrong.append(f"sha256 {facts.get('sha256', '?')[:16]}…, expected {check.sha256[:16]}…")
    if check.contains is not None:
        if not regular:
            wrong.append(f"content asked but it is a {facts['kind']}")
        elif not re.search(check.contains, facts.get("content", ""), re.MULTILINE):
            wrong.append(f"content does not match /{check.contains}/")
    return wrong


def probe_package(check: PackageCheck) -> Probe:
    """dpkg-query's status abbreviation and version for the package."""
    fmt = shlex.quote("${db:Status-Abbrev}|${Version}|${binary:Package}\n")
    return Probe(f"LC_ALL=C dpkg-query -W -f {fmt} -- {shlex.quote(check.package)}")


def evaluate_package(check: PackageCheck, result: CommandResult) -> Verdict:
    """Installed (status i), then the version rule (Debian ordering)."""
    if result.exit_code == 1 and "no packages found" in result.stderr:
        return judged(not check.installed, f"package {check.package} is not known to dpkg"
                                           + (", expected installed" if check.installed else ""))
    if result.exit_code != 0:
        return tool_failure(result, "dpkg-query")
    states: list[tuple[str, str]] = []
    for line in result.stdout.splitlines():
        fields = line.split("|")
        if len(fields) != 3 or len(fields[0]) < 2:
            raise Unobservable(f"unexpected dpkg-query output: {short(line, 120)}")
        states.append((fields[0].strip(), fields[1]))
    return package_verdict(check, states)


def package_verdict(check: PackageCheck, states: list[tuple[str, str]]) -> Verdict:
    """dpkg's (status abbreviation, version) entries of a known package against the check."""
    installed = [version for status, version in states if status[1] in INSTALLED_STATES]
    if not installed:
        seen = ", ".join(f"dpkg status {status} {version}".rstrip() for status, version in states)
        return judged(not check.installed, f"package {check.package} is not installed ({seen})"
                                           + (", expected installed" if check.installed else ""))
    return _package_version_verdict(check, installed[0])


def _package_version_verdict(check: PackageCheck, version: str) -> Verdict:
    """Compare the installed version with the check's version rule."""
    seen = f"package {check.package} {version} installed"
    if not check.installed:
        return judged(False, seen + ", expected not installed")
    if check.version is not None and compare_versions(version, check.version) != 0:
        return judged(False, f"{seen}, expected version {check.version}")
    if check.min_version is not None and compare_versions(version, check.min_version) < 0:
        return judged(False, f"{seen}, expected at least {check.min_version}")
    return judged(True, seen)


def probe_user(check: UserCheck) -> Probe:
    """The passwd entry, then the group names (only if the entry exists)."""
    user = shlex.quote(check.user)
    return Probe(f"getent passwd -- {user} && id -nG -- {user}")


def evaluate_user(check: UserCheck, result: CommandResult) -> Verdict:
    """getent exit 2 means no such user; otherwise compare groups and shell."""
    if result.exit_code == 2 and not result.stdout.strip():
        return judged(not check.exists, f"no user {check.user}"
                                        + (", expected to exist" if check.exists else ""))
    if result.exit_code != 0:
        return tool_failure(result, "getent/id")
    lines = result.stdout.splitlines()
    entry = lines[0].split(":") if lines else []
    if len(entry) != 7 or len(lines) < 2:
        raise Unobservable(f"unexpected getent/id output: {short(result.stdout, 120)}")
    return user_verdict(check, entry[2], entry[6], lines[1].split())


def user_verdict(check: UserCheck, uid: str, shell: str, groups: list[str]) -> Verdict:
    """An existing user's uid, shell and groups (primary first) against the check."""
    seen = f"user {check.user} (uid {uid}, shell {shell}, groups {', '.join(groups)})"
    if not check.exists:
        return judged(False, seen + " exists, expected not to")
    wrong = [f"not in group {g}" for g in check.groups if g not in groups]
    if check.shell is not None and check.shell != shell:
        wrong.append(f"shell is not {check.shell}")
    return judged(not wrong, seen + (f"; {'; '.join(wrong)}" if wrong else ""))


def _command_probe(check: CommandCheck) -> Probe:
    if check.scope == "probe":  # a node's programs cannot stand for the grader's probe point
        return Probe("echo 'labctl: a command of scope probe runs in the probe point of the grader (local "
                     "provider) only' >&2; exit 3")
    return Probe(check.command)


SYSTEM_TYPES: tuple[CheckType[Any], ...] = (
    CheckType("command", _command_probe, evaluate_command),
    CheckType("service", probe_service, evaluate_service),
    CheckType("file", probe_file, evaluate_file),
    CheckType("package", probe_package, evaluate_package),
    CheckType("user", probe_user, evaluate_user),
)

