"""Every check type evaluated on real recorded outputs: PASS on a right state, FAIL on a
wrong one, ERROR when the state cannot be observed.

The outputs in tests/data/outputs/ were produced by tests/data/outputs/record.py, which runs
the very probes these checks build (asserted below), in network namespaces with FRR 8.4.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from labctl.grading.checks import CHECK_TYPES, evaluate, probe
from labctl.grading.checks.system import json_equal, json_lookup
from labctl.grading.results import Outcome
from labctl.grading.session import CommandResult
from labctl.grading.spec import CHECK_MODELS, CheckBase

OUTPUTS = Path(__file__).parents[1] / "data" / "outputs"
PASS, FAIL, ERROR = Outcome.PASS, Outcome.FAIL, Outcome.ERROR
APP_CONF = b"PermitRootLogin no\nPasswordAuthentication no\n"


def make(kind: str, **keys: Any) -> CheckBase:
    """A check of type `kind` with the common keys filled in (`expected`: vault checksums)."""
    base = {"id": "t", "criterion": "A1.3-c2", "description": {"fr": "f", "en": "e"},
            "node": "r1", "type": kind}
    expected = keys.pop("expected", None)
    check = CHECK_MODELS[kind].model_validate({**base, **keys})
    if expected is not None:
        check.attach(expected)  # type: ignore[attr-defined]
    return check


MANIFEST = {"manifest": "originals.sha256", "expected": {
    "/tmp/lcrec-manifest/facture-001.txt": "5a59001b40c7d3c2ea780742d4f2c74aaa32e9896d018adfc7874a2b8e2e21c0",
    "/tmp/lcrec-manifest/facture-002.txt": "52df57ed153fbe09f7048fe5b0dff6de2dcdb8d6f6c86e218daf80c4cea6ecf2"}}


INTRANET = {"url": "http://127.0.0.1:8080/"}
MATRIX = {"zones": {"lan": "lan1", "dmz": "web", "out": "ext@10.63.0.10"},
          "services": ["icmp", "tcp/22", "tcp/80", "udp/53"],
          "allow": ["lan -> dmz tcp/80", "lan -> dmz icmp", "lan -> dmz udp/53", "out -> dmz tcp/80",
                    "lan -> out tcp/80"]}
PROBE = {"probe": {"switch": "outside", "addresses": "10.70.4.128/25"}, "acts": True}
ROOT_PASSWORD = {**PROBE, "user": "root", "methods": "password", "password": "root2024xy",
                 "expect": "refused"}
KEY_ALONE = {**PROBE, "user": "admin", "methods": "key", "key": "admin_ed25519", "expect": "partial"}
OLD_CODE = {**KEY_ALONE, "methods": "key+wrong-code", "totp_secret": "3132333435363738393031323334353637383930",
            "expect": "refused"}
KEY_CODE = {**OLD_CODE, "methods": "key+code", "expect": "accepted"}
BURST = {**PROBE, "user": "root", "attempts": 8, "within": 20, "undo": "fail2ban-client unban {address}"}
LEASE = {"interface": "eth1", "range": ["10.30.0.100", "10.30.0.150"], "gateway": "10.30.0.1", "dns": ["10.30.0.2"]}


def saved(name: str) -> tuple[str, CommandResult]:
    """A recorded output: the command that produced it and what the session returns.

    Router CLI outputs come back as text only, so they become exit 0, like the engine does.
    """
    record = json.loads((OUTPUTS / f"{name}.json").read_text(encoding="utf-8"))
    if record["channel"] == "cli":
        return record["command"], CommandResult(0, record["stdout"], "")
    return record["command"], CommandResult(record["exit_code"], record["stdout"], record["stderr"])


CASES: list[tuple[str, str, dict[str, Any], Outcome, str]] = [
    # manifest: files compared with checksums recorded in the vault before a fault
    ("manifest", "manifest/intact", MANIFEST, PASS, "all 2 files match"),
    ("manifest", "manifest/damaged", MANIFEST, FAIL, "0/2 files match; 1 missing"),
    ("manifest", "manifest/no-sha256sum", MANIFEST, ERROR, "sha256sum failed with exit code 127"),
    # reach: ping from router r1
    ("reach", "reach/reachable", {"target": "10.2.0.1"}, PASS, "10.2.0.1 answers (2 packets"),
    ("reach", "reach/reachable", {"target": "10.2.0.1", "expect": "unreachable"}, FAIL,
     "expected unreachable"),
    ("reach", "reach/no-reply", {"target": "10.1.0.2"}, FAIL, "does not answer (2 packets"),
    ("reach", "reach/no-reply", {"target": "10.1.0.2", "expect": "unreachable"}, PASS, "0 received"),
    ("reach", "reach/no-route", {"target": "10.3.0.1"}, FAIL, "no route to 10.3.0.1"),
    ("reach", "reach/no-route", {"target": "10.3.0.1", "expect": "unreachable"}, PASS,
     "Network is unreachable"),
    ("reach", "reach/no-ping", {"target": "10.2.0.1"}, ERROR, "`ping` is not available"),
    ("reach", "reach/no-ping", {"target": "10.2.0.1", "expect": "unreachable"}, ERROR, "ping"),
    # http: a GET over bash's /dev/tcp, from a netns; python3 -m http.server on 127.0.0.1:8080
    ("http", "http/page", {**INTRANET, "body_matches": "<h1>Intranet Valmont</h1>"}, PASS,
     "http://127.0.0.1:8080/: HTTP 200 OK, the page matches /<h1>Intranet Valmont</h1>/: "
     "<h1>Intranet Valmont</h1>"),
    ("http", "http/page", INTRANET, PASS, 'HTTP 200 OK (183 characters; page: title "Intranet Valmont")'),
    ("http", "http/page", {**INTRANET, "body_matches": "<h1>Portail Valmont</h1>"}, FAIL,
     'HTTP 200 OK but the page does not match /<h1>Portail Valmont</h1>/ '
     '(page: title "Intranet Valmont")'),
    ("http", "http/page", {**INTRANET, "status": 404}, FAIL, "HTTP 200 OK, expected 404"),
    ("http", "http/not-found", {"url": "http://127.0.0.1:8080/missing.html"}, FAIL,
     'http://127.0.0.1:8080/missing.html: HTTP 404 File not found, expected 200; '
     'page: title "Error response"'),
    ("http", "http/not-found", {"url": "http://127.0.0.1:8080/missing.html", "status": 404}, PASS,
     "HTTP 404 File not found"),
    ("http", "http/redirect", {"url": "http://127.0.0.1:8080/docs"}, FAIL,
     "HTTP 301 Moved Permanently to /docs/, expected 200; page: empty"),
    ("http", "http/refused", {"url": "http://127.0.0.1:8081/"}, FAIL,
     "http://127.0.0.1:8081/: connection refused"),
    ("http", "http/no-route", {"url": "http://10.1.0.20/"}, FAIL,
     "http://10.1.0.20/: network is unreachable"),
    ("http", "http/unreachable", {"url": "http://10.99.0.5/"}, FAIL,
     "http://10.99.0.5/: no route to host"),
    ("http", "http/timeout", {"url": "http://127.0.0.1:8082/", "timeout": 3}, FAIL,
     "http://127.0.0.1:8082/: timed out after 2 s"),
    ("http", "http/not-http", {"url": "http://127.0.0.1:8083/"}, FAIL,
     "the answer is not HTTP: SSH-2.0-OpenSSH_9.2p1"),
    ("http", "http/closed", {"url": "http://127.0.0.1:8084/"}, FAIL,
     "the server closed the connection without answering"),
    ("http", "http/unresolvable", {"url": "http://intranet.invalid/"}, FAIL,
     "cannot resolve intranet.invalid (Temporary failure in name resolution)"),
    ("http", "http/no-bash", INTRANET, ERROR,
     "`bash` is not available on the node (exit 127): sh: 1: timeout: not found"),
    # route: ip -j route show <prefix>
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "metric": 20}, PASS,
     "10.2.0.0/24 via 10.255.0.2 dev v1 proto ospf metric 20"),
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "metric": 30}, FAIL,
     "proto ospf metric 20; expected a route 10.2.0.0/24 metric 30"),
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "via": "10.255.0.2", "protocol": "ospf"},
     PASS, "10.2.0.0/24 via 10.255.0.2 dev v1 proto ospf"),
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "via": "10.255.0.9"}, FAIL,
     "expected a route 10.2.0.0/24 via 10.255.0.9"),
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "protocol": "static"}, FAIL,
     "proto ospf; expected a route 10.2.0.0/24 proto static"),
    ("route", "route/ospf", {"destination": "10.2.0.0/24", "absent": True}, FAIL,
     "expected no route"),
    ("route", "route/missing", {"destination": "10.3.0.0/24"}, FAIL, "no route to 10.3.0.0/24"),
    ("route", "route/missing", {"destination": "10.3.0.0/24", "absent": True}, PASS, "no route"),
    ("route", "route/connected", {"destination": "10.1.0.0/24", "protocol": "kernel"}, PASS,
     "dev lan1 proto kernel"),
    ("route", "route/default", {"destination": "default", "via": "10.99.0.254", "protocol": "boot"},
     PASS, "default via 10.99.0.254 dev eth1 proto boot"),
    ("route", "route/default", {"destination": "default", "protocol": "static"}, PASS,
     "default via 10.99.0.254 dev eth1 proto boot"),  # `ip route add` is a static route
    ("route", "route/connected", {"destination": "10.1.0.0/24", "protocol": "connected"}, PASS,
     "10.1.0.0/24 dev lan1 proto kernel"),
    ("route", "route/connected", {"destination": "10.1.0.0/24", "protocol": "static"}, FAIL,
     "expected a route 10.1.0.0/24 proto static"),
    ("route", "route/static", {"destination": "10.50.0.0/24", "protocol": "connected"}, FAIL,
     "proto static; expected a route 10.50.0.0/24 proto connected"),
    ("route", "route/static", {"destination": "10.50.0.0/24", "protocol": "static"}, PASS,
     "proto static"),
    ("route", "route/multipath", {"destination": "10.60.0.0/24", "via": "10.99.0.253"}, PASS,
     "via 10.99.0.253 via 10.99.0.254"),
    ("route", "route/frr-static-unnamed", {"destination": "10.70.0.0/24", "protocol": "static"},
     PASS, "proto static"),
    ("route", "route/no-ip", {"destination": "10.2.0.0/24"}, ERROR, "`ip route` is not available"),
    # ospf_neighbor: FRR 8.4 `show ip ospf neighbor json` through the CLI
    ("ospf_neighbor", "ospf/full", {"neighbor": "10.255.255.2"}, PASS,
     "neighbor 10.255.255.2 state Full/DR on v1 (10.255.0.2)"),
    ("ospf_neighbor", "ospf/full", {"neighbor": "10.255.255.2", "state": "2-Way"}, FAIL,
     "state Full/DR on v1 (10.255.0.2), expected 2-Way"),
    ("ospf_neighbor", "ospf/full", {"neighbor": "10.255.255.9"}, FAIL,
     "no OSPF neighbor 10.255.255.9 (neighbors: 10.255.255.2 Full/DR)"),
    ("ospf_neighbor", "ospf/full-point-to-point", {"neighbor": "10.255.255.2"}, PASS, "Full/-"),
    ("ospf_neighbor", "ospf/init", {"neighbor": "10.255.255.2"}, FAIL,
     "state Init/DROther on v1 (10.255.0.2), expected Full"),
    ("ospf_neighbor", "ospf/init", {"neighbor": "10.255.255.2", "state": "Init"}, PASS, "Init"),
    ("ospf_neighbor", "ospf/two-way", {"neighbor": "10.255.255.2", "state": "2-Way"}, PASS,
     "2-Way/DROther"),
    ("ospf_neighbor", "ospf/no-neighbors", {"neighbor": "10.255.255.2"}, FAIL, "neighbors: none"),
    ("ospf_neighbor", "ospf/no-instance", {"neighbor": "10.255.255.2"}, FAIL,
     "no OSPF neighbor 10.255.255.2"),
    ("ospf_neighbor", "ospf/ospfd-not-running", {"neighbor": "10.255.255.2"}, FAIL,
     "ospfd is not running"),
    ("ospf_neighbor", "ospf/no-daemons", {"neighbor": "10.255.255.2"}, ERROR,
     "no JSON in the output"),
    ("ospf_neighbor", "ospf/older-object-shape", {"neighbor": "10.255.255.2"}, PASS,
     "state Full/DR on eth1 (10.255.0.2)"),
    ("ospf_neighbor", "ospf/older-object-shape", {"neighbor": "10.255.255.3"}, FAIL,
     "state 2-Way/DROther on eth2 (10.255.0.6), expected Full"),
    # port: ss -Hlnt / -Hlnu
    ("port", "port/tcp", {"port": 22}, PASS, "tcp port 22 listening on 0.0.0.0, [::]"),
    ("port", "port/tcp", {"port": 8080}, PASS, "listening on 127.0.0.1"),
    ("port", "port/tcp", {"port": 22, "listening": False}, FAIL, "expected closed"),
    ("port", "port/tcp", {"port": 80}, FAIL, "nothing listens on tcp port 80 (listening tcp "
                                             "ports: 22, 8080)"),
    ("port", "port/udp", {"port": 161, "protocol": "udp"}, PASS, "udp port 161 listening"),
    ("port", "port/router-vty", {"port": 2601}, PASS, "127.0.0.1"),
    ("port", "port/nothing", {"port": 22}, FAIL, "listening tcp ports: none"),
    ("port", "port/nothing", {"port": 22, "listening": False}, PASS, "nothing listens"),
    ("port", "port/no-ss", {"port": 22}, ERROR, "`ss` is not available"),
    # service: pgrep -x, zombies excluded
    ("service", "service/running", {"process": "sleep"}, PASS, "process sleep running (pid 2)"),
    ("service", "service/running", {"process": "sleep", "running": False}, FAIL,
     "expected stopped"),
    ("service", "service/zombie", {"process": "sleep"}, FAIL, "no process named sleep"),
    ("service", "service/stopped", {"process": "sshd"}, FAIL, "expected running"),
    ("service", "service/stopped", {"process": "sshd", "running": False}, PASS, "no process"),
    ("service", "service/no-pgrep", {"process": "sleep"}, ERROR, "`pgrep` is not available"),
    # file: one stat (+ sha256sum, + content) script
    ("file", "file/full", {"path": "/srv/exam/app.conf", "mode": "0640",
                           "sha256": hashlib.sha256(APP_CONF).hexdigest(),
                           "contains": "^PermitRootLogin no$"},
     PASS, "regular file, mode 0640, owner root, group shadow"),
    ("file", "file/full", {"path": "/srv/exam/app.conf", "mode": "0640", "sha256": "0" * 64,
                           "contains": "^PasswordAuthentication yes"},
     FAIL, "sha256 d65ec1c8aa7f5404…, expected 0000000000000000…; content does not match /^PasswordAuthentication "
           "yes/; content: PermitRootLogin no ⏎ PasswordAuthentication no"),
    ("file", "file/plain", {"path": "/srv/exam/app.conf", "owner": "root", "group": "shadow"},
     PASS, "owner root"),
    ("file", "file/plain", {"path": "/srv/exam/app.conf", "mode": "640"}, PASS, "mode 0640"),
    ("file", "file/plain", {"path": "/srv/exam/app.conf", "mode": "0600", "group": "root"}, FAIL,
     "mode 0640, expected 0600; group shadow, expected root"),
    ("file", "file/plain", {"path": "/srv/exam/app.conf", "exists": False}, FAIL,
     "exists, expected it not to"),
    ("file", "file/absent", {"path": "/srv/exam/missing.conf"}, FAIL, "does not exist"),
    ("file", "file/absent", {"path": "/srv/exam/missing.conf", "exists": False}, PASS,
     "does not exist"),
    ("file", "file/directory", {"path": "/srv/exam/conf.d", "sha256": "0" * 64}, FAIL,
     "sha256 asked but it is a directory"),
    ("file", "file/no-stat", {"path": "/srv/exam/app.conf"}, ERROR, "stat: not found"),
    # package: dpkg-query -W
    ("package", "package/installed", {"package": "frr", "min_version": "8.4"}, PASS,
     "package frr 8.4.4-1.1~deb12u2 installed"),
    ("package", "package/installed", {"package": "frr", "version": "8.4.4-1.1~deb12u2"}, PASS,
     "installed"),
    ("package", "package/installed", {"package": "frr", "version": "8.4.4-1.1"}, FAIL,
     "expected version 8.4.4-1.1"),
    ("package", "package/installed", {"package": "frr", "min_version": "8.4.4-1.1"}, FAIL,
     "expected at least 8.4.4-1.1"),
    ("package", "package/installed", {"package": "frr", "installed": False}, FAIL,
     "expected not installed"),
    ("package", "package/installed-bash", {"package": "bash", "min_version": "5.2"}, PASS, "bash"),
    ("package", "package/unknown", {"package": "nginx"}, FAIL, "not known to dpkg"),
    ("package", "package/unknown", {"package": "nginx", "installed": False}, PASS, "not known"),
    ("package", "package/config-files", {"package": "frr"}, FAIL,
     "not installed (dpkg status rc 8.4.4-1.1~deb12u2), expected installed"),
    ("package", "package/config-files", {"package": "frr", "installed": False}, PASS,
     "not installed"),
    ("package", "package/no-dpkg", {"package": "frr"}, ERROR, "`dpkg-query` is not available"),
    # user: getent passwd + id -nG
    ("user", "user/alice", {"user": "alice", "groups": ["sudo", "techs"], "shell": "/bin/bash"},
     PASS, "user alice (uid 1001, shell /bin/bash, groups alice, sudo, techs)"),
    ("user", "user/alice", {"user": "alice", "groups": ["sudo", "adm"], "shell": "/bin/sh"}, FAIL,
     "not in group adm; shell is not /bin/sh"),
    ("user", "user/alice", {"user": "alice", "exists": False}, FAIL, "exists, expected not to"),
    ("user", "user/service-account", {"user": "svc-backup", "shell": "/usr/sbin/nologin"}, PASS,
     "shell /usr/sbin/nologin"),
    ("user", "user/absent", {"user": "bob"}, FAIL, "no user bob, expected to exist"),
    ("user", "user/absent", {"user": "bob", "exists": False}, PASS, "no user bob"),
    ("user", "user/no-getent", {"user": "alice"}, ERROR, "not available"),
    # command: what a spec author writes
    ("command", "command/ip-json", {"command": "ip -j addr show dev v1",
                                    "json_path": "0.addr_info.0.local", "equals": "10.255.0.1"},
     PASS, '0.addr_info.0.local = "10.255.0.1"'),
    ("command", "command/ip-json", {"command": "ip -j addr show dev v1",
                                    "json_path": "0.addr_info.0.local", "equals": "10.255.0.9"},
     FAIL, '0.addr_info.0.local is "10.255.0.1", expected "10.255.0.9"'),
    ("command", "command/ip-json", {"command": "ip -j addr show dev v1", "json_path": "0.mtu",
                                    "equals": 1500}, PASS, "0.mtu = 1500"),
    ("command", "command/ip-json", {"command": "ip -j addr show dev v1", "json_path": "0.master"},
     FAIL, "no value at 0.master"),
    ("command", "command/ip-text", {"command": "ip addr show dev v1",
                                    "stdout_matches": r"inet 10\.255\.0\.1/30"}, PASS, "matches"),
    ("command", "command/ip-text", {"command": "ip addr show dev v1",
                                    "stdout_matches": r"inet 10\.9\."}, FAIL, "does not match"),
    ("command", "command/ip-text", {"command": "ip addr show dev v1", "json_path": "0"}, ERROR,
     "is not valid JSON"),
    ("command", "command/sysctl", {"command": "sysctl -n net.ipv4.ip_forward",
                                   "stdout_matches": "^1$"}, FAIL, "output: 0; it does not match /^1$/"),
    ("command", "command/sysctl", {"command": "sysctl -n net.ipv4.ip_forward",
                                   "stdout_matches": "^0$"}, PASS, "exit code 0"),
    ("command", "command/sysctl", {"command": "sysctl -n net.ipv4.ip_forward",
                                   "json_path": "0"}, FAIL, "no value at 0"),
    ("command", "command/grep-missing-file",
     {"command": "grep -q '^PermitRootLogin no' /etc/ssh/sshd_config"}, FAIL,
     "exit code 2, expected 0; output: grep: /etc/ssh/sshd_config: No such file or directory"),
    ("command", "command/grep-missing-file",
     {"command": "grep -q '^PermitRootLogin no' /etc/ssh/sshd_config", "exit_code": 2}, PASS,
     "exit code 2"),
    ("command", "command/not-found", {"command": "nginx -t"}, ERROR, "`nginx` is not available"),
    # dns: labctl's resolver (dnsquery.py) run by ws's python3, srv's dnsmasq serving agence.lan
    ("dns", "dns/resolves", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"], "reverse": True}, PASS,
     "srv.agence.lan A -> 10.30.0.2 (from 10.30.0.2); 2.0.30.10.in-addr.arpa PTR -> srv.agence.lan (from "
     "10.30.0.2) [/etc/resolv.conf: nameserver 10.30.0.2, search agence.lan]"),
    ("dns", "dns/resolves", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"], "reverse": True,
                             "server": "10.30.0.2"}, PASS,
     "from 10.30.0.2"),
    ("dns", "dns/resolves", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"], "reverse": True,
                             "server": "10.30.0.9"}, FAIL,
     "answered by 10.30.0.2, expected by 10.30.0.9"),
    ("dns", "dns/search", {"name": "srv", "addresses": ["10.30.0.2"]}, PASS, "srv.agence.lan A -> 10.30.0.2"),
    ("dns", "dns/search", {"name": "srv", "addresses": ["10.30.0.20"]}, FAIL,
     "srv.agence.lan A -> 10.30.0.2 (from 10.30.0.2); expected 10.30.0.20"),
    ("dns", "dns/nxdomain", {"name": "nope.agence.lan"}, PASS,
     "nope.agence.lan A -> no such name (NXDOMAIN) (from 10.30.0.2)"),
    ("dns", "dns/no-server", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"]}, FAIL,
     "srv.agence.lan A: no nameserver answered (10.30.0.1: "),
    ("dns", "dns/no-resolver", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"]}, FAIL,
     "[no nameserver in /etc/resolv.conf, so 127.0.0.1]"),
    ("dns", "dns/no-python", {"name": "srv.agence.lan", "addresses": ["10.30.0.2"]}, ERROR,
     "`python3` is not available"),
    # dhcp: ws before and after its DHCP client (dhclient) got a lease from srv's dnsmasq
    ("dhcp", "dhcp/leased", LEASE, PASS, "eth1: 10.30.0.140/24 (dynamic, 3600 s of lease left); DHCP client: "
     "dhclient (pid 54); default via 10.30.0.1 dev eth1; /etc/resolv.conf: nameserver 10.30.0.2"),
    ("dhcp", "dhcp/leased", {**LEASE, "range": ["10.30.0.10", "10.30.0.20"], "gateway": "10.30.0.254",
                             "dns": ["10.30.0.2", "10.30.0.3"]}, FAIL,
     "the lease's address is outside the pool 10.30.0.10-10.30.0.20; expected the default route via "
     "10.30.0.254; expected nameserver 10.30.0.2, 10.30.0.3"),
    ("dhcp", "dhcp/static", LEASE, FAIL, "eth1: 10.30.0.99/24 (static, valid forever); no default route; "
     "/etc/resolv.conf: no nameserver; no address from DHCP"),
    ("dhcp", "dhcp/static", {"interface": "eth1"}, FAIL, "no address from DHCP"),
    ("dhcp", "dhcp/no-interface", {**LEASE, "interface": "eth9"}, FAIL, "eth9: no such interface on r1"),
    ("dhcp", "dhcp/no-ip", LEASE, ERROR, "`ip` is not available"),
    # flows: the zones lab's matrix observed from outside, router forwarding all, then with its policy
    ("flows", "flows/policy", MATRIX, PASS, "5/5 allowed flows pass, 19/19 forbidden flows blocked"),
    ("flows", "flows/flat", MATRIX, FAIL,
     "5/5 allowed flows pass, 19 of 19 forbidden flows open: lan->dmz tcp/22: open"),
    ("flows", "flows/policy", {**MATRIX, "allow": [*MATRIX["allow"], "out -> lan tcp/22"]}, FAIL,
     "5/6 allowed flows pass, 18/18 forbidden flows blocked: out->lan tcp/22: blocked on the way"),
    ("flows", "flows/inside", MATRIX, ERROR, "observed from outside the nodes (local provider) only"),
    # active SSH checks, from the probe point on securite-reseau's outside switch: fw as handed over
    # (passwords, root's log-in, no fail2ban), then solved (keys, admin's TOTP, fail2ban)
    ("ssh_login", "ssh/root-password-start", ROOT_PASSWORD, FAIL, "root with password from 10.70.4."),
    ("ssh_login", "ssh/root-password-start", ROOT_PASSWORD, FAIL, "accepted (password: accepted), expected refused"),
    ("ssh_login", "ssh/root-password-solved", ROOT_PASSWORD, PASS,
     "refused (password not offered (the server allows: publickey))"),
    ("ssh_login", "ssh/key-alone-start", KEY_ALONE, FAIL,
     "refused (refused: Authentication failed.), expected partial"),
    ("ssh_login", "ssh/key-alone-solved", KEY_ALONE, PASS, "the server still asks for keyboard-interactive"),
    ("ssh_login", "ssh/old-code-start", OLD_CODE, FAIL, "the key itself was refused"),
    ("ssh_login", "ssh/old-code-solved", OLD_CODE, PASS, "key accepted as a first factor"),
    ("ssh_login", "ssh/key-code-start", KEY_CODE, FAIL, "the key itself was refused"),
    ("ssh_login", "ssh/key-code-solved", KEY_CODE, PASS, "accepted"),
    ("ssh_login", "ssh/inside", ROOT_PASSWORD, ERROR, "act from the probe point of the grader (local provider) only"),
    ("ssh_ban", "ssh/burst-start", BURST, FAIL, "8 wrong passwords for root from 10.70.4."),
    ("ssh_ban", "ssh/burst-start", BURST, FAIL, "still answered 20 s later (no ban)"),
    ("ssh_ban", "ssh/burst-solved", BURST, PASS, "(SYN arrived, no answer); ban lifted by the undo command"),
    ("ssh_ban", "ssh/inside", BURST, ERROR, "act from the probe point of the grader (local provider) only"),
]


@pytest.mark.parametrize(("kind", "output", "keys", "outcome", "evidence"), CASES,
                         ids=[f"{c[1]}-{c[3].value}-{i}" for i, c in enumerate(CASES)])
def test_check_on_recorded_output(kind: str, output: str, keys: dict[str, Any],
                                  outcome: Outcome, evidence: str) -> None:
    check = make(kind, **keys)
    command, result = saved(output)
    assert probe(check).command == command, "the recording is of another probe: re-record"
    verdict = evaluate(check, result)
    assert (verdict.outcome, evidence in verdict.evidence) == (outcome, True), verdict.evidence


def test_every_type_has_pass_fail_and_error_cases() -> None:
    seen = {(kind, outcome) for kind, _, _, outcome, _ in CASES}
    for kind in CHECK_MODELS:
        assert {(kind, PASS), (kind, FAIL), (kind, ERROR)} <= seen, kind


def test_every_recorded_output_is_used() -> None:
    used = {output for _, output, _, _, _ in CASES}
    recorded = {str(p.relative_to(OUTPUTS).with_suffix("")) for p in OUTPUTS.glob("*/*.json")}
    assert recorded == used


def test_manifest_without_recorded_checksums_is_error_not_fail() -> None:
    check = make("manifest", manifest="originals.sha256")
    assert probe(check).command == "true"
    verdict = evaluate(check, CommandResult(0, "", ""))
    assert verdict.outcome is ERROR and "no checksums recorded" in verdict.evidence


def test_registry_covers_every_spec_type() -> None:
    assert set(CHECK_TYPES) == set(CHECK_MODELS)


READ_ONLY_TOOLS = {"LC_ALL=C", "ip", "ss", "pgrep", "getent", "export"}


# http writes its request to the connection it opens: its own test below; dns sends queries:
# tests/unit/test_dns_dhcp_checks.py; flows never runs in a node (its probe refuses): tests/unit/test_flows.py;
# nor do the active SSH checks (tests/unit/test_active_checks.py)
@pytest.mark.parametrize("kind", sorted(set(CHECK_MODELS) - {"command", "ospf_neighbor", "manifest", "http", "dns",
                                                              "flows", "ssh_login", "ssh_ban"}))
def test_probes_only_read(kind: str) -> None:
    keys = {"reach": {"target": "10.0.0.1"}, "route": {"destination": "default"},
            "port": {"port": 22}, "service": {"process": "sshd"},
            "file": {"path": "/etc/x", "sha256": "a" * 64, "contains": "y"},
            "package": {"package": "frr"}, "user": {"user": "alice"}, "dhcp": {"interface": "eth1"}}[kind]
    command = probe(make(kind, **keys)).command
    assert command.split()[0] in READ_ONLY_TOOLS
    for word in (">", "rm ", "kill", "systemctl", "tee", "chmod", "chown", "set "):
        assert word not in command.replace("2>", "").replace("|| exit", ""), (word, command)


def test_http_probe_only_reads_and_writes_only_to_its_connection() -> None:
    command = probe(make("http", url="http://10.1.0.20/")).command
    assert command.startswith("LC_ALL=C timeout 4 bash -c ")
    assert command.endswith(" http 10.1.0.20 80 / 10.1.0.20")
    script = shlex.split(command)[5]
    assert script.replace("3<>", "").replace(">&3", "").count(">") == 0, script
    for word in ("rm ", "kill", "tee", "chmod", "chown", "curl", "wget", "python"):
        assert word not in command, word


@pytest.mark.parametrize(("url", "arguments"), [
    ("http://10.1.0.20", ["10.1.0.20", "80", "/", "10.1.0.20"]),
    ("http://intranet:8080/status?full=1", ["intranet", "8080", "/status?full=1", "intranet:8080"]),
    ("http://srv1/it's/$(reboot)/`id`;x", ["srv1", "80", "/it's/$(reboot)/`id`;x", "srv1"]),
])
def test_http_probe_passes_url_parts_as_quoted_arguments(url: str, arguments: list[str]) -> None:
    command = probe(make("http", url=url)).command
    words = shlex.split(command)
    assert words[:4] == ["LC_ALL=C", "timeout", "4", "bash"]
    assert words[6:] == ["http", *arguments]
    assert command.endswith(" ".join(shlex.quote(a) for a in arguments))


@pytest.mark.parametrize(("timeout", "fetch"), [(None, "4"), (10, "9"), (3, "2"), (1, "0.5")])
def test_http_fetch_ends_before_the_probe_runs_over(timeout: float | None, fetch: str) -> None:
    keys = {"timeout": timeout} if timeout is not None else {}
    assert shlex.split(probe(make("http", url="http://h/", **keys)).command)[2] == fetch


@pytest.mark.parametrize(("result", "outcome", "evidence"), [
    (CommandResult(141, "", ""), FAIL, "closed the connection before reading the request"),
    (CommandResult(124, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n", ""), FAIL,
     "timed out after 4 s (partial answer: HTTP/1.0 200 OK Content-Type: text/html)"),
    (CommandResult(1, "HTTP/1.0 200 OK\r\n", "head: error reading 'standard input': "
                   "Connection reset by peer\n"), FAIL, "connection reset by peer (after: HTTP/1.0"),
    # a bash built without /dev/tcp opens a file of that name: nothing was observed
    (CommandResult(1, "", "http: line 1: /dev/tcp/10.1.0.20/80: No such file or directory\n"),
     ERROR, "`bash` failed with exit code 1: http: line 1: /dev/tcp/10.1.0.20/80: No such file"),
    (CommandResult(2, "", "bash: -c: line 1: syntax error near unexpected token\n"), ERROR,
     "`bash` failed with exit code 2"),
    (CommandResult(126, "", "timeout: failed to run command 'bash': Permission denied\n"), ERROR,
     "`bash` is not available on the node (exit 126)"),
])
def test_http_outputs_that_were_not_recorded(result: CommandResult, outcome: Outcome,
                                             evidence: str) -> None:
    verdict = evaluate(make("http", url="http://10.1.0.20/"), result)
    assert (verdict.outcome, evidence in verdict.evidence) == (outcome, True), verdict.evidence


def test_http_page_matches_per_line_like_command_output() -> None:
    page = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstatus: degraded\r\nversion: 2.4.1\r\n"
    check = make("http", url="http://10.1.0.20/", body_matches=r"^version: 2\.4\.1$")
    verdict = evaluate(check, CommandResult(0, page, ""))
    assert verdict.outcome is PASS and verdict.evidence.endswith(": version: 2.4.1"), verdict.evidence
    same = make("command", command="cat page", stdout_matches=r"^version: 2\.4\.1$")
    assert evaluate(same, CommandResult(0, "status: degraded\nversion: 2.4.1\n", "")).outcome is PASS


def test_ospf_probe_is_a_cli_show_command() -> None:
    command = probe(make("ospf_neighbor", neighbor="10.255.255.2"))
    assert command.cli and command.command.startswith("show ")


@pytest.mark.parametrize(("kind", "keys", "value"), [
    ("user", {"user": "a'b; rm -rf /"}, "a'b; rm -rf /"),
    ("file", {"path": "/srv/my file's $(x)"}, "/srv/my file's $(x)"),
    ("service", {"process": "x;y"}, "x;y"),
    ("package", {"package": "libc6:amd64"}, "libc6:amd64"),
    ("http", {"url": "http://srv1/it's$(x)"}, "/it's$(x)"),
])
def test_user_values_are_shell_quoted(kind: str, keys: dict[str, Any], value: str) -> None:
    command = probe(make(kind, **keys)).command
    assert shlex.quote(value) in command


@pytest.mark.parametrize(("path", "found", "value"), [
    ("a.b", True, [1, {"c": 2}]), ("a.b.1.c", True, 2), ("a.b.2", False, None),
    ("a.x", False, None), ("a.b.c", False, None), ("n", True, None),
])
def test_json_lookup(path: str, found: bool, value: Any) -> None:
    assert json_lookup({"a": {"b": [1, {"c": 2}]}, "n": None}, path) == (found, value)


ZEBRA = {"10.0.0.1/32": [{"protocol": "ospf", "metric": 20, "0": "key"}], "routes": {"a.b": 1}}


@pytest.mark.parametrize(("path", "found", "value"), [
    ('"10.0.0.1/32"[0].metric', True, 20), ('"10.0.0.1/32".0.metric', True, 20),
    ('routes."a.b"', True, 1), ("routes.a.b", False, None),  # unquoted, the dot splits the key
    ('"10.0.0.1/32"[0]."0"', True, "key"), ('"10.0.0.1/32"[0][0]', False, None),  # [N] is never a key
    ('"10.0.0.1/32"."0"', False, None),  # a quoted key is never a list index
])
def test_json_lookup_quoted_keys(path: str, found: bool, value: Any) -> None:
    assert json_lookup(ZEBRA, path) == (found, value)


@pytest.mark.parametrize(("path", "why"), [
    ("a..b", "a key is missing at character 3"), ('routes."10.0.0.1/32', "unclosed quote at character 8"),
    ("a[x]", "must hold a list index"), ("a b", "unexpected ' ' at character 2"),
])
def test_json_path_errors_say_where(path: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        make("command", command="true", json_path=path)


def test_json_equal_tells_booleans_from_numbers() -> None:
    assert json_equal(1, 1.0) and json_equal({"a": [1]}, {"a": [1.0]})
    assert not json_equal(True, 1) and not json_equal([True], [1]) and not json_equal({}, [])


def test_ipv6_route_checks() -> None:
    from pydantic import ValidationError

    check = make("route", destination="2001:db8:1::/64", via="2001:db8:255::1")
    assert probe(check).command == "ip -j -6 route show 2001:db8:1::/64"
    assert probe(make("route", destination="default6")).command == "ip -j -6 route show default"
    listing = json.dumps([{"dst": "2001:db8:1::/64", "gateway": "2001:db8:255::1", "dev": "eth1", "protocol": "boot"},
                          {"dst": "2001:db8:ff::1", "dev": "lo", "protocol": "kernel"}])
    verdict = evaluate(check, CommandResult(0, listing, ""))
    assert verdict.outcome is PASS and "2001:db8:1::/64 via 2001:db8:255::1 dev eth1" in verdict.evidence
    host = make("route", destination="2001:db8:ff::1/128")
    assert evaluate(host, CommandResult(0, listing, "")).outcome is PASS  # a /128 listed without its length
    for keys, why in [({"destination": "2001:db8:1::/64", "via": "10.0.0.1"}, "not of the destination's address"),
                      ({"destination": "default6", "protocol": "ospf"}, "OSPF routes are graded for IPv4"),
                      ({"destination": "2001:db8:1::1/64"}, "has host bits set; the network is 2001:db8:1::/64")]:
        with pytest.raises(ValidationError, match=why):
            make("route", **keys)
