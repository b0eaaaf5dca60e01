"""Tamper evidence on folders laid out as a node's image (lower), its starting snapshot
(baseline) and its writable layer (upper), overlay whiteouts and opaque folders included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labctl.grading.spec import CHECK_MODELS, CheckBase
from labctl.grading.tamper import Change, Tampering, changes, relied_on, tampered_evidence

ROOT = os.geteuid() == 0


def write(root: Path, relative: str, content: str = "x", mode: int = 0o755) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.chmod(path, mode)
    return path


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An image with a few programs, libraries and start-up files; an empty upper and baseline."""
    lower, upper, baseline = tmp_path / "lower", tmp_path / "upper", tmp_path / "baseline"
    for relative in ("usr/bin/ip", "usr/bin/vtysh", "usr/bin/ping", "usr/bin/bash", "usr/sbin/sshd"):
        write(lower, relative, f"ELF {relative}")
    write(lower, "usr/lib/x86_64-linux-gnu/libc.so.6", "libc")
    write(lower, "usr/lib/python3/dist-packages/x.py", "print()", 0o644)
    write(lower, "etc/pam.d/sshd", "auth required pam_unix.so\n", 0o644)
    write(lower, "etc/pam.d/common-auth", "auth\n", 0o644)
    write(lower, "root/.bashrc", "# bashrc\n", 0o644)
    write(lower, "etc/hosts", "127.0.0.1 localhost\n", 0o644)
    (lower / "usr/local/bin").mkdir(parents=True)
    (lower / "etc/ssh/labctl_authorized_keys").mkdir(parents=True)  # the image has it
    (lower / "bin").symlink_to("usr/bin")
    upper.mkdir()
    baseline.mkdir()
    return lower, upper, baseline


def listed(result: Tampering) -> list[str]:
    return [c.describe() for c in result.changes]


def make(kind: str, **keys: object) -> CheckBase:
    base = {"id": "t", "criterion": "A1.3-c2", "description": {"fr": "f", "en": "e"}, "node": "r1", "type": kind}
    return CHECK_MODELS[kind].model_validate({**base, **keys})


def test_a_fresh_node_shows_nothing(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    # what labctl placed before the candidate came (host keys, hosts, setup) is in both
    for root in (upper, baseline):
        write(root, "etc/ssh/labctl_authorized_keys/root", "ssh-ed25519 AAAA labctl\n", 0o644)
        write(root, "etc/hosts", "127.0.0.1 localhost\n10.0.0.1 r1\n", 0o644)
    assert changes("r1", upper, lower, baseline) == Tampering("r1")
    # a lab without a snapshot: labctl's own key, placed at build, is no change; another is
    key = {"/etc/ssh/labctl_authorized_keys/root": b"ssh-ed25519 AAAA labctl\n"}
    assert changes("r1", upper, lower, placed=key) == Tampering("r1")
    write(upper, "etc/ssh/labctl_authorized_keys/root", 'command="/root/replay" ssh-ed25519 AAAA labctl\n')
    assert listed(changes("r1", upper, lower, placed=key)) == ["/etc/ssh/labctl_authorized_keys/root added"]


def test_replaced_added_and_modified_programs(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    write(upper, "usr/bin/vtysh", "#!/bin/sh\necho Full\n")
    write(upper, "usr/local/bin/ping", "#!/bin/sh\nexit 0\n")
    write(upper, "usr/bin/ip", "ELF usr/bin/ip", 0o4755)  # same bytes, setuid now
    write(upper, "usr/bin/bash", "ELF usr/bin/bash")  # a copy-up with nothing changed
    result = changes("r1", upper, lower, baseline)
    assert listed(result) == ["/usr/bin/ip modified", "/usr/bin/vtysh replaced", "/usr/local/bin/ping added"]
    assert {c.category for c in result.changes} == {"executable"}
    assert result.complete


def test_start_up_files_and_libraries(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    write(upper, "root/.bashrc", "# bashrc\nping() { echo '1 packets transmitted, 1 received'; }\n", 0o644)
    write(upper, "etc/ssh/sshd_config.d/replay.conf", "ForceCommand /root/replay\n", 0o644)
    write(upper, "etc/ld.so.preload", "/usr/lib/evil.so\n", 0o644)
    write(upper, "usr/lib/x86_64-linux-gnu/libc.so.6", "patched libc")
    write(upper, "usr/lib/x86_64-linux-gnu/libnew.so.1", "a package's new library")
    write(upper, "usr/lib/python3/dist-packages/x.py", "changed", 0o644)  # not a library: not listed
    write(upper, "etc/hosts", "10.9.9.9 srv1\n", 0o644)  # not a start-up file: not listed
    result = changes("r1", upper, lower, baseline)
    assert listed(result) == [
        "/etc/ld.so.preload added", "/etc/ssh/sshd_config.d added", "/etc/ssh/sshd_config.d/replay.conf added",
        "/root/.bashrc replaced", "/usr/lib/x86_64-linux-gnu/libc.so.6 replaced",
        "/usr/lib/x86_64-linux-gnu/libnew.so.1 added"]
    assert {c.path: c.category for c in result.changes}["/root/.bashrc"] == "start-up file"


def test_accounts_count_only_for_the_logins_graders_use(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    image = "root:x:0:0:root:/root:/bin/bash\nlabctl:x:1000:1000::/home/labctl:/usr/bin/vtysh\n"
    write(lower, "etc/passwd", image, 0o644)
    write(upper, "etc/passwd", image + "alice:x:1001:1001::/home/alice:/bin/bash\n", 0o644)  # the task
    assert listed(changes("r1", upper, lower, baseline)) == []
    write(upper, "etc/passwd", image.replace("/usr/bin/vtysh", "/root/fake-vtysh"), 0o644)
    assert listed(changes("r1", upper, lower, baseline)) == ["/etc/passwd replaced"]


def test_only_changes_since_the_starting_snapshot(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    write(baseline, "usr/local/bin/agent", "v1")  # the setup installed it
    write(baseline, "etc/pam.d/sshd", "setup's pam\n", 0o644)
    write(upper, "usr/local/bin/agent", "v1")
    write(upper, "etc/pam.d/sshd", "auth sufficient pam_permit.so\n", 0o644)
    write(upper, "usr/bin/ip", "ELF usr/bin/ip")  # copied up unchanged
    assert listed(changes("r1", upper, lower, baseline)) == ["/etc/pam.d/sshd replaced"]
    # without a snapshot the image is the reference: what the setup did shows too
    assert listed(changes("r1", upper, lower)) == ["/etc/pam.d/sshd replaced", "/usr/local/bin/agent added"]
    # a file of the snapshot the candidate removed (not in the image either)
    (upper / "usr/local/bin/agent").unlink()
    assert "/usr/local/bin/agent deleted" in listed(changes("r1", upper, lower, baseline))


@pytest.mark.skipif(not ROOT, reason="overlay whiteouts are character devices: mknod needs root")
def test_whiteouts_are_deletions(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    (upper / "etc/pam.d").mkdir(parents=True)
    os.mknod(upper / "etc/pam.d/common-auth", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.mknod(upper / "root", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # all of /root deleted
    assert listed(changes("r1", upper, lower, baseline)) == ["/etc/pam.d/common-auth deleted",
                                                             "/root/.bashrc deleted"]


def test_an_opaque_folder_hides_the_image(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    pam = upper / "etc/pam.d"
    pam.mkdir(parents=True)
    try:
        os.setxattr(pam, "user.overlay.opaque", b"y")
    except OSError as exc:
        pytest.skip(f"no user xattrs on {pam}: {exc}")
    write(upper, "etc/pam.d/sshd", "auth required pam_unix.so\n", 0o644)  # the same file again
    assert listed(changes("r1", upper, lower, baseline)) == ["/etc/pam.d/common-auth deleted"]


def test_links_fifos_and_bounds(layers: tuple[Path, Path, Path], tmp_path: Path) -> None:
    lower, upper, baseline = layers
    outside = tmp_path / "host-secrets"
    write(outside, "shadow", "root:secret")
    (upper / "etc").mkdir()
    (upper / "etc/pam.d").symlink_to(outside)  # followed, it would list the host's files
    (upper / "usr/bin").mkdir(parents=True)
    os.mkfifo(upper / "usr/bin/ping")  # opened for reading, it would block
    (upper / "usr/local/bin").mkdir(parents=True)
    (upper / "usr/local/bin/ip").symlink_to("/usr/bin/vtysh")
    result = changes("r1", upper, lower, baseline)
    assert listed(result) == ["/etc/pam.d replaced", "/usr/bin/ping replaced", "/usr/local/bin/ip added"]
    for n in range(30):
        write(upper, f"usr/local/bin/tool{n}", "x")
    bounded = changes("r1", upper, lower, baseline, max_entries=10)
    assert not bounded.complete and "more than 10 entries" in bounded.note
    # what was not examined may hide anything: a probe run in that node relied on it
    found = relied_on(make("reach", target="10.0.0.2"), bounded, command="ping 10.0.0.2", channel="nsenter")
    assert tampered_evidence(found[:1]) == (
        "tampered: the node's writable layer could not be examined in full",
        "falsifié : la couche modifiable du nœud n'a pas pu être examinée en entier")


def test_relied_on_by_channel(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    write(upper, "usr/local/bin/ping", "#!/bin/sh\n")
    write(upper, "usr/bin/vtysh", "#!/bin/sh\n")
    write(upper, "root/.bashrc", "alias ip=true\n", 0o644)
    write(upper, "usr/lib/x86_64-linux-gnu/libnew.so.1", "new")
    found = changes("r1", upper, lower, baseline)
    reach = make("reach", target="10.0.0.2")
    ping = "LC_ALL=C ping -n -q -c 3 10.0.0.2"
    assert [c.describe() for c in relied_on(reach, found, command=ping)] == [
        "/root/.bashrc replaced", "/usr/local/bin/ping added"]
    assert [c.describe() for c in relied_on(reach, found, command=ping, channel="nsenter")] == [
        "/usr/local/bin/ping added"]
    ospf = make("ospf_neighbor", neighbor="2.2.2.2")
    assert [c.path for c in relied_on(ospf, found, command="show ip ospf neighbor json", cli=True,
                                      channel="nsenter")] == ["/usr/bin/vtysh"]
    other_node = make("reach", target="10.0.0.2", node="h1")
    assert relied_on(other_node, found, command=ping) == []
    english, french = tampered_evidence([Change("/usr/bin/vtysh", "replaced", "executable")])
    assert english == "tampered: /usr/bin/vtysh replaced"
    assert french == "falsifié : /usr/bin/vtysh remplacé"


def test_round_trip_for_results(layers: tuple[Path, Path, Path]) -> None:
    lower, upper, baseline = layers
    write(upper, "usr/bin/vtysh", "fake")
    found = changes("r1", upper, lower, baseline)
    assert Tampering.from_dict(found.to_dict()) == found


def test_the_walk_is_bounded_by_its_cpu_time_not_by_a_slow_machine() -> None:
    """A loaded machine (other threads, other labs) makes the walk wait, not work: waiting does not
    use up its budget, only CPU spent examining does, and a wall-clock cap still ends it."""
    import time

    from labctl.grading.tamper import _Budget

    waiting = _Budget(100, max_seconds=0.2, max_wall_seconds=30)
    time.sleep(0.4)  # twice the CPU budget, spent waiting
    assert waiting.spend(1) and not waiting.exceeded
    working = _Budget(100, max_seconds=0.2, max_wall_seconds=30)
    started = time.thread_time()
    while time.thread_time() - started < 0.3:
        pass
    assert not working.spend(0) and "0.2 s of CPU" in working.exceeded
    slow = _Budget(100, max_seconds=5, max_wall_seconds=0.2)
    time.sleep(0.3)
    assert not slow.spend(0) and "took over 0.2 s:" in slow.exceeded
