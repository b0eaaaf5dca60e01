"""Check types by name: each builds a read-only probe and evaluates its saved output.

`probe(check)` says what to run on the node; `evaluate(check, result)` turns the output
into a Verdict (PASS/FAIL/ERROR with evidence) without touching the node.
"""

from __future__ import annotations

from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, error
from labctl.grading.checks.dhcp import DHCP_TYPES
from labctl.grading.checks.dns import DNS_TYPES
from labctl.grading.checks.flows import FLOWS_TYPES
from labctl.grading.checks.integrity import INTEGRITY_TYPES
from labctl.grading.checks.network import NETWORK_TYPES
from labctl.grading.checks.ospf import OSPF_TYPES
from labctl.grading.checks.ssh import SSH_TYPES
from labctl.grading.checks.system import SYSTEM_TYPES
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, CheckBase

CHECK_TYPES: dict[str, CheckType[Any]] = {
    t.name: t for t in (*SYSTEM_TYPES, *NETWORK_TYPES, *DNS_TYPES, *DHCP_TYPES, *FLOWS_TYPES, *OSPF_TYPES,
                        *INTEGRITY_TYPES, *SSH_TYPES)
}
assert set(CHECK_TYPES) == set(CHECK_MODELS), "every spec type needs a check type"


def _type_of(check: CheckBase) -> CheckType[Any]:
    return CHECK_TYPES[str(getattr(check, "type", ""))]


def probe(check: CheckBase) -> Probe:
    """The read-only command to run on the check's node."""
    return _type_of(check).probe(check)


def evaluate(check: CheckBase, result: CommandResult) -> Verdict:
    """The verdict on `result`; unparseable output is an ERROR, never a FAIL."""
    try:
        return _type_of(check).evaluate(check, result)
    except Unobservable as exc:
        return error(str(exc))


__all__ = ["CHECK_TYPES", "CheckType", "Probe", "Verdict", "evaluate", "probe"]
