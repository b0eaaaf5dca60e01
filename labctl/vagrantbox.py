"""A Vagrant box for vagrant-libvirt, built offline from labctl's VM image.

The box is what a candidate practising at home boots with `vagrant up` when their machine has
no good Internet (an exam centre hands it out on a USB stick or its intranet): the VM image's
tree (the node image plus a kernel and systemd, built from Debian packages only) with

- the Debian packages labctl's local provider needs on its machine (bootstrap's light set);
- the `vagrant` user with Vagrant's insecure public key (from Debian's vagrant package; Vagrant
  replaces it with a key of its own at the first `vagrant up`) and passwordless sudo;
- labctl itself: this repository copied to /opt/labctl and its virtual environment, installed
  from wheels built on this machine (`pip install --no-index` in the image), `labctl` on PATH;
- the node image already built under /var/lib/labctl/images, so that the candidate's first
  `labctl up` downloads nothing;
- DHCP on eth0 (systemd-networkd), which is how vagrant-libvirt finds the VM, and the DNS
  servers that DHCP gives (dnsmasq on Vagrant's management network) in /etc/resolv.conf, so that
  apt-get works in the VM (lab nodes keep their own resolv.conf).

The disk is an ext4 root filesystem with no partition table, booted directly with the kernel
and initrd that travel in the box (its own Vagrantfile names them: libvirt's QEMU must be able
to read the folder Vagrant unpacks boxes into). A box is a tar of metadata.json, Vagrantfile,
box.img (compressed qcow2), vmlinuz and initrd.img. Builds are cached by recipe digest (which
covers the VM image's recipe, the node image's, the box's packages and customisation, and the
content of the labctl sources copied in) and land atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labctl import image, paths, vmimage
from labctl.errors import PlatformError
from labctl.progress import QUIET, Progress

# Bump when the box customisation below changes, so cached boxes are rebuilt.
BOX_CUSTOMISATION_VERSION = 2
# The box installs bootstrap's light profile: what the local provider needs to run labs.
PROFILE: tuple[str, ...] = ()
# Sparse: the qcow2 stores only what is written. Labs give each node a sparse disk file too.
BOX_DISK_MIB = 16384
INSTALL_DIR = "/opt/labctl"
VAGRANT_KEYS = (Path("/usr/share/rubygems-integration/all/gems"), "vagrant-*/keys/vagrant.pub")
# Never copied into the box: build products, caches, Vagrant's own state.
SKIP_PARTS = {".git", ".venv", ".vagrant", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
              "build", "dist", "artifacts"}
# Not needed to practise (and editing a test then rebuilds no box).
SKIP_TOP = {"tests"}


def source_root() -> Path:
    """The labctl repository this labctl runs from (an editable install), or a clear error."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").exists() or not (root / "scripts/bootstrap.sh").exists():
        raise PlatformError(f"labctl runs from {root}, not from its repository: a box copies the repository in",
                            "run scripts/bootstrap.sh in a clone of labctl and build the box from there")
    return root


def source_files(root: Path) -> list[Path]:
    """The repository's files a box carries (relative to `root`), sorted: everything but
    version control, virtual environments, caches, build products and the tests."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_PARTS and not d.endswith(".egg-info")
                             and not (directory == str(root) and d in SKIP_TOP))
        for name in filenames:
            path = Path(directory, name)
            if name not in SKIP_PARTS and path.is_file() and not name.endswith((".pyc", ".box")):
                found.append(path.relative_to(root))
    return sorted(found)


def source_digest(root: Path) -> str:
    """A short hash of the names and contents of the files a box carries."""
    digest = hashlib.sha256()
    for name in source_files(root):
        digest.update(str(name).encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def profile(root: Path, what: str) -> list[str]:
    """What scripts/bootstrap.sh installs for the box's PROFILE: `--list-packages` (Debian
    packages) or `--list-python` (what pip installs, e.g. labctl or labctl[postgres])."""
    done = subprocess.run(["bash", str(root / "scripts/bootstrap.sh"), *PROFILE, what], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 or not done.stdout.split():
        raise PlatformError(f"scripts/bootstrap.sh {what} failed (exit {done.returncode}): "
                            f"{done.stderr.strip()[-400:]}")
    return done.stdout.split()


def vagrant_public_key() -> Path:
    """Vagrant's insecure public key, as Debian's vagrant package ships it (never downloaded)."""
    base, pattern = VAGRANT_KEYS
    found = sorted(base.glob(pattern)) if base.is_dir() else []
    if not found:
        raise PlatformError("Vagrant's insecure public key was not found (it ships in Debian's vagrant package)",
                            "apt-get install vagrant")
    return found[-1]


@dataclass(frozen=True)
class BoxRecipe(image.CachedBuild):
    """What a box is made of; its digest names the cached build."""

    name: str = "box"
    vm: vmimage.VmImageRecipe = field(
        default_factory=lambda: vmimage.VmImageRecipe(
            name="vm-box", extra=tuple(sorted(set(profile(source_root(), "--list-packages"))))))
    customisation: int = BOX_CUSTOMISATION_VERSION
    disk_mib: int = BOX_DISK_MIB
    sources: str = field(default_factory=lambda: source_digest(source_root()))

    def digest(self) -> str:
        """A short hash of everything that changes the built box."""
        data = {"vm": self.vm.digest(), "node": self.vm.node_recipe().digest(), "customisation": self.customisation,
                "disk_mib": self.disk_mib, "sources": self.sources, "kernel_args": vmimage.KERNEL_ARGS}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def box(self) -> Path:
        """The box file (`vagrant box add labctl PATH`)."""
        return self.directory / "labctl.box"


def ensure_box(recipe: BoxRecipe | None = None, progress: Progress = QUIET) -> BoxRecipe:
    """Return a built box for `recipe`, building it first if it is not cached."""
    recipe = recipe or BoxRecipe()
    built = recipe
    image.ensure_built_from_node(built.is_built, built.vm.node_recipe(), lambda: build_box(built, progress), progress)
    return recipe


def build_box(recipe: BoxRecipe, progress: Progress = QUIET) -> None:
    """Build `recipe` into its cache folder (atomically: a failed build leaves nothing)."""
    vmimage.require_tools()
    key = vagrant_public_key()
    root = source_root()
    node = image.ensure_image(recipe.vm.node_recipe(), progress)
    work = paths.images_dir() / f".build-{recipe.name}-{recipe.digest()}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    started = time.monotonic()
    try:
        vmimage.prepare_rootfs(recipe.vm, rootfs, progress)
        with progress.step("the vagrant user (Vagrant's insecure key, passwordless sudo), DHCP on eth0"):
            customise_box(rootfs, key.read_text())
        with progress.step(f"wheels of labctl and its dependencies (pip wheel, from {root})"):
            wheels = work / "wheels"
            _wheels(root, wheels, progress)
        with progress.step(f"labctl into {INSTALL_DIR} and its virtual environment (pip --no-index)"):
            install_labctl(root, rootfs, wheels)
        with progress.step(f"the node image {node.directory.name} into the box"):
            target = rootfs / "var/lib/labctl/images" / node.directory.name
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(node.directory), str(target)], check=True, capture_output=True)
            check_inside(rootfs, node)
        with progress.step("extract the kernel and initrd for direct boot"):
            vmimage.extract_boot(rootfs, work)
        with progress.step(f"pack the root filesystem (mkfs.ext4 -d, {recipe.disk_mib} MiB sparse, compressed qcow2)"):
            vmimage.pack_disk(rootfs, work / "box.img", recipe.disk_mib, compress=True)
        shutil.rmtree(rootfs)
        shutil.rmtree(wheels)
        with progress.step("the box file (metadata.json, Vagrantfile, box.img, vmlinuz, initrd.img)"):
            write_box(work, recipe.disk_mib)
        meta = {"name": recipe.name, "kind": "box", "digest": recipe.digest(), "suite": recipe.vm.suite,
                "vm": asdict(recipe.vm), "sources": recipe.sources, "node_image": node.directory.name,
                "build_seconds": round(time.monotonic() - started, 1),
                "box_bytes": (work / "labctl.box").stat().st_size,
                "built": time.strftime("%FT%TZ", time.gmtime())}
        (work / "recipe.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(recipe.directory, ignore_errors=True)
        os.replace(work, recipe.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    image.prune_old(recipe.name, recipe.directory)  # a box is 300+ MB: only the newest stays


def customise_box(rootfs: Path, vagrant_key: str) -> None:
    """Vagrant's conventions, DHCP for vagrant-libvirt's management network, no lab-VM units."""
    _chroot(rootfs, "id -u vagrant >/dev/null 2>&1 || useradd -m -s /bin/bash -U vagrant; "
                    "install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh")
    keys = rootfs / "home/vagrant/.ssh/authorized_keys"
    keys.write_text(vagrant_key.strip() + "\n")
    keys.chmod(0o600)
    _chroot(rootfs, "chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys")
    image._write(rootfs, "etc/sudoers.d/vagrant", b"vagrant ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    # A box VM is not a lab node: no seed disk to wait for, no out-of-band port.
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    for unit in ("labctl-seed.service", "labctl-oob.service"):
        (wants / unit).unlink(missing_ok=True)
    # The image has no SSH host keys (every lab node gets its own): each box VM makes its own.
    image._write(rootfs, "etc/systemd/system/ssh.service.d/labctl-box.conf",
                 b"[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n")
    image._write(rootfs, "etc/systemd/network/50-vagrant.network",
                 b"[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n")
    # networkd keeps the lease but writes no resolv.conf (the VM image's says "no resolver"):
    # a path unit copies the lease's DNS servers there whenever networkd writes a lease.
    image._write(rootfs, "usr/local/sbin/labctl-box-resolv", RESOLV_SCRIPT, 0o755)
    image._write(rootfs, "etc/systemd/system/labctl-box-resolv.service", RESOLV_SERVICE)
    image._write(rootfs, "etc/systemd/system/labctl-box-resolv.path", RESOLV_PATH)
    for unit, target in (("/lib/systemd/system/systemd-networkd.service", "multi-user.target"),
                         ("/lib/systemd/system/systemd-networkd.socket", "sockets.target"),
                         ("/etc/systemd/system/labctl-box-resolv.path", "multi-user.target")):
        link = rootfs / f"etc/systemd/system/{target}.wants/{Path(unit).name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(unit)
    # Loaded on demand elsewhere; labctl's doctor looks for overlay before any node mounts one.
    image._write(rootfs, "etc/modules-load.d/labctl.conf", b"overlay\n")
    (rootfs / "etc/hostname").write_text("labctl\n")
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 labctl\n::1 localhost ip6-localhost\n")
    image._write(rootfs, "etc/labctl/box", b"labctl Vagrant box: labctl and its node image are installed\n")


# The box VM's resolver: the DNS servers of the DHCP lease (systemd-networkd's lease file).
RESOLV_SCRIPT = b"""#!/bin/sh
# labctl box: /etc/resolv.conf from the DNS servers DHCP gave this VM (systemd-networkd keeps
# the lease and writes no resolv.conf). Lab nodes keep their own resolv.conf.
set -eu
servers=$(sed -n 's/^DNS=//p' /run/systemd/netif/leases/* 2>/dev/null | tr ' ' '\\n' | awk 'NF && !seen[$0]++')
[ -n "$servers" ] || exit 0
{ echo "# labctl box: the DNS servers of the DHCP lease (labctl-box-resolv)"
  printf 'nameserver %s\\n' $servers; } > /etc/resolv.conf.labctl-box
mv /etc/resolv.conf.labctl-box /etc/resolv.conf
"""
RESOLV_SERVICE = b"""[Unit]
Description=labctl box: resolv.conf from the DHCP lease

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/labctl-box-resolv
"""
RESOLV_PATH = b"""[Unit]
Description=labctl box: resolv.conf follows the DHCP lease

[Path]
PathChanged=/run/systemd/netif/leases

[Install]
WantedBy=multi-user.target
"""


def _requirement(root: Path) -> tuple[str, list[str]]:
    """The profile's labctl requirement (`labctl` or `labctl[extras]`) and every requirement it
    brings from PyPI: its dependencies, those of its extras, the build backend."""
    spec = profile(root, "--list-python")[0]
    extras = spec.partition("[")[2].rstrip("]").split(",") if "[" in spec else []
    project = tomllib.loads((root / "pyproject.toml").read_text())
    optional = project["project"].get("optional-dependencies", {})
    requirements = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    for extra in filter(None, extras):
        requirements += [r for r in optional[extra] if not r.startswith("labctl")]  # dev's labctl[...] itself
    return spec, requirements


def _wheels(root: Path, wheels: Path, progress: Progress) -> None:
    """What the profile's labctl needs from PyPI, as wheels (from PyPI or pip's cache); labctl
    itself is installed editable from its copy, as bootstrap does (scenarios lie beside it)."""
    requirements = _requirement(root)[1]
    image._run_logged([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *requirements],
                      progress, "pip must reach PyPI (or its cache must hold the wheels)")


def install_labctl(root: Path, rootfs: Path, wheels: Path) -> None:
    """Copy the repository into the image and build its venv there, offline."""
    target = rootfs / INSTALL_DIR.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for name in source_files(root):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target / name)
    inside = rootfs / "tmp/labctl-wheels"
    shutil.copytree(wheels, inside)
    extras = _requirement(root)[0].removeprefix("labctl")
    try:
        _chroot(rootfs, f"python3 -m venv {INSTALL_DIR}/.venv && "
                        f"{INSTALL_DIR}/.venv/bin/pip install -q --no-index --find-links /tmp/labctl-wheels "
                        f"-e '{INSTALL_DIR}{extras}' && ln -sf {INSTALL_DIR}/.venv/bin/labctl /usr/local/bin/labctl")
    finally:
        shutil.rmtree(inside, ignore_errors=True)


def check_inside(rootfs: Path, node: image.ImageRecipe) -> None:
    """labctl inside the image sees its node image as built (same digest: nothing to build)."""
    probe = ("from labctl.image import ImageRecipe; r = ImageRecipe(); "
             "print(r.digest(), r.is_built())")
    seen = _chroot(rootfs, f"{INSTALL_DIR}/.venv/bin/python -c '{probe}'").strip()
    if seen != f"{node.digest()} True":
        raise PlatformError(f"labctl inside the box sees its node image as '{seen}', expected '{node.digest()} True' "
                            "(the box would rebuild it on first use)",
                            "the image recipe depends on this machine's mirror and suite: build on Debian 12")


def write_box(work: Path, disk_mib: int) -> None:
    """labctl.box: the tar Vagrant unpacks (uncompressed: box.img is a compressed qcow2)."""
    metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": -(-disk_mib // 1024)}
    (work / "metadata.json").write_text(json.dumps(metadata) + "\n")
    (work / "Vagrantfile").write_text(BOX_VAGRANTFILE.format(cmd_line=vmimage.KERNEL_ARGS))
    partial = work / "labctl.box.partial"
    with tarfile.open(partial, "w") as tar:
        for name in ("metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img"):
            tar.add(work / name, arcname=name)
            (work / name).unlink()
    os.replace(partial, work / "labctl.box")


BOX_VAGRANTFILE = """\
# labctl's Vagrant box (built by `labctl image build box`): the disk has no boot loader; the
# kernel and initrd travel in the box and libvirt boots them directly.
# libvirt's QEMU runs as a user of its own: it must pass through every folder above them (a
# home folder closed to others, Debian 12's default, stops the boot with "Permission denied").
if %w[up reload resume start].include?(ARGV.find {{ |arg| !arg.start_with?("-") }})
  closed = [__dir__]
  closed << File.dirname(closed.last) until closed.last == File.dirname(closed.last)
  closed = closed.reverse.find {{ |dir| File.stat(dir).mode & 0o001 == 0 }}
  if closed
    abort "labctl box: libvirt's QEMU (another user) cannot reach the box's kernel in #{{__dir__}}: " \\
          "#{{closed}} is closed to other users (mode #{{format('%o', File.stat(closed).mode & 0o777)}}). " \\
          "Either keep Vagrant's boxes in a folder others can pass through (VAGRANT_HOME=/var/lib/vagrant, " \\
          "a folder you create, then vagrant box add again) or let others pass through that folder " \\
          "without listing it: chmod o+x #{{closed}}"
  end
end
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.expand_path("vmlinuz", __dir__)
    lv.initrd = File.expand_path("initrd.img", __dir__)
    lv.cmd_line = "{cmd_line}"
    lv.disk_bus = "virtio"
    lv.nic_model_type = "virtio"
  end
end
"""


def _chroot(rootfs: Path, script: str) -> str:
    """Run `script` with sh in the image (a private mount namespace with /proc), offline."""
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-ec",
               f"mount -t proc proc {rootfs}/proc && exec chroot {rootfs} sh -ec \"$0\"", script]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise PlatformError(f"in the box image: {script[:120]} failed (exit {done.returncode}): "
                            f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def list_boxes() -> list[dict[str, str]]:
    """The cached boxes with their recipe."""
    result = []
    for meta in sorted(paths.images_dir().glob("box-*/recipe.json")):
        data = json.loads(meta.read_text())
        result.append({"name": data["name"], "digest": data["digest"], "path": str(meta.parent / "labctl.box"),
                       "built": data.get("built", "?")})
    return result
