"""Record the dns and dhcp probes' outputs that tests/unit/test_grading_checks.py evaluates.

Run as root from the repository: it builds the dns-dhcp test scenario's lab (dnsmasq on srv),
configures srv's dnsmasq as tests/integration/test_dns_dhcp.py does, then runs the very probes
labctl builds (`labctl.grading.checks.probe`) on ws with `labctl exec`: dns under several
resolv.conf files, dhcp before and after ws's DHCP client (dhclient) got a lease. It writes
<type>/<case>.json = {"recorded", "channel", "command", "exit_code", "stdout", "stderr"}.
The lab is removed at the end. (The other types' outputs: record.py, in bare namespaces.)

    .venv/bin/python tests/data/outputs/record_lab.py [dns] [dhcp]    # default: both
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from labctl.grading.checks import probe
from labctl.grading.spec import CHECK_MODELS

OUT = Path(__file__).parent
ROOT = OUT.parents[2]
LAB = "lcrec-dns"
LABCTL = [sys.executable, "-m", "labctl"]
sys.path.insert(0, str(ROOT))
from tests.integration.test_dns_dhcp import DHCLIENT, DNSMASQ_SETUP, DNSMASQ_START, WS_WITHOUT_DNSMASQ  # noqa: E402


def exec_on(node: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, "exec", "--lab", LAB, node, "--", "sh", "-c", command],
                          capture_output=True, text=True, timeout=60)


def record(kind: str, case: str, setup: str, path: str | None = None, **keys: Any) -> None:
    check = CHECK_MODELS[kind].model_validate({"id": "t", "criterion": "A2.1-c1", "node": "ws", "type": kind,
                                               "description": {"fr": "f", "en": "e"}, **keys})
    if setup:
        assert exec_on("ws", setup).returncode == 0, setup
    command = probe(check).command
    done = exec_on("ws", f"PATH={path}; {command}" if path else command)
    (OUT / kind / f"{case}.json").write_text(json.dumps({
        "recorded": f"ws of the dns-dhcp test lab, dnsmasq 2.90 on srv; {setup or 'as it was'}",
        "channel": "shell", "command": command,
        "exit_code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, indent=2) + "\n")


def resolv_conf(text: str) -> str:
    return f"printf '{text}' > /etc/resolv.conf"


def main(kinds: list[str]) -> None:
    subprocess.run([*LABCTL, "up", str(ROOT / "tests/data/scenarios/dns-dhcp"), "--name", LAB, "--replace"],
                   check=True)
    try:
        assert exec_on("srv", DNSMASQ_SETUP + DNSMASQ_START).returncode == 0
        assert exec_on("ws", WS_WITHOUT_DNSMASQ).returncode == 0
        if "dns" in kinds:
            record_dns()
        if "dhcp" in kinds:
            record_dhcp()
    finally:
        subprocess.run([*LABCTL, "down", "--lab", LAB], check=False)


def record_dns() -> None:
    lan = resolv_conf("nameserver 10.30.0.2\\nsearch agence.lan\\n")
    record("dns", "resolves", lan, name="srv.agence.lan", addresses=["10.30.0.2"], reverse=True)
    record("dns", "search", lan, name="srv", addresses=["10.30.0.2"])
    record("dns", "nxdomain", lan, name="nope.agence.lan")
    record("dns", "no-python", lan, name="srv.agence.lan", addresses=["10.30.0.2"], path="/nonexistent")
    record("dns", "no-server", resolv_conf("nameserver 10.30.0.1\\n"), name="srv.agence.lan",
           addresses=["10.30.0.2"])
    record("dns", "no-resolver", resolv_conf("options timeout:1 attempts:1\\n"), name="srv.agence.lan",
           addresses=["10.30.0.2"])


def record_dhcp() -> None:
    lease = {"interface": "eth1", "range": ["10.30.0.100", "10.30.0.150"], "gateway": "10.30.0.1",
             "dns": ["10.30.0.2"]}
    record("dhcp", "static", "", **lease)
    record("dhcp", "no-interface", "", **{**lease, "interface": "eth9"})
    record("dhcp", "no-ip", "", path="/nonexistent", **lease)
    record("dhcp", "leased", DHCLIENT, **lease)


if __name__ == "__main__":
    main(sys.argv[1:] or ["dns", "dhcp"])
