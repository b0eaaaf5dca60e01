"""Every scenario verifies: its starting state fails as declared, its solution passes; a copy of a
set-up lab starts in the same state."""

from __future__ import annotations

import pytest

from labctl import lab as labs
from labctl.scenario import scenario_names
from labctl.state import LabState
from labctl.verify import verify

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_verifies(name: str) -> None:
    outcome = verify(name)
    assert outcome.ok, outcome.summary()


# Scenarios whose parameters change what setup builds or what is graded (annuaire: a domain's
# name and realm, accounts, groups; securite-reseau: the TOTP secret, the passwords, the web
# port): verified for two more candidates' variants besides the default one.
MORE_SEEDS = {"annuaire": ["c01", "c02"], "securite-reseau": ["c01", "c02"]}


@pytest.mark.parametrize(("name", "seed"), [(n, s) for n, seeds in MORE_SEEDS.items() for s in seeds])
def test_scenario_verifies_for_more_seeds(name: str, seed: str) -> None:
    outcome = verify(name, seed=seed)
    assert outcome.ok, outcome.summary()


def _outcomes(lab: LabState) -> dict[str, str]:
    report = labs.grade(lab, labs.stage_checks(labs.lab_spec(lab), lab.stage))
    return {r.check_id: str(r.outcome) for r in report.results}


def _in_node(lab: LabState, node: str, command: str) -> str:
    from labctl.connect import open_session
    from labctl.providers import get_provider

    session = open_session(get_provider(lab.provider).access(lab, node))
    try:
        return session.run(command, 10).stdout
    finally:
        session.close()


def test_a_copy_starts_where_the_origin_started_with_its_own_identity(make_lab: object) -> None:
    origin = make_lab("multi-site-routing", name="copy-origin", seed="cand-copy")  # type: ignore[operator]
    starting = _outcomes(origin)
    gateway_host = origin.values["gateway_host"]
    lan = next(i.address for i in origin.plan.node(gateway_host).interfaces if i.address)
    router = lan.rsplit(".", 1)[0] + ".1"  # the site router, .1 of the host's LAN
    _in_node(origin, gateway_host, f"ip route replace default via {router}; touch /root/candidate-work")
    assert _outcomes(origin)["host-default-gateway"] == "PASS"  # the origin's candidate fixed something
    copy = labs.clone(origin, name="copy-of-origin")
    try:
        assert (copy.values, copy.seed, copy.stage) == (origin.values, origin.seed, origin.stage)
        assert _outcomes(copy) == starting  # the snapshot's state, not what was done after it
        assert "absent" in _in_node(copy, gateway_host, "test -e /root/candidate-work || echo absent")
        assert all(copy.nodes[n].host_key != origin.nodes[n].host_key for n in origin.nodes)
        assert f"LABCTL_LAB={copy.name}" in _in_node(copy, "r1", "cat /etc/labctl/node.env")
        scenario = labs.lab_scenario(copy)
        solution = scenario.stage(str(copy.stage)).solution
        assert solution is not None
        labs.run_scenario_playbook(copy, scenario.path(solution))
        assert set(_outcomes(copy).values()) == {"PASS"}
        labs.reset(copy)
        assert _outcomes(copy) == starting  # the copy's own snapshot is its starting state
    finally:
        labs.down(copy)
