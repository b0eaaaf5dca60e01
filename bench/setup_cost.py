"""What a lab's setup costs, and what copying a set-up lab costs instead.

    sudo .venv/bin/python bench/setup_cost.py                  # multi-site-routing, 3 runs each
    sudo .venv/bin/python bench/setup_cost.py --repeat 5 --scenario patching

Side by side on the same lab, alternating runs: the scenario's setup playbook with stock
Ansible (`linear`, the baseline) and with Mitogen (`mitogen_linear`, labctl's default);
then building a lab from scratch (`labctl up`: nodes + setup) against copying a set-up lab
(`lab.clone`). Prints medians of wall time and of CPU time (every process the run started,
nodes' included, from a cpuacct cgroup: the figure that decides how many labs a machine
sets up at once), and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from functools import partial

from cpu import cpu_accounting, measure  # bench/cpu.py

from labctl import lab as labs
from labctl.state import LabState


def line(label: str, runs: list[tuple[float, float, object]]) -> tuple[float, float]:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    print(f"  {label:<34} wall {wall:6.1f} s   CPU {cpu:6.1f} s   (median of {len(runs)})")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="multi-site-routing")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (the local provider, cgroups)", file=sys.stderr)
        return 4
    strategies = {"linear": "stock Ansible (baseline)", "mitogen_linear": "Mitogen (labctl's default)"}
    setup: dict[str, list[tuple[float, float, object]]] = {s: [] for s in strategies}
    fresh: list[tuple[float, float, object]] = []
    copies: list[tuple[float, float, object]] = []
    with cpu_accounting() as cpu:
        lab = labs.up(args.scenario, name="bench-setup", setup=False)
        try:
            scenario = labs.lab_scenario(lab)
            for _ in range(args.repeat):
                for strategy in strategies:  # alternate, so a change of load hits both alike
                    os.environ["LABCTL_ANSIBLE_STRATEGY"] = strategy
                    setup[strategy].append(measure(lambda: labs.run_scenario_playbook(lab, scenario.setup), cpu))
        finally:
            os.environ.pop("LABCTL_ANSIBLE_STRATEGY", None)
            labs.down(lab)
        origin: LabState | None = None
        try:
            for _ in range(args.repeat):
                wall, used, built = measure(lambda: labs.up(args.scenario, name="bench-fresh"), cpu)
                fresh.append((wall, used, None))
                if origin is None:
                    origin = built
                else:
                    labs.down(built)
                wall, used, made = measure(partial(labs.clone, origin, name="bench-copy"), cpu)
                copies.append((wall, used, None))
                labs.down(made)
        finally:
            if origin is not None:
                labs.down(origin)
    load = os.getloadavg()[0]
    print(f"setup cost of {args.scenario}, {os.cpu_count()} cores, load {load:.1f} at the end")
    base_wall, base_cpu = line(f"setup, {strategies['linear']}", setup["linear"])
    wall, used = line(f"setup, {strategies['mitogen_linear']}", setup["mitogen_linear"])
    print(f"  {'':<34} Mitogen: {base_wall / wall:.2f}x faster, {base_cpu / used:.2f}x less CPU")
    fresh_wall, fresh_cpu = line("lab from scratch (up + setup)", fresh)
    copy_wall, copy_cpu = line("copy of a set-up lab (clone)", copies)
    print(f"  {'':<34} copy: {fresh_wall / copy_wall:.1f}x faster, {fresh_cpu / copy_cpu:.1f}x less CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
