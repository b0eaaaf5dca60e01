"""The pure halves of grading from outside: parsing what the kernel and the node's files say,
and judging it (PASS on a right state, FAIL on a wrong one, ERROR when tampered)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

from labctl.grading.inside import clean_command
from labctl.grading.nodeview import NodeProcess, clean_shell_argv, node_id
from labctl.grading.outside import (
    Listener,
    dpkg_packages,
    echo_reply_from,
    judge_package,
    judge_port,
    judge_service,
    judge_user,
    listeners,
    parse_sockets,
)
from labctl.grading.results import Outcome
from labctl.grading.spec import CHECK_MODELS, CheckBase

PASS, FAIL, ERROR = Outcome.PASS, Outcome.FAIL, Outcome.ERROR
HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# recorded on a node: sshd on 0.0.0.0:22, python3 -m http.server on 0.0.0.0:80, one
# established connection from 10.1.0.10:40000 to 10.1.0.20:80
TCP = HEADER + (
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n"
    "   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000 100000    0 2222 1 0 100 0 0 10 0\n"
    "   2: 1400010A:0050 0A00010A:9C40 01 00000000:00000000 00:00000000 00000000 100000    0 3333 1 0 20 4 30 10 -1\n"
)
TCP6 = HEADER + (
    "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n"
)
PASSWD = ("root:x:0:0:root:/root:/bin/bash\nfrr:x:100:101:Frr routing suite:/nonexistent:/usr/sbin/nologin\n"
          "alice:x:1001:1001:Alice:/home/alice:/bin/bash\n")
GROUP = "root:x:0:\nfrr:x:101:\nalice:x:1001:\nsudo:x:27:alice\nfrrvty:x:102:alice,frr\n"
STATUS = """Package: restic
Status: install ok installed
Architecture: amd64
Version: 0.14.0-1+b5

Package: nginx
Status: deinstall ok config-files
Architecture: amd64
Version: 1.22.1-9

Package: frr
Status: install ok installed
Architecture: amd64
Version: 8.4.4-1.1~deb12u1
"""


def make(kind: str, **keys: Any) -> CheckBase:
    base = {"id": "t", "criterion": "A1.3-c2", "description": {"fr": "f", "en": "e"}, "node": "n", "type": kind}
    return CHECK_MODELS[kind].model_validate({**base, **keys})


def test_sockets_parse_from_proc_net() -> None:
    assert parse_sockets(TCP, ("01",)) == [("10.1.0.20", 80, "10.1.0.10", 40000, 3333)]
    found = listeners([TCP, TCP6], "tcp")
    assert found == [Listener("0.0.0.0", 22, 1111), Listener("0.0.0.0", 80, 2222), Listener("::", 22, 4444)]
    assert listeners([TCP], "udp") == []


def test_port_listening_or_not() -> None:
    found = listeners([TCP, TCP6], "tcp")
    assert judge_port(make("port", port=80), found, {}).outcome is PASS
    verdict = judge_port(make("port", port=8080), found, {})
    assert verdict.outcome is FAIL and "listening tcp ports: 22, 80" in verdict.evidence
    assert judge_port(make("port", port=8080, listening=False), found, {}).outcome is PASS
    assert judge_port(make("port", port=80, listening=False), found, {}).outcome is FAIL


def test_port_owned_by_the_expected_program() -> None:
    found = listeners([TCP], "tcp")
    check = make("port", port=80, executable="/usr/bin/python3")
    assert judge_port(check, found, {2222: ["OK pid 7 (/usr/bin/python3.11)"]}).outcome is PASS
    verdict = judge_port(check, found, {2222: ["pid 9 (/usr/bin/nc.openbsd)"]})
    assert verdict.outcome is FAIL and "not by /usr/bin/python3" in verdict.evidence
    assert judge_port(check, found, {}).outcome is FAIL  # held by no process of the node
    tampered = judge_port(check, found, {2222: ["TAMPERED pid 9 (/usr/bin/python3.11): /usr/bin/python3.11 "
                                                "written in the node (not the image's file)"]})
    assert tampered.outcome is ERROR and tampered.evidence.startswith("tampered:")


def test_service_by_real_executable() -> None:
    check = make("service", process="python3", executable="/usr/bin/python3.11")
    genuine = NodeProcess(7, "python3", "/usr/bin/python3.11", 1, 2)
    assert judge_service(check, "/usr/bin/python3.11", [(genuine, "from the image")]).outcome is PASS
    assert judge_service(check, "/usr/bin/python3.11", []).outcome is FAIL
    forged = NodeProcess(8, "python3", "/usr/bin/python3.11", 1, 3)
    verdict = judge_service(check, "/usr/bin/python3.11", [(forged, "written in the node")])
    assert verdict.outcome is ERROR and "tampered" in verdict.evidence
    stopped = make("service", process="python3", running=False)
    assert judge_service(stopped, "python3", []).outcome is PASS
    assert judge_service(stopped, "python3", [(genuine, "from the image")]).outcome is FAIL


def test_user_from_passwd_and_group() -> None:
    verdict = judge_user(make("user", user="alice", groups=["sudo", "frrvty"], shell="/bin/bash"), PASSWD, GROUP)
    assert verdict.outcome is PASS and "groups alice, sudo, frrvty" in verdict.evidence
    assert judge_user(make("user", user="alice", groups=["adm"]), PASSWD, GROUP).outcome is FAIL
    assert judge_user(make("user", user="bob"), PASSWD, GROUP).outcome is FAIL
    assert judge_user(make("user", user="bob", exists=False), PASSWD, GROUP).outcome is PASS
    assert judge_user(make("user", user="frr", shell="/bin/bash"), PASSWD, GROUP).outcome is FAIL


def test_package_from_dpkg_status() -> None:
    assert dpkg_packages(STATUS)["restic:amd64"] == [("ii", "0.14.0-1+b5")]
    assert judge_package(make("package", package="restic", min_version="0.14"), STATUS).outcome is PASS
    assert judge_package(make("package", package="restic", version="0.15.0-1"), STATUS).outcome is FAIL
    verdict = judge_package(make("package", package="nginx"), STATUS)
    assert verdict.outcome is FAIL and "dpkg status rc" in verdict.evidence
    assert judge_package(make("package", package="nginx", installed=False), STATUS).outcome is PASS
    assert judge_package(make("package", package="curl"), STATUS).outcome is FAIL


def test_clean_shell_and_ids() -> None:
    assert clean_shell_argv("echo hi") == ["/bin/bash", "--noprofile", "--norc", "-c", "echo hi"]
    assert node_id(100000) == 0 and node_id(101001) == 1001 and node_id(0) == 65534


def test_inside_commands_ignore_the_callers_path_functions_and_bash_env(tmp_path: Path) -> None:
    """What a candidate's PATH, BASH_ENV and exported functions would change does not reach the
    clean shell an SSH probe starts (labctl.grading.inside, for providers seen only from inside)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ping").write_text("#!/bin/sh\necho fake\n")
    (fake / "ping").chmod(0o755)
    rc = tmp_path / "rc"
    rc.write_text("uname() { echo liar; }\n")
    env = {"PATH": f"{fake}:/usr/bin:/bin", "BASH_ENV": str(rc), "BASH_FUNC_id%%": "() { echo liar; }"}
    shown = subprocess.run(["/bin/bash", "-c", clean_command("command -v ping; uname; id -u; echo $PATH")],
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert shown[0] != str(fake / "ping") and "liar" not in shown
    assert shown[-1] == "/usr/sbin:/usr/bin:/sbin:/bin"


def _icmp_frame(kind: int, source: bytes, payload: bytes) -> bytes:
    ip = bytes([0x45, 0, 0, 84, 0, 0, 0, 0, 64, 1, 0, 0]) + source + bytes([10, 1, 0, 10])
    return b"\x00" * 12 + b"\x08\x00" + ip + bytes([kind, 0, 0, 0, 0, 1, 0, 1]) + payload


def test_an_echo_reply_is_recognised_by_its_source_and_pattern() -> None:
    pattern = bytes(range(16))
    payload = b"T" * 16 + pattern + pattern + pattern[:8]  # ping: timestamp, then the pattern
    h3 = bytes([10, 3, 0, 10])
    assert echo_reply_from(_icmp_frame(0, h3, payload), "10.3.0.10", pattern)
    assert not echo_reply_from(_icmp_frame(8, h3, payload), "10.3.0.10", pattern)  # a request, forwarded
    assert not echo_reply_from(_icmp_frame(0, bytes([10, 2, 0, 1]), payload), "10.3.0.10", pattern)
    assert not echo_reply_from(_icmp_frame(0, h3, b"T" * 56), "10.3.0.10", pattern)  # another ping's
    assert not echo_reply_from(b"\x00" * 20, "10.3.0.10", pattern)


def _icmp6_frame(kind: int, source: str, payload: bytes, next_header: int = 58) -> bytes:
    ip = bytes([0x60, 0, 0, 0, 0, 8 + len(payload), next_header, 64]) + ipaddress.IPv6Address(source).packed \
        + ipaddress.IPv6Address("2001:db8:1::10").packed
    return b"\x00" * 12 + b"\x86\xdd" + ip + bytes([kind, 0, 0, 0, 0, 1, 0, 1]) + payload


def test_an_icmpv6_echo_reply_is_recognised_by_its_source_and_pattern() -> None:
    pattern = bytes(range(16))
    payload = b"T" * 16 + pattern + pattern + pattern[:8]
    h3 = "2001:db8:3::10"
    assert echo_reply_from(_icmp6_frame(129, h3, payload), h3, pattern)
    assert not echo_reply_from(_icmp6_frame(128, h3, payload), h3, pattern)  # a request, forwarded
    assert not echo_reply_from(_icmp6_frame(129, "2001:db8:2::1", payload), h3, pattern)
    assert not echo_reply_from(_icmp6_frame(129, h3, b"T" * 56), h3, pattern)  # another ping's
    assert not echo_reply_from(_icmp6_frame(129, h3, payload, next_header=17), h3, pattern)  # not ICMPv6
    assert not echo_reply_from(_icmp_frame(0, bytes([10, 3, 0, 10]), payload), h3, pattern)  # an IPv4 frame
