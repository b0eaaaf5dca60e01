"""Out-of-band access never shows a process with host credentials inside a node.

A watcher runs as the node's root (what a hostile candidate has), scans /proc for every
new process and attaches to each (PTRACE_SEIZE, as PTRACE_ATTACH) while labctl opens many out-of-band
connections to that node. A process of the host's seen inside the node (a host uid shows
there as the overflow uid 65534), or attached while it was still labctl's helper, would be
a path from node root to host root.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from labctl.cli import _ssh_argv
from labctl.connect import open_session
from labctl.providers import get_provider
from labctl.providers.enter import node_exec_argv
from labctl.state import LabState

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]

CONNECTIONS = 50
WATCHER = r"""
import ctypes, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT, WALL = 17, 0x4206, 0x4207, 0x40000000
OVERFLOW = "65534"  # how a uid the node does not map (the host's) shows inside it (no node
                    # process runs as nobody; sshd's unprivileged child has the group nogroup)
stop, deadline = sys.argv[1], time.time() + float(sys.argv[2])
seen = set(os.listdir("/proc"))
report = {"new": 0, "host_ids": [], "attached": [], "helper_seen": 0, "scans": 0}

def ids(pid):
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return [f for l in lines if l.startswith("Uid:") for f in l.split()[1:]]

def cmdline(pid):
    return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")

def hostile(pid):
    return OVERFLOW in ids(pid) or "enter.py" in cmdline(pid) or "nsenter" in cmdline(pid)

open(stop + ".ready", "w").close()
while not os.path.exists(stop) and time.time() < deadline:
    report["scans"] += 1
    for name in os.listdir("/proc"):
        if not name.isdigit() or name in seen:
            continue
        seen.add(name)
        pid = int(name)
        try:
            report["new"] += 1
            if OVERFLOW in ids(pid):
                report["host_ids"].append(cmdline(pid))
            if "enter.py" in cmdline(pid):
                report["helper_seen"] += 1
            # PTRACE_SEIZE: attach as PTRACE_ATTACH would (the same permission checks), with
            # no SIGSTOP left pending to stop the process after the detach
            if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
                try:
                    libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
                    os.waitpid(pid, WALL)
                    if hostile(pid):
                        report["attached"].append(cmdline(pid))
                finally:
                    libc.ptrace(PTRACE_DETACH, pid, None, None)
        except OSError:
            continue
print(json.dumps(report))
"""


def _watch(lab: LabState, node: str, connect: list[list[str]]) -> dict[str, object]:
    """Run the watcher as `node`'s root while each argv in `connect` runs on the host."""
    init = lab.nodes[node].init
    assert init is not None
    inside = Path(f"/proc/{init.pid}/root")
    (inside / "tmp/watcher.py").write_text(WATCHER)
    session = open_session(get_provider("local").access(lab, node))
    try:
        session.run("rm -f /tmp/stop /tmp/stop.ready; "
                    "nohup python3 /tmp/watcher.py /tmp/stop 120 > /tmp/watch.json 2>&1 &", 10)
        deadline = time.monotonic() + 20
        while not (inside / "tmp/stop.ready").exists():
            assert time.monotonic() < deadline, "the watcher did not start"
            time.sleep(0.05)
        for argv in connect:
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        session.run("touch /tmp/stop", 10)
        deadline = time.monotonic() + 20
        while True:
            text = (inside / "tmp/watch.json").read_text()
            if text.strip():
                return dict(json.loads(text))
            assert time.monotonic() < deadline, "the watcher did not report"
            time.sleep(0.1)
    finally:
        session.close()


def test_out_of_band_connections_never_show_host_credentials(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    # The watcher is able to see and attach to a host process in the node: nsenter into the
    # node's user and PID namespaces keeping the host's uid (what the old out-of-band path
    # exposed for a moment on every connection).
    init = lab.nodes["h1"].init
    assert init is not None
    control = _watch(lab, "h1", [["nsenter", "-t", str(init.pid), "-U", "-p", "-m", "--preserve-credentials",
                                   "--", "sleep", "1"]])
    assert control["host_ids"] and control["attached"], control

    ssh = _ssh_argv(lab.name, "h1", ("true",))
    seen = _watch(lab, "h1", [ssh] * CONNECTIONS)
    print(f"watcher: {seen['new']} new processes in {seen['scans']} scans of /proc, "
          f"{seen['helper_seen']} sightings of the helper, host ids {len(seen['host_ids'])}, "
          f"attached {len(seen['attached'])}")
    assert int(seen["new"]) >= CONNECTIONS  # each connection's sshd at least was seen
    assert seen["host_ids"] == [], seen["host_ids"]
    assert seen["attached"] == [], seen["attached"]


def test_the_program_runs_as_node_root_with_the_nodes_capabilities(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    init = lab.nodes["h1"].init
    assert init is not None
    status = Path(f"/proc/{init.pid}/status").read_text()
    bound = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
    result = subprocess.run(node_exec_argv(init.pid, ["sh", "-c", "id -u; cat /etc/hostname; "
                                                      "grep -E '^(CapInh|CapBnd|CapAmb)' /proc/self/status; "
                                                      "env | sort; exit 3"]),
                            capture_output=True, text=True, timeout=30, env={"SECRET": "host", "TERM": "xterm"})
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0" and lines[1] == "h1"
    assert f"CapBnd:\t{bound}" in lines and "CapInh:\t0000000000000000" in lines
    assert "CapAmb:\t0000000000000000" in lines
    assert not any(line.startswith("SECRET=") for line in lines)  # a clean environment
    assert "TERM=xterm" in lines
    gone = subprocess.run(node_exec_argv(init.pid, ["no-such-program"]), capture_output=True, text=True,
                          timeout=30)
    assert gone.returncode == 127 and "not found in the node" in gone.stderr
    missing = subprocess.run(node_exec_argv(2**22 + 1, ["true"]), capture_output=True, text=True, timeout=30)
    assert missing.returncode == 125 and "cannot be entered" in missing.stderr
