"""Real VMs under libvirt (QEMU/TCG): a 2-VM lab with a router, SSH grading, reset (then a
playbook, three resets in a row on a busy host), down.

Runs by default (in CI too); skips only where real VMs cannot run (not root, tools missing).
Starts virtlogd and libvirtd itself when qemu:///system does not answer (machines without
systemd as PID 1), and stops only the daemons it started, by PID. Builds the VM image when
it is not cached (about a minute on top of the node image, which one debootstrap builds for
both providers). Select with `-m libvirt`, skip with `-m "not libvirt"`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.state import LabState

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

URI = "qemu:///system"
TOPOLOGY = """\
name: vm-pair
nodes:
  r1: {kind: router}
  h1:
    kind: host
    routes: [{to: default, via: 10.10.0.1}]
  lan: {kind: switch, subnet: 10.10.0.0/24}
links:
  - endpoints: ["r1:eth1@10.10.0.1/24", lan]
  - endpoints: ["h1:eth1@10.10.0.10/24", lan]
  - endpoints: ["r1:eth2@10.20.0.1/30", "h1:eth2@10.20.0.2/30"]
"""
SPEC = """\
scenario: vm-pair
checks:
  - {id: h1-reaches-r1, criterion: A2.3-c1, description: {fr: "h1 joint r1", en: "h1 reaches r1"},
     node: h1, type: reach, target: 10.10.0.1, wait: 20}
  - {id: h1-p2p, criterion: A2.3-c1, description: {fr: "lien direct", en: "direct link"},
     node: h1, type: reach, target: 10.20.0.1, wait: 20}
  - {id: h1-default-route, criterion: A2.3-c1, description: {fr: "route", en: "default route"},
     node: h1, type: route, destination: default, via: 10.10.0.1}
  - {id: r1-forwards, criterion: A2.3-c1, description: {fr: "routage", en: "forwarding"},
     node: r1, type: command, command: "sysctl -n net.ipv4.ip_forward", stdout_matches: "^1"}
  - {id: r1-zebra, criterion: A2.1-c1, description: {fr: "FRR", en: "FRR runs"},
     node: r1, type: service, process: zebra}
  - {id: h1-name, criterion: A1.2-c1, description: {fr: "nom", en: "hostname"},
     node: h1, type: command, command: "hostname", stdout_matches: "^h1$"}
  - {id: h1-no-outside-resolver, criterion: A1.2-c1, description: {fr: "DNS", en: "no resolver"},
     node: h1, type: command, command: "grep -c nameserver /etc/resolv.conf", exit_code: 1}
"""


def _problem() -> str | None:
    """Why this machine cannot run real VMs, or None."""
    if os.geteuid() != 0:
        return "needs root (libvirtd, bridges)"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("libvirtd", "libvirt-daemon-system"),
                          ("virtlogd", "libvirt-daemon-system"), ("virsh", "libvirt-clients"),
                          ("qemu-img", "qemu-utils"), ("mkfs.ext4", "e2fsprogs"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/bootstrap.sh installs it: apt-get install {package})"
    try:
        import libvirt  # noqa: F401
        import lxml  # noqa: F401
    except ImportError:
        return "libvirt-python / lxml are not installed (scripts/bootstrap.sh)"
    return None


PROBLEM = _problem()


def _answers() -> bool:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    try:
        libvirt.open(URI).close()
        return True
    except libvirt.libvirtError:
        return False


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[None]:
    """qemu:///system answering; the daemons this fixture started are stopped afterwards, by PID."""
    if PROBLEM:
        pytest.skip(PROBLEM)
    started: list[subprocess.Popen[bytes]] = []
    try:
        if not _answers():
            for daemon in ("virtlogd", "libvirtd"):
                started.append(subprocess.Popen([daemon], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, start_new_session=True))
                time.sleep(0.5)
            deadline = time.monotonic() + 60
            while not _answers():
                assert time.monotonic() < deadline, "started libvirtd, but qemu:///system did not answer in 60 s"
                time.sleep(0.5)
        yield
    finally:
        from labctl.providers import libvirt_conn

        libvirt_conn.close_all()
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _busy_cpus(count: int) -> Iterator[None]:
    """`count` busy loops (bounded to 10 minutes each) while the block runs; ended by PID."""
    spin = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.wait()


def _leftovers(lab_id: str) -> list[str]:
    """Everything of a lab libvirt or the machine still shows."""
    found = []
    for command in (["virsh", "-c", URI, "list", "--all", "--name"],
                    ["virsh", "-c", URI, "net-list", "--all", "--name"],
                    ["virsh", "-c", URI, "vol-list", "labctl"], ["ip", "-o", "link"]):
        out = subprocess.run(command, capture_output=True, text=True).stdout
        found += [f"{command[2] if command[0] == 'virsh' else 'link'}: {line.strip()}" for line in out.splitlines()
                  if f"lc-{lab_id}-" in line or f"lc{lab_id}" in line]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft: {line}" for line in tables.splitlines() if f"labctl_mgmt_{lab_id}" in line]
    dnsmasq = Path("/var/lib/libvirt/dnsmasq")
    if dnsmasq.exists():
        found += [f"dnsmasq: {p.name}" for p in dnsmasq.iterdir() if f"lc-{lab_id}-" in p.name]
    return found


def _nodes_reach_neither_each_other_nor_the_host_over_management(lab: LabState) -> None:
    """h1, root in its VM, tries r1's management address and a port the host listens on there."""
    from labctl.connect import open_session
    from labctl.providers import get_provider
    from labctl.providers.libvirt import Record

    provider = get_provider("libvirt")
    host = Record(lab).data["mgmt"]["host"]
    with socket.socket() as listener:
        listener.bind((host, 0))
        listener.listen()
        listener.setblocking(False)
        session = open_session(provider.access(lab, "h1"))
        try:
            assert session.path == "mgmt"  # the controller reaches h1 there (replies pass)
            port = listener.getsockname()[1]
            tried = session.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}'; echo rc=$?", timeout=30)
            assert "rc=0" not in tried.stdout, f"h1 connected to the host's {host}:{port}: {tried.stdout}"
            with pytest.raises(BlockingIOError):
                listener.accept()
            r1 = provider.access(lab, "r1").mgmt_address
            pinged = session.run(f"ping -c 1 -W 3 {r1} >/dev/null 2>&1; echo rc=$?", timeout=30)
            assert "rc=0" not in pinged.stdout, f"h1 reached r1's management address {r1}"
        finally:
            session.close()


def test_two_vms_with_a_router_grade_reset_and_leave_nothing(libvirtd: None, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl import lab as labs
    from labctl.connect import open_session
    from labctl.grading.results import Outcome
    from labctl.providers import get_provider
    from labctl.provision import run_playbook

    monkeypatch.setenv("LABCTL_LIBVIRT_URI", URI)
    topology = tmp_path / "vm-pair.yml"
    topology.write_text(TOPOLOGY)
    spec_file = tmp_path / "vm-pair-grading.yml"
    spec_file.write_text(SPEC)
    provider = get_provider("libvirt")
    started = time.monotonic()
    lab = labs.up(str(topology), provider="libvirt")
    try:
        timings = {"up": time.monotonic() - started}
        print(f"libvirt 2-VM lab (TCG): up to SSH-ready {timings['up']:.1f} s")
        assert provider.node_states(lab) == {"r1": "running", "h1": "running"}
        spec = labs.lab_spec(lab, spec_file)
        report = labs.grade(lab, spec)
        failed = [(r.check_id, r.evidence) for r in report.results if r.outcome != Outcome.PASS]
        assert not failed, failed
        _nodes_reach_neither_each_other_nor_the_host_over_management(lab)

        # grade --reboot's restart (labs.reboot runs it for every node; one VM here, to keep the
        # test's cost near a minute under TCG): h1's own systemd powers it off, it boots again
        # from its disk (a file written before is there, the boot id is new); r1 runs on
        def boot_ids(command: str) -> dict[str, str]:
            ids = {}
            for node in ("r1", "h1"):
                session = open_session(provider.access(lab, node))
                try:
                    ids[node] = session.run(f"{command} && cat /proc/sys/kernel/random/boot_id",
                                            timeout=30).stdout.strip()
                finally:
                    session.close()
            return ids

        before = boot_ids("touch /root/before-reboot")
        mark = time.monotonic()
        provider.restart_node(lab, "h1")
        timings["restart h1"] = time.monotonic() - mark
        after = boot_ids("test -e /root/before-reboot")
        assert after["h1"] and after["h1"] != before["h1"], (before, after)
        assert after["r1"] == before["r1"], "r1 was not to restart"
        assert provider.node_states(lab) == {"r1": "running", "h1": "running"}
        report = labs.grade(lab, spec, after_reboot=True)
        failed = [(r.check_id, r.evidence) for r in report.results if r.outcome != Outcome.PASS]
        assert not failed, failed

        mark = time.monotonic()
        labs.snapshot(lab)
        timings["snapshot"] = time.monotonic() - mark

        # Break h1 the way a candidate could; out of band still reaches it without its network.
        access = provider.access(lab, "h1")
        session = open_session(access)
        assert session.path == "mgmt"
        session.run("rm /etc/hostname; ip addr flush dev eth1; "
                    "(sleep 1; ip link set mgmt0 down) </dev/null >/dev/null 2>&1 &", timeout=30)
        session.close()
        time.sleep(3)
        oob = open_session(access)
        assert oob.path == "out-of-band"
        assert oob.run("test -e /etc/hostname", timeout=10).exit_code == 1
        oob.close()

        mark = time.monotonic()
        labs.reset(lab)
        timings["reset"] = time.monotonic() - mark
        after = open_session(provider.access(lab, "h1"))
        assert after.path == "mgmt"
        clock = float(after.run("date +%s.%N", timeout=10).stdout)
        after.close()
        assert abs(clock - time.time()) < 5, "the guest clock was not resynced after the revert"
        report = labs.grade(lab, spec)
        failed = [(r.check_id, r.evidence) for r in report.results if r.outcome != Outcome.PASS]
        assert not failed, failed

        # A reverted VM accepts the next playbook (out of band, as Ansible always connects),
        # reset after reset, while the host is busy: a reverted domain runs in a new QEMU
        # whose out-of-band sockets are elsewhere (every playbook timed out before).
        playbook = tmp_path / "after-reset.yml"
        playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                            "    - ansible.builtin.command: touch /root/after-reset\n")
        with _busy_cpus(2):
            for round_ in range(3):
                mark = time.monotonic()
                labs.reset(lab)
                run_playbook(lab, provider, playbook)
                timings[f"reset+playbook {round_ + 1}"] = time.monotonic() - mark
    except BaseException:
        labs.down(lab)
        raise
    mark = time.monotonic()
    labs.down(lab)
    timings["down"] = time.monotonic() - mark
    print("libvirt 2-VM lab (TCG): " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    assert _leftovers(lab.id) == []
    assert not lab.directory.exists()
