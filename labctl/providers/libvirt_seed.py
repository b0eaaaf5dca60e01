"""Per-node seed disks: the identity and addresses a lab VM applies at boot (labctl-seed).

A seed is a small ext4 filesystem (mkfs.ext4 -d, no mounts) converted to qcow2 (so the
domain stays snapshot-able), holding `files/` (copied over the guest's /) and `net.conf`
(interface names by MAC, addresses, static routes). See labctl/data/vm/labctl-vm-seed.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from ipaddress import IPv4Interface
from pathlib import Path

from labctl import image
from labctl.errors import PlatformError, profile_hint
from labctl.plan import MGMT_IFACE, NodePlan
from labctl.providers.libvirt_xml import NicSpec

SEED_SIZE = "4M"
SEED_LABEL = "LABCTL-SEED"


def seed_files(node: NodePlan, lab_name: str, host_key: bytes, host_pub: str, controller_pub: str,
               hosts: str) -> dict[str, tuple[bytes, int]]:
    """Path in the guest -> (content, mode) of every file the seed places."""
    return {
        "etc/ssh/ssh_host_ed25519_key": (host_key, 0o600),
        "etc/ssh/ssh_host_ed25519_key.pub": ((host_pub + "\n").encode(), 0o644),
        "etc/ssh/labctl_authorized_keys/root": (controller_pub.encode(), 0o644),
        f"etc/ssh/labctl_authorized_keys/{image.CLI_USER}": (controller_pub.encode(), 0o644),
        "etc/hostname": ((node.name + "\n").encode(), 0o644),
        "etc/hosts": (hosts.encode(), 0o644),
        # No resolver: nothing in a lab may query a resolver outside the lab.
        "etc/resolv.conf": (b"# labctl lab node: no DNS resolver outside the lab\noptions timeout:1 attempts:1\n",
                            0o644),
        "etc/labctl/node.env": (f"LABCTL_KIND={node.kind.value}\nLABCTL_NODE={node.name}\n"
                                f"LABCTL_LAB={lab_name}\n".encode(), 0o644),
    }


def net_conf(node: NodePlan, nics: tuple[NicSpec, ...], mgmt_address: str) -> str:
    """The seed's net.conf: interface names by MAC, then addresses, then static routes."""
    lines = [f"link {nic.mac} {nic.guest_name}" for nic in nics]
    lines.append(f"addr {MGMT_IFACE} {IPv4Interface(mgmt_address)}")
    lines += [f"addr {iface.name} {iface.address}" for iface in node.interfaces if iface.address]
    lines += [f"route {route.to} {route.via or ''}".rstrip() for route in node.routes]
    return "\n".join(lines) + "\n"


def build_seed(target: Path, files: Mapping[str, tuple[bytes, int]], net: str) -> Path:
    """Write the seed disk for one node to `target` (qcow2); returns it."""
    with tempfile.TemporaryDirectory(prefix="labctl-seed-") as tmp:
        root = Path(tmp) / "seed"
        for relative, (content, mode) in files.items():
            path = root / "files" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        (root / "net.conf").write_text(net)
        raw = Path(tmp) / "seed.raw"
        for command in (["mkfs.ext4", "-q", "-F", "-L", SEED_LABEL, "-d", str(root), str(raw), SEED_SIZE],
                        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(target)]):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise PlatformError(f"making the seed disk: {command[0]} failed: {result.stderr.strip()[-500:]}",
                                    profile_hint("--libvirt") + " (apt-get install e2fsprogs qemu-utils)")
    return target
