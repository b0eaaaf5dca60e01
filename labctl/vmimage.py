"""VM images: a bootable qcow2 disk plus kernel and initrd, built from Debian packages only.

The tree starts as a copy of the container node image (labctl.image: one debootstrap serves
both providers; sshd drop-in, FRR, the CLI user), gets a kernel, systemd and udev with apt,
and two labctl units: `labctl-seed` applies each node's identity
(hostname, SSH host key, controller key, addresses, interface names by MAC) from a small
per-node seed disk at boot, and `labctl-oob` serves `sshd -i` on virtio-serial ports so
labctl reaches a node without its network. The root filesystem is packed with
`mkfs.ext4 -d` (no loop mounts) and converted to qcow2; the kernel and initrd are copied
out for direct kernel boot. Builds are cached by recipe digest, atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from labctl import image, paths
from labctl.errors import NotFoundError, PlatformError, profile_hint
from labctl.progress import QUIET, Progress

VM_PACKAGES = (
    *image.BASE_PACKAGES, "linux-image-amd64", "systemd-sysv", "udev", "dbus", "kmod",
    "e2fsprogs", "util-linux",
)
# Bump when the VM customisation below changes, so cached images are rebuilt.
VM_CUSTOMISATION_VERSION = 4
DATA_FILES = ("labctl-vm-seed", "labctl-seed.service", "labctl-oob", "labctl-oob.service")
DISK_SIZE_MIB = 3072
# Units a lab VM never needs: they only slow boot down under TCG.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service",
                "fstrim.timer", "man-db.timer", "dpkg-db-backup.timer", "systemd-timesyncd.service",
                "frr.service", "getty@tty1.service", "systemd-networkd-wait-online.service",
                "systemd-logind.service")  # no seats, no pam_systemd: logind only costs boot time
# modules-load: NICs and virtio-serial ports exist early even when udev is slow (busy TCG host).
KERNEL_ARGS = ("root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0 mitigations=off loglevel=4 "
               "modules-load=virtio_net,virtio_console,virtio_rng")


def _data_file(name: str) -> bytes:
    return resources.files("labctl.data").joinpath(f"vm/{name}").read_bytes()


def _data_digest() -> str:
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update(_data_file(name))
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class VmImageRecipe(image.CachedBuild):
    """What a VM image is made of; its digest names the cached build."""

    name: str = "vm"
    suite: str = field(default_factory=image.default_suite)
    mirror: str = field(default_factory=image.default_mirror)
    packages: tuple[str, ...] = VM_PACKAGES
    extra: tuple[str, ...] = ()
    customisation: tuple[int, int] = (image.CUSTOMISATION_VERSION, VM_CUSTOMISATION_VERSION)
    disk_mib: int = DISK_SIZE_MIB

    @classmethod
    def named(cls, name: str | None, extra: tuple[str, ...] = ()) -> VmImageRecipe:
        """The base VM image, or a scenario's: the base plus `extra` packages."""
        if not extra:
            return cls()
        return cls(name=f"vm-{name}", extra=tuple(sorted(set(extra))))

    def node_recipe(self) -> image.ImageRecipe:
        """The container node image this one starts from."""
        return image.ImageRecipe(suite=self.suite, mirror=self.mirror, packages=image.BASE_PACKAGES)

    def boot_packages(self) -> tuple[str, ...]:
        """What this image adds to the node image's packages (the kernel first)."""
        return tuple(p for p in self.packages if p not in image.BASE_PACKAGES)

    def digest(self) -> str:
        """A short hash of everything that changes the built image."""
        data = asdict(self) | {"packages": sorted(self.packages), "files": _data_digest(),
                               "container_files": image._data_digest()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def disk(self) -> Path:
        """The qcow2 root disk (the backing file of every node's overlay)."""
        return self.directory / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        """The kernel for direct boot."""
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        """The initrd for direct boot."""
        return self.directory / "initrd.img"


def ensure_vm_image(recipe: VmImageRecipe | None = None, progress: Progress = QUIET) -> VmImageRecipe:
    """Return a built VM image for `recipe`, building it first if it is not cached."""
    recipe = recipe or VmImageRecipe()
    built = recipe
    image.ensure_built_from_node(built.is_built, built.node_recipe(), lambda: build_vm_image(built, progress), progress)
    return recipe


def require_vm_image(recipe: VmImageRecipe) -> VmImageRecipe:
    """`recipe` if it is built, else a clear error naming the build command."""
    if not recipe.is_built():
        raise NotFoundError(f"VM image '{recipe.name}' ({recipe.digest()}) is not built",
                            "build it with: labctl image build vm (about 3 minutes, once)")
    return recipe


def build_vm_image(recipe: VmImageRecipe, progress: Progress = QUIET) -> None:
    """Build `recipe` into its cache folder (atomically: a failed build leaves nothing).

    The tree starts as a copy of the container node image of the same suite, mirror and
    packages (built first if needed: one debootstrap serves both providers), plus the kernel
    and what booting needs, then the VM customisation; it is packed into a qcow2."""
    require_tools()
    work = paths.images_dir() / f".build-{recipe.name}-{recipe.digest()}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    try:
        prepare_rootfs(recipe, rootfs, progress)
        with progress.step("extract the kernel and initrd for direct boot"):
            extract_boot(rootfs, work)
        with progress.step(f"pack the root filesystem (mkfs.ext4 -d, {recipe.disk_mib} MiB, qcow2)"):
            pack_disk(rootfs, work / "disk.qcow2", recipe.disk_mib)
        shutil.rmtree(rootfs)
        meta = asdict(recipe) | {"digest": recipe.digest(), "kind": "vm",
                                 "built": time.strftime("%FT%TZ", time.gmtime())}
        (work / "recipe.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(recipe.directory, ignore_errors=True)
        os.replace(work, recipe.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # 700 MB per build otherwise; the volumes uploaded to hypervisors stay (labs may use them)
    image.prune_old(recipe.name, recipe.directory)


def require_tools() -> None:
    """The programs that build VM disks, or a clear error naming the missing package."""
    for tool, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            raise PlatformError(f"{tool} is not installed; it builds VM images",
                                f"{profile_hint('--libvirt')} (apt-get install {package})")


def prepare_rootfs(recipe: VmImageRecipe, rootfs: Path, progress: Progress = QUIET) -> None:
    """The tree of a VM image at `rootfs`: the node image, its kernel and packages, the VM
    customisation (the Vagrant box starts from the same tree)."""
    base = image.ensure_image(recipe.node_recipe(), progress)  # built already when ensure_vm_image calls
    with progress.step(f"start from the node image {base.directory.name}"):
        image.copy_rootfs(base, rootfs)
    packages = (*recipe.boot_packages(), *recipe.extra)
    with progress.step(f"install the kernel and {len(packages) - 1} more packages (small initrd)"):
        _initramfs_conf(rootfs)  # before the kernel: its first initrd is already the small one
        image.install_packages(rootfs, packages, progress, enable_units=True)
    with progress.step("customise the image for lab VMs"):
        image.customise(rootfs)
        customise_vm(rootfs)


def pack_disk(rootfs: Path, disk: Path, size_mib: int, *, compress: bool = False) -> None:
    """`rootfs` as an ext4 root filesystem (no partition table: direct kernel boot) in a qcow2
    file `disk`, built without mounting anything; `compress` for a file to hand out."""
    raw = disk.with_suffix(".raw")
    try:
        _run(["mkfs.ext4", "-q", "-F", "-L", "labctl-root", "-d", str(rootfs), str(raw), f"{size_mib}M"])
        _run(["qemu-img", "convert", *(["-c"] if compress else []), "-f", "raw", "-O", "qcow2", str(raw), str(disk)])
    finally:
        raw.unlink(missing_ok=True)


def customise_vm(rootfs: Path) -> None:
    """Add what a VM needs beyond the container image: seed and out-of-band units, boot files."""
    for name, target, mode in (("labctl-vm-seed", "usr/local/sbin/labctl-vm-seed", 0o755),
                               ("labctl-oob", "usr/local/sbin/labctl-oob", 0o755),
                               ("labctl-seed.service", "etc/systemd/system/labctl-seed.service", 0o644),
                               ("labctl-oob.service", "etc/systemd/system/labctl-oob.service", 0o644)):
        image._write(rootfs, target, _data_file(name), mode)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "labctl-init.d.service").unlink(missing_ok=True)  # labctl-vm-seed runs the hooks itself
    for unit in ("labctl-seed.service", "labctl-oob.service"):
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{unit}")
    for unit in MASKED_UNITS:
        mask = rootfs / "etc/systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
    # watchfrr kills FRR's start after 20 s and gives up ("all configured daemons failed to
    # start"): seen on TCG routers booting side by side. Starting slowly is not failing.
    with open(rootfs / "etc/frr/daemons", "a") as daemons:
        daemons.write('\n# labctl VM: a TCG boot on a busy host starts FRR slowly\nwatchfrr_options="-T 300"\n')
    (rootfs / "etc/fstab").write_text("/dev/vda / ext4 rw,relatime 0 1\n")
    (rootfs / "etc/hostname").write_text("labctl-vm\n")
    # No resolver outside the lab until the seed gives the node its own resolv.conf.
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("# labctl lab VM: no DNS resolver outside the lab\noptions timeout:1 attempts:1\n")
    system = rootfs / "etc/systemd/system.conf.d"
    system.mkdir(parents=True, exist_ok=True)
    # TCG on a busy host can take minutes to boot: late devices are slow, not missing.
    (system / "labctl.conf").write_text("[Manager]\nDefaultTimeoutStartSec=600s\nDefaultDeviceTimeoutSec=600s\n")
    journald = rootfs / "etc/systemd/journald.conf.d"
    journald.mkdir(parents=True, exist_ok=True)
    (journald / "labctl.conf").write_text("[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n")


def _initramfs_conf(rootfs: Path) -> None:
    """Make initrds with only what a virtio disk needs: Debian's default (every module) is
    ~36 MB, and unpacking it alone takes many seconds under TCG. The NIC and virtio-serial
    drivers are in too, so that the devices exist as soon as the root is mounted."""
    # Files no package owns (initramfs-tools' own /etc/initramfs-tools/modules comes later).
    conf = rootfs / "etc/initramfs-tools/conf.d/labctl"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("MODULES=list\nCOMPRESS=gzip\n")
    modules = rootfs / "usr/share/initramfs-tools/modules.d/labctl"
    modules.parent.mkdir(parents=True, exist_ok=True)
    modules.write_text("virtio_pci\nvirtio_blk\next4\nvirtio_net\nvirtio_console\n")


def extract_boot(rootfs: Path, work: Path) -> None:
    """Copy the newest kernel and initrd of `rootfs` to `work`/vmlinuz and initrd.img."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise PlatformError("the image has no kernel or initrd in /boot (linux-image-amd64 not installed?)")
    shutil.copyfile(kernels[-1], work / "vmlinuz")
    shutil.copyfile(initrds[-1], work / "initrd.img")


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PlatformError(f"{command[0]} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")


def list_vm_images() -> list[dict[str, str]]:
    """The cached VM images with their recipe."""
    result = []
    for meta in sorted(paths.images_dir().glob("*/recipe.json")):
        data = json.loads(meta.read_text())
        if data.get("kind") == "vm":
            result.append({"name": data["name"], "digest": data["digest"], "suite": data["suite"],
                           "built": data.get("built", "?"), "path": str(meta.parent)})
    return result
