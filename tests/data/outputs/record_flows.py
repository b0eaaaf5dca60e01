"""Record the flows check's observations that tests/unit/test_grading_checks.py evaluates.

Run as root from the repository: it builds tests/data/labs/zones.yml (a firewall router between
a LAN, a DMZ and an outside network), then observes the flow matrix of
tests/integration/test_flows.py from outside the nodes (labctl's own probes, flowprobe.py):
with the router forwarding everything (`flat`), and with the matrix's nftables policy on it
(`policy`). A flows check has no probe a node could run: its observation is stored as the
probe's stdout (the JSON the outside observation hands to the evaluation), under the probe's
command; `inside` is that command run in the node fw (it refuses, exit 3). The lab is removed at the end.

    .venv/bin/python tests/data/outputs/record_flows.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from labctl import lab as labs
from labctl.grading.checks import probe
from labctl.grading.checks.flows import flows_output
from labctl.grading.flowprobe import Planned, probe_flows, zone_address
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.spec import CHECK_MODELS, FlowsCheck

OUT = Path(__file__).parent / "flows"
ROOT = OUT.parents[3]
sys.path.insert(0, str(ROOT))
from tests.integration.test_flows import POLICY, SPEC, ZONES  # noqa: E402


def main() -> None:
    raw = yaml.safe_load(SPEC)["checks"][0]
    check = CHECK_MODELS["flows"].model_validate(raw)
    assert isinstance(check, FlowsCheck)
    lab = labs.up(str(ZONES), name="lcrec-flows", replace=True)
    OUT.mkdir(exist_ok=True)
    try:
        view = LabView(lab)
        plan = {node.name: node for node in lab.plan.nodes}
        ends = {}
        for zone, value in check.zones.items():
            node, _, given = value.partition("@")
            ends[zone] = (view.view(node), zone_address(plan[node], given))
        session = OutsideSession(view, "fw", lambda: None)  # type: ignore[arg-type,return-value]

        def observe(case: str, how: str) -> None:
            probes = [Planned(s, d, svc, *ends[s], *ends[d]) for s, d, svc, _ in check.matrix()]
            stdout = flows_output(probe_flows(probes, check.window))
            write(case, how, 0, stdout, "")

        def write(case: str, how: str, code: int, stdout: str, stderr: str) -> None:
            record = {"recorded": how, "channel": "outside", "command": probe(check).command,
                      "exit_code": code, "stdout": stdout, "stderr": stderr}
            (OUT / f"{case}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

        observe("flat", "zones lab, fw forwarding everything (no ruleset)")
        session.run(f"cat > /etc/nftables.conf <<'EOF'\n{POLICY}EOF\nnft -f /etc/nftables.conf", 30)
        observe("policy", "zones lab, fw with the matrix's nftables policy (test_flows.POLICY)")
        inside = session.run(probe(check).command, 30)
        write("inside", "the probe run in fw (a node cannot observe a flow matrix)", inside.exit_code,
              inside.stdout, inside.stderr)
        view.close()
    finally:
        labs.down(lab)


if __name__ == "__main__":
    main()
