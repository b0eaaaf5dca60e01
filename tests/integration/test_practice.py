"""A candidate practising at home, through the CLI on a real lab: start with their seed (the brief
shows their variant), grade (kept in their history), fix, grade again, see their progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.scenario import load_scenario
from labctl.state import all_labs

from .conftest import DATA, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
SCENARIO = DATA / "scenarios" / "variants"  # the small lab: three nodes, one check in its first stage


def test_practice_start_grade_history_on_a_real_lab(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[2]), "LABCTL_PRACTICE_DIR": str(tmp_path)}

    def labctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True, text=True, env=env,
                              timeout=600)

    seed = "home-practice-cand"
    values = load_scenario(str(SCENARIO)).values(seed)
    before = {lab.id for lab in all_labs()}
    start = labctl("practice", "start", str(SCENARIO), "--seed", seed, "--lang", "both")
    made = [lab for lab in all_labs() if lab.id not in before and lab.seed == seed]
    try:
        assert start.returncode == 0, start.stderr
        assert len(made) == 1 and made[0].scenario == str(SCENARIO.resolve())
        lab = made[0].name
        # the brief of their own variant, French then English; no solution
        assert f"Responsable : {values['manager']}" in start.stdout and "# Variantes" in start.stdout
        # then what to type next (each command names the lab when other labs run: labctl would ask which)
        assert start.stdout.index("# Variantes") < start.stdout.index("sudo labctl grade")
        assert f"labctl brief {SCENARIO} --seed {seed}" in start.stdout  # the brief again, their variant

        first = labctl("grade", "--lab", lab, "--hints")
        assert first.returncode == 1, first.stdout + first.stderr  # the marker file is not there yet
        assert "kept in your history" in first.stderr
        marker = f"/home/{values['manager']}/marker-{values['octet']}"
        fixed = labctl("exec", "--lab", lab, "h1", "--", "sh", "-c", f"mkdir -p {marker.rsplit('/', 1)[0]} && "
                       f"touch {marker}")
        assert fixed.returncode == 0, fixed.stderr
        second = labctl("grade", "--lab", lab)
        assert second.returncode == 0, second.stdout + second.stderr

        runs = json.loads(labctl("practice", "history", "--json").stdout)
        assert [(r["scenario"], r["seed"], r["score"]) for r in runs] == [("variants", seed, 0.0),
                                                                         ("variants", seed, 1.0)]
        assert [n["check_id"] for n in runs[0]["not_passing"]] == ["marker"] and runs[1]["not_passing"] == []
        shown = labctl("practice", "history", "variants", "--lang", "en").stdout
        assert "progress: 0% → 100% (best 100%, 2 run(s))" in shown and "still not passing: marker" in shown
    finally:
        for made_lab in made:
            labctl("down", "--lab", made_lab.id)
    assert not any(lab.id not in before and lab.seed == seed for lab in all_labs())
