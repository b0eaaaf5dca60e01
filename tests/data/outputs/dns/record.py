"""Record the dns probe's outputs that tests/unit/test_dns_check.py evaluates.

Run as root from the repository: it builds the dns-dhcp test scenario's lab (dnsmasq on srv),
configures srv's dnsmasq as tests/integration/test_dns_dhcp.py does, then runs the very probe
labctl builds (`labctl.grading.checks.probe`) on ws with `labctl exec`, under several
resolv.conf files, and writes <case>.json = {"recorded", "channel", "command", "exit_code",
"stdout", "stderr"}. The lab is removed at the end.

    .venv/bin/python tests/data/outputs/dns/record.py
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
ROOT = OUT.parents[3]
LAB = "lcrec-dns"
LABCTL = [sys.executable, "-m", "labctl"]
sys.path.insert(0, str(ROOT))
from tests.integration.test_dns_dhcp import DNSMASQ_SETUP, DNSMASQ_START  # noqa: E402


def exec_on(node: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, "exec", "--lab", LAB, node, "--", "sh", "-c", command],
                          capture_output=True, text=True, timeout=60)


def record(case: str, resolv_conf: str, path: str | None = None, **keys: Any) -> None:
    check = CHECK_MODELS["dns"].model_validate({"id": "t", "criterion": "A2.1-c1", "node": "ws", "type": "dns",
                                                "description": {"fr": "f", "en": "e"}, **keys})
    exec_on("ws", f"printf '{resolv_conf}' > /etc/resolv.conf")
    command = probe(check).command
    done = exec_on("ws", f"PATH={path}; {command}" if path else command)
    (OUT / f"{case}.json").write_text(json.dumps({
        "recorded": f"ws of the dns-dhcp test lab, dnsmasq 2.90 on srv; resolv.conf: {resolv_conf!r}",
        "channel": "shell", "command": command,
        "exit_code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, indent=2) + "\n")


def main() -> None:
    subprocess.run([*LABCTL, "up", str(ROOT / "tests/data/scenarios/dns-dhcp"), "--name", LAB, "--replace"],
                   check=True)
    try:
        assert exec_on("srv", DNSMASQ_SETUP + DNSMASQ_START).returncode == 0
        lan = "nameserver 10.30.0.2\\nsearch agence.lan\\n"
        record("resolves", lan, name="srv.agence.lan", addresses=["10.30.0.2"], reverse=True)
        record("search", lan, name="srv", addresses=["10.30.0.2"])
        record("nxdomain", lan, name="nope.agence.lan")
        record("no-server", "nameserver 10.30.0.1\\n", name="srv.agence.lan", addresses=["10.30.0.2"])
        record("no-python", lan, name="srv.agence.lan", addresses=["10.30.0.2"], path="/nonexistent")
        record("no-resolver", "options timeout:1 attempts:1\\n", name="srv.agence.lan", addresses=["10.30.0.2"])
    finally:
        subprocess.run([*LABCTL, "down", "--lab", LAB], check=False)


if __name__ == "__main__":
    main()
