"""The Vagrantfile candidates practise with at home: Vagrant's own check, `vagrant validate`.

The public box cannot be fetched on these machines (only Debian's archive and PyPI are
reachable): with it, what provisioning runs is scripts/bootstrap.sh (the README's set-up, which
CI runs) and `labctl image build`. labctl's own box is booted for real with this Vagrantfile by
tests/integration/test_vagrant_box.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    shutil.which("vagrant") is None,
    reason="vagrant is not installed (scripts/bootstrap.sh installs it: apt-get install vagrant)")


def _validate(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"VAGRANT_CWD": str(folder), "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
                        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run(["vagrant", "validate"], capture_output=True, text=True, env=env, timeout=120)


def test_the_vagrantfile_is_valid(tmp_path: Path) -> None:
    done = _validate(ROOT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout


def test_vagrant_validate_catches_a_misspelled_setting(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (ROOT / "Vagrantfile").read_text()
    assert 'config.vm.hostname = "labctl"' in text
    (broken / "Vagrantfile").write_text(text.replace("config.vm.hostname", "config.vm.hostnam"))
    done = _validate(broken, tmp_path)
    assert done.returncode != 0 and "hostnam" in done.stdout + done.stderr


def test_provisioning_runs_the_readme_set_up_and_builds_the_node_image() -> None:
    text = (ROOT / "Vagrantfile").read_text()
    assert "scripts/bootstrap.sh" in text and (ROOT / "scripts" / "bootstrap.sh").exists()
    assert "labctl image build" in text and "labctl grade --hints" in text
