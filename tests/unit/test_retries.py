"""Bounded retries when connecting to nodes, and what is said when a node stays silent."""

from __future__ import annotations

import time

import pytest

from labctl.errors import EXIT_PROVIDER
from labctl.retries import NodeSilent, RetryPolicy, connect_with_retries


class Node:
    """Refuses its first `silent` connections (as a node still booting), then answers."""

    def __init__(self, silent: int) -> None:
        self.silent = silent
        self.calls: list[float] = []

    def connect(self) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.silent:
            raise ConnectionRefusedError(f"[Errno 111] Connection refused (try {len(self.calls)})")
        return "session"


def test_a_node_answering_at_the_third_try_is_reached_with_doubling_pauses() -> None:
    node = Node(silent=2)
    policy = RetryPolicy(tries=3, budget_s=10, first_pause_s=0.05, max_pause_s=1)
    assert connect_with_retries("r1", node.connect, policy) == "session"
    gaps = [b - a for a, b in zip(node.calls, node.calls[1:], strict=False)]
    assert len(node.calls) == 3 and gaps[0] >= 0.05 and gaps[1] >= 0.1  # 0.05 then 0.1 s


def test_a_silent_node_is_named_with_the_seconds_and_tries() -> None:
    node = Node(silent=99)
    with pytest.raises(NodeSilent) as silent:
        connect_with_retries("srv1", node.connect, RetryPolicy(tries=3, budget_s=10, first_pause_s=0.05))
    assert len(node.calls) == 3
    error = silent.value
    assert error.nodes == ["srv1"] and error.tries == 3 and error.exit_code == EXIT_PROVIDER
    assert error.seconds >= 0.15  # 0.05 + 0.1 s of pauses
    assert error.message == f"node srv1 did not answer for {error.seconds:.1f} s (3 tries): " \
                            "[Errno 111] Connection refused (try 3)"


def test_the_time_budget_bounds_the_tries() -> None:
    node = Node(silent=10**6)
    with pytest.raises(NodeSilent) as silent:
        connect_with_retries("h1", node.connect, RetryPolicy(tries=10**6, budget_s=0.5, first_pause_s=0.05,
                                                             max_pause_s=0.1))
    # pauses 0.05, 0.1, 0.1, 0.1, 0.1 fit in 0.5 s: 6 tries at most (fewer if the machine is slow),
    # never a pause that would end past the budget
    assert silent.value.tries == len(node.calls)
    assert 2 <= silent.value.tries <= 6


def test_several_silent_nodes_are_listed() -> None:
    error = NodeSilent(["r2", "h3", "r3"], 12.04, 3, "Connection timed out\n  again")
    assert error.message == "nodes h3, r2, r3 did not answer for 12.0 s (3 tries): Connection timed out again"
