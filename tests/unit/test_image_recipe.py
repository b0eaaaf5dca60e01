"""Node image recipes: digests, layering on the base, ownership shifts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labctl.image import UID_BASE, ImageRecipe, shift_ownership, unshift_ownership


def test_a_scenario_image_is_layered_on_the_base_recipe() -> None:
    scenario = ImageRecipe.named("patching", ("cron", "apt-utils"))
    assert scenario.extra == ("apt-utils", "cron") and scenario.name == "node-patching"
    assert scenario.base() == ImageRecipe()  # same suite, mirror, packages, customisation
    assert scenario.base().digest() == ImageRecipe().digest() != scenario.digest()
    assert ImageRecipe().base() == ImageRecipe()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")
def test_unshift_gives_back_the_tree_shift_made_setuid_kept(tmp_path: Path) -> None:
    tree = tmp_path / "rootfs"
    (tree / "usr/bin").mkdir(parents=True)
    tool = tree / "usr/bin/tool"
    tool.write_text("#!/bin/sh\n")
    os.chown(tool, 0, 0)
    tool.chmod(0o4755)  # setuid root, like sudo
    data = tree / "data"
    data.write_text("x")
    os.chown(data, 42, 43)
    (tree / "link").symlink_to("data")
    before = {p: (p.lstat().st_uid, p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode)) for p in tree.rglob("*")}
    shift_ownership(tree, UID_BASE)
    assert (data.stat().st_uid, data.stat().st_gid) == (UID_BASE + 42, UID_BASE + 43)
    assert tool.stat().st_uid == UID_BASE and tool.stat().st_mode & stat.S_ISUID
    unshift_ownership(tree, UID_BASE)
    after = {p: (p.lstat().st_uid, p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode)) for p in tree.rglob("*")}
    assert after == before


def test_older_builds_go_unless_a_lab_uses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.image import prune_old
    from labctl.plan import plan_lab
    from labctl.state import LabState
    from labctl.topology import load_topology

    monkeypatch.setenv("LABCTL_HOME", str(tmp_path))
    images = tmp_path / "images"
    # vm-<digest> builds; node-old is another image, vm-agence-<digest> a scenario's own image
    for build in ("vm-0123456789a1", "vm-0123456789a2", "vm-0123456789ff", "node-0123456789a1",
                  "vm-0123456789ee", "vm-agence-0123456789a1"):
        (images / build).mkdir(parents=True)
    small = Path(__file__).resolve().parents[1] / "data" / "labs" / "small.yml"
    lab = LabState(id="pru123", name="pru", provider="libvirt", image=str(images / "vm-0123456789ee"),
                   plan=plan_lab(load_topology(small), "pru123", "pru"))
    lab.save()  # a VM lab records the image folder itself
    prune_old("vm", images / "vm-0123456789ff")
    assert sorted(p.name for p in images.iterdir()) == [
        "node-0123456789a1", "vm-0123456789ee", "vm-0123456789ff", "vm-agence-0123456789a1"]
