"""A candidate has root inside a node and must gain nothing outside it.

Each test tries an escape from inside a real node, as the node's root, and checks on the
machine that it failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.connect import SshSession, open_session
from labctl.grading.session import NodeUnreachable
from labctl.providers import get_provider
from labctl.state import LabState

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def node(make_lab: object) -> Iterator[tuple[LabState, SshSession]]:
    lab = make_lab()  # type: ignore[operator]
    session = open_session(get_provider("local").access(lab, "h1"))
    yield lab, session
    session.close()


def test_node_root_is_an_unprivileged_uid_on_the_machine(node: tuple[LabState, SshSession]) -> None:
    lab, session = node
    assert session.run("id -u", 5).stdout.strip() == "0"
    init = lab.nodes["h1"].init
    assert init is not None
    uid_line = next(line for line in Path(f"/proc/{init.pid}/status").read_text().splitlines()
                    if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) >= 100000


def test_cannot_mount_the_machines_disk(node: tuple[LabState, SshSession], tmp_path: Path) -> None:
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("needs mkfs.ext4 and losetup to make a stand-in disk")
    _, session = node
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 8 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    attached = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attached.returncode != 0:
        pytest.skip(f"no loop device on this machine: {attached.stderr.strip()}")
    device = attached.stdout.strip()
    try:
        minor = os.minor(os.stat(device).st_rdev)
        attempt = session.run(
            f"mkdir -p /mnt/x; mknod /tmp/disk b 7 {minor} 2>&1; mount /tmp/disk /mnt/x 2>&1; "
            "mount -t ext4 /dev/vda /mnt/x 2>&1; grep -c ' /mnt/x ' /proc/mounts", 10)
        assert attempt.stdout.strip().splitlines()[-1] == "0", attempt.stdout
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def test_cannot_read_a_file_outside_the_node(node: tuple[LabState, SshSession], tmp_path: Path) -> None:
    lab, session = node
    secret = Path("/root") / f"labctl-secret-{secrets.token_hex(4)}"
    secret.write_text("exam answers\n")
    secret.chmod(0o600)
    other_upper = lab.upper_dir("h2")
    try:
        escape = (
            "import os\n"
            "os.makedirs('/tmp/jail', exist_ok=True)\n"
            "fd = os.open('/', os.O_RDONLY)\n"
            "os.chroot('/tmp/jail')\n"
            "os.fchdir(fd)\n"
            "for _ in range(64): os.chdir('..')\n"
            "os.chroot('.')\n"
            f"for path in ['{secret}', '{other_upper}/etc/hostname', '/etc/shadow']:\n"
            "    try:\n"
            "        print(path, open(path).read().strip())\n"
            "    except OSError as exc:\n"
            "        print(path, 'DENIED', exc)\n"
        )
        result = session.run(f"python3 - <<'EOF'\n{escape}EOF\n", 10)
        assert "exam answers" not in result.stdout
        assert f"{other_upper}/etc/hostname h2" not in result.stdout
        direct = session.run(f"cat {secret} /proc/1/root{secret} 2>&1", 5)
        assert "exam answers" not in direct.stdout
    finally:
        secret.unlink()


def test_cannot_kill_a_process_outside_the_node(node: tuple[LabState, SshSession]) -> None:
    _, session = node
    decoy = subprocess.Popen(["sleep", "300"])
    try:
        attempt = session.run(f"kill -9 {decoy.pid} 2>&1; echo done", 10)
        assert "No such process" in attempt.stdout
        assert decoy.poll() is None, "a process outside the node was killed from inside it"
        # Killing every process it can see takes the node down with it, and nothing else.
        with pytest.raises(NodeUnreachable):
            session.run("kill -9 -1", 10)
        assert decoy.poll() is None, "kill -1 inside a node reached a process outside it"
    finally:
        decoy.kill()
        decoy.wait()


def test_cannot_change_the_machines_kernel_settings(node: tuple[LabState, SshSession]) -> None:
    _, session = node
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    session.run("echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern 2>&1; "
                "sysctl -w kernel.hostname=pwned 2>&1; echo 1 > /proc/sys/vm/drop_caches 2>&1", 10)
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "pwned"


def test_network_sysctls_inside_the_node_stay_inside(node: tuple[LabState, SshSession]) -> None:
    _, session = node
    before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    opposite = "0" if before.strip() == "1" else "1"
    result = session.run(f"sysctl -w net.ipv4.ip_forward={opposite} && cat /proc/sys/net/ipv4/ip_forward", 5)
    assert result.stdout.strip().endswith(opposite)  # the candidate may route inside the node
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == before


def test_node_has_a_fuse_device_of_its_own(node: tuple[LabState, SshSession]) -> None:
    lab, session = node
    opened = session.run("python3 -c \"import os; os.close(os.open('/dev/fuse', os.O_RDWR)); print('open')\"", 5)
    assert opened.stdout.strip() == "open", opened.stderr  # sshfs and other FUSE mounts can work inside
    device = lab.node_dir("h1") / "fuse"
    assert device.stat().st_uid == 100000  # the node's root owns its device, not the machine's /dev/fuse


def test_kernel_interfaces_stay_read_only(node: tuple[LabState, SshSession]) -> None:
    _, session = node
    attempts = {
        "remount /proc/sys": "mount -o remount,rw /proc/sys",
        "remount /proc/sys (bind)": "mount -o remount,bind,rw /proc/sys",
        "unmount /proc/sys": "umount /proc/sys",
        "detach /proc/sys": "umount -l /proc/sys",
        "remount /proc/irq": "mount -o remount,rw /proc/irq",
        "remount /proc/bus": "mount -o remount,rw /proc/bus",
        "remount /sys": "mount -o remount,rw /sys",
        "remount /sys/kernel": "mount -o remount,rw /sys/kernel",
        "remount /sys/fs (bind)": "mount -o remount,bind,rw /sys/fs",
    }
    script = "".join(f"{command} 2>/dev/null; echo \"{what}: $?\"\n" for what, command in attempts.items())
    result = session.run(script, 20)
    outcomes = dict(line.rsplit(": ", 1) for line in result.stdout.splitlines())
    assert set(outcomes) == set(attempts), result.stdout
    assert all(code != "0" for code in outcomes.values()), outcomes
    mounts = session.run("awk '$5 == \"/proc/sys\" || $5 == \"/sys/kernel\" {print $5, $6}' /proc/self/mountinfo", 5)
    options = dict(line.split() for line in mounts.stdout.splitlines())
    assert options["/proc/sys"].split(",")[0] == "ro" and options["/sys/kernel"].split(",")[0] == "ro", mounts.stdout
    # the node's own network settings stay writable
    assert session.run("sysctl -w net.ipv4.conf.all.forwarding=1 >/dev/null && echo ok", 5).stdout.strip() == "ok"
