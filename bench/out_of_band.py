"""Benchmark: what entering a node safely costs (labctl/providers/enter.py) against nsenter.

Times, on one node of the small test lab: a bare `true` run in the node through the helper
and through `nsenter -a` (the former path), then a whole out-of-band SSH login running
`true` (what a candidate's gateway login, `labctl exec` and grading's fallback pay).
Prints medians; asserts nothing. Run as root from the project root:

    sudo .venv/bin/python bench/out_of_band.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from labctl import lab as labs
from labctl.cli import _ssh_argv
from labctl.providers.enter import node_exec_argv

SMALL = Path(__file__).resolve().parent.parent / "tests" / "data" / "labs" / "small.yml"


def median_ms(argv: list[str], repeat: int) -> float:
    """Median wall time of running `argv` to its end, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Build the small lab, time each path on h1, remove the lab."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    lab = labs.up(str(SMALL), name="bench-oob")
    try:
        init = lab.nodes["h1"].init
        assert init is not None
        rows = {
            "true in the node, enter.py": median_ms(node_exec_argv(init.pid, ["true"]), args.repeat),
            "true in the node, nsenter -a": median_ms(["nsenter", "-t", str(init.pid), "-a", "-r", "-w", "true"],
                                                      args.repeat),
            "out-of-band SSH login + true": median_ms(_ssh_argv(lab.name, "h1", ("true",)), args.repeat),
        }
    finally:
        labs.down(lab)
    for what, ms in rows.items():
        print(f"{what:<32} {ms:7.1f} ms (median of {args.repeat})")


if __name__ == "__main__":
    main()
