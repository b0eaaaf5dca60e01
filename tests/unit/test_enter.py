"""The host-side helper that runs programs inside a node (labctl/providers/enter.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labctl.providers import enter


def test_argv_runs_the_helper_in_isolated_mode() -> None:
    argv = enter.node_exec_argv(4242, ["/usr/sbin/sshd", "-i"])
    assert argv[0] == sys.executable and argv[1:3] == ["-I", "-S"]
    assert argv[3].endswith("labctl/providers/enter.py")
    assert argv[4:] == ["4242", "--", "/usr/sbin/sshd", "-i"]
    with pytest.raises(ValueError):
        enter.node_exec_argv(4242, [])


def test_bounding_set_is_read_from_the_status() -> None:
    status = "Name:\tsleep\nCapInh:\t0000000000000000\nCapBnd:\t00000000fdecbfff\n"
    assert enter.bounding_set(status) == 0xFDECBFFF
    with pytest.raises(ValueError):
        enter.bounding_set("Name:\tsleep\n")


def test_the_node_gets_a_clean_environment() -> None:
    env = enter.clean_environment({"TERM": "xterm", "SSH_AUTH_SOCK": "/tmp/agent", "LABCTL_LAB": "x",
                                   "PATH": "/opt/venv/bin:/usr/bin"})
    assert env == {"PATH": enter.NODE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm"}


def test_bad_usage_and_a_missing_node_fail_with_a_message() -> None:
    usage = subprocess.run([sys.executable, "-I", "-S", enter.__file__, "x"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    gone = subprocess.run(enter.node_exec_argv(2**22 + 1, ["true"]), capture_output=True, text=True)
    assert gone.returncode == enter.FAILED and "cannot be entered" in gone.stderr


def test_a_host_process_is_never_entered() -> None:
    """A node's PID that a host process took after the node stopped: refused, nothing runs."""
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = subprocess.run(enter.node_exec_argv(waiting.pid, ["true"]), capture_output=True, text=True)
    finally:
        waiting.kill()
        waiting.wait()
    assert host.returncode == enter.FAILED and "it is no node" in host.stderr
