"""Benchmark: a node on systemd against a node on the light init, side by side.

Builds a lab of N hosts and routers (a chain: h0 - r1 - r2 ... with hosts on each router's
LAN) once with `defaults: {init: light}` and once with systemd, alternately for R rounds, and
prints per init: `labctl up` wall time, a reboot of every node (`labctl grade --reboot`'s
restart), PSS memory per node (every process of the node, from /proc/PID/smaps_rollup on the
host) and the CPU seconds the node's live processes used to boot. Medians over the rounds,
then the ratios systemd / light. Asserts nothing; removes every lab it builds.

    sudo .venv/bin/python bench/node_init.py [--nodes 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from labctl import cgroups
from labctl import lab as labs
from labctl.state import LabState

SETTLE = 3.0  # seconds after `up` before memory is read (units finish starting)


def topology(nodes: int, init: str) -> str:
    """A chain of routers, each with one host on its LAN: `nodes` machines in all."""
    routers = max(1, nodes // 2)
    lines = [f"name: bench-{init}", f"defaults: {{init: {init}}}", "nodes:"]
    links = []
    for r in range(routers):
        lines.append(f"  r{r}: {{kind: router}}")
        if len(lines) - 3 < nodes:
            lines.append(f"  h{r}: {{kind: host}}")
            links.append(f'  - endpoints: ["r{r}:eth1@10.{r}.0.1/24", "h{r}:eth1@10.{r}.0.10/24"]')
        if r:
            links.append(f'  - endpoints: ["r{r - 1}:eth2", "r{r}:eth3"]')
    return "\n".join([*lines, "links:", *links]) + "\n"


def node_figures(lab: LabState, node: str) -> tuple[float, float]:
    """(PSS MiB, CPU seconds) of every live process of the node."""
    pss_kib, ticks = 0, 0
    for pid in cgroups.pids(cgroups.node_group(lab.id, node)):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss_kib += int(line.split()[1])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return pss_kib / 1024, ticks / os.sysconf("SC_CLK_TCK")


def one_round(nodes: int, init: str, folder: Path) -> dict[str, float]:
    source = folder / f"bench-{init}.yml"
    source.write_text(topology(nodes, init))
    started = time.monotonic()
    lab = labs.up(str(source), name=f"bench-init-{init}")
    try:
        up = time.monotonic() - started
        time.sleep(SETTLE)
        figures = [node_figures(lab, node.name) for node in lab.plan.nodes]
        started = time.monotonic()
        labs.reboot(lab)
        reboot = time.monotonic() - started
        return {"up s": up, "reboot s": reboot,
                "PSS MiB/node": statistics.median(f[0] for f in figures),
                "boot CPU s/node": statistics.median(f[1] for f in figures)}
    finally:
        labs.down(lab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10, choices=range(2, 31), metavar="2..30")
    parser.add_argument("--rounds", type=int, default=2, choices=range(1, 6), metavar="1..5")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"light": [], "systemd": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for init in results:  # alternately: the machine's load hits both alike
                results[init].append(one_round(args.nodes, init, Path(folder)))
    keys = list(results["light"][0])
    print(f"{args.nodes} nodes, {args.rounds} rounds (medians)")
    print(f"{'':18}" + "".join(f"{k:>16}" for k in keys))
    medians = {init: {k: statistics.median(r[k] for r in rounds) for k in keys} for init, rounds in results.items()}
    for init, values in medians.items():
        print(f"{init:18}" + "".join(f"{values[k]:16.2f}" for k in keys))
    print(f"{'systemd / light':18}" + "".join(
        f"{medians['systemd'][k] / medians['light'][k] if medians['light'][k] else float('nan'):16.2f}" for k in keys))


if __name__ == "__main__":
    main()
