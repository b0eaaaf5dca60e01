"""Record the active SSH checks' observations that tests/unit/test_grading_checks.py evaluates.

Run as root from the repository: it builds scenarios/securite-reseau (default variant), then
acts from the grader's probe point on the outside switch (sshprobe.py) against fw in the
starting state (passwords and root's log-in allowed, no fail2ban), and again once the solution
ran (keys, admin's TOTP, fail2ban). The observation is stored as the probe's stdout (the JSON
the outside observation hands to the evaluation) under the probe's command; `inside` is that
command run in fw (it refuses, exit 3). The lab is removed at the end.

    .venv/bin/python tests/data/outputs/record_ssh.py
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from labctl import lab as labs
from labctl.grading.checks import probe
from labctl.grading.loader import load_grading_spec
from labctl.grading.outside import LabView, OutsideSession
from labctl.grading.probepoint import probe_point
from labctl.grading.sshprobe import ban, login
from labctl.grading.vault import attach_vault

OUT = Path(__file__).parent / "ssh"
ROOT = OUT.parents[3]
SCENARIO = ROOT / "scenarios" / "securite-reseau"
CASES = {  # check id of the scenario's spec -> file name prefix
    "ssh-root-password-refused": "root-password",
    "ssh-admin-key-alone-refused": "key-alone",
    "ssh-admin-old-code-refused": "old-code",
    "ssh-admin-key-and-code-accepted": "key-code",
    "ssh-brute-force-banned": "burst",
}


def main() -> None:
    lab = labs.up(str(SCENARIO), name="lcrec-ssh", replace=True)
    OUT.mkdir(exist_ok=True)
    try:
        spec = attach_vault(load_grading_spec(ROOT / "grading" / "securite-reseau.yml", variables=lab.values),
                            lab.vault)
        checks = {c.id: c for c in spec.checks}
        for state in ("start", "solved"):
            if state == "solved":
                subprocess.run([str(ROOT / ".venv/bin/labctl"), "-q", "play", "--lab", lab.name,
                                str(ROOT / "playbooks/securite-reseau/solution.yml")], check=True)
            view = LabView(lab)
            session = OutsideSession(view, "fw", lambda: None)  # type: ignore[arg-type,return-value]
            for check_id, name in CASES.items():
                check: Any = checks[check_id]
                with probe_point(lab.plan, check.probe.switch, check.probe.addresses, "fw") as point:
                    seen = ban(check, point, session.view, session.run) if check.type == "ssh_ban" else \
                        login(check, point, session.view, 15.0)
                write(check, f"{name}-{state}", f"securite-reseau, fw in its {state} state", 0, json.dumps(seen), "")
            view.close()
        check = checks["ssh-root-password-refused"]
        view = LabView(lab)
        result = OutsideSession(view, "fw", lambda: None).run(probe(check).command, 10)  # type: ignore[arg-type]
        view.close()
        write(check, "inside", "the probe run in fw (a node cannot act for the grader)", result.exit_code,
              result.stdout, result.stderr)
    finally:
        labs.down(lab)


def write(check: Any, case: str, how: str, code: int, stdout: str, stderr: str) -> None:
    record = {"recorded": how, "channel": "outside", "command": probe(check).command,
              "exit_code": code, "stdout": stdout, "stderr": stderr}
    (OUT / f"{case}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
