"""Firewalls that let nodes start nothing towards the controller's management addresses.

Local provider: each lab's fabric namespace carries the controller's management address (the
end labctl connects from). Nodes cannot reach each other over the management bridge
(isolated ports), but without a firewall they could reach that address: a candidate, root in
a node, could probe or flood whatever listens in the fabric namespace. The firewall there
accepts only replies to connections labctl opened; the local provider puts it in place
whenever it makes the fabric (create and reset), for every lab.

libvirt provider: the hypervisor itself has an address on each lab's management network (the
bridge `lc<id>m`), and whatever listens on all its addresses (its sshd, a proctor dashboard
bound to 0.0.0.0, a database) would answer a node there. The firewall, in the hypervisor's
own namespace and only for that bridge, accepts replies to connections labctl opened and
drops anything a node starts towards the hypervisor (nodes take their management address
from their seed disk, not DHCP).

Each firewall is one nftables table of its own, loaded atomically in one `nft -f` call.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from labctl.errors import PlatformError

TABLE = "labctl_fabric"
RULES = """\
    chain input {
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }
"""
HINT = "labctl doctor checks nftables (apt-get install nftables)"


def netns_prefix(name: str) -> tuple[str, ...]:
    """The command prefix that runs a program in network namespace `name`."""
    return ("ip", "netns", "exec", name)


def load(table: str, chains: str, where: Sequence[str] = (), family: str = "inet") -> None:
    """Replace (or create) the table `table` of `family` with `chains`, atomically; `where` is a
    command prefix that runs nft where the table belongs (a namespace, a remote hypervisor)."""
    script = f"table {family} {table}\ndelete table {family} {table}\ntable {family} {table} {{\n{chains}}}\n"
    done = subprocess.run([*where, "nft", "-f", "-"], input=script, capture_output=True, text=True)
    if done.returncode != 0:
        place = f" ({' '.join(where)})" if where else ""
        raise PlatformError(f"firewall table {table}{place}: nft failed: {done.stderr.strip()}", HINT)


def unload(table: str, where: Sequence[str] = (), family: str = "inet") -> None:
    """Remove the table `table` of `family` if it exists (idempotent)."""
    subprocess.run([*where, "nft", "-f", "-"], input=f"table {family} {table}\ndelete table {family} {table}\n",
                   capture_output=True, text=True)


def present(table: str, where: Sequence[str] = ()) -> bool:
    """True when the inet table `table` is loaded."""
    return subprocess.run([*where, "nft", "list", "table", "inet", table], capture_output=True).returncode == 0


def seal(fabric_netns: str) -> None:
    """Drop anything a node starts towards the controller in `fabric_netns` (idempotent)."""
    load(TABLE, RULES, netns_prefix(fabric_netns))


def sealed(fabric_netns: str) -> bool:
    """True when the fabric's firewall is in place."""
    return present(TABLE, netns_prefix(fabric_netns))


def bridge_table(lab_id: str) -> str:
    """The name of the table guarding the hypervisor's address on lab `lab_id`'s management bridge."""
    return f"labctl_mgmt_{lab_id}"


def bridge_chains(bridge: str) -> str:
    """Input rules for the hypervisor: from `bridge`, replies only."""
    return (
        "    chain input {\n"
        "        type filter hook input priority 0; policy accept;\n"
        f'        iifname "{bridge}" ct state established,related accept\n'
        f'        iifname "{bridge}" drop\n'
        "    }\n"
    )
