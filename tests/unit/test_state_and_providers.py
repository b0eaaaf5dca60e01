"""Lab state on disk, process identity, the provider registry, inventory generation."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labctl.errors import NotFoundError
from labctl.plan import plan_lab
from labctl.providers import get_provider, provider_names
from labctl.provision import inventory
from labctl.state import LabState, NodeState, ProcessRef, all_labs, find_lab, load_lab, unique_name
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "tests" / "data" / "labs" / "small.yml"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    yield tmp_path


def _lab(lab_id: str, name: str) -> LabState:
    lab = LabState(id=lab_id, name=name, provider="local",
                   plan=plan_lab(load_topology(SMALL), lab_id, name))
    for node in lab.plan.nodes:
        lab.nodes[node.name] = NodeState(host_key=f"ssh-ed25519 AAAAkey{node.name}",
                                         init=ProcessRef(pid=4242, start_time=1))
    lab.save()
    return lab


def test_state_round_trips_through_disk() -> None:
    lab = _lab("aaa111", "small")
    again = load_lab("aaa111")
    assert again == lab
    assert not list(lab.directory.glob(".state.json.*")), "atomic write left a temporary file"


def test_a_removal_cut_short_leaves_a_lab_still_listed_and_the_next_one_finishes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`down` SIGKILLed while it deletes the folder: the state goes last, so the lab is still
    listed (and the next `down` finds it), never a folder without a state no command knows."""
    import shutil

    lab = _lab("ccc333", "small")
    for sub in ("nodes/r1/upper", "vault", "snapshot"):
        (lab.directory / sub).mkdir(parents=True)
        (lab.directory / sub / "file").write_text("x")
    real_rmtree = shutil.rmtree
    calls: list[str] = []

    def killed_on_second(path: Path, *args: object, **kwargs: object) -> None:
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands for the SIGKILL
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "rmtree", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        lab.remove()
    assert [found.id for found in all_labs()] == ["ccc333"]
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    load_lab("ccc333").remove()
    assert not lab.directory.exists() and all_labs() == []


def test_find_lab_by_name_or_id_and_errors() -> None:
    with pytest.raises(NotFoundError, match="no lab is running"):
        find_lab(None)
    first = _lab("aaa111", "small")
    assert find_lab(None).id == first.id
    _lab("bbb222", unique_name("small"))
    assert [lab.name for lab in all_labs()] == ["small", "small-2"]
    assert find_lab("small-2").id == "bbb222" and find_lab("aaa111").name == "small"
    with pytest.raises(NotFoundError, match="2 labs are running"):
        find_lab(None)
    with pytest.raises(NotFoundError, match="no lab named 'nope'"):
        find_lab("nope")


def test_process_ref_tells_a_reused_pid_from_the_original() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        ref = ProcessRef.of(proc.pid)
        assert ref is not None and ref.alive()
        assert not ProcessRef(pid=proc.pid, start_time=ref.start_time + 1).alive()
    finally:
        proc.kill()
        proc.wait()
    assert not ref.alive()
    assert ProcessRef.of(proc.pid) is None


def test_unknown_provider_lists_the_valid_names() -> None:
    with pytest.raises(NotFoundError) as error:
        get_provider("locl")
    assert "valid providers: " + ", ".join(provider_names()) in error.value.message
    assert error.value.hint == "did you mean 'local'?"


def test_inventory_groups_nodes_and_pins_host_keys() -> None:
    lab = _lab("aaa111", "small")
    data = inventory(lab, get_provider("local"))
    hosts = data["all"]["hosts"]
    assert set(hosts) == {"r1", "h1", "h2"}
    assert set(data["all"]["children"]["routers"]["hosts"]) == {"r1"}
    assert set(data["all"]["children"]["hosts"]["hosts"]) == {"h1", "h2"}
    assert hosts["r1"]["labctl_interfaces"] == {"eth1": "10.10.0.1/24", "eth2": "10.20.0.1/30"}
    ssh_args = hosts["h1"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in ssh_args and "HostKeyAlias=h1" in ssh_args
    assert "enter.py 4242 -- /usr/sbin/sshd -i" in ssh_args
    # a busy machine starts many interpreters at once: the timeout Ansible's connection (and
    # Mitogen's) really uses, as Ansible resolves it from the host's variables
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    ssh = connection_loader.get("ssh", PlayContext(), None)
    ssh.set_options(var_options=hosts["h1"])
    assert ssh.get_option("timeout") == hosts["h1"]["ansible_ssh_timeout"] >= 60
    known = (lab.directory / "known_hosts").read_text().splitlines()
    assert "h1 ssh-ed25519 AAAAkeyh1" in known
    yaml.safe_dump(data)  # serialisable as an inventory file


def test_local_provider_refuses_without_root_and_says_why() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: the refusal cannot be observed")
    from labctl.errors import PrivilegeError

    with pytest.raises(PrivilegeError, match="needs root"):
        get_provider("local").create(_lab("ccc333", "x"))


def test_a_failed_loop_task_says_what_its_failed_items_said() -> None:
    from labctl.provision import failure_message

    loop = {"msg": "All items completed", "changed": False, "results": [
        {"item": "eth1", "failed": False, "stdout": "unchanged", "rc": 0},
        {"item": "eth2", "failed": True, "rc": 2, "msg": "non-zero return code",
         "stderr": "cat: /sys/class/net/eth2/mtu: No such file or directory"},
    ]}
    assert failure_message(loop) == ("item eth2: non-zero return code, cat: /sys/class/net/eth2/mtu: "
                                     "No such file or directory, exit code 2")
    assert failure_message({"msg": "Timeout (12s) waiting for privilege escalation prompt"}) == \
        "Timeout (12s) waiting for privilege escalation prompt"
    assert failure_message({"stdout": "only this"}) == "only this"
    assert failure_message({}) == "failed"


def test_playbooks_run_mitogen_linear_without_its_cpu_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import ansible_mitogen.affinity

    from labctl.provision import strategy_environment

    monkeypatch.delenv("LABCTL_ANSIBLE_STRATEGY", raising=False)
    env = strategy_environment()
    assert env["ANSIBLE_STRATEGY"] == "labctl_mitogen_linear"
    folder = Path(env["ANSIBLE_STRATEGY_PLUGINS"].split(os.pathsep)[0])
    monkeypatch.setattr(ansible_mitogen.affinity, "policy", ansible_mitogen.affinity.LinuxPolicy())
    spec = importlib.util.spec_from_file_location("labctl_strategy", folder / "labctl_mitogen_linear.py")
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    # Mitogen's own policy pins every process of a run to one CPU on a 2-core machine
    assert type(ansible_mitogen.affinity.policy) is ansible_mitogen.affinity.Policy
    assert [c.__name__ for c in plugin.StrategyModule.__mro__[1:3]] == ["StrategyMixin", "StrategyModule"]
    monkeypatch.setenv("LABCTL_ANSIBLE_STRATEGY", "linear")
    assert strategy_environment() == {"ANSIBLE_STRATEGY": "linear"}


def test_a_node_is_wired_with_the_plan_or_with_its_snapshot_network(tmp_path: Path) -> None:
    import json

    from labctl.providers.local import _network_commands

    h1 = _lab("net001", "net").plan.node("h1")
    mgmt = ["link set lo up"]  # no management interface: labctl enters nodes out of band
    assert _network_commands(h1, None) == [*mgmt, "addr add 10.10.0.10/24 dev eth1", "link set eth1 up",
                                           "route replace 0.0.0.0/0 via 10.10.0.1"]
    # a snapshot as `ip -j -4 {addr,route,link} show` wrote it: the setup lowered eth1's MTU,
    # moved its address and gateway; kernel and OSPF routes come back by themselves (a snapshot
    # of a lab made before nodes lost their management interface still lists mgmt0: skipped)
    saved = tmp_path / "snapshot"
    saved.mkdir()
    flags = ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]
    links = [{"ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536},
             {"ifname": "eth1", "flags": flags, "mtu": 1400}, {"ifname": "mgmt0", "flags": flags, "mtu": 1500}]
    (saved / "link.json").write_text(json.dumps(links))
    (saved / "addr.json").write_text(json.dumps([
        {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "eth1", "addr_info": [{"local": "10.10.0.11", "prefixlen": 24}]},
        {"ifname": "mgmt0", "addr_info": [{"local": "198.18.0.5", "prefixlen": 24}]}]))
    (saved / "route.json").write_text(json.dumps([
        {"dst": "default", "gateway": "10.10.0.254", "dev": "eth1", "flags": []},
        {"dst": "10.10.0.0/24", "dev": "eth1", "protocol": "kernel", "scope": "link"},
        {"dst": "10.2.0.0/24", "gateway": "10.10.0.1", "dev": "eth1", "protocol": "ospf"},
        {"dst": "198.18.0.0/24", "dev": "mgmt0", "protocol": "kernel"}]))
    assert _network_commands(h1, saved) == [*mgmt, "link set dev eth1 mtu 1400 up", "addr add 10.10.0.11/24 dev eth1",
                                            "route replace default via 10.10.0.254 dev eth1"]
    links[1]["flags"] = ["BROADCAST", "MULTICAST"]  # the setup had brought eth1 down
    (saved / "link.json").write_text(json.dumps(links))
    assert _network_commands(h1, saved)[1] == "link set dev eth1 mtu 1400 down"
    (saved / "link.json").unlink()  # a snapshot from before links were recorded: the plan's links come up
    assert _network_commands(h1, saved)[1] == "link set eth1 up"


def test_loopbacks_ipv6_mtu_and_dhcp_are_wired_and_come_back_from_a_snapshot(tmp_path: Path) -> None:
    import json

    from labctl.plan import plan_lab
    from labctl.providers.local import _network_commands
    from labctl.topology.model import Topology

    topology = Topology.model_validate({
        "name": "features", "nodes": {
            "r1": {"kind": "router", "loopback": "10.254.0.1", "loopback6": "2001:db8:ff::1",
                   "routes": [{"to": "2001:db8:9::/64", "via": "2001:db8:1::2"}]},
            "h1": {"kind": "host"}, "lan": {"kind": "switch", "subnet": "10.1.0.0/24"}},
        "links": [{"endpoints": ["r1:eth1@10.1.0.1/24,2001:db8:1::1/64", "lan"], "mtu": 1400},
                  {"endpoints": ["h1:eth1@dhcp", "lan"]}]})
    plan = plan_lab(topology, "feat01", "features")
    r1, h1 = plan.node("r1"), plan.node("h1")
    assert _network_commands(r1, None) == [
        "link set lo up", "addr add 10.254.0.1/32 dev lo", "addr add 2001:db8:ff::1/128 dev lo",
        "addr add 10.1.0.1/24 dev eth1", "addr add 2001:db8:1::1/64 dev eth1 nodad", "link set eth1 mtu 1400 up",
        "route replace 2001:db8:9::/64 via 2001:db8:1::2"]
    assert _network_commands(h1, None) == ["link set lo up", "link set eth1 up"]  # DHCP: no address from labctl
    assert h1.interfaces[0].shown_addresses() == ["dhcp"]

    # a snapshot: loopbacks and IPv6 come back; kernel, link-local and leased addresses do not
    saved = tmp_path / "snapshot"
    saved.mkdir()
    (saved / "addr.json").write_text(json.dumps([
        {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                                       {"local": "10.254.0.1", "prefixlen": 32, "scope": "global"},
                                       {"local": "::1", "prefixlen": 128, "scope": "host"}]},
        {"ifname": "eth1", "addr_info": [{"local": "10.1.0.7", "prefixlen": 24, "scope": "global", "dynamic": True},
                                         {"local": "2001:db8:1::1", "prefixlen": 64, "scope": "global"},
                                         {"local": "fe80::1", "prefixlen": 64, "scope": "link"}]}]))
    (saved / "route.json").write_text("[]")
    (saved / "route6.json").write_text(json.dumps([
        {"dst": "2001:db8:1::/64", "dev": "eth1", "protocol": "kernel"},
        {"dst": "fe80::/64", "dev": "eth1", "protocol": "kernel"},
        {"dst": "default", "gateway": "2001:db8:1::9", "dev": "eth1"},
        # kept by the kernel when the address under it was removed (a fault): restored as it was
        {"dst": "2001:db8:7::/64", "gateway": "2001:db8:5::1", "dev": "eth1"}]))
    assert _network_commands(r1, saved)[2:] == [
        "addr add 10.254.0.1/32 dev lo", "addr add 2001:db8:1::1/64 dev eth1 nodad",
        "route replace ::/0 via 2001:db8:1::9 dev eth1",
        "route replace 2001:db8:7::/64 via 2001:db8:5::1 dev eth1 onlink"]
