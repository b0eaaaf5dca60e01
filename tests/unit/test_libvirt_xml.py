"""libvirt XML generation: golden files, libvirt's schemas, names and MACs (no hypervisor)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("lxml")

from labctl.errors import ProviderError
from labctl.plan import plan_lab
from labctl.providers import libvirt_seed, libvirt_xml
from labctl.providers.libvirt import LibvirtProvider, bridge_names, interface_networks, names
from labctl.state import LabState
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"
GOLDEN = ROOT / "tests" / "golden" / "libvirt"
SCHEMAS = libvirt_xml.SCHEMA_DIR.exists()
needs_schemas = pytest.mark.skipif(not SCHEMAS, reason="libvirt's schemas are not installed (libvirt-daemon)")


def _lab() -> LabState:
    return LabState(id="abc123", name="small", provider="libvirt",
                    plan=plan_lab(load_topology(SMALL), "abc123", "small"))


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def _documents() -> dict[str, tuple[str, str]]:
    lab = _lab()
    provider = LibvirtProvider()
    docs = {}
    for node in lab.plan.nodes:
        spec = provider.domain_spec(lab, node, "/pool/vm.vmlinuz", "/pool/vm.initrd")
        docs[f"domain-{node.name}.xml"] = (libvirt_xml.domain_xml(spec), "domain")
    bridges = bridge_names(lab.plan)
    for key, network in names(lab.plan).items():
        if key == "mgmt":
            hosts = tuple((libvirt_xml.mac_for(lab.id, n.name, 0), f"100.64.0.{i + 2}", n.name)
                          for i, n in enumerate(lab.plan.nodes))
            spec = libvirt_xml.NetworkSpec(network, bridges[network], "100.64.0.1", 24, hosts)
        else:
            spec = libvirt_xml.NetworkSpec(network, bridges[network])
        docs[f"network-{network}.xml"] = (libvirt_xml.network_xml(spec), "network")
    docs["volume-overlay.xml"] = (libvirt_xml.volume_xml("lc-abc123-r1.qcow2", 3 << 30, "/pool/vm.qcow2"),
                                  "storagevol")
    docs["snapshot.xml"] = (libvirt_xml.snapshot_xml("initial", "labctl lab small: starting state"),
                            "domainsnapshot")
    return docs


@pytest.mark.parametrize("name", sorted(_documents()))
def test_generated_xml_matches_golden_file(name: str) -> None:
    _golden(name, _documents()[name][0])


@needs_schemas
@pytest.mark.parametrize("name", sorted(_documents()))
def test_generated_xml_is_valid_for_libvirt(name: str) -> None:
    text, kind = _documents()[name]
    libvirt_xml.validate(text, kind)


@needs_schemas
def test_invalid_xml_is_refused_with_the_reason() -> None:
    broken = _documents()["domain-r1.xml"][0].replace("<vcpu>1</vcpu>", "<vcpu>one</vcpu>")
    with pytest.raises(ProviderError, match="not valid for libvirt"):
        libvirt_xml.validate(broken, "domain")


def test_domains_are_tcg_with_qemu64_and_isolated_networks_never_forward() -> None:
    docs = _documents()
    domain = docs["domain-r1.xml"][0]
    assert "type=\"qemu\"" in domain and "qemu64" in domain
    assert all("<forward" not in text for name, (text, _) in docs.items() if name.startswith("network-"))
    mgmt = docs["network-lc-abc123-mgmt.xml"][0]
    assert "<dns enable=\"no\" />" in mgmt and "<host mac=" in mgmt


def test_every_interface_gets_a_network_and_bridge_names_fit_the_kernel_limit() -> None:
    lab = _lab()
    bridges = bridge_names(lab.plan)
    assert all(len(b) <= 15 for b in bridges.values())
    assert len(set(bridges.values())) == len(bridges)
    r1 = interface_networks(lab.plan, lab.plan.node("r1"))
    h2 = interface_networks(lab.plan, lab.plan.node("h2"))
    assert [name for name, _ in r1] == ["mgmt0", "eth1", "eth2"]
    # the point-to-point link r1:eth2 <-> h2:eth1 is one network shared by both ends
    assert dict(r1)["eth2"] == dict(h2)["eth1"]
    assert dict(r1)["eth1"] == dict(interface_networks(lab.plan, lab.plan.node("h1")))["eth1"]
    assert all(n.startswith("lc-abc123-") for n in names(lab.plan).values())


def test_macs_are_stable_and_distinct() -> None:
    macs = {libvirt_xml.mac_for("abc123", node, i) for node in ("r1", "h1") for i in range(3)}
    assert len(macs) == 6
    assert libvirt_xml.mac_for("abc123", "r1", 0) == libvirt_xml.mac_for("abc123", "r1", 0)


def test_seed_net_conf_names_interfaces_by_mac_then_addresses_and_routes() -> None:
    lab = _lab()
    node = lab.plan.node("h1")
    nics = LibvirtProvider._nics(lab, node)
    text = libvirt_seed.net_conf(node, nics, "100.64.0.3/24")
    assert text.splitlines() == [
        f"link {nics[0].mac} mgmt0", f"link {nics[1].mac} eth1",
        "addr mgmt0 100.64.0.3/24", "addr eth1 10.10.0.10/24", "route 0.0.0.0/0 10.10.0.1",
    ]
    files = libvirt_seed.seed_files(node, "small", b"KEY", "ssh-ed25519 AAAA", "ssh-ed25519 CTRL", "hosts")
    assert files["etc/ssh/ssh_host_ed25519_key"][1] == 0o600
    assert b"nameserver" not in files["etc/resolv.conf"][0]
