"""Practising at home, for real: labctl's own Vagrant box booted by `vagrant up --provider libvirt`
with the project's Vagrantfile, then, inside the VM as a candidate: a lab up with a seed,
graded with hints (FAIL), solved, graded (all PASS), reset (FAIL again); then `vagrant destroy`
and nothing of it left in libvirt (domain, volume, network, pool).

Runs by default (in CI too; about 10 minutes under TCG on a 2-core machine, most of it the
lab inside the VM), skips only where it cannot run (not root; vagrant, vagrant-libvirt,
libvirt or QEMU missing). Builds the box when it is not cached (`labctl image build box`,
about 2 minutes). Starts virtlogd and libvirtd itself when qemu:///system does not answer and
stops only those, by PID. Everything Vagrant makes lives under names of this run: a private
VAGRANT_HOME (in a folder libvirt's QEMU can read: the box's kernel is booted from there), a
storage pool, an isolated management network (no forwarding: nothing in the VM can download)
and a domain prefix, all removed afterwards. Select with `-m libvirt`, skip with
`-m "not libvirt"`. Figures: printed at the end (and in the README).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_libvirt import PROBLEM as LIBVIRT_PROBLEM
from .test_libvirt import URI, libvirtd  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path("/usr/share/rubygems-integration/all/gems")


def _problem() -> str | None:
    if LIBVIRT_PROBLEM:
        return LIBVIRT_PROBLEM
    if shutil.which("vagrant") is None:
        return "vagrant is not installed (scripts/bootstrap.sh --dev installs it: apt-get install vagrant)"
    if not list(PLUGIN.glob("vagrant-libvirt-*")):
        return "vagrant-libvirt is not installed (apt-get install vagrant-libvirt)"
    return None


PROBLEM = _problem()


def _virsh(*args: str) -> list[str]:
    done = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def _free_subnet() -> str:
    """A /24 no interface of this machine is on (Vagrant's management network)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for third in range(200, 250):
        net = ipaddress.ip_network(f"192.168.{third}.0/24")
        if f" 192.168.{third}." not in used and str(net) not in used:
            return str(net)
    pytest.skip("no free 192.168.200-249.0/24 for Vagrant's management network")


class Vagrant:
    """`vagrant` with a private home, this repository's Vagrantfile and labctl's box."""

    def __init__(self, folder: Path, token: str) -> None:
        self.folder = folder
        self.token = token
        self.env = os.environ | {"VAGRANT_HOME": str(folder / "vagrant.d"), "VAGRANT_CWD": str(ROOT),
                                 "VAGRANT_DOTFILE_PATH": str(folder / "dot"), "VAGRANT_CHECKPOINT_DISABLE": "1",
                                 "VAGRANT_NO_COLOR": "1", "LABCTL_BOX": "labctl"}
        self.log = folder / "vagrant.log"
        self.subnet = _free_subnet()  # Vagrant's management network, served by libvirt's dnsmasq

    def run(self, *args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["vagrant", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        # Vagrant redraws its upload progress thousands of times: keep the log readable
        text = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "Progress:" not in line)
        with open(self.log, "a") as log:
            log.write(f"$ vagrant {' '.join(args)} -> {done.returncode}\n{text}\n")
        if check:
            assert done.returncode == 0, f"vagrant {' '.join(args)} exited {done.returncode}:\n{text[-3000:]}"
        return done

    def inside(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """`command` in the VM as the vagrant user (a candidate), through `vagrant ssh`."""
        return self.run("ssh", "-c", command, "--", "-o", "LogLevel=error", timeout=timeout, check=False)


@pytest.fixture
def vagrant(libvirtd: None) -> Iterator[Vagrant]:  # noqa: F811  (the imported fixture)
    if PROBLEM:
        pytest.skip(PROBLEM)
    token = secrets.token_hex(3)
    # /var/tmp, 0755: libvirt's QEMU (another user) boots the kernel the box unpacks here
    folder = Path(tempfile.mkdtemp(prefix=f"labctl-vagrant-{token}-", dir="/var/tmp"))
    folder.chmod(0o755)
    box = Vagrant(folder, token)
    pool, network = f"labctl-vagrant-{token}", f"labctl-vagrant-{token}"
    (folder / "pool").mkdir()
    subprocess.run(["virsh", "-c", URI, "pool-create-as", pool, "dir", "--target", str(folder / "pool")],
                   check=True, capture_output=True, timeout=60)
    (folder / "vagrant.d").mkdir()
    try:
        yield box
    finally:
        with contextlib.suppress(Exception):
            box.run("destroy", "-f", timeout=300, check=False)
        for name in _virsh("list", "--all", "--name"):
            if name.startswith(pool):
                _virsh("destroy", name)
                _virsh("undefine", name, "--remove-all-storage")
        if network in _virsh("net-list", "--all", "--name"):
            _virsh("net-destroy", network)
            _virsh("net-undefine", network)
        if pool in _virsh("pool-list", "--all", "--name"):
            for line in _virsh("vol-list", pool)[2:]:
                _virsh("vol-delete", "--pool", pool, line.split()[0])
            _virsh("pool-destroy", pool)
        shutil.rmtree(folder, ignore_errors=True)


def _accelerator(box: Path) -> str:
    """"kvm" where a KVM guest really boots (labctl's own probe, with the box's kernel), else "qemu"."""
    import libvirt

    from labctl.providers import libvirt_accel

    conn = libvirt.open(URI)
    try:
        return libvirt_accel.probe(conn, URI, str(box / "vmlinuz"), str(box / "initrd.img"))
    finally:
        conn.close()


def _home_vagrantfile(box: Vagrant, driver: str) -> str:
    """Settings of this machine and this run, in VAGRANT_HOME's Vagrantfile (Vagrant loads it
    after the box's and before the project's, which sets none of these)."""
    cpu = 'lv.cpu_mode = "custom"\n    lv.cpu_model = "qemu64"' if driver == "qemu" else ""
    return f"""\
Vagrant.configure("2") do |config|
  config.vm.boot_timeout = 900
  config.vm.provider :libvirt do |lv|
    lv.uri = "{URI}"
    lv.driver = "{driver}"
    {cpu}
    lv.default_prefix = "labctl-vagrant-{box.token}"
    lv.storage_pool_name = "labctl-vagrant-{box.token}"
    lv.management_network_name = "labctl-vagrant-{box.token}"
    lv.management_network_address = "{box.subnet}"
    lv.management_network_mode = "none"
  end
end
"""


def test_a_candidate_practises_in_labctls_box_and_destroy_leaves_nothing(vagrant: Vagrant) -> None:
    from labctl import vagrantbox
    from labctl.progress import Progress

    figures: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        figures[name] = round(time.monotonic() - started, 1)

    started = time.monotonic()
    recipe = vagrantbox.BoxRecipe()
    cached = recipe.is_built()
    vagrantbox.ensure_box(recipe, Progress())
    timed("box build" + (" (cached)" if cached else ""), started)
    box_bytes = recipe.box.stat().st_size

    started = time.monotonic()
    vagrant.run("box", "add", "--name", "labctl", str(recipe.box), timeout=300)
    timed("vagrant box add", started)
    unpacked = vagrant.folder / "vagrant.d/boxes/labctl/0/libvirt"
    driver = _accelerator(unpacked)
    (vagrant.folder / "vagrant.d/Vagrantfile").write_text(_home_vagrantfile(vagrant, driver))

    started = time.monotonic()
    vagrant.run("up", "--provider", "libvirt", timeout=1500)
    timed(f"vagrant up ({'KVM' if driver == 'kvm' else 'TCG'})", started)
    log = vagrant.log.read_text()
    assert "labctl image list" not in log or "node-" in log  # provisioning listed the node image, built nothing
    assert "debootstrap" not in log and "bootstrap:" not in log, "the box's provisioning installed something"
    # The VM resolves names with the DNS server DHCP gave it (dnsmasq on the management network, so
    # that apt-get works at home); a lab node keeps its own resolv.conf (checked after lab up).
    gateway = str(next(ipaddress.ip_network(vagrant.subnet).hosts()))
    resolv = vagrant.inside("cat /etc/resolv.conf", timeout=120).stdout
    assert f"nameserver {gateway}" in resolv.splitlines(), resolv

    started = time.monotonic()
    up = vagrant.inside("sudo labctl up multi-site-routing --seed someone", timeout=1200)
    timed("lab up (7 nodes, in the VM)", started)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "debootstrap" not in up.stdout + up.stderr, "the first lab built an image: the box's node image was not used"
    node_resolv = vagrant.inside("sudo labctl exec h1 -- cat /etc/resolv.conf", timeout=120).stdout
    assert "no DNS resolver outside the lab" in node_resolv and "nameserver" not in node_resolv, node_resolv

    started = time.monotonic()
    hints = vagrant.inside("sudo labctl grade --hints", timeout=600)
    timed("grade --hints (broken lab)", started)
    assert hints.returncode == 1, hints.stdout[-3000:] + hints.stderr[-3000:]
    assert "FAIL" in hints.stdout and "Hint:" in hints.stdout

    started = time.monotonic()
    solved = vagrant.inside("cd /opt/labctl && sudo labctl play playbooks/multi-site-routing/solution.yml",
                            timeout=900)
    timed("solution playbook", started)
    assert solved.returncode == 0, solved.stdout[-3000:] + solved.stderr[-3000:]

    started = time.monotonic()
    graded = vagrant.inside("sudo labctl grade --json", timeout=600)
    timed("grade (solved lab)", started)
    assert graded.returncode == 0, graded.stdout[-3000:] + graded.stderr[-3000:]
    report = json.loads(graded.stdout[graded.stdout.index("{"):])
    outcomes = {check["id"]: check["outcome"] for check in report["results"]}
    assert outcomes and set(outcomes.values()) == {"PASS"}, outcomes

    started = time.monotonic()
    reset = vagrant.inside("sudo labctl reset", timeout=900)
    timed("reset", started)
    assert reset.returncode == 0, reset.stdout[-3000:] + reset.stderr[-3000:]
    again = vagrant.inside("sudo labctl grade", timeout=600)
    assert again.returncode == 1, "after reset the lab is back to its broken start: grading must FAIL"

    started = time.monotonic()
    vagrant.run("destroy", "-f", timeout=600)
    timed("vagrant destroy", started)
    name = f"labctl-vagrant-{vagrant.token}"
    assert [d for d in _virsh("list", "--all", "--name") if d.startswith(name)] == []
    assert name not in _virsh("net-list", "--all", "--name")
    # Nothing of the machine remains; the box's base volume stays in the pool by vagrant-libvirt's
    # design (a cache the box's next machines start from), named from the box's name, version (none:
    # 0 and the unpacked disk's mtime) and disk; `vagrant box remove` leaves it too, saying it must be
    # deleted by hand (README: "Reclaiming the space").
    cache = f"labctl_vagrant_box_image_0_{int((unpacked / 'box.img').stat().st_mtime)}_box.img"
    assert [line.split()[0] for line in _virsh("vol-list", name)[2:]] == [cache]
    removed = vagrant.run("box", "remove", "labctl", timeout=120)
    assert "you have to delete image manually" in removed.stdout + removed.stderr
    assert [line.split()[0] for line in _virsh("vol-list", name)[2:]] == [cache]
    _virsh("vol-delete", "--pool", name, cache)
    assert _virsh("vol-list", name)[2:] == []
    _virsh("pool-destroy", name)
    assert name not in _virsh("pool-list", "--all", "--name")
    left = [line for line in _virsh("list", "--all", "--name") + _virsh("net-list", "--all", "--name") if name in line]
    assert left == [], left

    print("\nVagrant box figures: " + ", ".join(f"{k} {v} s" for k, v in figures.items())
          + f"; box {box_bytes / 1e6:.0f} MB")
