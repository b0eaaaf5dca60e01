"""Bounded retries for connecting to nodes, and the error that says who stayed silent, how long.

A node can be slow to answer without being gone: a VM reverted from a snapshot, two cores
shared by a room of labs, an SSH server still starting. Grading and provisioning therefore
try again, with a pause that doubles, within a budget of tries AND seconds, and when the
node never answers they say which node and for how long (`NodeSilent`), not merely
"connection failed".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from labctl.errors import ProviderError

T = TypeVar("T")


class NodeSilent(ProviderError):
    """A node (or several) did not answer within the retry budget (exit 6)."""

    def __init__(self, nodes: Iterable[str], seconds: float, tries: int, last: str, hint: str | None = None) -> None:
        self.nodes = sorted(nodes)
        self.seconds = seconds
        self.tries = tries
        self.last = last = " ".join(last.split())
        names = ", ".join(self.nodes)
        what = "node" if len(self.nodes) == 1 else "nodes"
        super().__init__(f"{what} {names} did not answer for {seconds:.1f} s ({tries} "
                         f"{'try' if tries == 1 else 'tries'}): {last}",
                         hint or "is the lab up (labctl status)? a machine this busy may need a moment more")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try: `tries` at most, stopping once `budget_s` is spent;
    pauses start at `first_pause_s` and double up to `max_pause_s`."""

    tries: int = 3
    budget_s: float = 20.0
    first_pause_s: float = 1.0
    max_pause_s: float = 8.0

    def pause(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure."""
        return min(self.max_pause_s, self.first_pause_s * 2.0 ** max(0, failures - 1))


GRADING = RetryPolicy(tries=2, budget_s=15.0, first_pause_s=1.0)  # a node's checks ERROR after it
PROVISIONING = RetryPolicy(tries=3, budget_s=120.0, first_pause_s=2.0, max_pause_s=10.0)


def _reason(exc: BaseException) -> str:
    text = exc.render() if hasattr(exc, "render") else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def connect_with_retries(node: str, connect: Callable[[], T], policy: RetryPolicy = GRADING, *,
                         sleep: Callable[[float], None] = time.sleep) -> T:
    """`connect()`, tried again after failures within `policy`; NodeSilent naming the node,
    the seconds since the first try and the last error when it never succeeds."""
    started = time.monotonic()
    failures = 0
    while True:
        try:
            return connect()
        except Exception as exc:  # any failure to connect is worth another try within the budget
            failures += 1
            elapsed = time.monotonic() - started
            pause = policy.pause(failures)
            if failures >= policy.tries or elapsed + pause > policy.budget_s:
                raise NodeSilent([node], time.monotonic() - started, failures, _reason(exc)) from exc
            sleep(pause)
