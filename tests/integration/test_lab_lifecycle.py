"""Real labs on the local provider: build, SSH in, grade, break, re-grade, down."""

from __future__ import annotations

import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from labctl import lab as labs
from labctl.connect import open_session
from labctl.grading.loader import load_grading_spec
from labctl.grading.results import Outcome
from labctl.providers import get_provider
from labctl.topology import load_topology

from .conftest import SMALL, SMALL_SPEC, kernel_objects, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


def _outcomes(report: object) -> dict[str, str]:
    return {r.check_id: r.outcome.value for r in report.results}  # type: ignore[attr-defined]


def test_build_ssh_grade_break_regrade_down(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    provider = get_provider("local")
    assert set(provider.node_states(lab).values()) == {"running"}
    spec = load_grading_spec(SMALL_SPEC, load_topology(SMALL))

    session = open_session(provider.access(lab, "h1"))
    try:
        result = session.run("hostname; id -u; cat /etc/resolv.conf", 5)
        assert result.stdout.splitlines()[:2] == ["h1", "0"]
        assert "nameserver" not in result.stdout  # nodes query no outside resolver
        assert session.path == "out-of-band"  # nodes have no management interface
    finally:
        session.close()

    first = labs.grade(lab, spec)
    assert set(_outcomes(first).values()) == {"PASS"}, first.results

    # The candidate breaks h2's link: reachability checks must now FAIL, others still PASS.
    session = open_session(provider.access(lab, "h2"))
    session.run("ip link set eth1 down", 5)
    session.close()
    second = labs.grade(lab, spec)
    outcomes = _outcomes(second)
    assert outcomes["h1-reaches-h2"] == "FAIL"
    assert outcomes["h2-reaches-h1"] == "FAIL"
    assert outcomes["h2-ssh-port"] == "PASS"
    assert second.exit_code == 1

    labs.down(lab)
    assert kernel_objects(lab.id) == {"netns": [], "links": [], "mounts": [], "processes": []}
    assert not lab.directory.exists()
    labs.down(lab)  # idempotent


HTTP_SPEC = """\
scenario: small
checks:
  - id: h1-intranet
    criterion: A2.1-c1
    description: {fr: "h1 obtient la page d'accueil de l'intranet", en: "h1 gets the intranet home page"}
    node: h1
    type: http
    url: http://10.20.0.2/
    body_matches: "<h1>Intranet Valmont</h1>"
  - id: h1-missing-page
    criterion: A2.1-c1
    description: {fr: "Une page absente répond 404", en: "A missing page answers 404"}
    node: h1
    type: http
    url: http://10.20.0.2/absente.html
    status: 404
  - id: h1-silent-server
    criterion: A2.1-c1
    description: {fr: "Le service du port 8081 répond", en: "The service on port 8081 answers"}
    node: h1
    type: http
    url: http://10.20.0.2:8081/
    timeout: 3
"""
PAGE = ('<!DOCTYPE html>\n<html><head><title>{0}</title></head>\n'
        '<body>\n<h1>{0}</h1>\n<p>Serveur intranet.</p>\n</body></html>\n')


def _on(lab: object, node: str, command: str) -> str:
    """Run a command on a node; it must succeed."""
    session = open_session(get_provider("local").access(lab, node))  # type: ignore[arg-type]
    try:
        result = session.run(command, 15)
    finally:
        session.close()
    assert result.exit_code == 0, (command, result)
    return result.stdout


def test_http_check_passes_on_the_served_page_and_fails_otherwise(make_lab: object, tmp_path: Path) -> None:
    lab = make_lab()  # type: ignore[operator]
    spec_file = tmp_path / "http.yml"
    spec_file.write_text(HTTP_SPEC, encoding="utf-8")
    spec = load_grading_spec(spec_file, load_topology(SMALL))

    def graded() -> dict[str, tuple[str, str]]:
        return {r.check_id: (r.outcome.value, r.evidence) for r in labs.grade(lab, spec).results}

    # Nothing listens on h2 yet: refused, as the candidate's broken server would be.
    before = graded()
    assert before["h1-intranet"] == ("FAIL", "http://10.20.0.2/: connection refused")
    assert before["h1-missing-page"][0] == "FAIL"

    # A web server in the background on h2 (the intranet), and on 8081 one that never answers.
    _on(lab, "h2", "mkdir -p /srv/www && printf '%s' " + shlex.quote(PAGE.format("Intranet Valmont"))
        + " > /srv/www/index.html && cd /srv/www && setsid -f sh -c "
        "'echo $$ > /run/www.pid; exec python3 -m http.server 80 >/dev/null 2>&1' "
        "&& setsid -f nc -l 8081 </dev/null >/dev/null 2>&1 "
        "&& for i in $(seq 100); do [ $(ss -Hltn '( sport = :80 or sport = :8081 )' | wc -l) = 2 ] "
        "&& exit 0; sleep 0.1; done; exit 1")
    served = graded()
    assert served["h1-intranet"] == (
        "PASS", "http://10.20.0.2/: HTTP 200 OK, the page matches /<h1>Intranet Valmont</h1>/: "
        "<h1>Intranet Valmont</h1>")
    assert served["h1-missing-page"][0] == "PASS"
    assert served["h1-silent-server"] == ("FAIL", "http://10.20.0.2:8081/: timed out after 2 s")

    # The page no longer carries the marker: the server answers, the check still FAILs.
    _on(lab, "h2", "printf '%s' " + shlex.quote(PAGE.format("Portail Valmont")) + " > /srv/www/index.html")
    changed = graded()
    assert changed["h1-intranet"] == (
        "FAIL", 'http://10.20.0.2/: HTTP 200 OK but the page does not match '
        '/<h1>Intranet Valmont</h1>/ (page: title "Portail Valmont")')
    assert changed["h1-missing-page"][0] == "PASS"

    # The server stops: refused again.
    _on(lab, "h2", "kill $(cat /run/www.pid)"
        " && for i in $(seq 100); do ss -Hltn 'sport = :80' | grep -q . || exit 0; sleep 0.1; done; exit 1")
    stopped = graded()
    assert stopped["h1-intranet"] == ("FAIL", "http://10.20.0.2/: connection refused")
    assert stopped["h1-missing-page"][0] == "FAIL"


CLI_SPEC = """\
scenario: small
checks:
  - {id: r1-ospf, criterion: A2.3-c1, description: {fr: "OSPF", en: "OSPF"}, node: r1, type: ospf_neighbor,
     neighbor: 10.20.0.2}
  - {id: r1-forwards, criterion: A2.3-c1, description: {fr: "routage", en: "forwarding"}, node: r1,
     type: command, command: "sysctl -n net.ipv4.ip_forward", stdout_matches: "^1"}
  - {id: r1-zebra, criterion: A2.1-c1, description: {fr: "FRR", en: "FRR runs"}, node: r1, type: service,
     process: zebra}
"""


def test_a_broken_router_cli_changes_no_verdict(make_lab: object, tmp_path: Path) -> None:
    """The candidate broke the CLI account's login and replaced vtysh: OSPF is still graded,
    from ospfd itself (the controller speaks its vty protocol; labctl.grading.frr_vty)."""
    lab = make_lab()  # type: ignore[operator]
    spec_file = tmp_path / "cli.yml"
    spec_file.write_text(CLI_SPEC, encoding="utf-8")
    spec = load_grading_spec(spec_file, load_topology(SMALL))
    before = {r.check_id: r.outcome.value for r in labs.grade(lab, spec).results}
    assert before == {"r1-ospf": "FAIL", "r1-forwards": "PASS", "r1-zebra": "PASS"}  # no OSPF neighbour here
    _on(lab, "r1", "usermod -s /bin/false labctl && printf '#!/bin/sh\\necho Full\\n' > /usr/bin/vtysh")
    after = {r.check_id: r for r in labs.grade(lab, spec).results}
    assert after["r1-ospf"].outcome is Outcome.FAIL and after["r1-ospf"].observed == "outside"
    assert after["r1-ospf"].evidence.startswith("ospfd (pid ")
    assert "/usr/lib/frr/ospfd of the image): no OSPF neighbor 10.20.0.2" in after["r1-ospf"].evidence
    assert (after["r1-forwards"].outcome, after["r1-zebra"].outcome) == (Outcome.PASS, Outcome.PASS)


def test_nodes_are_reached_out_of_band_whatever_their_network(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    provider = get_provider("local")
    session = open_session(provider.access(lab, "h1"))
    session.run("ip link set eth1 down; ip link set lo down", 5)  # every link the node has
    session.close()
    again = open_session(provider.access(lab, "h1"))
    try:
        assert again.path == "out-of-band"
        assert again.run("ip -br link show eth1", 5).stdout.split()[1] == "DOWN"
    finally:
        again.close()


def test_two_instances_side_by_side_do_not_collide(make_lab: object) -> None:
    first = make_lab(name="twin")  # type: ignore[operator]
    second = make_lab(name="twin")  # type: ignore[operator]
    assert first.name != second.name and first.id != second.id
    spec = load_grading_spec(SMALL_SPEC, load_topology(SMALL))
    for lab in (first, second):
        assert set(_outcomes(labs.grade(lab, spec)).values()) == {"PASS"}
    # Breaking one instance leaves the other intact.
    session = open_session(get_provider("local").access(first, "h2"))
    session.run("ip link set eth1 down", 5)
    session.close()
    assert _outcomes(labs.grade(first, spec))["h1-reaches-h2"] == "FAIL"
    assert _outcomes(labs.grade(second, spec))["h1-reaches-h2"] == "PASS"


def test_node_dying_during_grading_is_error_others_still_run(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    spec = load_grading_spec(SMALL_SPEC, load_topology(SMALL))
    h2 = lab.nodes["h2"].init
    assert h2 is not None

    def kill_h2() -> None:
        # At once: grading this lab from outside takes a few tens of ms, and a kill 50 ms in
        # came after h2's checks now and then (PASS, rightly: h2 was alive when observed).
        subprocess.run(["kill", "-9", str(h2.pid)], check=True)

    killer = threading.Thread(target=kill_h2)
    killer.start()
    report = labs.grade(lab, spec)
    killer.join()
    outcomes = _outcomes(report)
    assert outcomes["h2-ssh-port"] == "ERROR"
    assert outcomes["h2-reaches-h1"] == "ERROR"
    assert outcomes["r1-sshd"] == "PASS"
    assert outcomes["h1-hostname-file"] == "PASS"
    assert report.exit_code == 10
    errors = [r for r in report.results if r.outcome is Outcome.ERROR]
    assert all(r.evidence for r in errors)


def test_lab_nodes_have_no_address_in_the_machines_namespace(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    host_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for node in lab.plan.nodes:
        for address in [node.mgmt_address] + [i.address for i in node.interfaces if i.address]:
            assert address.split("/")[0] not in host_addresses
    host_routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert "198.18." not in host_routes and "10.10.0." not in host_routes


def test_nodes_have_no_management_interface_and_cannot_reach_the_controller(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    provider = get_provider("local")
    mgmt = lab.plan.mgmt_subnet.rsplit(".", 1)[0] + "."
    for node in lab.plan.nodes:
        session = open_session(provider.access(lab, node.name))
        try:
            assert session.path == "out-of-band"
            seen = session.run("ip -o link show; ip -o addr show; ip route show table all", 5).stdout
            assert "mgmt0" not in seen and mgmt not in seen, seen  # nothing FRR could route
            controller = lab.plan.controller_address.split("/")[0]
            started = session.run(f"ping -c 1 -W 1 {controller}; timeout 3 bash -c '</dev/tcp/{controller}/22'", 10)
            assert started.exit_code != 0, started.stdout
        finally:
            session.close()


def test_reset_brings_files_addresses_and_routes_back(make_lab: object) -> None:
    lab = make_lab()  # type: ignore[operator]
    provider = get_provider("local")
    session = open_session(provider.access(lab, "h1"))
    session.run("echo starting > /etc/motd; ip route replace default via 10.10.0.99", 5)
    session.close()
    labs.snapshot(lab)
    # The candidate works: files, routes, addresses change.
    session = open_session(provider.access(lab, "h1"))
    session.run("echo changed > /etc/motd; rm /etc/hostname; ip route replace default via 10.10.0.1; "
                "ip addr add 10.10.0.77/24 dev eth1; useradd bob", 5)
    session.close()
    labs.reset(lab)
    session = open_session(provider.access(lab, "h1"))
    try:
        state = session.run("cat /etc/motd; cat /etc/hostname; ip -4 -o addr show dev eth1 | wc -l; "
                            "ip route show default; getent passwd bob || echo no-bob", 5).stdout.split("\n")
    finally:
        session.close()
    assert state[0] == "starting" and state[1] == "h1" and state[2] == "1"
    assert state[3].startswith("default via 10.10.0.99") and state[4] == "no-bob"
    assert set(provider.node_states(lab).values()) == {"running"}
    outcomes = _outcomes(labs.grade(lab, load_grading_spec(SMALL_SPEC, load_topology(SMALL))))
    assert "ERROR" not in outcomes.values()  # every node answers again after the reset
    assert outcomes["h1-default-route"] == "FAIL"  # the snapshot's (wrong) gateway came back
    assert outcomes["h2-ssh-port"] == "PASS"


def test_down_ends_nodes_whose_init_was_never_recorded(make_lab: object) -> None:
    lab = make_lab(name="unrecorded")  # type: ignore[operator]
    for node in lab.nodes.values():
        node.init = None  # as when `up` is killed after starting a node, before recording its PID 1
    lab.save()
    labs.down(lab)
    assert kernel_objects(lab.id, lab.name) == {"netns": [], "links": [], "mounts": [], "processes": []}
