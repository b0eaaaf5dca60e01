"""The fabric's firewall: nodes can start nothing towards the controller's management address.

Each lab's fabric namespace carries the controller's management address (the end labctl
connects from). Nodes cannot reach each other over the management bridge (isolated ports),
but without a firewall they could reach that address: a candidate, root in a node, could
probe or flood whatever listens in the fabric namespace. The firewall there accepts only
replies to connections labctl opened. The local provider puts it in place whenever it
makes the fabric (create and reset), for every lab.
"""

from __future__ import annotations

import subprocess

from labctl.errors import PlatformError

TABLE = "labctl_fabric"
RULES = f"""table inet {TABLE} {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }}
}}
"""


def seal(fabric_netns: str) -> None:
    """Drop anything a node starts towards the controller in `fabric_netns` (idempotent)."""
    subprocess.run(["ip", "netns", "exec", fabric_netns, "nft", "delete", "table", "inet", TABLE],
                   capture_output=True)
    done = subprocess.run(["ip", "netns", "exec", fabric_netns, "nft", "-f", "-"], input=RULES,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise PlatformError(f"sealing the lab fabric {fabric_netns}: nft failed: {done.stderr.strip()}",
                            "labctl doctor checks nftables (apt-get install nftables)")


def sealed(fabric_netns: str) -> bool:
    """True when the firewall is in place."""
    done = subprocess.run(["ip", "netns", "exec", fabric_netns, "nft", "list", "table", "inet", TABLE],
                          capture_output=True)
    return done.returncode == 0
