"""Benchmark an exam room: create, grade-all, reset-all and destroy times, and memory.

    sudo .venv/bin/python bench/session_room.py                 # 30 candidates of multi-site-routing
    sudo .venv/bin/python bench/session_room.py --candidates 5  # fewer, on a small machine
    sudo .venv/bin/python bench/session_room.py --variants 6    # 6 shared variants, set up once each
    LABCTL_ANSIBLE_STRATEGY=linear sudo .venv/bin/python bench/session_room.py   # stock Ansible (baseline)

Grading and resetting are repeated (--repeat, 3 by default: grade, reset, grade, reset...)
and their medians printed with every run, as the host's neighbours move single runs by
seconds. Prints one line per phase (seconds) and the memory the room's nodes use (RSS of every
process of every lab, and the machine's used memory before and after). Targets (issue 4):
create under 90 s, grade all under 30 s, reset all under 30 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cpu import cpu_accounting, measure  # bench/cpu.py

from labctl.progress import Progress
from labctl.session import room
from labctl.session.model import load_session, sessions_dir
from labctl.session.roster import parse_roster
from labctl.state import LabState


def used_memory_mib() -> float:
    """The machine's used memory (MemTotal - MemAvailable) in MiB."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024


def lab_rss_mib(labs: list[LabState]) -> float:
    """RSS of every process running inside the labs' nodes (PID namespaces of their init), in MiB."""
    namespaces = set()
    for lab in labs:
        for node in lab.nodes.values():
            if node.init and node.init.alive():
                namespaces.add(os.readlink(f"/proc/{node.init.pid}/ns/pid"))
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "ns" / "pid") in namespaces:
                rss = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmRSS"))
                total += int(rss.split()[1])
        except (OSError, StopIteration):
            continue
    return total / 1024


def outcomes(session: str, run_ids: dict[str, int | None], errors: Counter[tuple[str, str]]) -> Counter[str]:
    """PASS/FAIL/ERROR counts of the grading runs just stored; each ERROR also counted in
    `errors` by (check, node) with the first line of its evidence, so a room's ERRORs can be
    read as causes, not only as a number."""
    store = room.results_store(load_session(session))
    try:
        wanted = set(run_ids.values())
        results = [result for run in store.runs(session) if run.id in wanted for result in run.report.results]
    finally:
        store.close()
    errors.update((f"{r.check_id} on {r.node}", (r.evidence.strip().splitlines() or ["(no evidence)"])[0][:160])
                  for r in results if r.outcome.value == "ERROR")
    return Counter(result.outcome.value for result in results)


def main() -> int:
    """Run the phases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--scenario", default="multi-site-routing")
    parser.add_argument("--parallel", type=int, default=room.DEFAULT_WORKERS)
    parser.add_argument("--variants", type=int, default=None, help="Shared variants (default: one per candidate).")
    parser.add_argument("--repeat", type=int, default=3, help="Grade-all and reset-all rounds (medians printed).")
    parser.add_argument("--keep", action="store_true", help="Leave the session built (destroy it yourself).")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (the local provider)", file=sys.stderr)
        return 4
    name = f"bench-{secrets.token_hex(3)}"
    roster = parse_roster("id,name,tiers_temps\n" + "".join(f"c{i:02d},Candidat {i},{'oui' if i % 5 == 0 else 'non'}\n"
                                                            for i in range(1, args.candidates + 1)))
    figures: list[tuple[str, list[tuple[float, float]], str]] = []
    verdicts: Counter[str] = Counter()  # of every check of every grading round: a fast grade with ERRORs is no grade
    errors: Counter[tuple[str, str]] = Counter()  # which checks ERRORed, and why
    before = used_memory_mib()
    progress = Progress(quiet=not sys.stderr.isatty())
    with cpu_accounting() as cpu:
        def phase(label: str, target: str, work: Callable[[], object]) -> None:
            wall, used, _ = measure(work, cpu)
            runs = next((r for name, r, _ in figures if name == label), None)
            if runs is None:
                figures.append((label, runs := [], target))
            runs.append((wall, used))

        load_before = os.getloadavg()[0]
        phase("create", "target < 90 s", lambda: room.create(args.scenario, roster, 3 * 3600, name,
                                                              variants=args.variants, workers=args.parallel,
                                                              progress=progress))
        try:
            labs = [lab for lab in (room.candidate_lab(c) for c in load_session(name).candidates) if lab]
            nodes = sum(len(lab.plan.nodes) for lab in labs)
            rss, after = lab_rss_mib(labs), used_memory_mib()
            room.start(load_session(name))
            # graders wait more than they compute: the room at once (room.GRADE_WORKERS)
            for _ in range(args.repeat):  # each reset brings back the starting state the grading saw
                phase("grade all", "target < 30 s",
                      lambda: verdicts.update(outcomes(name, room.grade(load_session(name)), errors)))
                phase("reset all", "target < 30 s", lambda: room.reset(load_session(name), workers=args.parallel))
        finally:
            if not args.keep:
                phase("destroy", "", lambda: room.destroy(load_session(name), workers=args.parallel))
                shutil.rmtree(sessions_dir() / name, ignore_errors=True)
    from labctl.provision import strategy_environment

    print(f"session room: {args.candidates} candidates of {args.scenario}, {nodes} nodes, "
          f"{args.variants or 'own'} variants, {args.parallel} labs at once, {os.cpu_count()} cores, "
          f"Ansible strategy {strategy_environment()['ANSIBLE_STRATEGY']}, "
          f"load {load_before:.1f} before / {os.getloadavg()[0]:.1f} after")
    cores = os.cpu_count() or 1
    for label, runs, target in figures:
        seconds, used = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        spread = f"   (runs: {', '.join(f'{r[0]:.1f}' for r in runs)} s)" if len(runs) > 1 else ""
        print(f"  {label:<10} {seconds:7.1f} s   CPU {used:6.1f} s (>= {used / cores:5.1f} s on {cores} idle cores)"
              f"   {target}{spread}")
    print(f"  verdicts   {dict(verdicts)} over {args.repeat} grading rounds (the starting state: all FAIL expected)")
    for (check, evidence), count in errors.most_common(10):
        print(f"    ERROR x{count:<3} {check}: {evidence}")
    if len(errors) > 10:
        print(f"    ... and {len(errors) - 10} other (check, evidence) pairs")
    print(f"  memory     nodes' processes {rss:.0f} MiB RSS ({rss / max(1, nodes):.1f} MiB per node); "
          f"machine used {before:.0f} -> {after:.0f} MiB (+{after - before:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
