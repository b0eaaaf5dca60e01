"""The libvirt provider against libvirt's test driver: lifecycle, snapshot/revert, clean-up,
placement across several hypervisors, and clear errors (unreachable, image missing)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

libvirt = pytest.importorskip("libvirt")
pytest.importorskip("lxml")

from labctl import vmimage  # noqa: E402
from labctl.errors import LabctlError, NotFoundError, ProviderError  # noqa: E402
from labctl.plan import plan_lab  # noqa: E402
from labctl.providers import firewall, get_provider, libvirt_conn, libvirt_site  # noqa: E402
from labctl.providers import libvirt as libvirt_provider  # noqa: E402
from labctl.providers.libvirt import LibvirtProvider, Record, _oob_sockets  # noqa: E402
from labctl.state import LabState, load_lab  # noqa: E402
from labctl.topology import load_topology  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"
TOOLS = all(shutil.which(t) for t in ("mkfs.ext4", "qemu-img", "ssh-keygen"))
pytestmark = pytest.mark.skipif(not TOOLS or not Path("/usr/share/libvirt/schemas").exists(),
                                reason="needs mkfs.ext4, qemu-img, ssh-keygen and libvirt's schemas")


def _state_file(directory: Path, name: str, memory_mib: int) -> str:
    path = directory / f"{name}.xml"
    path.write_text(f"<node><cpu><mhz>2000</mhz><model>i686</model><nodes>1</nodes><sockets>1</sockets>"
                    f"<cores>2</cores><threads>1</threads><active>2</active></cpu>"
                    f"<memory>{memory_mib * 1024}</memory></node>\n")
    return f"test://{path}"


@pytest.fixture
def firewall_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The firewall labctl loads on the hypervisor, recorded: the test driver has no bridge to
    guard (tests/integration/test_libvirt.py shows the real one dropping a node's connection)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(firewall, "load", lambda table, chains, where=(): calls.append(("load", table, chains,
                                                                                          tuple(where))))
    monkeypatch.setattr(firewall, "unload", lambda table, where=(): calls.append(("unload", table, tuple(where))))
    return calls


@pytest.fixture
def hv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
       firewall_calls: list[tuple[Any, ...]]) -> Iterator[tuple[str, Any]]:
    """One test-driver hypervisor (kept alive by an open connection), a fake built VM image,
    uploads, the SSH wait and the host firewall stubbed out (the test driver runs no guest)."""
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LABCTL_LIBVIRT_ACCEL", "qemu")
    monkeypatch.delenv("LABCTL_LIBVIRT_SITE", raising=False)
    uri = _state_file(tmp_path, "hv1", 16384)
    monkeypatch.setenv("LABCTL_LIBVIRT_URI", uri)
    recipe = vmimage.VmImageRecipe()
    recipe.directory.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (recipe.directory / name).write_bytes(b"QFI\xfb" + bytes(20) + (3 << 30).to_bytes(8, "big"))
    (recipe.directory / "recipe.json").write_text("{}")
    monkeypatch.setattr(libvirt_conn, "upload", lambda conn, volume, source: None)
    monkeypatch.setattr(LibvirtProvider, "_wait_ready", lambda self, lab, node, conn: None)
    yield uri, libvirt_conn.open_connection(uri)  # the provider's own (cached) connection
    libvirt_conn.close_all()


def _lab(lab_id: str = "abc123") -> LabState:
    lab = LabState(id=lab_id, name=f"small-{lab_id}", provider="libvirt",
                   plan=plan_lab(load_topology(SMALL), lab_id, f"small-{lab_id}"))
    lab.save()
    return lab


def _objects(conn: Any, lab_id: str) -> dict[str, list[str]]:
    prefix = f"lc-{lab_id}-"
    pool_volumes: list[str] = []
    with contextlib.suppress(libvirt.libvirtError):
        pool_volumes = [v for v in conn.storagePoolLookupByName("labctl").listVolumes() if v.startswith(prefix)]
    return {"domains": sorted(d.name() for d in conn.listAllDomains() if d.name().startswith(prefix)),
            "networks": sorted(n.name() for n in conn.listAllNetworks() if n.name().startswith(prefix)),
            "volumes": sorted(pool_volumes)}


def test_provider_is_registered_and_importing_the_cli_does_not_import_libvirt() -> None:
    import subprocess
    import sys

    assert isinstance(get_provider("libvirt"), LibvirtProvider)
    code = "import sys, labctl.cli; sys.exit('libvirt' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_lifecycle_create_snapshot_revert_destroy(hv: tuple[str, Any], firewall_calls: list[tuple[Any, ...]]) -> None:
    _, conn = hv
    provider = LibvirtProvider()
    lab = _lab()
    provider.create(lab)
    made = _objects(conn, lab.id)
    assert made["domains"] == ["lc-abc123-h1", "lc-abc123-h2", "lc-abc123-r1"]
    assert len(made["networks"]) == 3  # management, the switch, the point-to-point link
    assert len(made["volumes"]) == 6  # an overlay and a seed per node
    assert provider.node_states(lab) == {"r1": "running", "h1": "running", "h2": "running"}
    assert load_lab(lab.id).nodes["r1"].hypervisor == "default"
    assert sorted(Record(lab).data["ready_seconds"]) == ["h1", "h2", "r1"]  # per-VM boot time, for bench/
    access = provider.access(lab, "r1")
    assert access.mgmt_netns is None and access.mgmt_address.startswith("100.64.")
    assert access.oob_command[1:3] == ("-m", "labctl.providers.libvirt_oob")
    assert access.host_key.startswith("ssh-ed25519 ")
    # an emulated (TCG) guest's sshd needs seconds per login step on a busy host, not 3
    assert access.ssh_timeout == libvirt_provider.SSH_TIMEOUT["qemu"] >= 30
    from labctl.provision import inventory

    # and Ansible's connection (login + Mitogen's bootstrap) several of those
    assert inventory(lab, provider)["all"]["hosts"]["r1"]["ansible_ssh_timeout"] >= 4 * 30
    overlay = conn.storagePoolLookupByName("labctl").storageVolLookupByName("lc-abc123-r1.qcow2")
    assert "<backingStore>" in overlay.XMLDesc(0)
    mgmt = conn.networkLookupByName("lc-abc123-mgmt").XMLDesc(0)
    assert "<forward" not in mgmt and access.mgmt_address in mgmt
    # nodes reach neither each other over management (isolated ports) nor the hypervisor (firewall)
    assert "<port isolated='yes'/>" in mgmt
    assert [c[:2] for c in firewall_calls] == [("load", "labctl_mgmt_abc123")]
    chains, where = firewall_calls[0][2:]
    assert where == () and 'iifname "lcabc123m" drop' in chains and "policy accept" in chains
    assert Record(lab).data["firewall"] == "labctl_mgmt_abc123"

    provider.snapshot(lab)
    domain = conn.lookupByName("lc-abc123-r1")
    assert domain.snapshotListNames() == ["initial"]
    provider.snapshot(lab)  # taking it again replaces it
    assert domain.snapshotListNames() == ["initial"]
    synced: list[str] = []
    provider._sync_clock = lambda lab, node: synced.append(node)  # type: ignore[method-assign]
    domain.destroy()
    record = Record(lab)
    record.data["oob"]["r1"] = ["/var/lib/libvirt/qemu/channel/target/domain-1-gone/org.labctl.oob.0"]
    record.save()
    provider.revert(lab)
    assert domain.isActive() and sorted(synced) == ["h1", "h2", "r1"]
    # a reverted domain runs in a new QEMU: its out-of-band sockets are read again from it
    assert Record(lab).data["oob"]["r1"] == _oob_sockets(domain.XMLDesc(0))

    provider.destroy(lab)
    assert _objects(conn, lab.id) == {"domains": [], "networks": [], "volumes": []}
    assert firewall_calls[-1] == ("unload", "labctl_mgmt_abc123", ())
    assert not lab.directory.exists()
    provider.destroy(lab)  # idempotent
    # the shared image volumes stay (other labs use them)
    assert any(v.startswith("labctl-vm-") for v in conn.storagePoolLookupByName("labctl").listVolumes())


def test_down_after_a_crash_removes_only_that_labs_objects(hv: tuple[str, Any]) -> None:
    _, conn = hv
    provider = LibvirtProvider()
    keep = _lab("keep01")
    provider.create(keep)
    conn.defineXML("<domain type='test'><name>crash10-not-ours</name><memory unit='MiB'>64</memory>"
                   "<os><type>hvm</type></os></domain>")
    lab = _lab("crash1")
    provider.create(lab)
    # A crash: the state on disk survives, the process does not; a half-made object lingers.
    conn.networkDefineXML("<network><name>lc-crash1-stray</name><bridge name='lccrash1x'/></network>")
    record = Record(load_lab(lab.id))
    assert record.exists
    provider.destroy(load_lab(lab.id))
    assert _objects(conn, "crash1") == {"domains": [], "networks": [], "volumes": []}
    assert len(_objects(conn, "keep01")["domains"]) == 3
    assert conn.lookupByName("crash10-not-ours")  # not ours: untouched
    provider.destroy(keep)


def test_failed_create_removes_what_it_made(hv: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _, conn = hv
    provider = LibvirtProvider()

    def boom(self: LibvirtProvider, lab: LabState, node: Any, conn: Any) -> None:
        raise ProviderError("sshd did not answer")

    monkeypatch.setattr(LibvirtProvider, "_wait_ready", boom)
    lab = _lab("fail01")
    with pytest.raises(ProviderError, match="sshd did not answer"):
        provider.create(lab)
    assert _objects(conn, "fail01") == {"domains": [], "networks": [], "volumes": []}


def test_two_labs_get_distinct_management_subnets(hv: tuple[str, Any]) -> None:
    provider = LibvirtProvider()
    one, two = _lab("one001"), _lab("two002")
    provider.create(one)
    provider.create(two)
    subnets = {Record(one).data["mgmt"]["subnet"], Record(two).data["mgmt"]["subnet"]}
    assert len(subnets) == 2
    provider.destroy(one)
    provider.destroy(two)


def test_unreachable_hypervisor_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    with pytest.raises(ProviderError) as caught:
        libvirt_conn.open_connection("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert "unreachable" in caught.value.message and caught.value.hint and "virsh" in caught.value.hint


def test_missing_image_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    with pytest.raises(NotFoundError) as caught:
        vmimage.require_vm_image(vmimage.VmImageRecipe())
    assert "labctl image build vm" in (caught.value.hint or "")
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(NotFoundError, match="is not built"):
        LibvirtProvider()._image(_lab(), progress=__import__("labctl.progress").progress.QUIET)


# ---- placement -----------------------------------------------------------------------
def test_placement_picks_the_most_free_memory_that_fits(tmp_path: Path) -> None:
    uris = {name: _state_file(tmp_path, name, mib) for name, mib in (("a", 4096), ("b", 8192), ("c", 6144))}
    conns = {name: libvirt.open(uri) for name, uri in uris.items()}
    try:
        # b is the biggest, but labs already committed there leave it the least room
        for i in range(3):
            conns["b"].defineXML(f"<domain type='test'><name>busy{i}</name><memory unit='MiB'>2048</memory>"
                                 f"<os><type>hvm</type></os></domain>")
        hypervisors = [libvirt_site.Hypervisor(name, uri) for name, uri in uris.items()]
        candidates = [(h, conns[h.name]) for h in hypervisors]
        assert libvirt_site.free_mib(hypervisors[1], conns["b"]) == 8192 - 1024 - 6144
        assert libvirt_site.place(1024, candidates).name == "c"
        assert libvirt_site.place(4000, candidates).name == "c"
        with pytest.raises(ProviderError, match="no hypervisor has 9000 MiB free"):
            libvirt_site.place(9000, candidates, {"d": "connection refused"})
        capped = [(libvirt_site.Hypervisor("a", uris["a"], memory_mib=20000), conns["a"]), *candidates[1:]]
        assert libvirt_site.place(9000, capped).name == "a"
    finally:
        for conn in conns.values():
            conn.close()


def test_labs_of_a_session_spread_over_hypervisors(hv: tuple[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    uris = {name: _state_file(tmp_path, name, 1536 + 1024) for name in ("x", "y")}
    site = tmp_path / "site.yml"
    site.write_text("hypervisors:\n" + "".join(f"  - {{name: {n}, uri: '{u}'}}\n" for n, u in uris.items())
                    + "  - {name: gone, uri: 'qemu+unix:///system?socket=/nonexistent/sock'}\n")
    monkeypatch.delenv("LABCTL_LIBVIRT_URI")
    monkeypatch.setenv("LABCTL_LIBVIRT_SITE", str(site))
    provider = LibvirtProvider()
    labs = [_lab(f"sess0{i}") for i in range(3)]
    try:
        provider.create(labs[0])
        provider.create(labs[1])
        assert {Record(lab).hypervisor.name for lab in labs[:2]} == {"x", "y"}
        assert {n.hypervisor for n in load_lab(labs[1].id).nodes.values()} == {Record(labs[1]).hypervisor.name}
        with pytest.raises(ProviderError, match=r"no hypervisor has 1536 MiB free.*gone unreachable"):
            provider.create(labs[2])
    finally:
        for lab in labs:
            provider.destroy(lab)


def test_site_file_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABCTL_LIBVIRT_URI", raising=False)
    site = tmp_path / "site.yml"
    site.write_text("hypervisors: []\n")
    with pytest.raises(LabctlError, match="non-empty list"):
        libvirt_site.load_site(site)
    site.write_text("hypervisors:\n  - {name: a, uri: 'qemu:///system', memory_mib: -1}\n")
    with pytest.raises(LabctlError, match="memory_mib"):
        libvirt_site.load_site(site)
    site.write_text("hypervisors:\n  - {name: a, uri: 'qemu+ssh://root@hv1/system', pool_path: /srv/pool}\n")
    (hv1,) = libvirt_site.load_site(site)
    assert hv1.ssh_host == "root@hv1" and not hv1.is_local and hv1.pool_path == "/srv/pool"
    assert json.dumps(hv1.__dict__)


def test_status_shows_the_hypervisor_each_node_runs_on(hv: tuple[str, Any]) -> None:
    import json

    from click.testing import CliRunner

    from labctl.cli import cli

    lab = _lab("st4tus")
    LibvirtProvider().create(lab)
    try:
        shown = CliRunner().invoke(cli, ["status", "--lab", lab.name])
        assert shown.exit_code == 0, shown.output
        header, *nodes = [line.split() for line in shown.output.splitlines()[1:]]
        assert header[3] == "HYPERVISOR"
        assert {(n[0], n[3]) for n in nodes} == {("r1", "default"), ("h1", "default"), ("h2", "default")}
        # the address labctl reaches each VM at (the hypervisor's management network), not the plan's
        assert {n[4] for n in nodes} == {a.split("/")[0] for a in Record(lab).data["mgmt"]["nodes"].values()}
        rows = json.loads(CliRunner().invoke(cli, ["status", "--lab", lab.name, "--json"]).output)
        assert {r["hypervisor"] for r in rows} == {"default"}
    finally:
        LibvirtProvider().destroy(lab)


def test_nodes_on_a_remote_hypervisor_are_reached_out_of_band_only(hv: tuple[str, Any]) -> None:
    from labctl.connect import SshSession
    from labctl.grading.session import NodeUnreachable

    provider = LibvirtProvider()
    lab = _lab("rem0te")
    provider.create(lab)
    try:
        record = Record(lab)
        local = provider.access(lab, "h1")
        assert local.mgmt_address.startswith("100.64.")
        uri = record.data["hypervisor"]["uri"]
        record.data["hypervisor"]["uri"] = "qemu+ssh://root@hv1.example/system"
        record.save()
        remote = provider.access(lab, "h1")
        # its management network is a bridge over there: no packet to a lab address leaves here
        assert remote.mgmt_address == ""
        assert remote.oob_command[:3] == ("ssh", "-oBatchMode=yes", "root@hv1.example")
        with pytest.raises(NodeUnreachable, match="no management path"):
            SshSession(dataclasses.replace(remote, oob_command=("false",), ssh_timeout=1.0))  # no 30 s banner wait
    finally:
        record.data["hypervisor"]["uri"] = uri  # destroy talks to the (test-driver) hypervisor
        record.save()
        provider.destroy(lab)


def test_the_hypervisor_firewall_goes_over_ssh_or_is_named_as_missing(
        hv: tuple[str, Any], firewall_calls: list[tuple[Any, ...]]) -> None:
    import io

    from labctl.progress import Progress

    lab = _lab("fw0001")
    record = Record(lab)
    record.data["hypervisor"] = {"name": "hv1", "uri": "qemu+ssh://root@hv1.example/system"}
    LibvirtProvider()._guard_host(lab, record, Progress(io.StringIO()))
    assert firewall_calls[-1][0::3] == ("load", ("ssh", "-oBatchMode=yes", "root@hv1.example"))
    # a hypervisor labctl cannot run a command on: said, with where to filter
    record.data["hypervisor"] = {"name": "hv2", "uri": "qemu+tls://hv2.example/system"}
    del record.data["firewall"]
    shown = io.StringIO()
    LibvirtProvider()._guard_host(lab, record, Progress(shown))
    assert len(firewall_calls) == 1 and "firewall" not in record.data
    assert "warning" in shown.getvalue() and "hv2" in shown.getvalue() and "lcfw0001m" in shown.getvalue()


def test_boot_budget_grows_with_emulated_vms(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.providers.libvirt import boot_timeout

    monkeypatch.delenv("LABCTL_LIBVIRT_BOOT_TIMEOUT", raising=False)
    assert boot_timeout("kvm", 7) == 600  # KVM boots in seconds
    assert boot_timeout("qemu", 2) == 600
    assert boot_timeout("qemu", 7) == 1050  # 7 TCG guests answered after up to 554 s on 2 loaded cores
    monkeypatch.setenv("LABCTL_LIBVIRT_BOOT_TIMEOUT", "2400")
    assert boot_timeout("qemu", 7) == 2400
