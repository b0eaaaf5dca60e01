"""What the results journal costs a room: appends (fsync'd) and a grader's replay check.

    .venv/bin/python bench/results_journal.py [--runs 300] [--checks 30] [--graders 30]

Prints the time of `--runs` journaled adds into one store, the journal's size, and the
time of `--graders` fresh stores adding one run each (what a room's parallel graders do:
each reads the journal once, skipping the keys the database holds without parsing them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.session.store import ResultStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--checks", type=int, default=30)
    parser.add_argument("--graders", type=int, default=30)
    args = parser.parse_args()
    results = [CheckResult(f"c{i}", "A1.3-c2", "r1", "x", "x", 1, Outcome.PASS, "evidence " * 100)
               for i in range(args.checks)]
    report = GradeReport("lab", "scenario", "a", "b", results)
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as folder:
        db, journal = f"sqlite://{folder}/results.sqlite", Path(folder) / "results.journal"
        store = ResultStore(db, journal=journal)
        started = time.monotonic()
        for index in range(args.runs):
            store.add("s", f"c{index % args.graders}", "on-demand", report)
        took = time.monotonic() - started
        store.close()
        print(f"{args.runs} journaled adds: {took:.2f} s ({1000 * took / args.runs:.1f} ms each), "
              f"journal {journal.stat().st_size / 1e6:.1f} MB")
        started = time.monotonic()
        for index in range(args.graders):
            fresh = ResultStore(db, journal=journal)
            fresh.add("s", f"c{index}", "final", report)
            fresh.close()
        took = time.monotonic() - started
        print(f"{args.graders} fresh stores adding one run each: {took:.2f} s "
              f"({1000 * took / args.graders:.0f} ms each, journal read included)")


if __name__ == "__main__":
    main()
