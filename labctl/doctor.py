"""Kernel and image probes for `labctl doctor`: what this machine can run, measured.

Each feature is probed by actually creating it in a throwaway network namespace (the
presence of a module file proves nothing), then the namespace is removed.
"""

from __future__ import annotations

import os
import subprocess

from labctl import image
from labctl.providers.base import Probe

# feature -> (ip commands run in the probe namespace, what needs it)
FEATURES: dict[str, tuple[list[str], str]] = {
    "veth": (["link add pa type veth peer name pb"], "every lab link"),
    "bridge": (["link add b0 type bridge"], "switches and the management network"),
    "bridge port isolation": (["link add b0 type bridge", "link add pa type veth peer name pb",
                               "link set pa master b0", "link set dev pa type bridge_slave isolated on"],
                              "keeping nodes apart on the management network"),
    "vxlan": (["link add vx0 type vxlan id 42 dstport 4789 local 127.0.0.1"], "overlay scenarios"),
    "vlan (802.1q)": (["link add pa type veth peer name pb", "link add link pa name pa.10 type vlan id 10"],
                      "tagged sub-interfaces (VLAN scenarios)"),
    "bridge vlan filtering": (["link add b0 type bridge vlan_filtering 1"],
                              "VLAN-aware switches: access and trunk ports (VLAN scenarios)"),
    "wireguard": (["link add wg0 type wireguard"], "VPN scenarios"),
    "vrf": (["link add vrf0 type vrf table 10"], "VRF scenarios"),
    "bonding": (["link add bond0 type bond"], "link aggregation scenarios"),
    "dummy": (["link add d0 type dummy"], "loopback-like interfaces"),
    "gre": (["link add gre0 type gre remote 127.0.0.2 local 127.0.0.1"], "GRE tunnel scenarios"),
}
REQUIRED = {"veth", "bridge", "bridge port isolation"}


def _probe_feature(namespace: str, commands: list[str]) -> str | None:
    """None if the commands work in `namespace`, else the kernel's answer."""
    for command in commands:
        proc = subprocess.run(["ip", "-n", namespace, *command.split()], capture_output=True, text=True)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return None


KERNEL_FIX = "use a kernel with this module (exam-centre servers normally have it)"


def kernel_feature(feature: str) -> Probe:
    """One of FEATURES, probed in a throwaway namespace (needs root): what `labctl doctor`
    prints for it, and what a lab needing it is refused with when it is missing."""
    commands, purpose = FEATURES[feature]
    namespace = f"labctl-probe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], capture_output=True)
    try:
        error = _probe_feature(namespace, commands)
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)
    return Probe(f"kernel: {feature}", error is None, f"works ({purpose})" if error is None else
                 f"unavailable: {error} — needed for {purpose}", KERNEL_FIX, required=feature in REQUIRED)


def kernel_probes() -> list[Probe]:
    """Probe each network feature in a throwaway namespace; plus the node image."""
    probes: list[Probe] = []
    if os.geteuid() == 0:
        probes += [kernel_feature(feature) for feature in FEATURES]
    recipe = image.ImageRecipe()
    built = recipe.is_built()
    probes.append(Probe("node image", built, str(recipe.rootfs) if built else "not built yet",
                        "labctl image build (about 80 s; `labctl up` also builds it)", required=False))
    if built:
        for what, path in (("sshd in image", "usr/sbin/sshd"), ("FRR in image", "usr/lib/frr/zebra")):
            present = (recipe.rootfs / path).exists()
            probes.append(Probe(what, present, "present" if present else "missing",
                                "labctl image build --force"))
    return probes
