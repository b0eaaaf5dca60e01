"""Grading observed from outside the node (local provider): what a root candidate plants in a
node does not make a check PASS, and does not make the controller read or follow anything
outside that node."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl import netns
from labctl.grading import probepoint
from labctl.grading.loader import load_grading_spec
from labctl.grading.report import render_table
from labctl.grading.results import Outcome
from labctl.providers import firewall
from labctl.topology import load_topology

from .conftest import SMALL, pytestmark_local
from .conftest import inside as _inside

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


def _check(check_id: str, node: str, kind: str, **keys: object) -> str:
    lines = [f"  - id: {check_id}", "    criterion: A2.1-c1",
             f"    description: {{fr: {check_id}, en: {check_id}}}", f"    node: {node}", f"    type: {kind}"]
    lines += [f"    {key}: {value!r}" if isinstance(value, str) else f"    {key}: {str(value).lower()}"
              for key, value in keys.items()]
    return "\n".join(lines)


HOSTILE = {
    # path -> (check keys, outcomes accepted)
    "loop": ("/etc/loop-a", {"contains": "x"}, {"ERROR"}),
    "fifo": ("/etc/planted-fifo", {"contains": "x"}, {"FAIL", "ERROR"}),
    "device": ("/dev/zero", {"contains": "x"}, {"FAIL", "ERROR"}),
    "random": ("/dev/urandom", {"sha256": "0" * 64}, {"FAIL", "ERROR"}),
    "sparse-content": ("/var/tmp/ten-gigabytes", {"contains": "never there"}, {"FAIL"}),
    "sparse-sha": ("/var/tmp/ten-gigabytes", {"sha256": "0" * 64}, {"FAIL", "ERROR"}),
    "escape-absolute": ("/root/escape-absolute", {"contains": "HOST-SECRET"}, {"FAIL"}),
    "escape-dotdot": ("/root/escape-dotdot", {"contains": "HOST-SECRET"}, {"FAIL"}),
    "escape-proc": ("/root/escape-proc", {"contains": "HOST-SECRET"}, {"FAIL", "ERROR"}),
}


def test_planted_files_are_read_bounded_and_never_outside_the_node(make_lab: object, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("HOST-SECRET\n")
    lab = make_lab()  # type: ignore[operator]
    _inside(lab, "h1", " && ".join([
        "ln -s /etc/loop-b /etc/loop-a", "ln -s /etc/loop-a /etc/loop-b", "mkfifo /etc/planted-fifo",
        "truncate -s 10G /var/tmp/ten-gigabytes",
        f"ln -s {secret} /root/escape-absolute",
        f"ln -s ../../../../../../..{secret} /root/escape-dotdot",
        f"ln -s /proc/1/root{secret} /root/escape-proc",
    ]))
    spec_file = tmp_path / "hostile.yml"
    spec_file.write_text("scenario: small\nchecks:\n" + "\n".join(
        _check(f"file-{name}", "h1", "file", path=path, timeout=10, **keys)
        for name, (path, keys, _) in HOSTILE.items()) + "\n")
    spec = load_grading_spec(spec_file, load_topology(SMALL))
    started = time.monotonic()
    report = labs.grade(lab, spec)
    took = time.monotonic() - started
    got = {r.check_id: r for r in report.results}
    for name, (_, _, accepted) in HOSTILE.items():
        result = got[f"file-{name}"]
        assert result.outcome.value in accepted, (name, result.outcome, result.evidence)
        assert "HOST-SECRET" not in result.evidence
        assert result.observed == "outside"
    assert "symbolic links" in got["file-loop"].evidence
    assert "it is a fifo" in got["file-fifo"].evidence
    print(f"9 hostile file checks graded in {took:.2f} s")


# ---- the liars of issue #11, installed by a root candidate in a broken lab -------------------
FAKE_TOOL = """#!/bin/sh
# a liar: prints what a solved lab would, whatever it is asked
case "$(basename "$0")" in
  ping) echo "2 packets transmitted, 2 received, 0% packet loss, time 1ms"; exit 0 ;;
  ss) echo "LISTEN 0 5 0.0.0.0:80 0.0.0.0:*"; exit 0 ;;
  awk) echo "saved eth1 timers: hello 1, dead 4"; exit 0 ;;
  grep) exit 1 ;;
  timeout|head) cat /usr/local/share/replay/page 2>/dev/null; exit 0 ;;
  *) cat /usr/local/share/replay/any 2>/dev/null; exit 0 ;;
esac
"""
REPLAY = """#!/bin/sh
# ForceCommand: replays what the grader's probes printed on a solved lab
[ -z "$SSH_ORIGINAL_COMMAND" ] && exec /usr/local/bin/fake-vtysh
h=$(printf %s "$SSH_ORIGINAL_COMMAND" | /usr/bin/sha256sum | cut -c1-64)
cat "/usr/local/share/replay/$h.out" 2>/dev/null
exit "$(cat "/usr/local/share/replay/$h.rc" 2>/dev/null || echo 0)"
"""
FAKE_VTYSH = """#!/bin/sh
# the CLI user's shell and /usr/bin/vtysh: a prompt that answers every command with a solved lab's
while printf 'r1# '; IFS= read -r line; do
  case "$line" in exit|quit) exit 0 ;; *show*) cat /usr/local/share/replay/ospf ;; esac
done
"""
BASHRC = """
ping() { echo "2 packets transmitted, 2 received, 0% packet loss"; return 0; }
awk() { echo "saved eth1 timers: hello 1, dead 4"; }
grep() { return 1; }
ip() { cat /usr/local/share/replay/any; }
alias ss='echo LISTEN 0 5 0.0.0.0:80 0.0.0.0:*'
"""


def _record_solved(lab: object, spec: object) -> dict[str, dict[str, tuple[str, int]]]:
    """What the old grader's probes printed on the solved lab, per node: command -> (output, exit)."""
    from labctl.connect import open_session
    from labctl.grading.checks import probe
    from labctl.providers import get_provider

    recorded: dict[str, dict[str, tuple[str, int]]] = {}
    for check in spec.checks:  # type: ignore[attr-defined]
        session = open_session(get_provider("local").access(lab, check.node))  # type: ignore[arg-type]
        try:
            command = probe(check)
            if command.cli:
                recorded.setdefault(check.node, {})["ospf"] = (session.cli(command.command, 20), 0)
            else:
                result = session.run(command.command, 20)
                recorded.setdefault(check.node, {})[command.command] = (result.stdout, result.exit_code)
        finally:
            session.close()
    return recorded


def _install_liars(lab: object, node: str, recorded: dict[str, tuple[str, int]], marker: str) -> None:
    """Every liar of the issue on one node, as its root would install them."""
    def put(path: str, text: str, mode: str = "0644") -> str:
        data = base64.b64encode(text.encode()).decode()
        return f"mkdir -p $(dirname {path}) && echo {data} | base64 -d > {path} && chmod {mode} {path}"

    page = f"HTTP/1.0 200 OK\r\n\r\n<h1>{marker}</h1>\n"
    steps = [put("/usr/local/share/replay/page", page), put("/usr/local/share/replay/any", "[]\n"),
             put("/usr/local/share/replay/ospf", recorded.get("ospf", ("{}", 0))[0])]
    for command, (output, code) in recorded.items():
        digest = hashlib.sha256(command.encode()).hexdigest()
        steps += [put(f"/usr/local/share/replay/{digest}.out", output),
                  put(f"/usr/local/share/replay/{digest}.rc", str(code))]
    # PATH tools, .bashrc functions and aliases, the CLI user's shell
    for tool in ("ip", "ping", "ss", "timeout", "awk", "grep", "head"):
        steps.append(put(f"/usr/local/sbin/{tool}", FAKE_TOOL, "0755"))
    steps += [put("/usr/local/bin/fake-vtysh", FAKE_VTYSH, "0755"), "cat /usr/local/bin/fake-vtysh >/dev/null",
              f"echo {base64.b64encode(BASHRC.encode()).decode()} | base64 -d >> /root/.bashrc",
              "usermod -s /usr/local/bin/fake-vtysh labctl"]
    # ForceCommand replaying a solved lab's outputs, sshd told to reload
    steps += [put("/usr/local/bin/replay", REPLAY, "0755"),
              put("/etc/ssh/sshd_config.d/zz-replay.conf", "ForceCommand /usr/local/bin/replay\n"),
              "kill -HUP $(cat /run/sshd.pid)"]
    # replaced in place: vtysh, ip, ss, ping
    steps += ["cp /usr/local/bin/fake-vtysh /usr/bin/vtysh"]
    steps += [f"cp /usr/local/sbin/{tool} /usr/bin/{tool}" for tool in ("ss", "ping", "grep")]
    steps.append("cp /usr/local/sbin/ip /usr/bin/ip.liar && mv /usr/bin/ip.liar /usr/bin/ip")
    _inside(lab, node, " && ".join(steps))


def _forge_network(lab: object, marker: str) -> None:
    """Forgeries in the nodes' own network stacks and processes (run before /usr/bin/ip is replaced)."""
    fake_site = f"mkdir -p /tmp/site && echo '<h1>{marker}</h1>' > /tmp/site/index.html"
    # h1 answers for the hosts it cannot reach, and r2 (h2's gateway) for h3; h2 and h3 serve
    # the intranet page themselves
    _inside(lab, "h1", "ip addr add 10.2.0.10/32 dev lo && ip addr add 10.3.0.10/32 dev lo")
    _inside(lab, "r2", "ip addr add 10.3.0.10/32 dev lo")
    for node in ("h2", "h3"):
        _inside(lab, node, f"ip addr add 10.1.0.20/32 dev lo && {fake_site} && "
                           "(setsid python3 -m http.server 80 --bind 10.1.0.20 --directory /tmp/site "
                           ">/dev/null 2>&1 </dev/null &)")
    # srv1: a renamed sleep posing as the web server, and a listener on port 80 that is not it
    _inside(lab, "srv1", f"echo {base64.b64encode(FAKE_SERVER.encode()).decode()} | base64 -d > /tmp/fake80.pl && "
                         "cp /bin/sleep /usr/local/bin/python3 && "
                         "(setsid sh -c 'exec -a \"python3 -m http.server 80\" /usr/local/bin/python3 1000' "
                         ">/dev/null 2>&1 </dev/null &) && "
                         "(setsid perl /tmp/fake80.pl >/dev/null 2>&1 </dev/null &) && sleep 0.5")


FAKE_SERVER = """use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 5, ReuseAddr => 1) or die;
while (my $c = $s->accept) { print $c "HTTP/1.0 200 OK\\r\\n\\r\\nhello\\n"; close $c; }
"""


def test_liars_pass_nothing_and_a_solved_lab_passes_everything(make_lab: object) -> None:
    lab = make_lab("multi-site-routing", name="outside-liars")  # type: ignore[operator]
    spec = labs.lab_spec(lab)
    labs.run_scenario_playbook(lab, labs.load_scenario("multi-site-routing").solution)
    solved = labs.grade(lab, spec)
    assert solved.exit_code == 0, [(r.check_id, r.evidence) for r in solved.results if r.outcome is not Outcome.PASS]
    inside = {r.check_id for r in solved.results if r.observed == "inside"}
    assert inside == {"wan-mtu-persistent", "ospf-timers-saved"}, inside
    assert not solved.tampering
    recorded = _record_solved(lab, spec)
    marker = str(lab.values["intranet_marker"])  # type: ignore[attr-defined]

    labs.reset(lab)  # the starting state: every check FAILs there (scenario verification)
    _forge_network(lab, marker)
    for node in sorted(recorded):
        _install_liars(lab, node, recorded[node], marker)
    report = labs.grade(lab, spec)
    print(render_table(report, lang="en"))
    passed = [(r.check_id, r.evidence) for r in report.results if r.outcome is Outcome.PASS]
    assert not passed, passed
    tampered = {t["node"]: {c["path"] for c in t["changes"]} for t in report.tampering}
    assert "/usr/bin/vtysh" in tampered["r1"] and "/usr/bin/ping" in tampered["h1"], tampered
    by_id = {r.check_id: r for r in report.results}
    assert by_id["r1-ospf-r2-full"].observed == "outside"  # ospfd itself, whatever vtysh is now
    # grep replaced in place: the command that uses it is not trusted; the awk added under
    # /usr/local is not on the clean shell's PATH: the real awk reads the real file
    assert by_id["wan-mtu-persistent"].evidence.startswith("tampered: /usr/bin/grep"), by_id["wan-mtu-persistent"]
    assert by_id["ospf-timers-saved"].outcome is Outcome.FAIL, by_id["ospf-timers-saved"].evidence
    assert "itself" in by_id["h1-reach-h2"].evidence, by_id["h1-reach-h2"].evidence
    assert "not from h3" in by_id["h2-reach-h3"].evidence, by_id["h2-reach-h3"].evidence  # r2 answered
    assert "itself" in by_id["h2-http-srv1"].evidence, by_id["h2-http-srv1"].evidence
    assert "not by /usr/bin/python3" in by_id["srv1-http-listening"].evidence, by_id["srv1-http-listening"].evidence


def test_other_check_types_are_read_from_outside_and_not_fooled(make_lab: object, tmp_path: Path) -> None:
    """package, user, file and service checks (the types of the other scenarios), each with a
    right state that PASSes and a forgery that does not."""
    lab = make_lab()  # type: ignore[operator]
    fake_stanza = "\\n\\nPackage: restic\\nStatus: install ok installed\\nArchitecture: amd64\\nVersion: 0.16.0-1\\n"
    _inside(lab, "h1", " && ".join([
        # forged: a dpkg stanza written by hand, a user only shell functions know, a renamed sleep
        f"printf '{fake_stanza}' >> /var/lib/dpkg/status",
        "echo 'getent() { echo \"mallory:x:0:0::/root:/bin/bash\"; }' >> /root/.bashrc",
        "cp /bin/sleep /usr/local/sbin/nginx", "(setsid /usr/local/sbin/nginx 300 >/dev/null 2>&1 </dev/null &)",
        # right: a real user in a group, a file with its mode and owner
        "useradd -m -G sudo alice", "install -m 0640 -o alice -g sudo /dev/null /srv-notes",
    ]))
    checks = [
        _check("pkg-sshd", "h1", "package", package="openssh-server"),
        _check("pkg-forged", "h1", "package", package="restic"),
        _check("user-alice", "h1", "user", user="alice", groups="[sudo]"),
        _check("user-forged", "h1", "user", user="mallory"),
        _check("file-right", "h1", "file", path="/srv-notes", mode="0640", owner="alice", group="sudo"),
        _check("file-wrong", "h1", "file", path="/srv-notes", mode="0600"),
        _check("svc-sshd", "h1", "service", process="sshd"),
        _check("svc-forged", "h1", "service", process="nginx"),
    ]
    spec_file = tmp_path / "types.yml"
    spec_file.write_text("scenario: small\nchecks:\n" + "\n".join(checks).replace("'[sudo]'", "[sudo]") + "\n")
    report = labs.grade(lab, load_grading_spec(spec_file, load_topology(SMALL)))
    got = {r.check_id: r for r in report.results}
    expected = {"pkg-sshd": "PASS", "pkg-forged": "FAIL", "user-alice": "PASS", "user-forged": "FAIL",
                "file-right": "PASS", "file-wrong": "FAIL", "svc-sshd": "PASS", "svc-forged": "ERROR"}
    assert {k: got[k].outcome.value for k in expected} == expected, {k: got[k].evidence for k in got}
    assert "no list of its files" in got["pkg-forged"].evidence
    assert got["svc-forged"].evidence.startswith("tampered: ")
    assert all(r.observed == "outside" for r in report.results)


# ---- a redirect in a node's own namespace, against a command of scope probe ----------------
SERVER = "\n".join(["import socket", "s = socket.socket()", "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
                    "s.bind(('0.0.0.0', 7007))", "s.listen()", "while True:", "    c, _ = s.accept()",
                    "    c.sendall(b'REAL\\n')", "    c.close()", ""])
SERVE = (f"printf %s {shlex.quote(SERVER)} > /root/serve.py"
         " && (setsid python3 /root/serve.py >/dev/null 2>&1 </dev/null &)"
         " && for i in $(seq 100); do nc -z 127.0.0.1 7007 && break; sleep 0.1; done")


ASK = "timeout 5 bash -c 'exec 3<>/dev/tcp/10.10.0.1/7007 && head -n1 <&3'"
PROBE = "{switch: lan, addresses: 10.10.0.128/25}"


def _grader(lab: object, tmp_path: Path, checks: list[str], probe: str = PROBE) -> Callable[[], dict[str, str]]:
    """Grading of `checks` on the small lab (their `probe: 'PROBE'` is `probe`, by default the lan
    switch's upper half)."""
    spec_file = tmp_path / "probe.yml"
    spec_file.write_text("scenario: small\nchecks:\n" + "\n".join(checks).replace("'PROBE'", probe) + "\n")
    spec = load_grading_spec(spec_file, load_topology(SMALL))

    def grade() -> dict[str, str]:
        report = labs.grade(lab, spec)  # type: ignore[arg-type]
        assert all(r.observed == "outside" for r in report.results)
        return {r.check_id: r.outcome.value for r in report.results}

    return grade


def test_a_redirect_in_a_nodes_namespace_does_not_reach_a_command_of_scope_probe(make_lab: object,
                                                                                  tmp_path: Path) -> None:
    """The reason `scope: probe` exists. r1 is meant to serve REAL on 10.10.0.1:7007. The candidate,
    root on h1 (the same switch), serves REAL on h1 instead and redirects, in h1's own namespace,
    what goes to r1:7007 to it. The same command run by the controller in h1's namespace (scope
    network) is fooled; run in the grader's probe point on the switch (scope probe) it reaches the
    real r1 and FAILs, and PASSes once r1 really serves."""
    lab = make_lab()  # type: ignore[operator]
    grade = _grader(lab, tmp_path, [
        _check("via-h1-namespace", "h1", "command", command=ASK, stdout_matches="^REAL$", scope="network"),
        _check("via-probe-point", "r1", "command", command=ASK, stdout_matches="^REAL$", scope="probe",
               probe="PROBE")])
    _inside(lab, "h1", " && ".join([
        SERVE,
        "nft add table ip forge",
        "nft add chain ip forge out '{ type nat hook output priority -100; }'",
        "nft add rule ip forge out ip daddr 10.10.0.1 tcp dport 7007 dnat to 10.10.0.10",
    ]))
    assert grade() == {"via-h1-namespace": "PASS", "via-probe-point": "FAIL"}
    _inside(lab, "r1", SERVE)
    assert grade()["via-probe-point"] == "PASS"


@contextlib.contextmanager
def _unpinned_probe(lab: object, address: str, pins: bool = False) -> Iterator[Callable[[str], str]]:
    """A probe namespace on the lan switch made as the probe point was before pinning (a veth on
    the bridge and an address, nothing else), or, with `pins`, pinned only in its own namespace
    (permanent neighbours and its own filter by source MAC, as probe_point does, but no rule at the
    switch), with `address` (each its own: a node may keep an earlier one's MAC); yields a runner
    of shell commands there (their output)."""
    plan = lab.plan  # type: ignore[attr-defined]
    name, port = f"pin-old-{plan.lab_id}", "old0"
    bridge, _ = probepoint.target_on(plan, "lan", "r1")
    netns.add(name)
    try:
        netns.batch(plan.fabric_netns, [f"link add {port} type veth peer name {probepoint.PROBE_END} netns {name}",
                                        f"link set {port} master {bridge}", f"link set {port} up"], "old probe")
        netns.batch(name, ["link set lo up", f"addr add {address}/24 dev {probepoint.PROBE_END}",
                           f"link set {probepoint.PROBE_END} up"], "old probe")
        if pins:
            pinned = probepoint.pins_on(plan, bridge)
            macs = {pin.address: probepoint.read_mac(pin) for pin in pinned}
            netns.batch(name, probepoint.neighbours(pinned, macs), "old probe's neighbours")
            firewall.load("pins", probepoint.probe_chains(pinned, macs), firewall.netns_prefix(name), family="netdev")

        def run(command: str) -> str:
            return subprocess.run(["ip", "netns", "exec", name, "bash", "-c", command], capture_output=True,
                                  text=True, timeout=30).stdout.strip()

        yield run
    finally:
        subprocess.run(["ip", "-n", plan.fabric_netns, "link", "del", port], capture_output=True)
        netns.delete(name)


def test_a_neighbour_claiming_the_targets_address_does_not_fool_the_probe_point(make_lab: object,
                                                                                tmp_path: Path) -> None:
    """ARP spoofing by the candidate, root in every node of the lab. r1 (10.10.0.1) is meant to
    serve REAL on port 7007; the candidate makes r1 answer no ARP and h1, on the same switch, claim
    10.10.0.1 and serve REAL. A probe namespace made as before pinning is fooled (it asks ARP, h1
    answers); the probe point, which pins r1's address to the MAC read from r1's interface and to
    r1's port on the switch, reaches the real r1 and FAILs. Then h1 also copies r1's MAC and r1's
    interface goes down: a probe pinned only in its own namespace (neighbour and source-MAC filter)
    is fooled too, since h1's frames carry r1's MAC; the switch's rule by port is what stops it.
    Once r1 really serves (h1 still claiming its address), the check PASSes, twice. The probe points
    draw from two addresses (a new MAC each time), so at least one of those two gradings reuses an
    address r1 answered before: it PASSes only because the probe point announces its MAC (it asks
    r1 no ARP, which would have told r1)."""
    lab = make_lab()  # type: ignore[operator]
    grade = _grader(lab, tmp_path, [_check("r1-serves", "r1", "command", command=ASK, stdout_matches="^REAL$",
                                           scope="probe", probe="PROBE")], "{switch: lan, addresses: 10.10.0.200/30}")
    _inside(lab, "r1", "sysctl -qw net.ipv4.conf.all.arp_ignore=8")
    _inside(lab, "h1", f"{SERVE} && ip addr add 10.10.0.1/32 dev eth1")
    with _unpinned_probe(lab, "10.10.0.100") as old:
        assert old(ASK) == "REAL"  # the forgery works against a probe that trusts ARP
    assert grade() == {"r1-serves": "FAIL"}

    r1_mac = _inside(lab, "r1", "cat /sys/class/net/eth1/address").strip()
    h1_mac = _inside(lab, "h1", "cat /sys/class/net/eth1/address").strip()
    _inside(lab, "r1", "ip link set eth1 down")
    _inside(lab, "h1", f"ip link set eth1 address {r1_mac}")
    with _unpinned_probe(lab, "10.10.0.101", pins=True) as pinned_in_probe_only:
        assert pinned_in_probe_only(ASK) == "REAL"  # the MAC is h1's to forge: pins in the probe alone fail
    assert grade() == {"r1-serves": "FAIL"}

    _inside(lab, "h1", f"ip link set eth1 address {h1_mac}")
    _inside(lab, "r1", f"ip link set eth1 up && {SERVE}")
    assert [grade(), grade()] == [{"r1-serves": "PASS"}] * 2
