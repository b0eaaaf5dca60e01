"""Benchmark: grading a room while one candidate's node storms (fork loop, memory, CPU, disk).

Builds N small labs (3 nodes each: a router and two hosts, default limits: pids 1024,
memory 1G, cpu_weight 100, disk 2G), grades every lab but the first at once (as
`session grade` does) in alternate rounds: quiet, then while node h1 of the first lab runs a
bounded storm (a fork loop of 3000 sleeping processes, 4 busy-looping shells, a memory hog
started again each time it is killed, /dev/shm and the disk filled), ended after each round.
Prints per-lab grading times (median, 90th percentile, max) and one SSH login to a neighbour,
quiet and stormy side by side, and the ratio of the medians. Asserts nothing.

    sudo .venv/bin/python bench/node_limits.py [--labs 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labctl import cgroups
from labctl import lab as labs
from labctl.connect import open_session
from labctl.grading.loader import load_grading_spec
from labctl.providers import get_provider
from labctl.state import LabState, all_labs
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "tests" / "data" / "labs" / "small.yml"
SPEC = ROOT / "tests" / "data" / "labs" / "small-grading.yml"
STORM_SECONDS = 120
STORM = (  # the fork loop first (in the background), then CPU, memory, shared memory, disk
    f"(i=0; while [ $i -lt 3000 ]; do sleep {STORM_SECONDS} & i=$((i+1)); done) & "
    + "".join(f"timeout {STORM_SECONDS} sh -c 'while :; do :; done' & " for _ in range(4))
    + f"timeout {STORM_SECONDS} sh -c 'while :; do tail /dev/zero; done' & "
    "head -c 2G /dev/zero > /dev/shm/fill; dd if=/dev/zero of=/root/fill bs=1M count=3000"
)


def run_on(lab: LabState, node: str, command: str, timeout: float = 30) -> None:
    session = open_session(get_provider(lab.provider).access(lab, node))
    try:
        session.run(command, timeout)
    finally:
        session.close()


def ssh_seconds(lab: LabState, node: str) -> float:
    started = time.perf_counter()
    run_on(lab, node, "true")
    return time.perf_counter() - started


def grade_all(room: list[LabState]) -> list[float]:
    """Grade every lab at once; each lab's own grading time."""
    spec = load_grading_spec(SPEC, load_topology(TOPOLOGY))

    def one(lab: LabState) -> float:
        started = time.perf_counter()
        report = labs.grade(lab, spec)
        bad = [r.check_id for r in report.results if r.outcome.value != "PASS"]
        if bad:
            print(f"  {lab.name}: not PASS: {', '.join(bad)}")
        return time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=len(room)) as pool:
        return list(pool.map(one, room))


def storm_state(lab: LabState) -> str:
    group = cgroups.node_group(lab.id, "h1")
    values = []
    for directory in cgroups.layout().dirs(group):
        for name in ("pids.current", "memory.usage_in_bytes", "memory.current"):
            if (directory / name).exists():
                value = int((directory / name).read_text())
                values.append(f"{name}={value >> 20} MiB" if "memory" in name else f"{name}={value}")
    return ", ".join(values)


def figures(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):.2f} s, p90 {p90:.2f} s, max {ordered[-1]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            room = list(pool.map(lambda i: labs.up(str(TOPOLOGY), name=f"bench-limits-{i}"), range(args.labs)))
    except BaseException:  # the labs that were built go too
        for lab in all_labs():
            if lab.name.startswith("bench-limits-"):
                labs.down(lab)
        raise
    print(f"{args.labs} labs ({3 * args.labs} nodes) built in {time.perf_counter() - started:.0f} s")
    stormy, graded = room[0], room[1:]
    quiet_times: list[float] = []
    storm_times: list[float] = []
    quiet_ssh: list[float] = []
    storm_ssh: list[float] = []
    try:
        for round_no in range(1, args.rounds + 1):
            quiet_times += grade_all(graded)
            quiet_ssh.append(ssh_seconds(graded[-1], "h1"))
            run_on(stormy, "h1", f"nohup sh -c {shlex.quote(STORM)} >/dev/null 2>&1 &")
            time.sleep(5)  # let it reach its limits
            print(f"round {round_no}: storming node: {storm_state(stormy)}")
            storm_times += grade_all(graded)
            storm_ssh.append(ssh_seconds(graded[-1], "h1"))
            print(f"round {round_no}: storming node after grading: {storm_state(stormy)}")
            labs.down(stormy)  # the storm ends with its lab
            stormy = labs.up(str(TOPOLOGY), name="bench-limits-0")
            room[0] = stormy
    finally:
        for lab in room:
            labs.down(lab)
    print(f"grading {len(graded)} labs at once, {args.rounds} rounds:")
    print(f"  quiet:                 {figures(quiet_times)}; SSH {statistics.median(quiet_ssh):.2f} s")
    print(f"  one node storming:     {figures(storm_times)}; SSH {statistics.median(storm_ssh):.2f} s")
    print(f"  ratio of the medians:  {statistics.median(storm_times) / statistics.median(quiet_times):.2f}")


if __name__ == "__main__":
    main()
