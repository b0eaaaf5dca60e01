"""Node images: a Debian root filesystem built from packages, cached by its recipe.

An image is built once with debootstrap (no downloads but Debian's archive; a scenario's
image starts from a copy of the base image and adds its packages with apt-get), customised
for labctl nodes (sshd drop-in, FRR daemons, the node init, a CLI user for netmiko), and
its ownership shifted into the nodes' user-namespace range so that root inside a node is
an unprivileged uid on the machine. Nodes mount it read-only as the lower layer of an
overlay; it is rebuilt only when its recipe (suite, mirror, packages, customisation)
changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from labctl import paths
from labctl.errors import NotFoundError, PlatformError
from labctl.progress import QUIET, Progress

# Root inside a node is this uid on the machine; the node owns 65536 uids from here.
UID_BASE = 100000
UID_COUNT = 65536

BASE_PACKAGES = (
    "openssh-server", "iproute2", "iputils-ping", "python3", "sudo", "procps", "frr",
    "traceroute", "tcpdump", "less", "vim-tiny", "netcat-openbsd", "nftables", "iptables",
    # systemd as the node's PID 1 (systemctl, journalctl, units) as on any Debian server;
    # ifupdown: /etc/network/interfaces applied at boot (a configuration that survives a reboot).
    "systemd-sysv", "dbus", "ifupdown",
)
# Bump when the customisation below changes, so cached images are rebuilt.
CUSTOMISATION_VERSION = 5
CLI_USER = "labctl"
DATA_FILES = ("labctl-init", "sshd_labctl.conf", "frr-daemons", "frr.conf", "labctl-init.d.service",
              "labctl-container.conf", "journald-labctl.conf", "systemd-sysctl-container.conf")
# Units a contained node never needs under systemd: no consoles or gettys (labctl ssh is the
# way in), no timers that download or scrub disks, no logind (no seats; pam_systemd is absent).
# frr.service is enabled per node (routers only) when the node is seeded, not in the image.
MASKED_UNITS = ("console-getty.service", "getty@.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "man-db.timer",
                "dpkg-db-backup.timer", "systemd-networkd-wait-online.service", "systemd-logind.service")


def default_mirror() -> str:
    """The Debian mirror this machine's apt uses (so image builds need no new access)."""
    if env := os.environ.get("LABCTL_MIRROR"):
        return env
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text(errors="replace").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    return "http://deb.debian.org/debian"


def default_suite() -> str:
    """This machine's Debian release, or bookworm."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip():
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "bookworm"


class CachedBuild:
    """A build cached under the images folder, in a folder named by its recipe's digest; a
    build is complete once its recipe.json is there (written last, before the atomic rename)."""

    name: str

    def digest(self) -> str:
        """A short hash of everything that changes the build."""
        raise NotImplementedError

    @property
    def directory(self) -> Path:
        """Where the build lives."""
        return paths.images_dir() / f"{self.name}-{self.digest()}"

    def is_built(self) -> bool:
        """True when a complete build of this recipe is cached."""
        return (self.directory / "recipe.json").exists()


@dataclass(frozen=True)
class ImageRecipe(CachedBuild):
    """What an image is made of; its digest names the cached build."""

    name: str = "node"
    suite: str = field(default_factory=default_suite)
    mirror: str = field(default_factory=default_mirror)
    packages: tuple[str, ...] = BASE_PACKAGES
    extra: tuple[str, ...] = ()  # a scenario's own packages, installed after the base
    customisation: int = CUSTOMISATION_VERSION

    @classmethod
    def named(cls, name: str | None, extra: tuple[str, ...] = ()) -> ImageRecipe:
        """The base node image, or a scenario's image: the base plus `extra` packages."""
        if not extra:
            return cls()
        return cls(name=f"node-{name}", extra=tuple(sorted(set(extra))))

    def base(self) -> ImageRecipe:
        """The base image this one is layered on (itself when it has no extra packages)."""
        return ImageRecipe(suite=self.suite, mirror=self.mirror, packages=self.packages,
                           customisation=self.customisation)

    def digest(self) -> str:
        """A short hash of everything that changes the built image."""
        data = asdict(self) | {"packages": sorted(self.packages), "files": _data_digest()}
        if not self.extra:
            del data["extra"]  # keeps the base image's digest stable
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def rootfs(self) -> Path:
        """The image's root filesystem (the nodes' lower layer)."""
        return self.directory / "rootfs"


def _data_file(name: str) -> bytes:
    return resources.files("labctl.data").joinpath(f"image/{name}").read_bytes()


def _data_digest() -> str:
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update(_data_file(name))
    return digest.hexdigest()[:12]


@contextmanager
def _build_lock() -> Iterator[None]:
    paths.images_dir().mkdir(parents=True, exist_ok=True)
    with open(paths.images_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image(recipe: ImageRecipe | None = None, progress: Progress = QUIET) -> ImageRecipe:
    """Return a built image for `recipe`, building it first if it is not cached.

    A scenario's image (the base plus packages) is layered on the base image, which is
    built first if needed: one debootstrap serves every scenario.
    """
    recipe = recipe or ImageRecipe()
    if recipe.is_built():
        return recipe
    with _build_lock():
        base = recipe.base()
        if recipe.extra and not base.is_built():
            build_image(base, progress)
        if not recipe.is_built():  # another process may have built it while we waited
            build_image(recipe, progress)
    return recipe


def ensure_built_from_node(is_built: Callable[[], bool], node: ImageRecipe, build: Callable[[], None],
                           progress: Progress = QUIET) -> None:
    """Run `build` unless `is_built()`, for something made from node image `node` (a VM image,
    a Vagrant box): the node image first, outside the build lock (ensure_image takes the same,
    non-reentrant lock), then `build` under it unless another process built it meanwhile."""
    if is_built():
        return
    ensure_image(node, progress)
    with _build_lock():
        if not is_built():
            build()


def build_image(recipe: ImageRecipe, progress: Progress = QUIET) -> None:
    """Build `recipe` into its cache folder (atomically: a failed build leaves nothing)."""
    if shutil.which("debootstrap") is None:
        raise PlatformError("debootstrap is not installed; it builds node images",
                            "apt-get install debootstrap")
    work = paths.images_dir() / f".build-{recipe.name}-{recipe.digest()}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    try:
        base = recipe.base()
        if recipe.extra and base.is_built():
            with progress.step(f"start from the base image {base.directory.name}"):
                copy_rootfs(base, rootfs)
        else:
            with progress.step(f"debootstrap {recipe.suite} with {len(recipe.packages)} packages "
                               f"(once; cached afterwards)"):
                _debootstrap(recipe, rootfs, progress)
        if recipe.extra:
            with progress.step(f"install {len(recipe.extra)} scenario packages: {' '.join(recipe.extra)}"):
                install_packages(rootfs, recipe.extra, progress)
        with progress.step("customise the image for lab nodes"):
            customise(rootfs)
        with progress.step("shift ownership into the nodes' user-namespace range"):
            shift_ownership(rootfs, UID_BASE)
        meta = asdict(recipe) | {"digest": recipe.digest(), "built": time.strftime("%FT%TZ", time.gmtime())}
        (work / "recipe.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(recipe.directory, ignore_errors=True)
        os.replace(work, recipe.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    prune_old(recipe.name, recipe.directory)


def copy_rootfs(base: ImageRecipe, rootfs: Path) -> None:
    """A copy of a built image's tree at `rootfs`, with its ownership as debootstrap left it."""
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(base.rootfs), str(rootfs)], check=True, capture_output=True)
    unshift_ownership(rootfs, UID_BASE)


def _debootstrap(recipe: ImageRecipe, rootfs: Path, progress: Progress) -> None:
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
               recipe.suite, str(rootfs), recipe.mirror]
    _run_logged(command, progress, f"check that {recipe.mirror} answers (apt-get update works?)")


def install_packages(rootfs: Path, packages: tuple[str, ...], progress: Progress, *,
                     enable_units: bool = False) -> None:
    """apt-get install `packages` inside the tree, with no service allowed to start, and (unless
    `enable_units`) none of the units they enable left enabled."""
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    enabled = _enabled_units(rootfs)
    script = (f"mount -t proc proc {rootfs}/proc && chroot {rootfs} sh -ec "
              f"'apt-get update -qq && apt-get install -y -q --no-install-recommends {' '.join(packages)}'")
    try:
        # A private mount namespace: /proc is unmounted with it, whatever happens.
        _run_logged(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], progress,
                    "check the package names (apt-cache policy NAME) and that the mirror answers")
    finally:
        policy.unlink(missing_ok=True)
    # Every node of a lab shares its image: a server a package enables (smbd, cups, named)
    # would run on every node. A scenario's setup enables and starts it where it belongs.
    for link in set() if enable_units else _enabled_units(rootfs) - enabled:
        link.unlink()


def _enabled_units(rootfs: Path) -> set[Path]:
    """The links that enable units in the tree (`*.wants/`, `*.requires/` of /etc/systemd/system)."""
    system = rootfs / "etc/systemd/system"
    return {link for pattern in ("*.wants/*", "*.requires/*") for link in system.glob(pattern) if link.is_symlink()}


def _run_logged(command: list[str], progress: Progress, hint: str) -> None:
    log_lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log_lines.append(line.rstrip())
            progress.update(line.strip())
    if proc.returncode != 0:
        tail = "\n".join(log_lines[-15:])
        raise PlatformError(f"{command[0]} failed (exit {proc.returncode}):\n{tail}", hint)


def _write(rootfs: Path, relative: str, data: bytes, mode: int = 0o644) -> None:
    target = rootfs / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def customise(rootfs: Path) -> None:
    """Turn a debootstrapped tree into a labctl node image (before ownership is shifted)."""
    _write(rootfs, "usr/local/sbin/labctl-init", _data_file("labctl-init"), 0o755)
    _write(rootfs, "etc/ssh/sshd_config.d/labctl.conf", _data_file("sshd_labctl.conf"))
    (rootfs / "etc/ssh/labctl_authorized_keys").mkdir(mode=0o755, exist_ok=True)
    _write(rootfs, "etc/frr/daemons", _data_file("frr-daemons"))
    _write(rootfs, "etc/frr/frr.conf", _data_file("frr.conf"))
    (rootfs / "etc/frr/vtysh.conf").write_text("service integrated-vtysh-config\n")
    (rootfs / "etc/labctl/init.d").mkdir(parents=True, exist_ok=True)
    _customise_systemd(rootfs)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # every node gets its own host keys
    for machine_id in ("etc/machine-id", "var/lib/dbus/machine-id"):
        if (rootfs / machine_id).exists():
            (rootfs / machine_id).write_text("")
    (rootfs / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    subprocess.run(
        ["chroot", str(rootfs), "sh", "-ec",
         f"id -u {CLI_USER} >/dev/null 2>&1 || useradd -m -s /usr/bin/vtysh -G frrvty,frr -p '*' {CLI_USER}; "
         "chown -R frr:frr /etc/frr; chmod 640 /etc/frr/frr.conf; "
         "apt-get clean; rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/*"],
        check=True, capture_output=True,
    )


def _customise_systemd(rootfs: Path) -> None:
    """systemd for contained nodes: masks, container drop-ins, the init.d hooks as a unit, FRR
    not enabled in the image (routers get it enabled when seeded)."""
    system = rootfs / "etc/systemd/system"
    for name, target in (("labctl-init.d.service", "etc/systemd/system/labctl-init.d.service"),
                         ("labctl-container.conf", "etc/systemd/system.conf.d/labctl.conf"),
                         ("journald-labctl.conf", "etc/systemd/journald.conf.d/labctl.conf"),
                         ("systemd-sysctl-container.conf", "etc/systemd/system/systemd-sysctl.service.d/labctl.conf")):
        _write(rootfs, target, _data_file(name))
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "frr.service").unlink(missing_ok=True)
    init_d = wants / "labctl-init.d.service"
    if not init_d.is_symlink():
        init_d.symlink_to("/etc/systemd/system/labctl-init.d.service")
    for unit in MASKED_UNITS:
        mask = system / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")


def _owned(rootfs: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every file, folder and symlink of the tree with its lstat."""
    for directory, dirnames, filenames in os.walk(rootfs):
        names = [directory, *(os.path.join(directory, f) for f in filenames)]
        names += [os.path.join(directory, d) for d in dirnames if os.path.islink(os.path.join(directory, d))]
        for name in names:
            yield name, os.lstat(name)


def _chown(name: str, info: os.stat_result, uid: int, gid: int) -> None:
    """lchown, keeping the setuid/setgid bits chown clears."""
    os.lchown(name, uid, gid)
    if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o6000:
        os.chmod(name, stat.S_IMODE(info.st_mode))


def shift_ownership(rootfs: Path, base: int) -> None:
    """Add `base` to every file's uid and gid (files already shifted are left)."""
    for name, info in _owned(rootfs):
        if info.st_uid < base:
            _chown(name, info, info.st_uid + base, info.st_gid + base)


def unshift_ownership(rootfs: Path, base: int) -> None:
    """Take `base` off every shifted file's uid and gid: the tree as debootstrap left it."""
    for name, info in _owned(rootfs):
        if info.st_uid >= base:
            _chown(name, info, info.st_uid - base, info.st_gid - base if info.st_gid >= base else info.st_gid)


def prune_old(name: str, keep: Path) -> None:
    """Remove older builds of image `name` (all but `keep`) that no lab uses: a lab records its
    image's root filesystem (containers) or the image folder itself (VMs)."""
    from labctl.state import all_labs

    in_use = {lab.image for lab in all_labs()}
    # `node-<digest>` only: `node-*` is also every scenario's image (node-agence-<digest>...)
    builds = re.compile(re.escape(name) + r"-[0-9a-f]{12}")
    for other in paths.images_dir().glob(f"{name}-*"):
        if other != keep and builds.fullmatch(other.name) and {str(other), str(other / "rootfs")}.isdisjoint(in_use):
            shutil.rmtree(other, ignore_errors=True)


def list_images() -> list[dict[str, str]]:
    """The cached images with their recipe."""
    result = []
    for meta in sorted(paths.images_dir().glob("*/recipe.json")):
        data = json.loads(meta.read_text())
        result.append({"name": data["name"], "digest": data["digest"], "suite": data["suite"],
                       "built": data.get("built", "?"), "path": str(meta.parent)})
    return result


def require_image(recipe: ImageRecipe) -> Path:
    """The rootfs of a built image, or a clear error naming the build command."""
    if not recipe.is_built():
        raise NotFoundError(f"image '{recipe.name}' is not built", "run: labctl image build")
    return recipe.rootfs
