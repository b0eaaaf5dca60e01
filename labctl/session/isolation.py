"""Seal a candidate's lab off from the controller's management plane.

Each lab's fabric namespace carries the controller's management address (the end labctl
connects from). Nodes cannot reach each other over the management bridge (isolated ports),
but they can reach that address. For an exam, a firewall in the fabric namespace accepts
only replies to connections labctl opened: a candidate's node can start nothing towards
the controller. The namespace is rebuilt by reset, so the rule is put back after it.
"""

from __future__ import annotations

import shutil
import subprocess

from labctl.errors import PlatformError
from labctl.state import LabState

TABLE = "labctl_session"
RULES = f"""table inet {TABLE} {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }}
}}
"""


def seal(lab: LabState) -> None:
    """Drop anything a node starts towards the controller's address in `lab`'s fabric (idempotent)."""
    if shutil.which("nft") is None:
        raise PlatformError("sealing exam labs needs nftables", "apt-get install nftables")
    fabric = lab.plan.fabric_netns
    subprocess.run(["ip", "netns", "exec", fabric, "nft", "delete", "table", "inet", TABLE], capture_output=True)
    done = subprocess.run(["ip", "netns", "exec", fabric, "nft", "-f", "-"], input=RULES, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise PlatformError(f"sealing lab {lab.name}: nft failed: {done.stderr.strip()}")


def sealed(lab: LabState) -> bool:
    """True when the seal is in place."""
    done = subprocess.run(["ip", "netns", "exec", lab.plan.fabric_netns, "nft", "list", "table", "inet", TABLE],
                          capture_output=True)
    return done.returncode == 0
