"""Record the command outputs that tests/unit/test_grading_checks.py evaluates.

Run as root on a Debian machine with iproute2, iputils-ping and frr (8.4, Debian bookworm):

    apt-get install -y iputils-ping frr && .venv/bin/python tests/data/outputs/record.py

or, for some folders only (the others are left as they are): `... record.py http port`.

It builds throwaway network namespaces (lcrec-*), starts two FRR routers in them, runs the
very probes labctl.grading builds (`labctl.grading.checks.probe`) and writes
<type>/<case>.json = {"recorded", "channel", "command", "exit_code", "stdout", "stderr"}.
States a namespace cannot hold (accounts, dpkg database, files under /srv) are laid out in
a private mount namespace (`unshare -m`) so the host is left as it was. "Tool missing"
cases run the probe with an empty PATH. Router CLI outputs are vtysh's, stderr merged into
stdout as a terminal (netmiko) sees them. Every namespace and daemon is removed at the end.
Files whose "recorded" starts with "hand-written" are not produced here.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labctl.grading.checks import probe
from labctl.grading.spec import CHECK_MODELS, CheckBase

OUT = Path(__file__).parent
R1, R2, H1, EMPTY = "lcrec-r1", "lcrec-r2", "lcrec-h1", "lcrec-empty"
NO_TOOLS = "PATH=/nonexistent; "
FRR = "/usr/lib/frr"


def check(kind: str, **keys: Any) -> CheckBase:
    """A check of type `kind`, to build its real probe."""
    base = {"id": "rec", "criterion": "A1.3-c2", "description": {"fr": "x", "en": "x"},
            "node": "n", "type": kind}
    return CHECK_MODELS[kind].model_validate({**base, **keys})


def run(command: str, ns: str | None = None, merge: bool = False) -> dict[str, Any]:
    """Run a shell command (in namespace `ns`) and keep what it left behind, decoded as the
    grader's session decodes it (line ends as sent: an HTTP answer keeps its CRLF)."""
    argv = ["sh", "-c", command]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    proc = subprocess.run(argv, capture_output=not merge, timeout=60,
                          stdout=subprocess.PIPE if merge else None,
                          stderr=subprocess.STDOUT if merge else None)
    return {"exit_code": proc.returncode, "stdout": proc.stdout.decode(errors="replace"),
            "stderr": (proc.stderr or b"").decode(errors="replace")}


def save(kind: str, case: str, how: str, command: str, result: dict[str, Any],
         channel: str = "shell") -> None:
    """Write one recorded output."""
    path = OUT / kind / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"recorded": how, "channel": channel, "command": command, **result}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{kind}/{case}: exit {result['exit_code']}")


def record_shell(kind: str, case: str, how: str, command: str, ns: str | None = None) -> None:
    """Run a probe in a namespace and save it."""
    save(kind, case, how, command, run(command, ns))


def in_private_mounts(setup: str, command: str) -> dict[str, Any]:
    """Run `command` after `setup` in a private mount namespace (the host is untouched)."""
    script = f"{setup} >/dev/null 2>&1 || exit 99; exec sh -c {shlex.quote(command)}"
    result = run(f"unshare -m --propagation private sh -c {shlex.quote(script)}")
    assert result["exit_code"] != 99, result
    return result


def sh(command: str) -> None:
    """A setup step that must succeed."""
    subprocess.run(["sh", "-c", command], check=True)


def vtysh(router: str, command: str) -> dict[str, Any]:
    """A router CLI command, as a terminal shows it."""
    return run(f"vtysh -N {router} -c {shlex.quote(command)}", merge=True)


def start_daemon(router: str, daemon: str) -> None:
    """Start one FRR daemon inside its router's namespace."""
    sh(f"ip netns exec {router} {FRR}/{daemon} -d -N {router} -A 127.0.0.1 -u frr -g frr")
    time.sleep(1)


def build_namespaces() -> None:
    """r1 -- r2 on 10.255.0.0/30, each with a LAN; h1 a host with static routes."""
    for ns in (R1, R2, H1, EMPTY):
        sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
    sh(f"ip link add v1 netns {R1} type veth peer name v2 netns {R2}")
    sh(f"ip -n {R1} addr add 10.255.0.1/30 dev v1 && ip -n {R1} link set v1 up")
    sh(f"ip -n {R2} addr add 10.255.0.2/30 dev v2 && ip -n {R2} link set v2 up")
    for index, ns in ((1, R1), (2, R2)):
        sh(f"ip -n {ns} link add lan{index} type veth peer name lan{index}p")
        sh(f"ip -n {ns} addr add 10.{index}.0.1/24 dev lan{index}")
        sh(f"ip -n {ns} link set lan{index} up && ip -n {ns} link set lan{index}p up")
    sh(f"ip -n {H1} link add eth1 type veth peer name eth1p")
    sh(f"ip -n {H1} addr add 10.99.0.1/24 dev eth1 && ip -n {H1} link set eth1 up")
    sh(f"ip -n {H1} link set eth1p up")
    sh(f"ip -n {H1} route add default via 10.99.0.254")
    sh(f"ip -n {H1} route add 10.50.0.0/24 via 10.99.0.254 proto static")
    sh(f"ip -n {H1} route add 10.60.0.0/24 nexthop via 10.99.0.253 nexthop via 10.99.0.254")


def frr_config(router: str, index: int) -> None:
    """The router's integrated config: OSPF area 0 on the p2p link and its LAN."""
    directory = Path("/etc/frr") / router
    directory.mkdir(parents=True, exist_ok=True)
    Path("/var/run/frr", router).mkdir(parents=True, exist_ok=True)
    (directory / "vtysh.conf").write_text("service integrated-vtysh-config\n")
    (directory / "frr.conf").write_text(
        f"frr defaults traditional\nhostname r{index}\n!\nrouter ospf\n"
        f" ospf router-id 10.255.255.{index}\n network 10.255.0.0/30 area 0\n"
        f" network 10.{index}.0.0/24 area 0\n!\n")
    sh(f"chown -R frr:frr {directory} /var/run/frr/{router}")


def wait_for_state(prefix: str, limit: float = 90) -> dict[str, Any]:
    """Poll r1's neighbor table until r2 shows a state starting with `prefix`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        result = vtysh(R1, "show ip ospf neighbor json")
        if f'"nbrState":"{prefix}' in result["stdout"].replace(" ", ""):
            return result
        time.sleep(0.3)
    raise SystemExit(f"r2 never reached {prefix} on r1")


def wait_for_route(ns: str, prefix: str, limit: float = 60) -> None:
    """Poll until the kernel of `ns` has a route to `prefix` (FRR installed it)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if run(f"ip route show {prefix}", ns)["stdout"].strip():
            return
        time.sleep(0.3)
    raise SystemExit(f"no route to {prefix} in {ns}")


def record_ospf() -> None:
    """Real FRR 8.4 outputs: no daemon, no ospfd, no instance, Init, 2-Way, Full, Full/-."""
    cmd = probe(check("ospf_neighbor", neighbor="10.255.255.2")).command
    how = "FRR 8.4.4 (Debian bookworm) router r1 (router id 10.255.255.1) in a netns; "
    for index, router in ((1, R1), (2, R2)):
        frr_config(router, index)
    save("ospf", "no-daemons", how + "no FRR daemon running", cmd, vtysh(R1, cmd), "cli")
    start_daemon(R1, "zebra")
    save("ospf", "ospfd-not-running", how + "zebra running, ospfd not", cmd, vtysh(R1, cmd), "cli")
    start_daemon(R1, "ospfd")
    save("ospf", "no-instance", how + "ospfd running, no `router ospf`", cmd, vtysh(R1, cmd),
         "cli")
    sh(f"vtysh -N {R1} -f /etc/frr/{R1}/frr.conf")
    time.sleep(1)
    save("ospf", "no-neighbors", how + "OSPF configured, r2 not started", cmd, vtysh(R1, cmd),
         "cli")
    start_daemon(R2, "zebra")
    start_daemon(R2, "ospfd")
    sh(f"vtysh -N {R2} -f /etc/frr/{R2}/frr.conf")
    save("ospf", "init", how + "r2 (10.255.255.2) just started: Init", cmd,
         wait_for_state("Init"), "cli")
    save("ospf", "two-way", how + "r2 seen both ways, not yet adjacent: 2-Way", cmd,
         wait_for_state("2-Way"), "cli")
    save("ospf", "full", how + "adjacency with r2 up on broadcast link v1", cmd,
         wait_for_state("Full"), "cli")
    wait_for_route(R1, "10.2.0.0/24")
    for router, iface in ((R1, "v1"), (R2, "v2")):
        sh(f"vtysh -N {router} -c 'configure terminal' -c 'interface {iface}' "
           f"-c 'ip ospf network point-to-point'")
    time.sleep(1)
    save("ospf", "full-point-to-point", how + "v1 as an OSPF point-to-point link", cmd,
         wait_for_state("Full\\/-"), "cli")
    wait_for_route(R1, "10.2.0.0/24")


def record_route() -> None:
    """`ip -j route show <prefix>` on r1 (OSPF-learnt, connected, missing) and h1 (static)."""
    r1 = "router r1 with OSPF adjacency to r2 (FRR 8.4.4), in a netns"
    h1 = ("host h1 in a netns: `ip route add default via 10.99.0.254`, "
          "`... 10.50.0.0/24 via 10.99.0.254 proto static`, "
          "`... 10.60.0.0/24 nexthop via 10.99.0.253 nexthop via 10.99.0.254`")
    for case, ns, dest, how in (("ospf", R1, "10.2.0.0/24", r1), ("connected", R1, "10.1.0.0/24", r1),
                                ("missing", R1, "10.3.0.0/24", r1), ("default", H1, "default", h1),
                                ("static", H1, "10.50.0.0/24", h1), ("multipath", H1, "10.60.0.0/24", h1)):
        record_shell("route", case, how, probe(check("route", destination=dest)).command, ns)
    cmd = probe(check("route", destination="10.70.0.0/24")).command
    sh(f"ip -n {H1} route add 10.70.0.0/24 via 10.99.0.254 proto 196")
    unnamed = "mount -t tmpfs tmpfs /etc/iproute2/rt_protos.d"
    save("route", "frr-static-unnamed", "host h1: `ip route add 10.70.0.0/24 via 10.99.0.254 "
         "proto 196` (FRR staticd's number) without FRR's rt_protos.d/frr.conf names", cmd,
         in_private_mounts(unnamed, f"ip netns exec {H1} sh -c {shlex.quote(cmd)}"))
    cmd = probe(check("route", destination="10.2.0.0/24")).command
    save("route", "no-ip", "empty PATH: a node without iproute2", cmd, run(NO_TOOLS + cmd, R1))


def record_reach() -> None:
    """ping from r1: over OSPF, to a silent LAN address, to no route; and without ping."""
    how = "router r1 (OSPF up with r2, no default route), in a netns"
    for case, target in (("reachable", "10.2.0.1"), ("no-reply", "10.1.0.2"),
                         ("no-route", "10.3.0.1")):
        record_shell("reach", case, how, probe(check("reach", target=target)).command, R1)
    cmd = probe(check("reach", target="10.2.0.1")).command
    save("reach", "no-ping", "empty PATH: a node without ping", cmd, run(NO_TOOLS + cmd, R1))


def record_port() -> None:
    """ss on h1 (tcp 22 on IPv4 and IPv6, 8080 on loopback, udp 161), r1 (FRR vty), empty."""
    listener = ("import socket,time\n"
                "def s(f,t,a):\n x=socket.socket(f,t); x.setsockopt(socket.SOL_SOCKET,"
                "socket.SO_REUSEADDR,1)\n"
                " if f==socket.AF_INET6: x.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n"
                " x.bind(a)\n if t==socket.SOCK_STREAM: x.listen()\n return x\n"
                "k=[s(socket.AF_INET,socket.SOCK_STREAM,('0.0.0.0',22)),"
                "s(socket.AF_INET6,socket.SOCK_STREAM,('::',22)),"
                "s(socket.AF_INET,socket.SOCK_STREAM,('127.0.0.1',8080)),"
                "s(socket.AF_INET,socket.SOCK_DGRAM,('0.0.0.0',161))]\ntime.sleep(60)\n")
    proc = subprocess.Popen(["ip", "netns", "exec", H1, sys.executable, "-c", listener])
    try:
        time.sleep(1.5)
        how = "host h1 in a netns: sockets on tcp 0.0.0.0:22, [::]:22, 127.0.0.1:8080, udp 0.0.0.0:161"
        for case, protocol in (("tcp", "tcp"), ("udp", "udp")):
            cmd = probe(check("port", port=22, protocol=protocol)).command
            record_shell("port", case, how, cmd, H1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    cmd = probe(check("port", port=22)).command
    record_shell("port", "router-vty", "router r1 in a netns: FRR zebra and ospfd vty on 127.0.0.1",
                 cmd, R1)
    record_shell("port", "nothing", "an empty netns (only lo)", cmd, EMPTY)
    save("port", "no-ss", "empty PATH: a node without ss", cmd, run(NO_TOOLS + cmd, EMPTY))


INTRANET = ('<!DOCTYPE html>\n<html lang="fr">\n<head><meta charset="utf-8"><title>Intranet Valmont'
            '</title></head>\n<body>\n<h1>Intranet Valmont</h1>\n<p>Serveur intranet du siège.</p>\n'
            '</body>\n</html>\n')
# sockets on lo of the empty netns: 8082 accepts and never answers, 8083 talks like sshd
# (its banner, then a complaint about the client's first line), 8084 closes at once
OTHER_SERVERS = (
    "import socket,threading,time\n"
    "def s(p):\n x=socket.socket(); x.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    " x.bind(('127.0.0.1',p)); x.listen(); return x\n"
    "silent,ssh,closing=s(8082),s(8083),s(8084)\n"
    "def sshd():\n"
    " while True:\n"
    "  c,_=ssh.accept(); c.sendall(b'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\\r\\n'); c.recv(4096)\n"
    "  c.sendall(b'Invalid SSH identification string.\\r\\n'); c.close()\n"
    "threading.Thread(target=sshd,daemon=True).start()\n"
    "while True:\n c,_=closing.accept(); c.close()\n")


def record_http() -> None:
    """bash /dev/tcp fetches in the empty netns: python3 -m http.server on 127.0.0.1:8080
    (a page, a missing page, a redirect), a port nothing listens on, a socket that never
    answers, sshd-like and closing servers; from h1 an address no one has, an unknown name."""
    sh("rm -rf /tmp/lcrec-www && mkdir -p /tmp/lcrec-www/docs")
    Path("/tmp/lcrec-www/index.html").write_text(INTRANET, encoding="utf-8")
    server = subprocess.Popen(["ip", "netns", "exec", EMPTY, sys.executable, "-m", "http.server",
                               "8080", "--bind", "127.0.0.1", "--directory", "/tmp/lcrec-www"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    others = subprocess.Popen(["ip", "netns", "exec", EMPTY, sys.executable, "-c", OTHER_SERVERS])
    # nodes query no outside resolver: like them, h1 gets a resolv.conf without nameserver
    made_netns_etc = not Path("/etc/netns").exists()
    Path(f"/etc/netns/{H1}").mkdir(parents=True, exist_ok=True)
    Path(f"/etc/netns/{H1}/resolv.conf").write_text("# no nameserver, as in a lab node\n")
    try:
        time.sleep(1.5)
        served = "empty netns: `python3 -m http.server 8080 --bind 127.0.0.1` serving an intranet page"
        for case, keys, how in (
            ("page", {"url": "http://127.0.0.1:8080/"}, served),
            ("not-found", {"url": "http://127.0.0.1:8080/missing.html"}, served),
            ("redirect", {"url": "http://127.0.0.1:8080/docs"}, served + " and a folder docs/"),
            ("refused", {"url": "http://127.0.0.1:8081/"}, "empty netns: nothing listens on 8081"),
            ("timeout", {"url": "http://127.0.0.1:8082/", "timeout": 3},
             "empty netns: a socket on 8082 that accepts connections and never answers; "
             "check timeout 3 s"),
            ("not-http", {"url": "http://127.0.0.1:8083/"},
             "empty netns: a server on 8083 that answers like sshd to a client that is not SSH"),
            ("closed", {"url": "http://127.0.0.1:8084/"},
             "empty netns: a server on 8084 that closes every connection at once"),
            ("no-route", {"url": "http://10.1.0.20/"}, "empty netns (only lo): no route"),
        ):
            record_shell("http", case, how, probe(check("http", **keys)).command, EMPTY)
        record_shell("http", "unreachable", "host h1 in a netns (10.99.0.1/24): no one has 10.99.0.5",
                     probe(check("http", url="http://10.99.0.5/")).command, H1)
        cmd = probe(check("http", url="http://intranet.invalid/")).command
        record_shell("http", "unresolvable", "host h1 in a netns, resolv.conf without nameserver "
                     "(as in a lab node): a name /etc/hosts does not have", cmd, H1)
        cmd = probe(check("http", url="http://127.0.0.1:8080/")).command
        save("http", "no-bash", "empty PATH: a node without timeout and bash", cmd,
             run(NO_TOOLS + cmd, EMPTY))
    finally:
        for proc in (server, others):
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        sh(f"rm -rf /tmp/lcrec-www /etc/netns/{H1}")
        if made_netns_etc:
            Path("/etc/netns").rmdir()


def in_private_pids(setup: str, command: str) -> dict[str, Any]:
    """Run `command` after `setup` (which may start processes) in a new PID namespace."""
    script = f"{setup}\nsleep 0.5\nexec sh -c {shlex.quote(command)}"
    return run(f"unshare -p -f --mount-proc sh -c {shlex.quote(script)}")


def record_service() -> None:
    """pgrep in private PID namespaces: a live process, a zombie only, none; without pgrep."""
    sleep = probe(check("service", process="sleep")).command
    sshd = probe(check("service", process="sshd")).command
    zombie = f"sh -c 'sleep 0 & exec {sys.executable} -c \"import time; time.sleep(5)\"' &"
    for case, setup, cmd, how in (
        ("running", "sleep 30 &", sleep, "PID namespace with `sleep 30` running"),
        ("zombie", zombie, sleep,
         "PID namespace where the only sleep is a zombie (its parent never reaps it)"),
        ("stopped", "true", sshd, "PID namespace without sshd"),
    ):
        save("service", case, how, cmd, in_private_pids(setup, cmd))
    zombie_seen = in_private_pids(zombie, "ps -o stat=,comm= | grep -q '^Z *sleep$'")
    assert zombie_seen["exit_code"] == 0, "the zombie case recorded no zombie"
    save("service", "no-pgrep", "empty PATH: a node without pgrep", sleep,
         in_private_pids("true", NO_TOOLS + sleep))


def record_file() -> None:
    """stat/sha256/content of files under a private tmpfs on /srv."""
    setup = ("mount -t tmpfs tmpfs /srv && mkdir -p /srv/exam/conf.d && "
             "printf 'PermitRootLogin no\\nPasswordAuthentication no\\n' > /srv/exam/app.conf && "
             "chown root:shadow /srv/exam/app.conf && chmod 0640 /srv/exam/app.conf")
    how = ("private tmpfs on /srv: /srv/exam/app.conf (root:shadow 0640, "
           "'PermitRootLogin no\\nPasswordAuthentication no\\n'), directory /srv/exam/conf.d")
    full = check("file", path="/srv/exam/app.conf", mode="0640", sha256="0" * 64, contains="x")
    plain = check("file", path="/srv/exam/app.conf")
    directory = check("file", path="/srv/exam/conf.d", sha256="0" * 64)
    absent = check("file", path="/srv/exam/missing.conf")
    for case, probed in (("full", full), ("plain", plain), ("directory", directory),
                         ("absent", absent)):
        cmd = probe(probed).command
        save("file", case, how, cmd, in_private_mounts(setup, cmd))
    cmd = probe(plain).command
    save("file", "no-stat", how + "; empty PATH: a node without stat", cmd,
         in_private_mounts(setup, NO_TOOLS + cmd))


def record_package() -> None:
    """dpkg-query for installed, unknown and removed (config files left) packages."""
    for case, name in (("installed", "frr"), ("installed-bash", "bash"), ("unknown", "nginx")):
        record_shell("package", case, "the recording machine's dpkg database",
                     probe(check("package", package=name)).command)
    cmd = probe(check("package", package="frr")).command
    setup = ("cp -a /var/lib/dpkg /tmp/lcrec-dpkg && "
             "sed -i '/^Package: frr$/,/^$/s/^Status: .*/Status: deinstall ok config-files/' "
             "/tmp/lcrec-dpkg/status && mount --bind /tmp/lcrec-dpkg /var/lib/dpkg")
    save("package", "config-files", "a copy of the dpkg database with frr removed, "
         "config files kept (state rc), bind-mounted privately", cmd,
         in_private_mounts(setup, cmd))
    sh("rm -rf /tmp/lcrec-dpkg")
    save("package", "no-dpkg", "empty PATH: a node without dpkg", cmd, run(NO_TOOLS + cmd))


def record_user() -> None:
    """getent/id against private copies of /etc/passwd and /etc/group with exam accounts."""
    setup = ("cp /etc/passwd /tmp/lcrec-passwd && cp /etc/group /tmp/lcrec-group && "
             "echo 'alice:x:1001:1001:Alice Martin:/home/alice:/bin/bash' >> /tmp/lcrec-passwd && "
             "echo 'svc-backup:x:1002:1002::/var/backups:/usr/sbin/nologin' >> /tmp/lcrec-passwd && "
             "echo 'alice:x:1001:' >> /tmp/lcrec-group && "
             "echo 'svc-backup:x:1002:' >> /tmp/lcrec-group && "
             "echo 'techs:x:1100:alice' >> /tmp/lcrec-group && "
             "sed -i 's/^sudo:x:27:$/sudo:x:27:alice/' /tmp/lcrec-group && "
             "mount --bind /tmp/lcrec-passwd /etc/passwd && mount --bind /tmp/lcrec-group /etc/group")
    how = ("private copies of /etc/passwd and /etc/group adding alice (bash; groups alice, "
           "sudo, techs) and svc-backup (nologin)")
    for case, user in (("alice", "alice"), ("service-account", "svc-backup"), ("absent", "bob")):
        cmd = probe(check("user", user=user)).command
        save("user", case, how, cmd, in_private_mounts(setup, cmd))
    sh("rm -f /tmp/lcrec-passwd /tmp/lcrec-group")
    cmd = probe(check("user", user="alice")).command
    save("user", "no-getent", "empty PATH: a node without getent", cmd, run(NO_TOOLS + cmd))


def record_command() -> None:
    """Commands a spec author writes: JSON from ip, a sysctl, a failing grep, a missing tool."""
    r1 = "router r1 in a netns"
    for case, command, ns in (("ip-json", "ip -j addr show dev v1", R1),
                              ("ip-text", "ip addr show dev v1", R1),
                              ("sysctl", "sysctl -n net.ipv4.ip_forward", R1),
                              ("grep-missing-file",
                               "grep -q '^PermitRootLogin no' /etc/ssh/sshd_config", R1),
                              ("not-found", "nginx -t", R1)):
        record_shell("command", case, r1, command, ns)


def clean_up() -> None:
    """Stop the FRR daemons and remove the namespaces and config directories."""
    for router in (R1, R2):
        for daemon in ("ospfd", "zebra"):
            pid_file = Path("/var/run/frr", router, f"{daemon}.pid")
            if pid_file.exists():
                subprocess.run(["kill", pid_file.read_text().strip()], check=False)
    time.sleep(1)
    for ns in (R1, R2, H1, EMPTY):
        subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
    for router in (R1, R2):
        subprocess.run(["rm", "-rf", f"/etc/frr/{router}", f"/var/run/frr/{router}"], check=False)


RECORDERS = {"ospf": record_ospf, "route": record_route, "reach": record_reach,
             "http": record_http, "port": record_port, "service": record_service,
             "file": record_file, "package": record_package, "user": record_user,
             "command": record_command}


def main() -> None:
    """Record every case, or only those of the folders named on the command line (root only).

    route, reach and command need the OSPF adjacency: name ospf before them.
    """
    if os.geteuid() != 0:
        raise SystemExit("run as root: it creates network namespaces and starts FRR")
    chosen = sys.argv[1:] or list(RECORDERS)
    unknown = [name for name in chosen if name not in RECORDERS]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)}; choose among {', '.join(RECORDERS)}")
    clean_up()
    try:
        build_namespaces()
        for name in chosen:
            RECORDERS[name]()
    finally:
        clean_up()


if __name__ == "__main__":
    main()
