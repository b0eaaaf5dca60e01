"""Benchmark: what an OSPF check costs asked of ospfd/zebra directly (labctl/grading/frr_vty.py,
the daemons proven to be the image's first) against the node's vtysh over SSH (netmiko, the
path libvirt labs still take).

On the two-router test lab with OSPF set up and converged, times: proving a daemon (pid,
namespaces, its code in memory compared with the image, the connection's holder); an
`ospf_neighbor` check (r1's ospfd, then r2's to confirm the other end); an OSPF `route`
check (zebra, ospfd, the kernel's table); the same neighbour table through vtysh over an
open SSH session, and with the session opened each time. Prints medians and CPU
seconds of this process; asserts nothing. Run as root from the project root:

    sudo .venv/bin/python bench/ospf_checks.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from labctl import lab as labs
from labctl.connect import open_session
from labctl.grading import frr_vty, routing
from labctl.grading.nodeview import NodeView
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.spec import CHECK_MODELS
from labctl.providers import get_provider

TWO_ROUTERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "labs" / "two-routers.yml"
TIMERS = ["interface eth1", "ip ospf network point-to-point", "ip ospf hello-interval 1", "ip ospf dead-interval 4",
          "exit"]


def ospf(router_id: str, networks: list[str]) -> str:
    lines = ["configure terminal", *TIMERS, "router ospf", f"ospf router-id {router_id}",
             "timers throttle spf 0 50 1000", *(f"network {n} area 0" for n in networks), "end"]
    return "vtysh " + " ".join(f"-c '{line}'" for line in lines)


def timed(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall milliseconds and mean CPU milliseconds (this process) of `work`."""
    walls, before = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        walls.append((time.perf_counter() - start) * 1000)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000 / repeat
    return statistics.median(walls), cpu


def main() -> None:
    """Build the lab, set OSPF up, time each path, remove the lab."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    lab = labs.up(str(TWO_ROUTERS), name="bench-ospf")
    try:
        view = LabView(lab)
        for node, rid, nets in (("r1", "1.1.1.1", ["10.1.0.0/24", "10.255.0.0/30"]),
                                ("r2", "2.2.2.2", ["10.2.0.0/24", "10.255.0.0/30"])):
            OutsideSession(view, node, lambda: None).run(ospf(rid, nets), 20)  # type: ignore[arg-type,return-value]
        view.close()
        base = {"id": "b", "criterion": "A1.3-c2", "description": {"fr": "b", "en": "b"}, "node": "r1"}
        neighbor = CHECK_MODELS["ospf_neighbor"].model_validate({**base, "type": "ospf_neighbor",
                                                                 "neighbor": "2.2.2.2"})
        route = CHECK_MODELS["route"].model_validate({**base, "type": "route", "destination": "10.2.0.0/24",
                                                      "via": "10.255.0.2", "protocol": "ospf"})
        pids = {name: state.init.pid for name, state in lab.nodes.items() if state.init}
        r1 = lab.nodes["r1"].init
        assert r1 is not None
        node = NodeView("r1", r1.pid, r1.start_time, lab.upper_dir("r1"))
        image = Path(lab.image)
        deadline = time.monotonic() + 60
        while routing.observe_ospf_route(route, lab.plan, r1.pid, image, 5, node.run_in_netns).outcome.value != "PASS":
            if time.monotonic() > deadline:
                raise SystemExit("OSPF did not converge within 60 s")
            time.sleep(0.5)

        def prove() -> None:
            frr_vty.open_daemon(r1.pid, "ospfd", image, 5).close()

        access = get_provider("local").access(lab, "r1")
        session = open_session(access)

        def fresh_session() -> None:
            opened = open_session(access)
            opened.cli(routing.NEIGHBORS, 10)
            opened.close()

        rows = {
            "prove ospfd (open, examine, close)": timed(prove, args.repeat),
            "ospf_neighbor, daemons asked directly": timed(lambda: routing.observe_ospf_neighbor(
                neighbor, lab.plan, r1.pid, image, 5, far_pid=pids.__getitem__), args.repeat),
            "OSPF route, zebra + ospfd + kernel": timed(lambda: routing.observe_ospf_route(
                route, lab.plan, r1.pid, image, 5, node.run_in_netns), args.repeat),
            "neighbor table, vtysh over open SSH": timed(lambda: session.cli(routing.NEIGHBORS, 10),
                                                        args.repeat),
            "neighbor table, SSH login + vtysh": timed(fresh_session, max(3, args.repeat // 5)),
        }
        session.close()
        node.close()
    finally:
        labs.down(lab)
    for what, (wall, cpu) in rows.items():
        print(f"{what:<40} {wall:7.1f} ms wall (median), {cpu:6.1f} ms CPU of labctl")


if __name__ == "__main__":
    main()
