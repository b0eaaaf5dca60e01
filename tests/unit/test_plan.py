"""LabPlan: deterministic kernel names and addresses, compared with a golden file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from labctl.plan import LAB_ID_LENGTH, new_lab_id, plan_lab
from labctl.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "plan" / "small.json"


def test_plan_of_small_lab_matches_golden() -> None:
    plan = plan_lab(load_topology(ROOT / "tests" / "data" / "labs" / "small.yml"), "abc123", "small")
    text = json.dumps(plan.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_names_derive_from_lab_id_and_fit_kernel_limits() -> None:
    topology = load_topology(ROOT / "topologies" / "multi-site-routing.yml")
    first, second = plan_lab(topology, "aaaaaa", "x"), plan_lab(topology, "bbbbbb", "x")
    assert not set(first.netns_names()) & set(second.netns_names())
    for plan in (first, second):
        for node in plan.nodes:
            assert node.netns.startswith(f"lc-{plan.lab_id}-")
            assert len(node.mgmt_port) <= 15
            assert all(len(i.name) <= 15 and len(i.peer_name) <= 15 for i in node.interfaces)


def test_point_to_point_pairs_are_created_from_one_end_only() -> None:
    plan = plan_lab(load_topology(ROOT / "tests" / "data" / "labs" / "small.yml"), "abc123", "small")
    creators = [(n.name, i.name) for n in plan.nodes for i in n.interfaces if i.bridge is None and i.creates_pair]
    assert creators == [("r1", "eth2")]


def test_management_addresses_are_unique_and_exclude_the_controller() -> None:
    plan = plan_lab(load_topology(ROOT / "topologies" / "multi-site-routing.yml"), "abc123", "x")
    addresses = [n.mgmt_address for n in plan.nodes]
    assert len(set(addresses)) == len(addresses)
    assert plan.controller_address not in addresses


def test_lab_ids_are_short_and_start_with_a_letter() -> None:
    ids = {new_lab_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == LAB_ID_LENGTH and i[0].isalpha() and i.isalnum() for i in ids)
