"""The Vagrant box's pieces that need no build: what it carries, its digest, the box file's
layout, and that Vagrant loads the box's own Vagrantfile together with the project's
(`vagrant box add` of a box file laid out as labctl writes it, then `vagrant validate`).
The real build and boot: tests/integration/test_vagrant_box.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from labctl import vagrantbox, vmimage

ROOT = Path(__file__).resolve().parents[2]


def test_the_box_carries_the_repository_without_build_products(tmp_path: Path) -> None:
    (tmp_path / "labctl").mkdir()
    (tmp_path / "labctl/cli.py").write_text("print()\n")
    for junk in (".git/HEAD", ".venv/bin/python", "labctl/__pycache__/cli.pyc", "labctl.egg-info/PKG-INFO",
                 ".vagrant/machines/x", "old.box", "tests/unit/test_x.py"):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_text("x")
    assert vagrantbox.source_files(tmp_path) == [Path("labctl/cli.py")]
    assert Path("labctl/vagrantbox.py") in vagrantbox.source_files(ROOT)
    (tmp_path / "labctl/tests").mkdir()  # only the repository's own tests/ stays out
    (tmp_path / "labctl/tests/t.py").write_text("")
    assert Path("labctl/tests/t.py") in vagrantbox.source_files(tmp_path)


def test_the_digest_follows_the_content_of_what_the_box_carries(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("one\n")
    first = vagrantbox.source_digest(tmp_path)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv/x").write_text("not carried")
    assert vagrantbox.source_digest(tmp_path) == first
    (tmp_path / "a.py").write_text("two\n")
    assert vagrantbox.source_digest(tmp_path) != first


def test_the_box_file_is_what_vagrant_libvirt_reads(tmp_path: Path) -> None:
    for name in ("box.img", "vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    vagrantbox.write_box(tmp_path, 16384)
    with tarfile.open(tmp_path / "labctl.box") as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "initrd.img", "metadata.json", "vmlinuz"]
        metadata = json.loads(tar.extractfile("metadata.json").read())  # type: ignore[union-attr]
        inner = tar.extractfile("Vagrantfile").read().decode()  # type: ignore[union-attr]
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 16}
    assert vmimage.KERNEL_ARGS in inner and 'File.expand_path("vmlinuz", __dir__)' in inner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labctl.box"]  # the parts went into it


def _added_box(folder: Path) -> dict[str, str]:
    """A box file laid out as labctl writes it, added by `vagrant box add` to a VAGRANT_HOME in
    `folder`; the environment of `vagrant` with this project's Vagrantfile and LABCTL_BOX=labctl."""
    for name in ("box.img", "vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"\0" * 16)
    vagrantbox.write_box(folder, 16384)
    env = os.environ | {"VAGRANT_HOME": str(folder / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
                        "VAGRANT_DOTFILE_PATH": str(folder / "dot"), "VAGRANT_CWD": str(ROOT),
                        "LABCTL_BOX": "labctl"}
    added = subprocess.run(["vagrant", "box", "add", "--name", "labctl", str(folder / "labctl.box")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert added.returncode == 0, added.stdout + added.stderr
    return env


NO_VAGRANT = pytest.mark.skipif(shutil.which("vagrant") is None,
                                reason="vagrant is not installed (apt-get install vagrant)")


@NO_VAGRANT
def test_vagrant_loads_the_box_vagrantfile_with_the_project_one(tmp_path: Path) -> None:
    """The box as `vagrant box add` installs it, then the project's Vagrantfile with LABCTL_BOX=labctl:
    both are Ruby Vagrant evaluates; a misspelled setting in the box's own fails validation."""
    env = _added_box(tmp_path)
    done = subprocess.run(["vagrant", "validate"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "validated successfully" in done.stdout, done.stdout + done.stderr
    installed = tmp_path / "vagrant.d/boxes/labctl/0/libvirt/Vagrantfile"
    installed.write_text(installed.read_text().replace("lv.cmd_line", "lv.cmd_lin"))
    broken = subprocess.run(["vagrant", "validate"], capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode != 0 and "cmd_lin" in broken.stdout + broken.stderr


@NO_VAGRANT
def test_a_box_in_a_folder_closed_to_qemu_stops_before_booting_and_names_the_fix(tmp_path: Path) -> None:
    """libvirt's QEMU (its own user) boots the kernel from the unpacked box: under a home folder
    closed to others (Debian 12 makes them 0700) `vagrant up` would fail in libvirt with
    "Permission denied"; the box's Vagrantfile stops first and says what to do. The boot that
    works, from a folder QEMU passes through: tests/integration/test_vagrant_box.py."""
    base = Path(tempfile.mkdtemp(prefix="labctl-test-box-", dir="/var/tmp"))  # open to others above it
    try:
        base.chmod(0o755)
        closed = base / "home"
        closed.mkdir(mode=0o700)
        closed.chmod(0o700)
        env = _added_box(closed)
        up = subprocess.run(["vagrant", "up", "--provider", "libvirt"], capture_output=True, text=True, env=env,
                            timeout=120)
        said = up.stdout + up.stderr
        assert up.returncode != 0 and f"{closed} is closed to other users (mode 700)" in said, said
        assert "VAGRANT_HOME=" in said and f"chmod o+x {closed}" in said
        assert not (closed / "dot/machines/default/libvirt/id").exists()  # nothing was created
        # Passing through is enough: `vagrant up` goes on to libvirt (here a socket that is not there,
        # so that nothing boots and nothing is created)
        closed.chmod(0o711)
        (closed / "vagrant.d/Vagrantfile").write_text(
            'Vagrant.configure("2") { |c| c.vm.provider(:libvirt) { |lv| lv.uri = '
            f'"qemu+unix:///system?socket={base}/no-libvirt-here" }} }}\n')
        up = subprocess.run(["vagrant", "up", "--provider", "libvirt"], capture_output=True, text=True, env=env,
                            timeout=120)
        said = up.stdout + up.stderr
        assert up.returncode != 0 and "closed to other users" not in said and "no-libvirt-here" in said, said
    finally:
        shutil.rmtree(base, ignore_errors=True)
