"""The local provider: each node is a contained Linux system on this machine's kernel.

A node is a systemd-nspawn container: its own network, mount, PID, UTS and IPC
namespaces, inside a user namespace (root in the node is uid 100000 on the machine), a
seccomp filter, a copy-on-write root (overlay of the shared read-only image and the
node's own upper folder) and sshd. Routers also run FRR. Per lab:

- a fabric namespace holds one bridge per switch (a firewall there lets nodes start
  nothing towards it: providers/firewall.py);
- nodes have no management interface: labctl enters each node out of band (SSH server
  started on a pipe inside the node, `access`), so nothing of labctl's is ever an address
  FRR could take as a router id, advertise, or pull into OSPF with `network 0.0.0.0/0`
  (the kernel has no VRF to hide such an interface in on every machine labctl runs on);
- point-to-point links are veth pairs made directly between two node namespaces;
- every name is derived from the lab id (`lc-<id>-...`), so labs never collide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any, TypeVar

from labctl import cgroups, image, netns
from labctl.errors import PlatformError, PrivilegeError, ProviderError
from labctl.plan import MGMT_IFACE, RESTARTING, NodePlan
from labctl.progress import QUIET, Progress
from labctl.providers import firewall, lockdown, nodedisk, nodefs, reboots
from labctl.providers.base import NodeAccess, Probe, Provider, require_probes
from labctl.providers.enter import node_exec_argv
from labctl.state import LabState, NodeState, ProcessRef
from labctl.topology.model import NodeKind
from labctl.topology.validate import VlanUse

BOOT_TIMEOUT = 30.0
# A node whose processes still use CPU at the end of its budget is still booting (systemd on
# a slow or emulated machine: under QEMU's TCG, seven systemd nodes take minutes): it is
# waited for while it makes progress, at most this much more; a stuck node fails on time.
BOOT_TIMEOUT_BUSY = 300.0
# ... and given up once its processes used no CPU for IDLE_WINDOWS windows of IDLE_WINDOW s in a
# row. One idle window was too few: a reset of seven systemd nodes inside a TCG VM on a loaded
# machine gave a node up at 46 s after a single 5 s window without CPU (waiting on its disk or
# the scheduler, not stuck: the same reset passes on a quieter machine).
IDLE_WINDOW, IDLE_WINDOWS = 5.0, 3
SSHD_PID_FILE = "/run/sshd.pid"  # Debian's sshd writes it after it starts listening
STOP_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 15.0  # a systemd node's own shutdown before a restart (then it is killed)
SEALED_MARK = "/run/labctl-sealed"
DHCP_INTERFACES = "/etc/network/interfaces.d/labctl-dhcp"  # read by ifupdown's /etc/network/interfaces
# What udev's ifup@ does on a machine: raises `allow-hotplug` interfaces (labctl's DHCP ones, a
# candidate's own), after networking.service and without holding the boot (sshd is ordered
# after network.target: with `auto`, a DHCP interface with no server yet held it ~60 s).
HOTPLUG_UNIT = "labctl-hotplug.service"
HOTPLUG_HOOK = "/etc/labctl/init.d/50-labctl-hotplug"  # its twin for nodes on the light init
SEAL_WAIT = 120.0  # how long a node's first process waits for labctl to seal and wire it


# Every node's root is the same host user (image.UID_BASE), and each systemd node's PID 1 takes
# 5 inotify instances of that user: fs.inotify.max_user_instances bounds how many run at once
# (Debian's 128: ~25; a 30-lab room of 7 nodes needs over 1000).
INOTIFY_PER_NODE = 5
INOTIFY_ROOM = 2048
INOTIFY_FIX = ("sysctl -w fs.inotify.max_user_instances=8192 (scripts/bootstrap.sh also writes it to "
               "/etc/sysctl.d/60-labctl.conf)")


def inotify_instances() -> int:
    """This machine's fs.inotify.max_user_instances (0 if unreadable)."""
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return 0


def node_init(kind: str) -> list[str]:
    """The node's first process: a shell of the image that waits until labctl has sealed the
    node's /proc and wired its interfaces (SEALED_MARK), then execs the node's init.

    `systemd` (nspawn's PID 1 itself, so it execs systemd as PID 1: nspawn sets $container,
    systemd knows it runs contained): sealing replaces /proc under whatever runs, so nothing of
    the node's own, neither systemd nor a unit a candidate enabled, may run before it; and a
    node whose interfaces exist when its units start boots as a machine does (ifupdown's
    /etc/network/interfaces, FRR, servers bound to their address). The wait is a shell loop
    of the image's /bin/sh, not a labctl program: nothing of the host runs inside the node.
    `light` (PID 2 under nspawn's stub init): the same wait, then labctl-init, a shell script
    that starts sshd, FRR on routers and /etc/labctl/init.d (no unit manager: less memory).
    With no mark within SEAL_WAIT the node exits (it never runs unsealed)."""
    then = "exec /lib/systemd/systemd" if kind == "systemd" else "exec /usr/local/sbin/labctl-init"
    steps = int(SEAL_WAIT / 0.05)
    return ["/bin/sh", "-c", f"i=0; while [ ! -e {SEALED_MARK} ]; do [ $i -ge {steps} ] && exit 1; "
                             f"sleep 0.05; i=$((i+1)); done; rm -f {SEALED_MARK}; {then}"]


T = TypeVar("T")


def _parallel(items: Iterable[T], work: Callable[[T], object]) -> None:
    """Run `work` over `items` in threads; re-raise the first failure."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


@dataclass
class BootPatience:
    """How long a node that has not started its sshd yet is waited for: BOOT_TIMEOUT, then
    IDLE_WINDOW more at a time while its processes use CPU; given up after IDLE_WINDOWS windows
    in a row without any, or BOOT_TIMEOUT_BUSY past the budget in any case."""

    started: float
    cpu: int  # the node's processes' CPU ticks when last looked at
    idle: int = 0  # windows in a row in which they used none
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = self.started + BOOT_TIMEOUT

    def exhausted(self, now: float, cpu: Callable[[], int]) -> str:
        """Why the node is given up at `now` (its processes' CPU read only at a window's end),
        or "" while it may still come up."""
        if now < self.deadline:
            return ""
        ticks = cpu()
        self.idle = self.idle + 1 if ticks <= self.cpu else 0
        if self.idle >= IDLE_WINDOWS:
            return f"had used no CPU for {IDLE_WINDOW * IDLE_WINDOWS:.0f} s"
        if now - self.started >= BOOT_TIMEOUT + BOOT_TIMEOUT_BUSY:
            return "were still busy"
        self.cpu, self.deadline = ticks, now + IDLE_WINDOW  # still working, or waiting on the disk
        return ""


class LocalProvider(Provider):
    """Nodes as contained systems (systemd-nspawn + user namespace) on this kernel."""

    name = "local"
    observes_from_outside = True

    # ---- preflight -------------------------------------------------------------------
    def preflight(self) -> list[Probe]:
        """Root, the tools, and the kernel features nodes need."""
        probes = [
            Probe("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else
                  "not root: namespaces, bridges and containers need root", "run labctl with sudo"),
        ]
        for tool, package in (("systemd-nspawn", "systemd-container"), ("ip", "iproute2"),
                              ("debootstrap", "debootstrap"), ("nsenter", "util-linux"),
                              ("ssh-keygen", "openssh-client"), ("nft", "nftables"),
                              ("mkfs.ext4", "e2fsprogs"), ("losetup", "mount"), ("mount", "mount")):
            found = shutil.which(tool)
            probes.append(Probe(f"tool {tool}", found is not None, found or "missing",
                                f"apt-get install {package}"))
        probes.append(Probe("mount API (open_tree, move_mount)", lockdown.mount_api(),
                            "locks each node's /proc/sys read-only" if lockdown.mount_api() else "missing",
                            "a kernel of 5.2 or later (Debian 12: 6.1)"))
        userns = Path("/proc/sys/user/max_user_namespaces")
        count = int(userns.read_text()) if userns.exists() else 0
        probes.append(Probe("user namespaces", count > 0, f"max_user_namespaces={count}",
                            "sysctl -w user.max_user_namespaces=15000"))
        layout = cgroups.layout()
        offered = layout.controllers()
        probes.append(Probe("cgroups", {"memory", "pids"} <= set(offered),
                            f"{layout.kind}: {', '.join(offered) or 'no controller'}",
                            "mount the cgroup controllers memory, pids, cpu and blkio (or cgroup v2)"))
        probes.append(Probe("loop devices", Path("/dev/loop-control").exists(), "/dev/loop-control",
                            "load the loop module (modprobe loop): each node's disk is a loop device"))
        probes.append(Probe("overlayfs", "overlay" in Path("/proc/filesystems").read_text(),
                            "overlay filesystem", "load the overlay module (modprobe overlay)"))
        limit = inotify_instances()
        probes.append(Probe("inotify instances", limit >= INOTIFY_ROOM,
                            f"fs.inotify.max_user_instances={limit}: about {limit // INOTIFY_PER_NODE} systemd "
                            "nodes at once on this machine (all labs together)", INOTIFY_FIX, required=False))
        return probes

    def require(self) -> None:
        """Root, then every required preflight probe."""
        if os.geteuid() != 0:
            raise PrivilegeError(
                "the local provider needs root: it creates network namespaces, bridges and "
                "containers", "run it with sudo (labctl doctor lists what else is needed)")
        require_probes("local", self.preflight())

    def refuse_vlans(self, places: list[tuple[str, VlanUse]]) -> None:
        """Where this kernel lacks what the VLANs need, the refusal is doctor's own finding
        (exit 5, platform); where it has it, the local provider still builds no VLAN (exit 6)."""
        from labctl.doctor import KERNEL_FIX, kernel_feature

        probes = {feature: kernel_feature(feature) for feature in sorted({use.feature for _, use in places})}
        missing = [probe for probe in probes.values() if not probe.ok]
        if missing:  # each of doctor's findings, then the places that need it
            raise PlatformError("this machine's kernel cannot build the topology's VLANs:" + "".join(
                f"\n  {probe.name}: {probe.detail}" + "".join(
                    f"\n    {place}: {use.what}" for place, use in places if probes[use.feature] is probe)
                for probe in missing), f"{KERNEL_FIX}; labctl doctor lists this kernel's features")
        super().refuse_vlans(places)

    # ---- create ----------------------------------------------------------------------
    def build(self, lab: LabState, progress: Progress, origin: LabState | None = None) -> None:
        """Image, keys and files, then fabric, nodes and links (see `create`); with `origin`,
        each node's writable layer, addresses and routes start as in the origin's snapshot."""
        recipe = image.ensure_image(image.ImageRecipe.named(lab.image_name, tuple(lab.packages)), progress)
        if origin is not None and origin.image != str(recipe.rootfs):
            raise ProviderError(f"lab {origin.name} runs on an older image than {recipe.rootfs}: its files would "
                                "not match a copy", "build the lab again (labctl up) before copying it")
        lab.image = str(recipe.rootfs)
        lab.save()
        plan = lab.plan
        with progress.step(f"prepare {len(plan.nodes)} nodes (keys, files)"):
            _generate_key(lab.key_file, f"labctl@{lab.id}")
            _parallel(plan.nodes, lambda node: self._seed_node(lab, node, origin))
            lab.save()
        self._start(lab, progress, network_of=origin)
        lab.status = "running"
        lab.save()

    def build_copy(self, lab: LabState, origin: LabState, progress: Progress) -> None:
        """The lab in `origin`'s snapshot state: its files, addresses and routes, with the
        new lab's own identity (names, host keys, labctl's key); nodes boot once."""
        if [n.name for n in origin.plan.nodes] != [n.name for n in lab.plan.nodes] or not all(
                (origin.node_dir(n.name) / "snapshot").is_dir() for n in origin.plan.nodes):
            raise ProviderError(f"lab {origin.name} cannot be copied: it has no snapshot of the same nodes",
                                "copy a lab built by `labctl up` from the same scenario and variant")
        self.build(lab, progress, origin)

    def _start(self, lab: LabState, progress: Progress, network_of: LabState | None = None) -> None:
        """Fabric, nodes, links, addresses; returns when every node answers SSH. Addresses,
        routes and link settings are the plan's, or those of `network_of`'s snapshot."""
        plan = lab.plan
        with progress.step("create the fabric (the segments)"):
            netns.add(plan.fabric_netns)
            self._build_fabric(lab)
            firewall.seal(plan.fabric_netns)
        with progress.step(f"start {len(plan.nodes)} nodes"):
            for node in plan.nodes:
                reboots.forget(lab.node_dir(node.name))
                self._launch(lab, node)
            lab.save()
            _parallel(plan.nodes, lambda node: self._settle(lab, node))
            lab.save()
        with progress.step("wire links and addresses" + (" (as in the snapshot)" if network_of else "")):
            self._wire(lab, network_of)
            _parallel(plan.nodes, lambda node: _mark_sealed(lab, node.name))
        with progress.step("wait for every node to answer SSH"):
            _parallel(plan.nodes, lambda node: self._wait_ready(lab, node))

    def _stop(self, lab: LabState) -> list[str]:
        """Stop every node, then kill whatever is left in the lab's cgroups (a node started
        by a command killed before it recorded it) and remove the lab's namespaces (its files
        stay); returns what could not be removed."""
        _parallel(lab.nodes.values(), _stop_node)
        for node in lab.nodes:  # a start cut short leaves a node's channel mounted
            lockdown.release(lab.node_dir(node) / "channel")
        left = cgroups.sweep(cgroups.lab_group(lab.id))
        for name in lab.plan.netns_names():
            netns.delete(name)
        return left

    # ---- restart ---------------------------------------------------------------------
    def restart_node(self, lab: LabState, node: str, progress: Progress = QUIET) -> None:
        """Reboot `node` as a machine reboots: its systemd shuts it down (units stopped, files
        written; killed after SHUTDOWN_TIMEOUT), then it boots again from its own disk with
        its identity. Its network interfaces are the same links (the peers never notice more
        than a carrier loss) and get the plan's addresses and routes again: what a candidate
        set by hand only (`ip addr add`) is gone, what they wrote in the node's files comes
        back with its units (/etc/network/interfaces, enabled services, FRR's configuration)."""
        self.require()
        plan = lab.plan.node(node)
        state = lab.nodes.get(node)
        if state is None or state.init is None or not netns.exists(plan.netns):
            raise ProviderError(f"node {node} of lab {lab.name} is not running; it cannot be restarted",
                                "labctl reset brings the whole lab back (labctl status shows its nodes)")
        with progress.step(f"restart {node}"):
            _shut_down(state, plan.init)
            _stop_node(state)
            reboots.forget(lab.node_dir(node))  # started on purpose: a fresh count of its own reboots
            self._boot_again(lab, plan)

    def reboot_node(self, lab: LabState, node: str) -> None:
        """Boot again a node whose own `reboot` ended it (nspawn exited 133): what `restart_node`
        does once the node is down. Run by the node's launcher (providers/reboots.py) under the
        lab's lock, with the node's PID 1 gone; its reboots count towards the loop limit."""
        self.require()
        plan = lab.plan.node(node)
        state = lab.nodes.get(node)
        if state is None or state.init is None or state.init.alive() or not netns.exists(plan.netns):
            raise ProviderError(f"node {node} of lab {lab.name} is not waiting for a reboot")
        self._boot_again(lab, plan)

    def _boot_again(self, lab: LabState, plan: NodePlan) -> None:
        """Boot a stopped node again from its disk, in its links, with the plan's addresses."""
        node = plan.name
        left = cgroups.sweep(cgroups.node_group(lab.id, node))
        lockdown.release(lab.node_dir(node) / "channel")
        if left:
            raise ProviderError(f"node {node}: could not be stopped: " + "; ".join(left),
                                "remove the lab (labctl down) and build it again")
        # The links stay in the node's previous namespace until the new one exists.
        netns.delete(plan.netns + RESTARTING)
        netns.rename(plan.netns, plan.netns + RESTARTING)
        self._launch(lab, plan)
        lab.save()
        self._settle(lab, plan)
        lab.save()
        _move_links(plan.netns + RESTARTING, plan)
        netns.batch(plan.netns, _network_commands(plan, None), f"configuring node {node}")
        _mark_sealed(lab, node)
        self._wait_ready(lab, plan)

    # ---- snapshot and reset ----------------------------------------------------------
    def snapshot(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Record each node's files (its writable layer), addresses and static routes."""
        with progress.step(f"snapshot {len(lab.plan.nodes)} nodes (files, addresses, routes)"):
            _parallel(lab.plan.nodes, lambda node: _snapshot_node(lab, node))

    def revert(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Bring every node back to its snapshot: restart from the saved files, then
        restore saved addresses and routes (daemons come back through the node init)."""
        self.require()
        if not all((lab.node_dir(n.name) / "snapshot").is_dir() for n in lab.plan.nodes):
            raise ProviderError(f"lab {lab.name} has no snapshot to go back to",
                                "labs built by `labctl up` have one once set up; rebuild with labctl up")
        lab.status = "resetting"  # until it runs again: a reset cut short is not a running lab
        lab.save()
        with progress.step("stop the nodes"):
            left = self._stop(lab)
        if left:
            raise ProviderError(f"lab {lab.name}: nodes could not be stopped: " + "; ".join(left),
                                "remove the lab (labctl down) and build it again")
        with progress.step("restore each node's files"):
            _parallel(lab.plan.nodes, lambda node: _restore_files(lab, node))
        try:
            self._start(lab, progress, network_of=lab)
        except BaseException:
            lab.status = "failed"
            lab.save()
            raise
        lab.status = "running"
        lab.save()

    def _seed_node(self, lab: LabState, node: NodePlan, origin: LabState | None = None) -> None:
        lower = Path(lab.image)
        nodedisk.create(lab.node_dir(node.name), node.limits.disk)
        upper = lab.upper_dir(node.name)
        if origin is not None:  # the origin's files at its snapshot; the identity below replaces its own
            upper.parent.mkdir(parents=True, exist_ok=True)
            netns.run(["cp", "-a", str(origin.node_dir(node.name) / "snapshot" / "upper"), str(upper)],
                      what=f"copying {origin.name}'s {node.name}")
        nodefs.prepare_upper(upper)
        key_path = lab.node_dir(node.name) / "ssh_host_ed25519_key"
        _generate_key(key_path, f"root@{node.name}")
        host_key = key_path.read_bytes()
        host_pub = key_path.with_suffix(".pub").read_text().strip()
        lab.nodes[node.name] = NodeState(host_key=host_pub)
        controller_pub = lab.key_file.with_suffix(".pub").read_text()
        hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" + f"127.0.1.1 {node.name}\n"
        hosts += "".join(_lab_hosts(lab))
        files: dict[str, tuple[str | bytes, int]] = {
            "/etc/ssh/ssh_host_ed25519_key": (host_key, 0o600),
            "/etc/ssh/ssh_host_ed25519_key.pub": (host_pub + "\n", 0o644),
            "/etc/ssh/labctl_authorized_keys/root": (controller_pub, 0o644),
            f"/etc/ssh/labctl_authorized_keys/{image.CLI_USER}": (controller_pub, 0o644),
            "/etc/hostname": (node.name + "\n", 0o644),
            "/etc/hosts": (hosts, 0o644),
            # No resolver: nothing in a lab may query a resolver outside the lab.
            "/etc/resolv.conf": ("# labctl lab node: no DNS resolver outside the lab\n"
                                 "options timeout:1 attempts:1\n", 0o644),
            "/etc/labctl/node.env": (f"LABCTL_KIND={node.kind.value}\nLABCTL_NODE={node.name}\n"
                                     f"LABCTL_LAB={lab.name}\n", 0o644),
        }
        dhcp = [iface.name for iface in node.interfaces if iface.dhcp]
        if dhcp and origin is None:  # (a copy has its origin's, which a setup may have changed)
            # Debian installer's stanza: raised at boot (HOTPLUG_UNIT), the DHCP client asks
            files[DHCP_INTERFACES] = ("# labctl: these interfaces are addressed by DHCP (topology)\n" + "".join(
                f"allow-hotplug {name}\niface {name} inet dhcp\n" for name in dhcp), 0o644)
        if origin is None:
            files[f"/etc/systemd/system/{HOTPLUG_UNIT}"] = (
                resources.files("labctl.data").joinpath(f"image/{HOTPLUG_UNIT}").read_bytes(), 0o644)
            # the light init runs /etc/labctl/init.d at each start: the same, without systemd
            files[HOTPLUG_HOOK] = (resources.files("labctl.data").joinpath("image/labctl-hotplug").read_bytes(), 0o755)
        files["/etc/machine-id"] = (uuid.uuid4().hex + "\n", 0o444)  # the same after a reboot
        if node.init == "light" and origin is None:
            files.update(reboots.light_commands())
        if node.kind is NodeKind.router:
            # Routers forward (systemd-sysctl at boot; labctl-init on light nodes) and run FRR.
            files["/etc/sysctl.d/90-labctl-router.conf"] = ("# labctl: this node is a router\n"
                                                           "net.ipv4.ip_forward = 1\n", 0o644)
        for path, (content, mode) in files.items():
            nodefs.place(lower, upper, path, content, mode=mode)
        if origin is None:
            nodefs.place_link(lower, upper, f"/etc/systemd/system/multi-user.target.wants/{HOTPLUG_UNIT}",
                              f"/etc/systemd/system/{HOTPLUG_UNIT}")
        if node.kind is NodeKind.router and origin is None:  # a copy keeps its origin's choice
            nodefs.place_link(lower, upper, "/etc/systemd/system/multi-user.target.wants/frr.service",
                              "/lib/systemd/system/frr.service")
        _make_fuse_device(lab.node_dir(node.name) / "fuse")

    def _build_fabric(self, lab: LabState) -> None:
        plan = lab.plan
        commands = ["link set lo up"]
        for segment in plan.segments:
            commands += [f"link add {segment.bridge} type bridge", f"link set {segment.bridge} up"]
        netns.batch(plan.fabric_netns, commands, "creating the lab fabric")

    def _launch(self, lab: LabState, node: NodePlan) -> None:
        directory = lab.node_dir(node.name)
        upper = lab.upper_dir(node.name)
        argv = [
            "systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
            f"--machine={node.machine}", f"--hostname={node.name}",
            f"--directory={lab.image}", f"--overlay={lab.image}:{upper}:/",
            f"--private-users={image.UID_BASE}:{image.UID_COUNT}",
            "--private-users-ownership=off", "--private-network",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=pipe",
        ]
        fuse = directory / "fuse"
        if fuse.exists():
            argv.append(f"--bind={fuse}:/dev/fuse")
        argv += lockdown.nspawn_args(directory / "channel")
        argv += _tmpfs_options(node.limits.memory)
        argv += ([] if node.init == "systemd" else ["--as-pid2"]) + node_init(node.init)
        # The node's processes live in its cgroup from nspawn's first instruction on: its
        # limits hold from the start, and `down` finds them even if this command dies now.
        group = cgroups.node_group(lab.id, node.name)
        cgroups.create(group, _cgroup_limits(node), entry_leaf=True)
        # The launcher (the recorded process) is a shell that waits for nspawn and keeps its exit
        # status: 133 is the node's own reboot, and the shell then becomes the node's rebooter
        # (providers/reboots.py); anything else leaves the node stopped, its status on record.
        reboots.clear_exit(directory)
        with open(directory / "nspawn.log", "ab") as log:
            launcher = reboots.launcher_argv(lab.id, node.name, directory, cgroups.enter_argv(group, argv))
            proc = subprocess.Popen(launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        ref = ProcessRef.of(proc.pid)
        if ref is None:
            raise ProviderError(f"node {node.name}: systemd-nspawn exited at once; see {directory}/nspawn.log")
        lab.nodes[node.name].launcher = ref

    def _settle(self, lab: LabState, node: NodePlan) -> None:
        """Find the node's PID 1: nspawn's child (nspawn is the launcher's child) once it is in
        its own namespaces."""
        state = lab.nodes[node.name]
        assert state.launcher is not None
        own_netns = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if not state.launcher.alive():
                log = (lab.node_dir(node.name) / "nspawn.log").read_text(errors="replace")[-800:]
                raise ProviderError(f"node {node.name} stopped while starting:\n{log.strip()}")
            for child in _grandchildren(state.launcher.pid):
                try:
                    # In its namespaces, and done with its mounts: nspawn's child renames itself
                    # (sd-stubinit) once it has set up the node's file systems; sealing /proc
                    # before that made nspawn's own remount of /sys fail now and then.
                    if os.readlink(f"/proc/{child}/ns/net") != own_netns and \
                            Path(f"/proc/{child}/uid_map").read_text().split()[1] == str(image.UID_BASE) and \
                            Path(f"/proc/{child}/comm").read_text().strip() != "systemd-nspawn":
                        state.init = ProcessRef.of(child)
                        if state.init is not None:
                            netns.attach(node.netns, child)
                            _lock_down(lab, node.name, child)
                            return
                except (OSError, IndexError):
                    continue
            time.sleep(0.02)
        raise ProviderError(f"node {node.name} did not start within {BOOT_TIMEOUT:.0f} s")

    def _wire(self, lab: LabState, network_of: LabState | None) -> None:
        plan = lab.plan
        fabric: list[str] = []
        for node in plan.nodes:
            for iface in node.interfaces:
                if not iface.creates_pair:
                    continue
                fabric.append(f"link add {iface.name} netns {node.netns} type veth "
                              f"peer name {iface.peer_name} netns {iface.peer_netns}")
                if iface.bridge:
                    mtu = f" mtu {iface.mtu}" if iface.mtu else ""
                    fabric += [f"link set {iface.peer_name} master {iface.bridge}",
                               f"link set {iface.peer_name}{mtu} up"]
        netns.batch(plan.fabric_netns, fabric, "creating links")
        _parallel(plan.nodes, lambda node: _configure(node, network_of.node_dir(node.name) / "snapshot"
                                                      if network_of else None))

    def _wait_ready(self, lab: LabState, node: NodePlan) -> None:
        """Until the node's sshd is started: it writes its pid file once ready (looking for it
        costs nothing; labctl then reaches the node out of band, `access`)."""
        state = lab.nodes[node.name]
        assert state.init is not None
        pid_file = Path(f"/proc/{state.init.pid}/root") / SSHD_PID_FILE.lstrip("/")
        group = cgroups.node_group(lab.id, node.name)
        started = time.monotonic()
        patience = BootPatience(started, _cpu_ticks(cgroups.pids(group)))
        while True:
            if pid_file.exists():
                return
            if not state.init.alive():
                raise ProviderError(f"node {node.name} stopped while starting its services",
                                    f"with many systemd nodes running, fs.inotify.max_user_instances (now "
                                    f"{inotify_instances()}, {INOTIFY_PER_NODE} per node) may be exhausted: "
                                    f"{INOTIFY_FIX}; labctl doctor")
            why = patience.exhausted(time.monotonic(), lambda: _cpu_ticks(cgroups.pids(group)))
            if why:
                break
            time.sleep(0.05)
        raise ProviderError(f"node {node.name}: sshd did not start within {time.monotonic() - started:.0f} s "
                            f"(no {SSHD_PID_FILE} in the node; its processes {why})",
                            "labctl down, then up again; if it persists, rerun with --debug and look at the "
                            "node's folder under /var/lib/labctl/labs")

    # ---- destroy ---------------------------------------------------------------------
    def destroy(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Stop every node process, remove namespaces and folders; idempotent."""
        if os.geteuid() != 0:
            raise PrivilegeError("removing a local lab needs root (it owns namespaces and processes)",
                                 "run it with sudo")
        lab.status = "destroying"
        if lab.directory.exists():
            lab.save()
        _kill_commands_of(lab)
        left = self._stop(lab)
        left += nodedisk.release(lab.directory)
        left += [f"network namespace {name}" for name in lab.plan.netns_names() if netns.exists(name)]
        if not left:
            lab.remove()
            if lab.directory.exists():  # a mount made meanwhile by a command cut short: once more
                left = nodedisk.release(lab.directory)
                lab.remove()
            if lab.directory.exists():
                left.append(f"folder {lab.directory}")
        if left:
            raise ProviderError(f"lab {lab.name} ({lab.id}) could not be removed entirely: " + "; ".join(left),
                                "run labctl down again; if it persists, remove these by hand")

    # ---- status and access -----------------------------------------------------------
    def node_states(self, lab: LabState) -> dict[str, str]:
        """running when the node's PID 1 is alive; rebooting while its own reboot brings it back;
        else stopped, with why when the node ended itself (missing if never started)."""
        result = {}
        for node in lab.plan.nodes:
            state = lab.nodes.get(node.name)
            if state is None or state.init is None:
                result[node.name] = "missing"
            elif state.init.alive():
                result[node.name] = "running"
            else:
                rebooting = state.launcher is not None and state.launcher.alive()
                result[node.name] = reboots.stopped_state(lab.node_dir(node.name), rebooting)
        return result

    def access(self, lab: LabState, node: str) -> NodeAccess:
        """Out of band only: `sshd -i` started in the node as its root through
        `enter.node_exec_argv` (no host credential ever inside). Nodes have no management
        address (see the module docstring)."""
        state = lab.nodes[node]
        pid = state.init.pid if state.init else 0
        return NodeAccess(
            node=node, mgmt_netns=None, mgmt_address="",
            # In the node's cgroup: its limits hold, and `down` finds the helper with the node.
            oob_command=tuple(cgroups.enter_argv(cgroups.node_entry_group(lab.id, node),
                                                 node_exec_argv(pid, ["/usr/sbin/sshd", "-i"]))),
            host_key=state.host_key, key_file=lab.key_file,
        )


def _shut_down(state: NodeState, init: str) -> None:
    """Ask a systemd node to power off (SIGRTMIN+4 to its PID 1: stop every unit, sync) and
    wait for it, at most SHUTDOWN_TIMEOUT; a light node has nothing to shut down."""
    if init != "systemd" or state.init is None or not state.init.alive():
        return
    _kill(state.init.pid, signal.SIGRTMIN + 4)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT
    while state.init.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def _move_links(old: str, node: NodePlan) -> None:
    """Move a restarting node's links (veths: their peers stay as they are) from its previous
    namespace `old` to its new one, then remove `old`. A link arrives down, without addresses,
    with the plan's MTU set again (a NIC's MTU does not survive a reboot)."""
    listing = json.loads(netns.run(["ip", "-n", old, "-j", "link", "show"], what=f"links of {node.name}") or "[]")
    names = [link["ifname"] for link in listing if link.get("ifname") not in (None, "lo")]
    netns.batch(old, [f"link set dev {name} netns {node.netns}" for name in names], f"moving {node.name}'s links")
    netns.batch(node.netns, [f"link set dev {name} mtu 1500" for name in names], f"resetting {node.name}'s MTU")
    netns.delete(old)


def _cpu_ticks(pids: Iterable[int]) -> int:
    """CPU time (clock ticks) the processes and their reaped children have used: utime, stime,
    cutime, cstime (fields 14-17 of stat), so a short-lived process of the boot still counts
    once its parent (the node's systemd, a subreaper for all of them) has waited for it."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])
    return total


def _lock_down(lab: LabState, node: str, init_pid: int) -> None:
    """/proc and /sys of a started node locked read-only for its root (providers/lockdown.py)."""
    channel = lab.node_dir(node) / "channel"
    try:
        lockdown.seal(init_pid, channel)
    except lockdown.LockdownError as exc:
        raise ProviderError(f"node {node}: {exc}") from None
    finally:
        lockdown.release(channel)


def _mark_sealed(lab: LabState, node: str) -> None:
    """Tell the node's first process (`node_init`) that its /proc is sealed and its interfaces
    wired: it may start the node's init."""
    state = lab.nodes[node]
    assert state.init is not None
    init_pid = state.init.pid
    try:
        os.close(os.open(f"/proc/{init_pid}/root{SEALED_MARK}",
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ProviderError(f"cannot start the node's services (process {init_pid}): {exc.strerror}") from None


def _cgroup_limits(node: NodePlan) -> cgroups.Limits:
    return cgroups.Limits(pids=node.limits.pids, memory=node.limits.memory, cpu_weight=node.limits.cpu_weight)


def _tmpfs_options(memory: int) -> list[str]:
    """The node's memory-backed folders, each with a size (their pages count in the node's
    memory limit too): /tmp and /dev/shm a quarter of it each. nspawn's own /run (which it
    needs for itself) is bounded by the memory limit alone."""
    quarter = memory // 4 // 1024
    return [f"--tmpfs=/tmp:mode=1777,size={quarter}k", f"--tmpfs=/dev/shm:mode=1777,size={quarter}k"]


def _configure(node: NodePlan, saved: Path | None) -> None:
    """A freshly wired node's network (`_network_commands`); routers forward IPv6 as they do
    IPv4 (the node's init turns IPv4 forwarding on; this kernel setting is the node's own)."""
    netns.batch(node.netns, _network_commands(node, saved), f"configuring node {node.name}")
    if node.kind is NodeKind.router:
        netns.run(["ip", "netns", "exec", node.netns, "tee", "/proc/sys/net/ipv6/conf/all/forwarding"],
                  input_text="1\n", what=f"IPv6 forwarding on {node.name}")


def _network_commands(node: NodePlan, saved: Path | None) -> list[str]:
    """`ip` commands giving a freshly wired node its network: the plan's addresses and
    routes, or (`saved`: a snapshot folder) the MTU and state of each link, the addresses
    and the static routes the node had at that snapshot."""
    commands = ["link set lo up"]
    if saved is None:
        commands += [f"addr add {address} dev lo" for address in node.loopbacks]
        for iface in node.interfaces:
            if iface.address:
                commands.append(f"addr add {iface.address} dev {iface.name}")
            if iface.address6:  # no duplicate address detection: the plan already made it unique
                commands.append(f"addr add {iface.address6} dev {iface.name} nodad")
            commands.append(f"link set {iface.name}" + (f" mtu {iface.mtu}" if iface.mtu else "") + " up")
        return commands + [f"route replace {route.to}" + (f" via {route.via}" if route.via else "")
                           for route in node.routes]
    commands += _link_commands(node, saved)
    addresses = [(a["ifname"], f"{i['local']}/{i['prefixlen']}")
                 for a in json.loads((saved / "addr.json").read_text() or "[]")
                 for i in a.get("addr_info", []) if _restorable_address(a["ifname"], i)]
    commands += [f"addr add {address} dev {ifname}" + (" nodad" if ":" in address else "")
                 for ifname, address in addresses]
    routes = [r for what in ("route", "route6") if (saved / f"{what}.json").exists()
              for r in json.loads((saved / f"{what}.json").read_text() or "[]")]
    on_link = [(ifname, ipaddress.ip_interface(address).network) for ifname, address in addresses]
    return commands + [f"route replace {_destination(r)}" + (f" via {r['gateway']}" if r.get("gateway") else "")
                       + (f" dev {r['dev']}" if r.get("dev") else "") + _onlink(r, on_link)
                       for r in routes
                       if r.get("protocol", "boot") in ("boot", "static") and r.get("dev") != MGMT_IFACE]


def _onlink(route: dict[str, Any], on_link: list[tuple[str, Any]]) -> str:
    """` onlink` for a saved route whose gateway is on none of its device's restored subnets: the
    kernel kept it when the address under it was removed, and takes it back only so."""
    gateway = route.get("gateway")
    if not gateway or not route.get("dev"):
        return ""
    ip = ipaddress.ip_address(gateway)
    if ip.is_link_local or any(dev == route["dev"] and ip in net for dev, net in on_link):
        return ""
    return " onlink"


def _restorable_address(ifname: str, info: dict[str, object]) -> bool:
    """An address a snapshot gives back: the lab's own, not the kernel's (127.0.0.1, ::1, link-local
    addresses come by themselves; a DHCP lease is the DHCP client's to ask again)."""
    if ifname == MGMT_IFACE or info.get("scope") in ("host", "link") or info.get("dynamic"):
        return False
    return not (ifname == "lo" and info.get("local") in ("127.0.0.1", "::1"))


def _destination(route: dict[str, object]) -> str:
    """A route's destination as `ip route` takes it back (`default` of IPv6 is ::/0)."""
    if route["dst"] == "default" and ":" in str(route.get("gateway", "")):
        return "::/0"
    return str(route["dst"])


def _snapshot_node(lab: LabState, node: NodePlan) -> None:
    directory = lab.node_dir(node.name)
    target, staging = directory / "snapshot", directory / "snapshot.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    # cp -a keeps owners, modes and the overlay's whiteouts and opaque-folder xattrs.
    netns.run(["cp", "-a", str(lab.upper_dir(node.name)), str(staging / "upper")], what=f"snapshot of {node.name}")
    for what, argv in (("addr", ["addr"]), ("route", ["-4", "route"]), ("route6", ["-6", "route"]),
                       ("link", ["link"])):
        listing = netns.run(["ip", "-n", node.netns, "-j", *argv, "show"], what=f"ip {what} on {node.name}")
        (staging / f"{what}.json").write_text(listing)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


def _restore_files(lab: LabState, node: NodePlan) -> None:
    directory = lab.node_dir(node.name)
    shutil.rmtree(lab.upper_dir(node.name))
    netns.run(["cp", "-a", str(directory / "snapshot" / "upper"), str(lab.upper_dir(node.name))],
              what=f"restoring {node.name}")


def _link_commands(node: NodePlan, saved: Path) -> list[str]:
    """MTU and up/down of each lab interface as they were at the snapshot (a snapshot older
    than link.json: the plan's interfaces, up)."""
    listing = saved / "link.json"
    if not listing.exists():
        return [f"link set {iface.name} up" for iface in node.interfaces]
    links = json.loads(listing.read_text() or "[]")
    commands = []
    for link in links:
        name = link.get("ifname")
        if name in (None, "lo", MGMT_IFACE):
            continue
        state = "up" if "UP" in link.get("flags", []) else "down"
        commands.append(f"link set dev {name} mtu {link.get('mtu', 1500)} {state}")
    return commands


def _make_fuse_device(path: Path) -> None:
    """A /dev/fuse of the node's own, owned by its root, so FUSE mounts (sshfs) work inside.

    FUSE mounts stay in the node's mount namespace; the machine's /dev/fuse stays root-only.
    """
    if not Path("/dev/fuse").exists() or path.exists():
        return
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(10, 229))
        os.chown(path, image.UID_BASE, image.UID_BASE)
        os.chmod(path, 0o666)
    except OSError:
        path.unlink(missing_ok=True)  # no FUSE for this node; everything else works


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _grandchildren(pid: int) -> list[int]:
    return [grandchild for child in _children(pid) for grandchild in _children(child)]


def _stop_node(state: NodeState) -> None:
    """Kill the node's PID 1 (its whole PID namespace goes), then let nspawn clean up.

    A node whose PID 1 was never recorded (`up` killed while it started) is found as its
    launcher's grandchild (launcher, nspawn, PID 1): killing only the launcher would leave the
    container running, orphaned. A launcher with no nspawn below it is done with its node (a
    rebooter waiting for its turn, or a shell recording nspawn's exit): it is ended at once.
    """
    if state.init and state.init.alive():
        _kill(state.init.pid, signal.SIGKILL)
    launcher = state.launcher
    if launcher is None:
        return
    if launcher.alive():
        for child in _grandchildren(launcher.pid):
            _kill(child, signal.SIGKILL)
        if not _children(launcher.pid):
            _kill(launcher.pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while launcher.alive() and time.monotonic() < deadline:
        _reap(launcher.pid)
        time.sleep(0.02)
    if launcher.alive():
        _kill(launcher.pid, signal.SIGKILL)
    _reap(launcher.pid)


def _kill_commands_of(lab: LabState) -> None:
    """Kill the programs still working on the lab for a labctl command that was killed (they
    outlive it: a copy, a mount, a key generation): those naming the lab's folder or its
    namespaces in their command line. Node processes are found through the cgroups."""
    marks = (f"{lab.directory}/".encode(), f"lc-{lab.id}-".encode())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(mark in cmdline for mark in marks) and b"systemd-nspawn" not in cmdline:
            _kill(int(entry.name), signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of a launcher this process started (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _generate_key(path: Path, comment: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        netns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                  what="ssh-keygen")


def _lab_hosts(lab: LabState) -> list[str]:
    """/etc/hosts lines naming every lab node by its first lab address."""
    lines = []
    for node in lab.plan.nodes:
        first = next((i.address for i in node.interfaces if i.address), None)
        if first:
            lines.append(f"{IPv4Interface(first).ip} {node.name}\n")
    return lines


