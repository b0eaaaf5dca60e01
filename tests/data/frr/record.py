"""Record what the routers of a running multi-site-routing lab's FRR daemons and kernels say,
for tests/unit/test_routing.py.

Run as root with a lab up (`labctl up multi-site-routing --name NAME`), once per state:

    .venv/bin/python tests/data/frr/record.py NAME broken     # as set up
    # r1: ip route add 10.2.0.0/24 via 10.255.0.2 proto ospf; ip route add 10.3.0.0/24 via 10.255.0.6 proto 188
    .venv/bin/python tests/data/frr/record.py NAME handroute
    # delete those two routes, labctl play playbooks/multi-site-routing/solution.yml, wait 4 s
    .venv/bin/python tests/data/frr/record.py NAME solved

and on a two-routers lab (`labctl up tests/data/labs/two-routers.yml --name NAME`) set up as
tests/integration/test_frr_vty.py::test_ospf_route_types_and_metrics leaves it (r2's LAN in
area 1, a static route redistributed):

    .venv/bin/python tests/data/frr/record.py NAME areas

and on a features lab (tests/data/labs/features.yml) running OSPFv3 on the WAN link, as
tests/integration/test_frr_vty.py::test_ospfv3_neighbor sets it up:

    .venv/bin/python tests/data/frr/record.py NAME ospf6

Each <state>-<router>.json holds ospfd's and zebra's JSON answers (asked over their vty
sockets by labctl.grading.frr_vty, the daemons proven to be the image's) and the kernel's
routes (`ip -j route show` of the controller in the router's network namespace).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from labctl.grading import frr_vty
from labctl.state import find_lab

COMMANDS = {"ospfd": ["show ip ospf neighbor json", "show ip ospf route json"], "zebra": ["show ip route json"]}
OSPF6 = {"ospf6d": ["show ipv6 ospf6 neighbor json"]}  # state "ospf6": a features lab running OSPFv3


def main(lab_name: str, state: str) -> None:
    lab = find_lab(lab_name)
    routers = [node.name for node in lab.plan.nodes if node.kind.value == "router"]
    for node in routers:
        pid = lab.nodes[node].init.pid  # type: ignore[union-attr]
        record: dict[str, object] = {"recorded": f"{state} {lab.name} lab, FRR 8.4", "node": node}
        for daemon, commands in (OSPF6 if state == "ospf6" else COMMANDS).items():
            session = frr_vty.open_daemon(pid, daemon, Path(lab.image), 5)
            for command in commands:
                record[command] = json.loads(session.ask(command, 5).text or "{}")
            session.close()
        listing = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "route", "show"],
                                 capture_output=True, text=True, check=True).stdout
        record["kernel"] = json.loads(listing)
        (Path(__file__).parent / f"{state}-{node}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
