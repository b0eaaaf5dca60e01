"""How long a node takes to come back from a `reboot` typed inside it, beside a restart by labctl.

    sudo .venv/bin/python bench/node_reboot.py [--repeat N]

One lab of two nodes (h1 on systemd, h2 on the light init). Alternated, N times each:
- inside: `labctl exec NODE -- reboot` (the candidate's), timed until the node runs again with a
  new PID 1 and no command (nor its rebooter) holds the lab: the node's own shutdown, nspawn's
  exit, the rebooter's lock and boot;
- restart: `labctl restart NODE` (what `grade --reboot` does for each node), the command's time.
Prints medians per node and way, and the rebooter's own part (its log: lock taken to sshd up).
Also the idle launcher's memory (PSS) and CPU time while the node runs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from labctl import lab as labs
from labctl import locks
from labctl.providers import get_provider, reboots
from labctl.state import LabState, load_lab

TOPOLOGY = Path(__file__).resolve().parent.parent / "tests" / "data" / "labs" / "two-inits.yml"


def labctl(lab: LabState, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "labctl", args[0], "--lab", lab.name, *args[1:]],
                   capture_output=True, timeout=300)


def back(lab: LabState, node: str, before: object) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        current = load_lab(lab.id)
        if (current.nodes[node].init != before and get_provider("local").node_states(current)[node] == "running"
                and locks.busy(lab.directory) is None):
            return
        time.sleep(0.05)
    raise SystemExit(f"{node} did not come back within 300 s")


def inside(lab: LabState, node: str) -> float:
    before = load_lab(lab.id).nodes[node].init
    started = time.monotonic()
    labctl(lab, "exec", node, "--timeout", "60", "--", "reboot")
    back(lab, node, before)
    return time.monotonic() - started


def restart(lab: LabState, node: str) -> float:
    started = time.monotonic()
    labctl(lab, "restart", node)
    return time.monotonic() - started


def idle_launcher(lab: LabState, node: str) -> str:
    launcher = load_lab(lab.id).nodes[node].launcher
    assert launcher is not None
    proc = Path(f"/proc/{launcher.pid}")
    pss = next(line.split()[1] for line in (proc / "smaps_rollup").read_text().splitlines() if line.startswith("Pss:"))
    ticks = sum(int(v) for v in (proc / "stat").read_text().rsplit(")", 1)[1].split()[11:13])
    return f"{pss} kB PSS, {ticks} CPU ticks since it started"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lab = labs.up(str(TOPOLOGY), name="bench-reboot")
    try:
        for node in ("h1", "h2"):
            time.sleep(2)
            print(f"{node} launcher, idle: {idle_launcher(lab, node)}")
        figures: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):  # a restart forgets the node's own reboots: no loop limit
            for node in ("h1", "h2"):
                for way, run in (("inside", inside), ("restart", restart)):
                    figures.setdefault((node, way), []).append(run(lab, node))
        for (node, way), times in figures.items():
            print(f"{node} {way:<8} median {statistics.median(times):.2f} s  "
                  f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)})")
        for node in ("h1", "h2"):
            log = (lab.node_dir(node) / reboots.LOG_FILE).read_text()
            own = [float(x) for x in re.findall(r"is running again \(([\d.]+) s\)", log)]
            print(f"{node} rebooter's boot (lock taken to sshd up): median {statistics.median(own):.2f} s")
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"load average (1 min) at the end: {load}")
    finally:
        labs.down(load_lab(lab.id))


if __name__ == "__main__":
    main()
