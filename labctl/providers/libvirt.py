"""The libvirt provider: each node is a real virtual machine on a libvirt hypervisor.

Per node: a linked clone (qcow2 overlay on the VM image, labctl.vmimage), a small seed disk
with its identity (hostname, SSH host key, the controller's key, addresses, interface
names by MAC; applied at boot by labctl-seed), direct kernel boot, and virtio-serial ports
on which the guest serves `sshd -i` (out-of-band access without the lab network). Per lab:
one isolated libvirt network per switch and per point-to-point link (no <forward>, no
address: nothing leaves them) and a management network with the host's address and fixed
DHCP leases (DNS off, isolated ports: nodes do not reach each other there), its bridge
guarded by a firewall on the hypervisor (firewall.py: nodes open nothing towards it).
Every name starts with `lc-<lab id>-`; what is made is recorded in `labs/<id>/libvirt.json`
*before* it is made, so `down` removes exactly that, after a crash too.
Reset reverts each domain to its internal snapshot `initial` and resyncs its clock.
Generated XML is validated against libvirt's schemas before anything is defined.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree as ET

from labctl import paths, vmimage
from labctl.errors import LabctlError, NotFoundError, PlatformError, ProviderError, profile_hint
from labctl.plan import MGMT_IFACE, LabPlan, NodePlan
from labctl.progress import QUIET, Progress
from labctl.providers import firewall, libvirt_accel, libvirt_seed, libvirt_site, libvirt_xml
from labctl.providers import libvirt_conn as lv
from labctl.providers.base import NodeAccess, Probe, Provider, require_probes
from labctl.providers.libvirt_site import Hypervisor
from labctl.state import LabState, NodeState

DEFAULT_MEMORY_MIB = int(os.environ.get("LABCTL_LIBVIRT_MEMORY_MIB", "512"))
SNAPSHOT = "initial"
SHUTDOWN_TIMEOUT = 60.0  # a guest's own shutdown before a restart (then it is powered off)
_RECORD_LOCK = threading.Lock()  # nodes restarted side by side record their new sockets one at a time
MGMT_POOL = IPv4Network("100.64.0.0/10")  # management subnets are carved from here
OOB_PORTS = 6
# Seconds per SSH login step (NodeAccess.ssh_timeout): under TCG a guest's sshd needs seconds
# of emulated CPU to fork, re-execute and do its key exchange, many more on a busy host.
SSH_TIMEOUT = {"kvm": 10.0, "qemu": float(os.environ.get("LABCTL_LIBVIRT_SSH_TIMEOUT", "30"))}
T = TypeVar("T")


def boot_timeout(accel: str, vms: int) -> float:
    """How long a lab's VMs may take to answer SSH (LABCTL_LIBVIRT_BOOT_TIMEOUT overrides).

    Emulated (TCG) guests boot on the host's CPU, all at once: the budget grows with the
    lab (measured here: 7 VMs on 2 loaded cores answered after 502-554 s).
    """
    if "LABCTL_LIBVIRT_BOOT_TIMEOUT" in os.environ:
        return float(os.environ["LABCTL_LIBVIRT_BOOT_TIMEOUT"])
    return 600.0 if accel == "kvm" else max(600.0, 150.0 * vms)


def _refuse_unbuilt_features(plan: LabPlan) -> None:
    """Topology features the VMs' seed does not apply yet: refused before anything is built,
    never a lab that silently lacks them."""
    found = sorted({f"{what} ({node.name})" for node in plan.nodes for what, used in (
        ("loopback addresses", bool(node.loopbacks)),
        ("IPv6 addresses", any(i.address6 for i in node.interfaces)),
        ("per-link MTU", any(i.mtu for i in node.interfaces)),
        ("DHCP interfaces", any(i.dhcp for i in node.interfaces))) if used})
    if found:
        raise ProviderError(f"the libvirt provider does not build these topology features yet: {', '.join(found)}",
                            "run this topology on the local provider (--provider local)")


def _parallel(items: Iterable[T], work: Callable[[T], object]) -> None:
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


class Record:
    """What a libvirt lab made (or is about to make), kept in `labs/<id>/libvirt.json`."""

    def __init__(self, lab: LabState) -> None:
        self.path = lab.directory / "libvirt.json"
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        for key in ("networks", "volumes", "domains"):
            self.data.setdefault(key, [])
        self.data.setdefault("oob", {})

    @property
    def exists(self) -> bool:
        """True once a hypervisor was chosen (something may exist there)."""
        return "hypervisor" in self.data

    @property
    def hypervisor(self) -> Hypervisor:
        """Where the lab runs."""
        return Hypervisor(**self.data["hypervisor"])

    def intend(self, kind: str, name: str) -> None:
        """Record `name` before creating it (so a crash right after still cleans it up)."""
        if name not in self.data[kind]:
            self.data[kind].append(name)
            self.save()

    def save(self) -> None:
        """Write atomically."""
        paths.write_json_atomic(self.path, self.data)


def names(plan: LabPlan) -> dict[str, str]:
    """Every libvirt network of a lab: key (mgmt, segment name or link key) -> network name."""
    prefix = f"lc-{plan.lab_id}-"
    result = {"mgmt": prefix + "mgmt"}
    for segment in plan.segments:
        result[f"seg:{segment.bridge}"] = prefix + "sw-" + segment.name
    for key in _p2p_links(plan):
        result[key] = prefix + "l" + str(len(result))
    return result


def _p2p_links(plan: LabPlan) -> list[str]:
    prefix = f"lc-{plan.lab_id}-"
    keys: list[str] = []
    for node in plan.nodes:
        for iface in node.interfaces:
            if iface.bridge is None:
                peer = iface.peer_netns.removeprefix(prefix)
                key = "p2p:" + "|".join(sorted([f"{node.name}:{iface.name}", f"{peer}:{iface.peer_name}"]))
                if key not in keys:
                    keys.append(key)
    return keys


def bridge_names(plan: LabPlan) -> dict[str, str]:
    """Network name -> host bridge name (at most 15 characters, unique per lab)."""
    result = {}
    for index, (key, network) in enumerate(names(plan).items()):
        result[network] = f"lc{plan.lab_id}m" if key == "mgmt" else f"lc{plan.lab_id}n{index}"
    return result


def mgmt_bridge(plan: LabPlan) -> str:
    """The management network's bridge (where the hypervisor has its address)."""
    return bridge_names(plan)[names(plan)["mgmt"]]


def interface_networks(plan: LabPlan, node: NodePlan) -> list[tuple[str, str]]:
    """(guest interface name, libvirt network) for `node`, management first."""
    table = names(plan)
    result = [(MGMT_IFACE, table["mgmt"])]
    prefix = f"lc-{plan.lab_id}-"
    for iface in node.interfaces:
        if iface.bridge is not None:
            result.append((iface.name, table[f"seg:{iface.bridge}"]))
        else:
            peer = iface.peer_netns.removeprefix(prefix)
            key = "p2p:" + "|".join(sorted([f"{node.name}:{iface.name}", f"{peer}:{iface.peer_name}"]))
            result.append((iface.name, table[key]))
    return result


def node_memory(node: NodePlan) -> int:
    """A node's memory in MiB (`memory_mib` in its topology vars, else the default)."""
    value = node.vars.get("memory_mib", DEFAULT_MEMORY_MIB)
    return int(value) if isinstance(value, int | str) else DEFAULT_MEMORY_MIB


def pick_mgmt_subnet(conn: Any, plan: LabPlan) -> IPv4Network:
    """A management subnet no network on the hypervisor and no lab subnet uses."""
    used: list[IPv4Network] = []
    for network in conn.listAllNetworks():
        for ip in ET.fromstring(network.XMLDesc(0)).iter("ip"):
            if ip.get("address") and ":" not in ip.get("address", ""):
                prefix = ip.get("prefix") or str(IPv4Network(f"0.0.0.0/{ip.get('netmask', '255.255.255.0')}").prefixlen)
                used.append(IPv4Interface(f"{ip.get('address')}/{prefix}").network)
    for node in plan.nodes:
        used += [IPv4Interface(i.address).network for i in node.interfaces if i.address]
    size = max(24, 32 - (len(plan.nodes) + 3).bit_length())
    size = min(size, 24)
    for candidate in MGMT_POOL.subnets(new_prefix=size):
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    raise ProviderError(f"no free management subnet left in {MGMT_POOL} on this hypervisor")


@contextmanager
def _host_lock() -> Iterator[None]:
    """Serialises subnet choice and network creation between labctl processes on this machine."""
    paths.home().mkdir(parents=True, exist_ok=True)
    with open(paths.home() / ".libvirt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class LibvirtProvider(Provider):
    """Nodes as libvirt domains (QEMU; TCG unless KVM really boots) on the site's hypervisors."""

    name = "libvirt"

    # ---- preflight -------------------------------------------------------------------
    def preflight(self) -> list[Probe]:
        """libvirt-python, the tools seeds and images need, the schemas, each hypervisor."""
        probes = []
        try:
            lv.libvirt_module()
            probes.append(Probe("libvirt-python", True, "importable"))
        except PlatformError as exc:
            probes.append(Probe("libvirt-python", False, exc.message, exc.hint))
        for tool, package in (("qemu-img", "qemu-utils"), ("mkfs.ext4", "e2fsprogs"),
                              ("ssh-keygen", "openssh-client"), ("debootstrap", "debootstrap")):
            found = shutil.which(tool)
            probes.append(Probe(f"tool {tool}", found is not None, found or "missing",
                                f"{profile_hint('--libvirt')} (apt-get install {package})"))
        nft = shutil.which("nft")  # the firewall of a local hypervisor's management bridges (up fails without)
        probes.append(Probe("tool nft", nft is not None, nft or "missing: labs on this machine cannot be built",
                            "apt-get install nftables", required=False))
        schemas = (libvirt_xml.SCHEMA_DIR / "domain.rng").exists()
        probes.append(Probe("libvirt schemas", schemas, str(libvirt_xml.SCHEMA_DIR),
                            profile_hint("--libvirt")))
        if probes[0].ok:
            try:
                for hypervisor in libvirt_site.load_site():
                    try:
                        conn = lv.open_connection(hypervisor.uri)
                        probes.append(Probe(f"hypervisor {hypervisor.name}", True,
                                            f"{hypervisor.uri}: libvirt {conn.getLibVersion()}"))
                    except LabctlError as exc:
                        probes.append(Probe(f"hypervisor {hypervisor.name}", False, exc.message, exc.hint))
            except LabctlError as exc:
                probes.append(Probe("site file", False, exc.message, exc.hint))
        return probes

    def require(self) -> None:
        """libvirt-python, then the required tool probes (the image is built on demand)."""
        lv.libvirt_module()
        require_probes("libvirt", [p for p in self.preflight()[:6] if p.name != "tool debootstrap"])

    # ---- create ----------------------------------------------------------------------

    def _image(self, lab: LabState, progress: Progress) -> vmimage.VmImageRecipe:
        recipe = vmimage.VmImageRecipe.named(lab.image_name, tuple(lab.packages))
        if recipe.is_built():
            return recipe
        if shutil.which("debootstrap") is None:
            vmimage.require_vm_image(recipe)
        with progress.step(f"build the VM image {recipe.name} (once; cached afterwards)"):
            return vmimage.ensure_vm_image(recipe, progress)

    def build(self, lab: LabState, progress: Progress) -> None:
        """VM image, storage, networks, domains; boots them and waits for SSH (see `create`)."""
        _refuse_unbuilt_features(lab.plan)
        recipe = self._image(lab, progress)
        lab.image = str(recipe.directory)
        lab.save()
        record = Record(lab)
        need = sum(node_memory(n) for n in lab.plan.nodes)
        with progress.step("choose a hypervisor"):
            hypervisor, conn = self._place(need)
        record.data["hypervisor"] = asdict(hypervisor)
        record.save()
        for node in lab.plan.nodes:
            lab.nodes[node.name] = NodeState(hypervisor=hypervisor.name)
        lab.save()
        progress.note(f"hypervisor {hypervisor.name} ({hypervisor.uri}), {need} MiB for "
                      f"{len(lab.plan.nodes)} VMs")
        with progress.step(f"storage pool and image volumes on {hypervisor.name} (uploaded once)"):
            pool = lv.ensure_pool(conn, hypervisor.pool_path)
            base = f"labctl-{recipe.name}-{recipe.digest()}"
            disk = lv.ensure_file_volume(conn, pool, base + ".qcow2", recipe.disk)
            kernel = lv.ensure_file_volume(conn, pool, base + ".vmlinuz", recipe.kernel)
            initrd = lv.ensure_file_volume(conn, pool, base + ".initrd", recipe.initrd)
        with progress.step("accelerator: KVM only if a guest really boots with it"):
            record.data["accel"] = libvirt_accel.probe(conn, hypervisor.uri, kernel.path(), initrd.path())
            record.save()
            progress.note(f"accelerator: {'KVM' if record.data['accel'] == 'kvm' else 'TCG (qemu, CPU qemu64)'}")
        with progress.step(f"keys and seed disks for {len(lab.plan.nodes)} nodes"):
            _generate_key(lab.key_file, f"labctl@{lab.id}")
            with _host_lock():
                subnet = pick_mgmt_subnet(conn, lab.plan)
                self._mgmt(lab, record, subnet)
                with progress.step(f"isolated networks (management {subnet})"):
                    self._networks(conn, lab, record)
                self._guard_host(lab, record, progress)
            _parallel(lab.plan.nodes, lambda node: self._seed(lab, node, record))
            lab.save()
        started = time.monotonic()
        with progress.step(f"define and start {len(lab.plan.nodes)} VMs"):
            for node in lab.plan.nodes:
                self._domain(conn, pool, lab, record, node, disk, kernel.path(), initrd.path())
        ready: dict[str, float] = {}

        def wait(node: NodePlan) -> None:
            self._wait_ready(lab, node, conn)
            ready[node.name] = round(time.monotonic() - started, 1)

        with progress.step(f"wait for {len(lab.plan.nodes)} VMs to answer SSH (TCG boot: slow)"):
            _parallel(lab.plan.nodes, wait)
        record.data["ready_seconds"] = ready  # from the first VM's definition to each one's SSH banner
        record.save()
        progress.note("SSH-ready after " + ", ".join(f"{n} {s:.0f} s" for n, s in sorted(ready.items(),
                                                                                       key=lambda i: i[1])))
        lab.status = "running"
        lab.save()

    def _place(self, need: int) -> tuple[Hypervisor, Any]:
        hypervisors = libvirt_site.load_site()
        if len(hypervisors) == 1:
            return hypervisors[0], lv.open_connection(hypervisors[0].uri)
        candidates, unreachable = [], {}
        for hypervisor in hypervisors:
            try:
                candidates.append((hypervisor, lv.open_connection(hypervisor.uri)))
            except ProviderError as exc:
                unreachable[hypervisor.name] = exc.message
        chosen = libvirt_site.place(need, candidates, unreachable)
        return chosen, next(conn for h, conn in candidates if h == chosen)

    def _mgmt(self, lab: LabState, record: Record, subnet: IPv4Network) -> None:
        hosts = subnet.hosts()
        host = next(hosts)
        record.data["mgmt"] = {
            "subnet": str(subnet), "host": str(host),
            "nodes": {n.name: f"{next(hosts)}/{subnet.prefixlen}" for n in lab.plan.nodes},
        }
        record.save()

    def _networks(self, conn: Any, lab: LabState, record: Record) -> None:
        bridges = bridge_names(lab.plan)
        mgmt = record.data["mgmt"]
        leases = tuple((libvirt_xml.mac_for(lab.id, n.name, 0), str(IPv4Interface(mgmt["nodes"][n.name]).ip), n.name)
                       for n in lab.plan.nodes)
        for key, network in names(lab.plan).items():
            if key == "mgmt":
                spec = libvirt_xml.NetworkSpec(network, bridges[network], mgmt["host"],
                                               IPv4Network(mgmt["subnet"]).prefixlen, leases)
            else:
                spec = libvirt_xml.NetworkSpec(network, bridges[network])
            document = libvirt_xml.network_xml(spec)
            libvirt_xml.validate(document, "network")
            record.intend("networks", network)
            net = conn.networkDefineXML(document)
            net.create()

    def _guard_host(self, lab: LabState, record: Record, progress: Progress) -> None:
        """The hypervisor's firewall for its address on the management bridge (firewall.py)."""
        bridge = mgmt_bridge(lab.plan)
        where = _on_hypervisor(record.hypervisor)
        if where is None:
            progress.note(f"warning: labctl cannot reach {record.hypervisor.name}'s firewall (not this machine, "
                          f"no qemu+ssh:// URI): nodes can open connections to it on bridge {bridge}; "
                          "filter them there (docs/hypervisors.md)")
            return
        table = firewall.bridge_table(lab.id)
        record.data["firewall"] = table
        record.save()
        with progress.step(f"firewall {table}: nodes open nothing towards {record.hypervisor.name}"):
            firewall.load(table, firewall.bridge_chains(bridge), where)

    def _seed(self, lab: LabState, node: NodePlan, record: Record) -> None:
        directory = lab.node_dir(node.name)
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / "ssh_host_ed25519_key"
        _generate_key(key_path, f"root@{node.name}")
        host_pub = key_path.with_suffix(".pub").read_text().strip()
        lab.nodes[node.name].host_key = host_pub
        hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n" + f"127.0.1.1 {node.name}\n"
        for other in lab.plan.nodes:
            first = next((i.address for i in other.interfaces if i.address), None)
            if first:
                hosts += f"{IPv4Interface(first).ip} {other.name}\n"
        files = libvirt_seed.seed_files(node, lab.name, key_path.read_bytes(), host_pub,
                                        lab.key_file.with_suffix(".pub").read_text(), hosts)
        nics = self._nics(lab, node)
        net = libvirt_seed.net_conf(node, nics, record.data["mgmt"]["nodes"][node.name])
        libvirt_seed.build_seed(directory / "seed.qcow2", files, net)

    @staticmethod
    def _nics(lab: LabState, node: NodePlan) -> tuple[libvirt_xml.NicSpec, ...]:
        return tuple(libvirt_xml.NicSpec(network, libvirt_xml.mac_for(lab.id, node.name, index), guest)
                     for index, (guest, network) in enumerate(interface_networks(lab.plan, node)))

    def domain_spec(self, lab: LabState, node: NodePlan, kernel: str, initrd: str,
                    accel: str = "qemu", console_log: str | None = None) -> libvirt_xml.DomainSpec:
        """The domain definition of `node` (pure: used by create and by the golden tests)."""
        machine_id = f"{lab.id}{node.name}".encode().hex()[:32].ljust(32, "0")
        return libvirt_xml.DomainSpec(
            name=f"lc-{lab.id}-{node.name}", lab_id=lab.id, node=node.name,
            memory_mib=node_memory(node), vcpus=1, kernel=kernel, initrd=initrd,
            cmdline=f"{vmimage.KERNEL_ARGS} systemd.machine_id={machine_id}",
            pool=lv.POOL, disk_volume=f"lc-{lab.id}-{node.name}.qcow2",
            seed_volume=f"lc-{lab.id}-{node.name}-seed.qcow2", nics=self._nics(lab, node),
            oob_ports=OOB_PORTS, domain_type=accel, console_log=console_log,
        )

    def _domain(self, conn: Any, pool: Any, lab: LabState, record: Record, node: NodePlan,
                disk: Any, kernel: str, initrd: str) -> None:
        libvirt = lv.libvirt_module()
        log = str(lab.node_dir(node.name) / "console.log") if record.hypervisor.is_local else None
        spec = self.domain_spec(lab, node, kernel, initrd, record.data.get("accel", "qemu"), log)
        capacity = int(ET.fromstring(disk.XMLDesc(0)).findtext("capacity") or 0)
        backing = disk.path()
        info = _qcow2_virtual_size(Path(lab.image) / "disk.qcow2")
        overlay = libvirt_xml.volume_xml(spec.disk_volume, info or capacity, backing)
        libvirt_xml.validate(overlay, "storagevol")
        record.intend("volumes", spec.disk_volume)
        pool.createXML(overlay, 0)
        seed_file = lab.node_dir(node.name) / "seed.qcow2"
        record.intend("volumes", spec.seed_volume)
        seed = pool.createXML(libvirt_xml.raw_volume_xml(spec.seed_volume, seed_file.stat().st_size), 0)
        lv.upload(conn, seed, seed_file)
        document = libvirt_xml.domain_xml(spec)
        libvirt_xml.validate(document, "domain")
        record.intend("domains", spec.name)
        domain = conn.defineXMLFlags(document, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        domain.create()
        record.data["oob"][node.name] = _oob_sockets(domain.XMLDesc(0))
        record.save()

    def _wait_ready(self, lab: LabState, node: NodePlan, conn: Any) -> None:
        access = self.access(lab, node.name)
        budget = boot_timeout(Record(lab).data.get("accel", "qemu"), len(lab.plan.nodes))
        deadline = time.monotonic() + budget
        last = "no answer"
        domain_name = f"lc-{lab.id}-{node.name}"
        while time.monotonic() < deadline:
            try:
                if _answers_ssh(access):
                    return
            except (OSError, LabctlError) as exc:
                last = str(exc)
            if not conn.lookupByName(domain_name).isActive():
                raise ProviderError(f"VM {domain_name} stopped while booting; "
                                    f"see {lab.node_dir(node.name)}/console.log")
            time.sleep(1)
        where = access.mgmt_address or "its out-of-band port"
        raise ProviderError(f"node {node.name}: sshd did not answer on {where} within "
                            f"{budget:.0f} s ({last}); console: {lab.node_dir(node.name)}/console.log",
                            "a busy host boots emulated VMs slowly: set LABCTL_LIBVIRT_BOOT_TIMEOUT (seconds)")

    # ---- restart ---------------------------------------------------------------------
    def restart_node(self, lab: LabState, node: str, progress: Progress = QUIET) -> None:
        """Reboot `node`'s VM from its own disk: the guest's systemd powers it off (asked out of
        band; ACPI is not handled, logind is masked), powered off after SHUTDOWN_TIMEOUT, then
        booted again (the seed gives it the plan's identity and addresses, as at its first boot)."""
        from labctl.connect import open_session

        record = self._record(lab)
        conn = lv.open_connection(record.hypervisor.uri)
        domain = conn.lookupByName(f"lc-{lab.id}-{node}")
        with progress.step(f"restart {node}"):
            if domain.isActive():
                with suppress(LabctlError, OSError):  # the session ends with the guest
                    session = open_session(self.access(lab, node))
                    try:
                        session.run("systemctl --no-block poweroff", timeout=10)
                    finally:
                        session.close()
                deadline = time.monotonic() + SHUTDOWN_TIMEOUT
                while domain.isActive() and time.monotonic() < deadline:
                    time.sleep(0.5)
                if domain.isActive():
                    domain.destroy()
            domain.create()
            with _RECORD_LOCK:  # read anew: other nodes restarting record theirs too
                latest = self._record(lab)
                latest.data["oob"][node] = _oob_sockets(domain.XMLDesc(0))
                latest.save()
            self._wait_ready(lab, lab.plan.node(node), conn)

    # ---- snapshot and reset ----------------------------------------------------------
    def snapshot(self, lab: LabState, progress: Progress = QUIET) -> None:
        """An internal snapshot `initial` of every running domain (disk and memory)."""
        record = self._record(lab)
        libvirt = lv.libvirt_module()
        conn = lv.open_connection(record.hypervisor.uri)
        with progress.step(f"snapshot {len(lab.plan.nodes)} VMs (internal snapshot '{SNAPSHOT}')"):
            def take(node: NodePlan) -> None:
                domain = conn.lookupByName(f"lc-{lab.id}-{node.name}")
                with suppress(libvirt.libvirtError):
                    domain.snapshotLookupByName(SNAPSHOT).delete(0)
                document = libvirt_xml.snapshot_xml(SNAPSHOT, f"labctl lab {lab.name}: starting state")
                libvirt_xml.validate(document, "domainsnapshot")
                domain.snapshotCreateXML(document, 0)
            _parallel(lab.plan.nodes, take)

    def revert(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Revert every domain to `initial` (running), then set each guest's clock to now."""
        record = self._record(lab)
        libvirt = lv.libvirt_module()
        conn = lv.open_connection(record.hypervisor.uri)
        with progress.step(f"revert {len(lab.plan.nodes)} VMs to '{SNAPSHOT}'"):
            def back(node: NodePlan) -> None:
                domain = conn.lookupByName(f"lc-{lab.id}-{node.name}")
                try:
                    snap = domain.snapshotLookupByName(SNAPSHOT)
                except libvirt.libvirtError:
                    raise ProviderError(f"VM {node.name} of lab {lab.name} has no snapshot '{SNAPSHOT}'",
                                        "labs built by `labctl up` have one once set up") from None
                domain.revertToSnapshot(snap, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
                # Reverting a running domain starts a new QEMU (a new domain id), whose
                # out-of-band sockets have new paths: the old ones lead nowhere, and every
                # playbook after a reset timed out connecting through them.
                sockets[node.name] = _oob_sockets(domain.XMLDesc(0))
            sockets: dict[str, list[str]] = {}
            _parallel(lab.plan.nodes, back)
            record.data["oob"].update(sockets)
            record.save()
        with progress.step("resync guest clocks"):
            _parallel(lab.plan.nodes, lambda node: self._sync_clock(lab, node.name))
        lab.status = "running"
        lab.save()

    def _sync_clock(self, lab: LabState, node: str) -> None:
        from labctl.connect import open_session

        deadline = time.monotonic() + 60
        while True:
            try:
                session = open_session(self.access(lab, node))
                try:
                    session.run(f"date -u -s @{time.time():.3f} >/dev/null", timeout=10)
                finally:
                    session.close()
                return
            except LabctlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # ---- destroy ---------------------------------------------------------------------
    def destroy(self, lab: LabState, progress: Progress = QUIET) -> None:
        """Remove the lab's domains (with snapshots), volumes and networks: only those
        recorded or named `lc-<id>-...`; idempotent, also after a crash."""
        record = Record(lab)
        lab.status = "destroying"
        if lab.directory.exists():
            lab.save()
        if record.exists:
            conn = lv.open_connection(record.hypervisor.uri)
            self._remove_all(conn, lab.id, record)
        lab.remove()

    def _remove_all(self, conn: Any, lab_id: str, record: Record) -> None:
        libvirt = lv.libvirt_module()
        prefix = f"lc-{lab_id}-"
        domains = set(record.data["domains"]) | {d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)}
        for name in sorted(domains):
            try:
                domain = conn.lookupByName(name)
                if domain.isActive():
                    domain.destroy()
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                     libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except libvirt.libvirtError as exc:
                if not lv.is_missing(exc):
                    raise ProviderError(f"cannot remove VM {name}: {exc.get_error_message()}") from None
        try:
            pool = conn.storagePoolLookupByName(lv.POOL)
            pool.refresh(0)
            volumes = set(record.data["volumes"]) | {v for v in pool.listVolumes() if v.startswith(prefix)}
        except libvirt.libvirtError:
            pool, volumes = None, set()
        for name in sorted(volumes):
            try:
                if pool is not None:
                    pool.storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError as exc:
                if not lv.is_missing(exc):
                    raise ProviderError(f"cannot remove volume {name}: {exc.get_error_message()}") from None
        networks = set(record.data["networks"]) | {n.name() for n in conn.listAllNetworks()
                                                   if n.name().startswith(prefix)}
        for name in sorted(networks):
            try:
                network = conn.networkLookupByName(name)
                if network.isActive():
                    network.destroy()
                network.undefine()  # libvirt removes the network's dnsmasq leases with it
            except libvirt.libvirtError as exc:
                if not lv.is_missing(exc):
                    raise ProviderError(f"cannot remove network {name}: {exc.get_error_message()}") from None
        where = _on_hypervisor(record.hypervisor)
        if where is not None:
            firewall.unload(record.data.get("firewall") or firewall.bridge_table(lab_id), where)

    # ---- status and access -----------------------------------------------------------
    def _record(self, lab: LabState) -> Record:
        record = Record(lab)
        if not record.exists:
            raise NotFoundError(f"lab {lab.name} has no libvirt record (was it built by this provider?)")
        return record

    def node_states(self, lab: LabState) -> dict[str, str]:
        """running, stopped or missing, as libvirt sees each domain."""
        record = Record(lab)
        if not record.exists:
            return {n.name: "missing" for n in lab.plan.nodes}
        libvirt = lv.libvirt_module()
        conn = lv.open_connection(record.hypervisor.uri)
        result = {}
        for node in lab.plan.nodes:
            try:
                active = conn.lookupByName(f"lc-{lab.id}-{node.name}").isActive()
                result[node.name] = "running" if active else "stopped"
            except libvirt.libvirtError:
                result[node.name] = "missing"
        return result

    def access(self, lab: LabState, node: str) -> NodeAccess:
        """The management address (reachable from this machine when the hypervisor is it);
        out of band through the node's virtio-serial sockets."""
        record = self._record(lab)
        address = record.data.get("mgmt", {}).get("nodes", {}).get(node, "0.0.0.0/32")
        sockets = record.data["oob"].get(node, [])
        hypervisor = record.hypervisor
        remote = _on_hypervisor(hypervisor)
        oob: tuple[str, ...]
        if not remote:  # this machine (or no way to run a command there): the relay here
            oob = (sys.executable, "-m", "labctl.providers.libvirt_oob",
                   str(lab.node_dir(node) / "oob"), *sockets)
        else:
            oob = (*remote, "socat", "-", f"UNIX-CONNECT:{sockets[0] if sockets else '/nonexistent'}")
        state = lab.nodes.get(node)
        # A remote hypervisor's management network is a bridge over there: connecting to it from
        # here would send lab addresses off this machine. Out of band only.
        mgmt = str(IPv4Interface(address).ip) if hypervisor.is_local else ""
        return NodeAccess(node=node, mgmt_netns=None, mgmt_address=mgmt,
                          oob_command=oob, host_key=state.host_key if state else "", key_file=lab.key_file,
                          ssh_timeout=SSH_TIMEOUT.get(record.data.get("accel", "qemu"), SSH_TIMEOUT["qemu"]))


def _on_hypervisor(hypervisor: Hypervisor) -> tuple[str, ...] | None:
    """The command prefix that runs a command on `hypervisor` (none when it is this machine),
    or None when labctl has no way to run one there."""
    if hypervisor.is_local:
        return ()
    return ("ssh", "-oBatchMode=yes", hypervisor.ssh_host) if hypervisor.ssh_host else None


def _answers_ssh(access: NodeAccess) -> bool:
    """True when the node's sshd answers: its banner on the management address, or (remote
    hypervisor) a login out of band. Once connected, the banner is awaited on that one
    connection: every new connection makes a booting guest fork and re-execute an sshd
    (seconds under TCG), and quick retries piled them up to `Exceeded MaxStartups`."""
    if access.mgmt_address:
        with socket.create_connection((access.mgmt_address, 22), timeout=2) as sock:
            sock.settimeout(access.ssh_timeout)
            return sock.recv(64).startswith(b"SSH-")
    from labctl.connect import open_session

    open_session(access).close()
    return True


def _oob_sockets(live_xml: str) -> list[str]:
    """The host-side socket paths of a running domain's out-of-band ports."""
    result = []
    for channel in ET.fromstring(live_xml).iter("channel"):
        source, target = channel.find("source"), channel.find("target")
        if channel.get("type") == "unix" and source is not None and target is not None and \
                (target.get("name") or "").startswith(libvirt_xml.OOB_PREFIX) and source.get("path"):
            result.append(source.get("path", ""))
    return result


def _qcow2_virtual_size(path: Path) -> int:
    """The virtual size of a local qcow2 image (0 if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(32)
        if header[:4] != b"QFI\xfb":
            return 0
        return int.from_bytes(header[24:32], "big")
    except OSError:
        return 0


def _generate_key(path: Path, comment: str) -> None:
    from labctl import netns

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        netns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                  what="ssh-keygen")
