"""Benchmark: what a `dns` and a `dhcp` check cost, observed from outside the node (labctl's
resolver in the node's network namespace, with the nameserver's owner watched; the controller's
`ip` in that namespace) against the same checks' probes run inside the node (the node's python3
running labctl's resolver; `ip` and `head` in a clean shell), the path of providers seen only
from inside.

On the dns-dhcp test scenario (tests/data/scenarios/dns-dhcp) with srv's dnsmasq serving the
zone and ws holding a DHCP lease, times each way `--repeat` times and prints medians and this
process's CPU seconds (the inside probes' CPU is spent in the node: wall time only); asserts
nothing. Run as root from the project root:

    sudo .venv/bin/python bench/dns_dhcp_checks.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labctl import lab as labs
from labctl.grading.checks import evaluate, probe
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.results import Outcome
from labctl.grading.spec import CHECK_MODELS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.integration.test_dns_dhcp import (  # noqa: E402
    DHCLIENT,
    DNSMASQ_SETUP,
    DNSMASQ_START,
    SCENARIO,
    WS_WITHOUT_DNSMASQ,
)

BASE = {"criterion": "A2.1-c1", "description": {"fr": "b", "en": "b"}, "node": "ws"}
DNS = CHECK_MODELS["dns"].model_validate({**BASE, "id": "dns", "type": "dns", "name": "srv",
                                          "addresses": ["10.30.0.2"], "reverse": True})
DHCP = CHECK_MODELS["dhcp"].model_validate({**BASE, "id": "dhcp", "type": "dhcp", "interface": "eth1",
                                            "range": ["10.30.0.100", "10.30.0.150"], "gateway": "10.30.0.1",
                                            "dns": ["10.30.0.2"]})


def timed(work: Callable[[], Outcome], repeat: int) -> tuple[float, float]:
    """Median wall milliseconds and CPU milliseconds per run of this process."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        outcome = work()
        walls.append((time.perf_counter() - started) * 1000)
        assert outcome is Outcome.PASS, outcome
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) * 1000 / repeat
    return statistics.median(walls), used


def main(repeat: int) -> None:
    lab = labs.up(str(SCENARIO), name="bench-dns-dhcp")
    view = LabView(lab)
    try:
        session = OutsideSession(view, "ws", lambda: None)  # type: ignore[arg-type,return-value]
        server = OutsideSession(view, "srv", lambda: None)  # type: ignore[arg-type,return-value]
        assert server.run(DNSMASQ_SETUP + DNSMASQ_START, 30).exit_code == 0
        assert session.run(WS_WITHOUT_DNSMASQ + "\n" + DHCLIENT, 30).exit_code == 0
        rows = []
        for check in (DNS, DHCP):
            def outside(check: object = check) -> Outcome:
                verdict = session.observe(check, 10)  # type: ignore[arg-type]
                assert verdict is not None
                return verdict.outcome

            def inside(check: object = check) -> Outcome:
                return evaluate(check, session.run(probe(check).command, 10)).outcome  # type: ignore[arg-type]

            rows.append((check.type, "outside", *timed(outside, repeat)))  # type: ignore[attr-defined]
            rows.append((check.type, "inside", *timed(inside, repeat)))  # type: ignore[attr-defined]
        print(f"{'check':6} {'observed':9} {'median ms':>10} {'grader CPU ms':>14}   ({repeat} runs each)")
        for kind, where, wall, cpu in rows:
            print(f"{kind:6} {where:9} {wall:10.1f} {cpu:14.1f}")
    finally:
        view.close()
        labs.down(lab)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    main(parser.parse_args().repeat)
