"""Benchmark: up, grade and down of multi-site-routing; memory per node; grader vs Ansible.

Prints figures (medians, ratios); asserts nothing. Run as root from the project root.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml

from labctl import lab as labs
from labctl.grading.checks import probe
from labctl.image import ensure_image
from labctl.providers import get_provider
from labctl.scenario import load_scenario
from labctl.state import LabState

SCENARIO = "multi-site-routing"
T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[T, float]:
    """Run `work`; return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def side_by_side(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(i)` for i in range(count) concurrently."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(work, range(count)))


def node_pss_kb(lab: LabState) -> dict[str, int]:
    """PSS (kB) of every process in each node's PID namespace, plus its launcher and nspawn."""
    namespaces: dict[str, str] = {}
    for name, state in lab.nodes.items():
        if state.init:
            namespaces[Path(f"/proc/{state.init.pid}/ns/pid").readlink().name] = name
    totals = {name: 0 for name in lab.nodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            node = namespaces.get((proc / "ns" / "pid").readlink().name)
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            launcher = next((n for n, s in lab.nodes.items()
                             if s.launcher and s.launcher.pid in (int(proc.name), ppid)), None)
            owner = node or launcher
            if owner is None:
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    totals[owner] += int(line.split()[1])
        except OSError:
            continue
    return totals


def lifecycle(count: int) -> dict[str, float]:
    """Time up (infrastructure, then setup), grade and down of `count` instances side by side."""
    scenario = load_scenario(SCENARIO)
    built, infra = timed(lambda: side_by_side(count, lambda i: labs.up(SCENARIO, name=f"bench-{i}", setup=False)))
    try:
        _, setup = timed(lambda: side_by_side(count, lambda i: labs.run_scenario_playbook(built[i], scenario.setup)))
        spec = labs.lab_spec(built[0])
        # Grade solved instances: a failing check waits out its budget (15 s here) by design.
        side_by_side(count, lambda i: labs.run_scenario_playbook(built[i], scenario.solution))
        _, grade_one = timed(lambda: labs.grade(built[0], spec))
        _, grade_all = timed(lambda: side_by_side(count, lambda i: labs.grade(built[i], spec)))
        memory = [node_pss_kb(lab) for lab in built]
    finally:
        _, down = timed(lambda: side_by_side(count, lambda i: labs.down(built[i])))
    kinds = {n.name: n.kind.value for n in built[0].plan.nodes}
    hosts = [m[n] for m in memory for n in m if kinds[n] == "host"]
    routers = [m[n] for m in memory for n in m if kinds[n] == "router"]
    return {"infra": infra, "setup": setup, "up": infra + setup, "grade_one": grade_one, "grade_all": grade_all,
            "down": down, "host_mb": statistics.mean(hosts) / 1024, "router_mb": statistics.mean(routers) / 1024}


def ansible_grading_playbook(lab: LabState) -> list[dict[str, Any]]:
    """The scenario's checks as an Ansible playbook: the same probe commands, one task each."""
    spec = labs.lab_spec(lab)
    plays = []
    for node in spec.nodes():
        tasks = []
        for check in (c for c in spec.checks if c.node == node):
            command = probe(check)
            shell = f"vtysh -c {command.command!r}" if command.cli else command.command
            tasks.append({"name": check.id, "ansible.builtin.shell": shell, "register": "probe",
                          "changed_when": False, "failed_when": False})
        plays.append({"name": f"grade {node}", "hosts": node, "gather_facts": False, "tasks": tasks})
    return plays


def grader_vs_ansible(repeat: int) -> dict[str, float]:
    """Grade one solved instance three ways, alternating: observed from outside the nodes (the
    local provider's grading), the same checks probed over SSH inside them, and the same probes
    as an Ansible playbook; medians."""
    scenario = load_scenario(SCENARIO)
    lab = labs.up(SCENARIO, name="bench-compare")
    try:
        labs.run_scenario_playbook(lab, scenario.solution)
        spec = labs.lab_spec(lab)
        with tempfile.TemporaryDirectory() as tmp:
            playbook = Path(tmp) / "grade.yml"
            playbook.write_text(yaml.safe_dump(ansible_grading_playbook(lab), sort_keys=False))
            outside, ssh, theirs = [], [], []
            for _ in range(repeat):
                for times, from_outside in ((outside, True), (ssh, False)):
                    report, seconds = timed(lambda: labs.grade(lab, spec, from_outside=from_outside))  # noqa: B023
                    assert report.exit_code == 0, [(r.check_id, r.evidence) for r in report.results]
                    times.append(seconds)
                theirs.append(timed(lambda: labs.run_scenario_playbook(lab, playbook))[1])
    finally:
        labs.down(lab)
    return {"outside": statistics.median(outside), "ssh": statistics.median(ssh),
            "ansible": statistics.median(theirs), "ratio": statistics.median(theirs) / statistics.median(outside),
            "ssh_ratio": statistics.median(ssh) / statistics.median(outside), "checks": len(spec.checks)}


def lifecycles(instances: int) -> None:
    """Print up, grade and down figures for 1 and `instances` instances side by side."""
    print(f"multi-site-routing on the local provider ({len(load_scenario(SCENARIO).spec.criteria)} criteria)")
    print(f"{'instances':>9} {'infra s':>8} {'setup s':>8} {'up s':>7} {'grade1 s':>9} {'gradeN s':>9} "
          f"{'down s':>7} {'host MB':>8} {'router MB':>9}")
    for count in sorted({1, instances}):
        f = lifecycle(count)
        print(f"{count:>9} {f['infra']:>8.2f} {f['setup']:>8.2f} {f['up']:>7.2f} {f['grade_one']:>9.2f} "
              f"{f['grade_all']:>9.2f} {f['down']:>7.2f} {f['host_mb']:>8.1f} {f['router_mb']:>9.1f}")


def main() -> None:
    """Run the benchmarks and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=10, help="Instances side by side (also runs 1).")
    parser.add_argument("--repeat", type=int, default=5, help="Grading runs per side for the comparison.")
    parser.add_argument("--compare-only", action="store_true", help="Only the grading comparison.")
    args = parser.parse_args()
    ensure_image()
    get_provider("local")
    if not args.compare_only:
        lifecycles(args.instances)
    c = grader_vs_ansible(args.repeat)
    print(f"\ngrading one solved instance ({c['checks']:.0f} checks), median of {args.repeat} runs each, alternated:")
    print(f"  labctl, observed from outside the nodes  {c['outside']:.2f} s")
    print(f"  labctl, the same checks over SSH inside  {c['ssh']:.2f} s ({c['ssh_ratio']:.1f}x slower)")
    print(f"  the same probes as an Ansible playbook   {c['ansible']:.2f} s")
    print(f"  outside vs Ansible                       {c['ratio']:.1f}x faster")


if __name__ == "__main__":
    main()
