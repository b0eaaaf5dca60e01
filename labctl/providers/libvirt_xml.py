"""libvirt XML for labctl labs: domains, isolated networks, volumes, snapshots; schema checks.

Pure functions from small dataclasses to XML text (deterministic, so golden files can pin
them), and `validate`, which checks a document against libvirt's own RelaxNG schemas
(/usr/share/libvirt/schemas) before anything is defined: a plain define silently drops
elements it does not know.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from labctl.errors import PlatformError, ProviderError, profile_hint

SCHEMA_DIR = Path("/usr/share/libvirt/schemas")
METADATA_NS = "https://labctl.invalid/xmlns/libvirt/1"
OOB_PREFIX = "org.labctl.oob."


@dataclass(frozen=True)
class NicSpec:
    """One network interface of a domain: the libvirt network it plugs into and its MAC."""

    network: str
    mac: str
    guest_name: str  # the name the seed gives it inside the guest (mgmt0, eth0...)


@dataclass(frozen=True)
class DomainSpec:
    """Everything a lab node's domain definition depends on."""

    name: str
    lab_id: str
    node: str
    memory_mib: int
    vcpus: int
    kernel: str
    initrd: str
    cmdline: str
    pool: str
    disk_volume: str
    seed_volume: str
    nics: tuple[NicSpec, ...]
    oob_ports: int = 4
    domain_type: str = "qemu"  # "kvm" only when a real probe booted
    console_log: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """An isolated libvirt network: a bridge, optionally a host address and fixed leases."""

    name: str
    bridge: str
    address: str | None = None  # the host's address on it ("198.18.0.1"), for management
    prefix: int = 24
    hosts: tuple[tuple[str, str, str], ...] = field(default=())  # (mac, ip, name) fixed leases


def mac_for(lab_id: str, node: str, index: int) -> str:
    """A stable, locally administered MAC for interface `index` of `node` in lab `lab_id`."""
    digest = hashlib.sha256(f"{lab_id}/{node}/{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _text(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def domain_xml(spec: DomainSpec) -> str:
    """The domain of one lab node: direct kernel boot, qcow2 overlay + seed, NICs, OOB ports."""
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    metadata = _sub(root, "metadata")
    ET.SubElement(metadata, f"{{{METADATA_NS}}}node", lab=spec.lab_id, node=spec.node)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))
    os_ = _sub(root, "os")
    _sub(os_, "type", "hvm", arch="x86_64")
    _sub(os_, "kernel", spec.kernel)
    _sub(os_, "initrd", spec.initrd)
    _sub(os_, "cmdline", spec.cmdline)
    features = _sub(root, "features")
    _sub(features, "acpi")
    if spec.domain_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough")
    else:
        cpu = _sub(root, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", "qemu64", fallback="allow")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for volume, target in ((spec.disk_volume, "vda"), (spec.seed_volume, "vdb")):
        disk = _sub(devices, "disk", type="volume", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2")
        _sub(disk, "source", pool=spec.pool, volume=volume)
        _sub(disk, "target", dev=target, bus="virtio")
    for nic in spec.nics:
        interface = _sub(devices, "interface", type="network")
        _sub(interface, "mac", address=nic.mac)
        _sub(interface, "source", network=nic.network)
        _sub(interface, "model", type="virtio")
    _sub(devices, "controller", type="usb", model="none")  # its BIOS handoff alone costs ~9 s under TCG
    serial = _sub(devices, "serial", type="pty")
    if spec.console_log:
        _sub(serial, "log", file=spec.console_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    for port in range(spec.oob_ports):
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "source", mode="bind")
        _sub(channel, "target", type="virtio", name=f"{OOB_PREFIX}{port}")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="none")
    ET.register_namespace("labctl", METADATA_NS)
    return _text(root)


def network_xml(spec: NetworkSpec) -> str:
    """An isolated network (no <forward>: nothing is routed off the machine). With a host
    address (management): DNS off, and isolated ports, so that nodes reach only the host
    (whose firewall admits only replies to labctl), never each other round the lab's own links."""
    root = ET.Element("network")
    _sub(root, "name", spec.name)
    _sub(root, "bridge", name=spec.bridge, stp="off", delay="0")
    if spec.address is None:
        return _text(root)
    _sub(root, "port", isolated="yes")
    _sub(root, "dns", enable="no")
    ip = _sub(root, "ip", address=spec.address, prefix=str(spec.prefix))
    if spec.hosts:
        dhcp = _sub(ip, "dhcp")
        first = spec.hosts[0][1]
        last = spec.hosts[-1][1]
        _sub(dhcp, "range", start=first, end=last)
        for mac, address, name in spec.hosts:
            _sub(dhcp, "host", mac=mac, name=name, ip=address)
    return _text(root)


def volume_xml(name: str, capacity_bytes: int, backing: str | None = None) -> str:
    """A qcow2 volume, optionally a linked clone on `backing` (a path in the same pool)."""
    root = ET.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", str(capacity_bytes), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type="qcow2")
    if backing:
        store = _sub(root, "backingStore")
        _sub(store, "path", backing)
        _sub(store, "format", type="qcow2")
    return _text(root)


def raw_volume_xml(name: str, capacity_bytes: int) -> str:
    """A raw volume (kernel or initrd uploaded for direct boot)."""
    root = ET.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", str(capacity_bytes), unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type="raw")
    return _text(root)


def pool_xml(name: str, path: str) -> str:
    """A directory storage pool holding labctl's images and node disks."""
    root = ET.Element("pool", type="dir")
    _sub(root, "name", name)
    target = _sub(root, "target")
    _sub(target, "path", path)
    return _text(root)


def snapshot_xml(name: str, description: str) -> str:
    """An internal snapshot (disks and memory inside the qcow2 files) named `name`."""
    root = ET.Element("domainsnapshot")
    _sub(root, "name", name)
    _sub(root, "description", description)
    return _text(root)


@functools.cache
def _schema(kind: str) -> object:
    try:
        from lxml import etree
    except ImportError:  # the libvirt extra, which bootstrap.sh --libvirt installs
        raise PlatformError("lxml is not installed; it validates libvirt XML", profile_hint("--libvirt")) from None
    path = SCHEMA_DIR / f"{kind}.rng"
    if not path.exists():
        raise PlatformError(f"libvirt's XML schemas are missing ({path})",
                            profile_hint("--libvirt") + " (libvirt-daemon ships /usr/share/libvirt/schemas)")
    return etree.RelaxNG(etree.parse(str(path)))


def validate(document: str, kind: str) -> None:
    """Check `document` against libvirt's `kind` schema (domain, network, storagevol,
    storagepool, domainsnapshot); raise ProviderError listing what is wrong."""
    from lxml import etree

    schema = _schema(kind)
    tree = etree.fromstring(document.encode())
    if not schema.validate(tree):  # type: ignore[attr-defined]
        errors = "; ".join(f"line {e.line}: {e.message}" for e in schema.error_log)  # type: ignore[attr-defined]
        raise ProviderError(f"generated {kind} XML is not valid for libvirt: {errors}")
