"""The dns check: a name resolves, from the node, through its own resolver configuration.

The lookups are those of `labctl.grading.dnsquery` (glibc's order: nameservers of the
node's resolv.conf, search list, next server when one does not answer). Inside a node the
probe is that module run by the node's python3; from outside (local provider) the
controller runs the same code in the node's network namespace. Either way `judge_dns`
reads the same record of queries and answers.
"""

from __future__ import annotations

import shlex
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from labctl.grading import dnsquery
from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, judged, parse_json, tool_failure
from labctl.grading.session import CommandResult
from labctl.grading.spec import DnsCheck

BUDGET_SHARE = 0.8  # of the check's timeout, for the lookups (the rest: starting and reading)
DEFAULT_BUDGET = 10.0  # seconds for the lookups when the check gives no timeout
RCODE_WORDS = {"NXDOMAIN": "no such name", "SERVFAIL": "server failure", "REFUSED": "refused",
               "NOTIMP": "not implemented", "FORMERR": "format error"}


def budget(check: DnsCheck) -> float:
    """Seconds every lookup of the check may take together."""
    return DEFAULT_BUDGET if check.timeout is None else max(1.0, check.timeout * BUDGET_SHARE)


def wanted(check: DnsCheck) -> list[tuple[str, str]]:
    """(name, record type) looked up: the name's A/AAAA records, then each address's PTR."""
    forward = [(check.name, kind) for kind in check.record_types()]
    reverse = [(dnsquery.reverse_name(str(a)), "PTR") for a in check.addresses] if check.reverse else []
    return forward + reverse


@cache
def _source() -> str:
    return Path(dnsquery.__file__).read_text()


def probe_dns(check: DnsCheck) -> Probe:
    """The node's python3 running labctl's resolver (dnsquery.py) on its own resolv.conf."""
    items = " ".join(shlex.quote(f"{name}:{kind}") for name, kind in wanted(check))
    return Probe(f"python3 -I -c {shlex.quote(_source())} {budget(check):g} {items}")


def evaluate_dns(check: DnsCheck, result: CommandResult) -> Verdict:
    """The probe's record of queries, judged."""
    if result.exit_code != 0:
        return tool_failure(result, "python3")
    data = parse_json(result.stdout, "the resolver's output")
    if not isinstance(data, dict) or not isinstance(data.get("lookups"), list):
        raise Unobservable("the resolver's output has no lookups")
    return judge_dns(check, data)


def _answered(queries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The query whose answer the resolver keeps: the last one a server answered for good."""
    final = [q for q in queries if "error" not in q and q.get("rcode") not in dnsquery.NEXT_SERVER]
    resolved = [q for q in final if q.get("rcode") == "NOERROR" and q.get("answers")]
    kept = resolved or final
    return kept[-1] if kept else None


def _silence(queries: list[dict[str, Any]]) -> str:
    """What each server did instead of answering."""
    return "; ".join(f"{q.get('server')}: {q.get('error') or RCODE_WORDS.get(str(q.get('rcode')), q.get('rcode'))}"
                     for q in queries) or "no nameserver asked"


def _servers_text(conf: dict[str, Any]) -> str:
    servers = ", ".join(conf.get("nameservers", []))
    if conf.get("default"):
        return f"no nameserver in /etc/resolv.conf, so {servers}"
    search = f", search {' '.join(conf['search'])}" if conf.get("search") else ""
    return f"/etc/resolv.conf: nameserver {servers}{search}"


def _same_name(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def judge_dns(check: DnsCheck, data: dict[str, Any]) -> Verdict:
    """PASS when the name's answers are exactly the expected addresses (from `server` when
    given), and with `reverse`, each address's PTR names the name."""
    conf = data.get("resolv_conf") or {}
    lookups = {(item.get("name"), item.get("type")): item.get("queries") or [] for item in data["lookups"]}
    seen: list[str] = []
    wrong: list[str] = []
    found: set[str] = set()
    servers: set[str] = set()
    full_names: list[str] = []
    for name, kind in wanted(check):
        queries = lookups.get((name, kind))
        if queries is None:
            raise Unobservable(f"the resolver did not look up {name} {kind}")
        answer = _answered(queries)
        if answer is None:
            wrong.append(f"{name} {kind}: no nameserver answered ({_silence(queries)})")
            continue
        answers = [str(a) for a in answer.get("answers", [])]
        # the name that resolved (through the search list), else the name asked
        asked = str(answer["name"] if answers else name).rstrip(".")
        server = str(answer.get("server"))
        if kind == "PTR":  # back to the name, or to the full name it resolved as (search list)
            ok = any(_same_name(a, expected) for a in answers for expected in [check.name, *full_names])
            shown = ", ".join(a.rstrip(".") for a in answers) or RCODE_WORDS.get(answer["rcode"], "no PTR record")
            text = f"{asked} PTR -> {shown} (from {server})"
            back = " or ".join(dict.fromkeys(n.rstrip(".") for n in [*full_names, check.name]))
            (seen if ok else wrong).append(text + ("" if ok else f", expected {back}"))
            continue
        if answers:
            full_names.append(str(answer["name"]))
        servers.add(server)
        found.update(str(ip_address(a)) for a in answers)
        shown = ", ".join(answers) or ("no such name (NXDOMAIN)" if answer["rcode"] == "NXDOMAIN"
                                       else f"no {kind} record")
        via = f" via {' -> '.join(c.rstrip('.') for c in answer['cnames'])}" if answer.get("cnames") else ""
        seen.append(f"{asked} {kind} -> {shown}{via} (from {server})")
    expected_set = {str(a) for a in check.addresses}
    forward_ok = found == expected_set
    if not forward_ok:
        wanted_text = ", ".join(sorted(expected_set)) if expected_set else "no address (the name must not resolve)"
        wrong.append(f"expected {wanted_text}")
    if check.server is not None and servers and servers != {str(check.server)}:
        wrong.append(f"answered by {', '.join(sorted(servers))}, expected by {check.server}")
    evidence = "; ".join(seen + wrong) + f" [{_servers_text(conf)}]"
    return judged(not wrong, evidence)


DNS_TYPES: tuple[CheckType[Any], ...] = (CheckType("dns", probe_dns, evaluate_dns),)
