"""A real exam room: three candidates' labs (tests/data/labs/small.yml) built side by side,
graded, timed, reset, rebuilt; candidates log in through the gateway with a plain SSH
client; every pair of labs is shown apart; the dashboard is read by headless Chromium.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from labctl.errors import InvalidInputError
from labctl.providers import firewall
from labctl.session import access, room
from labctl.session.model import Session, all_session_names, load_session, sessions_dir
from labctl.session.roster import parse_roster
from labctl.session.signature import SignatureError, verify_file
from labctl.state import all_labs

if TYPE_CHECKING:
    import paramiko

from .conftest import SMALL, SMALL_SPEC, pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]
CANDIDATES = ("c1", "c2", "c3")


def in_node(lab_name: str, node: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run `command` in the node's network namespace (as its traffic would leave the node)."""
    lab = next(lab for lab in all_labs() if lab.name == lab_name)
    netns = lab.plan.node(node).netns
    return subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", command], capture_output=True, text=True)


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    name = f"itest-{secrets.token_hex(3)}"
    roster = parse_roster("id,name,tiers_temps\n" + "".join(f"{c},Candidat {c},{'oui' if c == 'c2' else 'non'}\n"
                                                            for c in CANDIDATES))
    made = None
    try:
        made = room.create(str(SMALL), roster, 3600, name, spec=str(SMALL_SPEC), workers=3)
        yield made
    finally:
        with contextlib.suppress(Exception):
            room.destroy(load_session(name))
        shutil.rmtree(sessions_dir() / name, ignore_errors=True)
        assert not [lab.name for lab in all_labs() if lab.name.startswith(name)]


def test_a_bad_roster_builds_nothing(tmp_path: Path) -> None:
    from labctl.cli import main

    roster = tmp_path / "roster.csv"
    roster.write_text("id,name\nc1,A\nc1,B\n")
    name = f"bad-{secrets.token_hex(2)}"
    with pytest.raises(SystemExit) as exit_:
        main(["session", "create", "--scenario", str(SMALL), "--spec", str(SMALL_SPEC), "--roster", str(roster),
              "--duration", "1h", "--name", name])
    assert exit_.value.code == InvalidInputError.exit_code
    assert not [lab.name for lab in all_labs() if lab.name.startswith(name)]  # its labs would be NAME-ID
    assert name not in all_session_names()


def test_a_lab_that_fails_to_build_removes_the_labs_already_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.errors import ProviderError

    name = f"itest-fail-{secrets.token_hex(2)}"
    roster = parse_roster("id,name\n" + "".join(f"{c},Candidat {c}\n" for c in CANDIDATES))
    real_build = room._build

    def build(session: Session, record: object, *args: object, **kwargs: object) -> object:
        if getattr(record, "id", None) == "c2":
            raise ProviderError("node h1 did not start (simulated)")
        return real_build(session, record, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(room, "_build", build)
    try:
        with pytest.raises(room.RoomError) as failed:
            room.create(str(SMALL), roster, 3600, name, spec=str(SMALL_SPEC), workers=1)  # c1 is built first
        assert "c2: node h1 did not start (simulated)" in failed.value.render()
        assert not [lab.name for lab in all_labs() if lab.name.startswith(name)]  # c1's lab is gone too
        assert name not in all_session_names()
    finally:
        for lab in all_labs():
            if lab.name.startswith(name):
                from labctl import lab as labs

                labs.down(lab)
        shutil.rmtree(sessions_dir() / name, ignore_errors=True)


def test_each_candidate_has_a_running_sealed_lab(session: Session) -> None:
    fresh = load_session(session.name)
    rows = room.status(fresh)
    assert [r.id for r in rows] == list(CANDIDATES)
    assert all(r.health == "ok" and r.time_left == "not started" for r in rows)
    labs = {c.id: room.candidate_lab(c) for c in fresh.candidates}
    assert len({lab.id for lab in labs.values() if lab}) == 3
    assert all(lab is not None and lab.seed == cid and firewall.sealed(lab.plan.fabric_netns)
               for cid, lab in labs.items())


def test_every_pair_of_labs_is_apart_and_no_node_reaches_the_controller(session: Session) -> None:
    fresh = load_session(session.name)
    labs = {c.id: c.lab_name for c in fresh.candidates}
    for index, cid in enumerate(CANDIDATES, start=1):  # a probe address that exists only in lab `cid`
        assert in_node(labs[cid], "h1", f"ip addr add 10.99.{index}.1/24 dev eth1").returncode == 0
        assert in_node(labs[cid], "r1", f"ip addr add 10.99.{index}.3/24 dev eth1").returncode == 0
    try:
        for index, cid in enumerate(CANDIDATES, start=1):  # positive control: the probe answers in its own lab
            reach = in_node(labs[cid], "r1", f"ping -c1 -W1 10.99.{index}.1")
            assert reach.returncode == 0, reach.stdout
        for a, b in itertools.permutations(CANDIDATES, 2):
            target = CANDIDATES.index(b) + 1
            # A's h1 on B's probe subnet, same interface and addressing: only a shared segment would answer
            in_node(labs[a], "h1", f"ip addr add 10.99.{target}.2/24 dev eth1")
            attempt = in_node(labs[a], "h1", f"ping -c2 -W1 10.99.{target}.1")
            in_node(labs[a], "h1", f"ip addr del 10.99.{target}.2/24 dev eth1")
            assert attempt.returncode != 0, f"{a} reached {b}'s lab: {attempt.stdout}"
        lab = next(lab for lab in all_labs() if lab.name == labs["c1"])
        controller = lab.plan.controller_address.split("/")[0]
        host_addresses = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)", subprocess.run(
            ["ip", "-4", "addr"], capture_output=True, text=True).stdout)
        for cid in CANDIDATES:
            for node in ("r1", "h1", "h2"):
                for address in [controller, *[a for a in host_addresses if not a.startswith("127.")]]:
                    attempt = in_node(labs[cid], node, f"ping -c1 -W1 {address}")
                    assert attempt.returncode != 0, f"{cid}/{node} reached the controller at {address}"
    finally:
        for index, cid in enumerate(CANDIDATES, start=1):
            in_node(labs[cid], "h1", f"ip addr del 10.99.{index}.1/24 dev eth1")
            in_node(labs[cid], "r1", f"ip addr del 10.99.{index}.3/24 dev eth1")


def test_grading_runs_are_all_kept_and_reports_are_signed(session: Session, tmp_path: Path) -> None:
    from labctl.cli import main

    room.grade(load_session(session.name), workers=3)
    room.grade(load_session(session.name), ["c1"])
    store = room.results_store(session)
    assert [len(store.runs(session.name, c)) for c in CANDIDATES] == [2, 1, 1]
    assert all(r.intact() and r.report.results for r in store.runs(session.name))
    store.close()
    with pytest.raises(SystemExit) as done:
        main(["session", "report", session.name, "--format", "json", "-o", str(tmp_path)])
    assert done.value.code == 0
    file = tmp_path / f"{session.name}.fr.json"
    trusted = base64.b64decode((session.directory / "signing.pub").read_text())
    assert verify_file(file, trusted_key=trusted).session == session.name
    file.write_text(file.read_text().replace('"score": ', '"score": 1', 1))
    with pytest.raises(SignatureError, match="MODIFIED"):
        verify_file(file, trusted_key=trusted)
    assert [e["action"] for e in room.audit_log(session).entries()][:1] == ["create"]
    assert room.audit_log(session).verify_chain() == []


def test_reset_brings_every_lab_back_and_reseals_it(session: Session) -> None:
    labs = {c.id: c.lab_name for c in load_session(session.name).candidates}
    for name in labs.values():
        in_node(name, "h1", "ip route del default")
    started = time.monotonic()
    room.reset(load_session(session.name), workers=3)
    elapsed = time.monotonic() - started
    for c in load_session(session.name).candidates:
        route = in_node(c.lab_name, "h1", "ip -4 route show default")
        assert "via 10.10.0.1" in route.stdout
        lab = room.candidate_lab(c)
        assert lab is not None and firewall.sealed(lab.plan.fabric_netns)
    assert elapsed < 60


def test_a_crashed_lab_is_reported_and_rebuilt_alone(session: Session) -> None:
    fresh = load_session(session.name)
    victim = room.candidate_lab(fresh.candidate("c3"))
    others = {c.id: c.lab_id for c in fresh.candidates if c.id != "c3"}
    assert victim is not None and victim.nodes["h2"].init is not None
    os.kill(victim.nodes["h2"].init.pid, signal.SIGKILL)  # the node's PID 1: the node dies
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and victim.nodes["h2"].init.alive():
        time.sleep(0.1)
    row = next(r for r in room.status(fresh) if r.id == "c3")
    assert row.health == "crashed: h2"
    room.rebuild(fresh, "c3")
    fresh = load_session(session.name)
    assert fresh.candidate("c3").lab_id != victim.id
    assert {c.id: c.lab_id for c in fresh.candidates if c.id != "c3"} == others
    assert [r.health for r in room.status(fresh)] == ["ok", "ok", "ok"]


def _wait_listening(port: int, seconds: float = 15) -> None:
    """Until the sshd on `port` accepts connections (at start, and again after a reload)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sshd(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The exam host's sshd (on a free port), running before access opens: labctl must make it reload."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists() or shutil.which("sudo") is None:
        pytest.skip("needs openssh-server and sudo (apt-get install openssh-server sudo)")
    port = _free_port()
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    config = tmp_path / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {tmp_path}/sshd.pid\n"
                      "UsePAM no\nPasswordAuthentication yes\nPermitRootLogin no\nLogLevel VERBOSE\n"
                      f"Include {access.sshd_file(session)}\n")
    monkeypatch.setattr(access, "SSHD_CONFIG", config)
    with open(tmp_path / "sshd.log", "w") as log:
        process = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=log)
    try:
        _wait_listening(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(port: int, user: str, password: str) -> paramiko.SSHClient:
    """A candidate's SSH connection to the exam host (retried while sshd re-executes after a reload)."""
    import paramiko

    deadline = time.monotonic() + 10
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect("127.0.0.1", port=port, username=user, password=password, allow_agent=False,
                           look_for_keys=False, timeout=10)
            return client
        except paramiko.ssh_exception.NoValidConnectionsError:  # refused: the listener is coming back
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _forwarding_refused(port: int, user: str, password: str) -> bool:
    """True when sshd refuses to forward a port for the account (`ssh -N -L` needs no shell)."""
    import paramiko

    client = _client(port, user, password)
    try:
        transport = client.get_transport()
        assert transport is not None
        try:
            transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=10).close()
        except paramiko.ChannelException:
            return True
        return False
    finally:
        client.close()


def _login(port: int, user: str, password: str, typed: str) -> str:
    client = _client(port, user, password)
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.settimeout(30)
        channel.exec_command("bash")  # whatever is asked, sshd forces the gateway
        channel.sendall(typed.encode())
        channel.shutdown_write()
        out = b""
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            out += chunk
        while channel.recv_stderr_ready():
            out += channel.recv_stderr(65536)
        return out.decode(errors="replace")
    finally:
        client.close()


@pytest.fixture
def opened(session: Session, sshd: int) -> Iterator[Session]:
    """The session started with access while sshd runs: accounts, sheets, sshd and sudo files; all removed after."""
    assert not access.sshd_file(session).exists()  # sshd started without the Match block
    assert access.running_sshd() is not None
    fresh = room.start(load_session(session.name), access=True)
    _wait_listening(sshd)  # sshd re-executes itself on SIGHUP: its port closes for a moment
    try:
        yield fresh
    finally:
        access.remove_accounts(load_session(session.name))


def test_candidates_log_in_with_ssh_and_land_in_their_own_lab_only(session: Session, sshd: int,
                                                                   opened: Session) -> None:
    import paramiko

    fresh = load_session(session.name)
    sheets = {c.id: (session.directory / "sheets" / f"{c.id}.html").read_text() for c in fresh.candidates}
    passwords = {cid: re.search(r"Mot de passe</th><td>(\w+)</td>", text).group(1)  # type: ignore[union-attr]
                 for cid, text in sheets.items()}
    logins = {c.id: c.login for c in fresh.candidates}
    assert len(set(passwords.values())) == 3 and all(len(p) >= 12 for p in passwords.values())
    for c in fresh.candidates:
        assert f"{c.login}@" in sheets[c.id] and "Mot de passe" in sheets[c.id]
        output = _login(sshd, str(c.login), passwords[c.id], "h1\ncat /etc/labctl/node.env\nexit\nq\n")
        assert f"LABCTL_LAB={c.lab_name}" in output, output
        assert "LABCTL_NODE=h1" in output
        refused = _login(sshd, str(c.login), passwords[c.id], "../../etc\nq\n")
        assert "n'est pas un nœud de votre laboratoire" in refused
        # no pivot through the exam host: the Match block sshd was made to reload forbids forwarding
        assert _forwarding_refused(sshd, str(c.login), passwords[c.id])
    with pytest.raises(paramiko.AuthenticationException):  # a neighbour's password opens nothing
        _login(sshd, str(logins["c1"]), passwords["c2"], "q\n")
    room.extend(fresh, "c1", -24 * 60)  # c1's time is over
    closed = room.tick(load_session(session.name))
    assert closed == ["c1"]
    after = load_session(session.name)
    assert after.candidate("c1").access == "closed" and after.candidate("c1").final_run is not None
    assert room.candidate_lab(after.candidate("c1")) is not None  # kept for review
    with pytest.raises(paramiko.AuthenticationException):
        _login(sshd, str(logins["c1"]), passwords["c1"], "q\n")
    assert "LABCTL_NODE=h2" in _login(sshd, str(logins["c2"]), passwords["c2"], "3\ncat /etc/labctl/node.env\n")
    access.remove_accounts(after)
    assert not any(access._exists(str(login)) for login in logins.values())
    assert not access.sshd_file(after).exists() and not access.sudoers_file(after).exists()


def test_dashboard_in_headless_chromium(session: Session, tmp_path: Path) -> None:
    from labctl.session.dashboard import Dashboard

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    room.grade(load_session(session.name), ["c1"])
    server = Dashboard(session.name, "proctor-pw", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]

    def dump(url: str) -> str:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--virtual-time-budget=3000", "--dump-dom", url]
        done = subprocess.run([chromium, *flags], capture_output=True, text=True, timeout=90)
        return done.stdout

    try:
        denied = dump(f"http://127.0.0.1:{port}/")
        assert "<table" not in denied and "c1" not in denied  # Chromium stops at the password prompt
        dom = dump(f"http://proctor:proctor-pw@127.0.0.1:{port}/")
        assert '<html lang="fr">' in dom and "<caption>" in dom
        for cid in CANDIDATES:
            assert f'<a href="/candidate/{cid}">{cid}</a>' in dom
        assert dom.count('<td class="ok">ok</td>') == 3, dom
        report = dump(f"http://proctor:proctor-pw@127.0.0.1:{port}/candidate/c1")
        assert "Critère A2.3-c1" in report
    finally:
        server.shutdown()
        server.server_close()


def test_shared_variants_set_up_once_and_copy_the_rest() -> None:
    name = f"itest-var-{secrets.token_hex(2)}"
    roster = parse_roster("id,name\n" + "".join(f"v{i},Candidat {i}\n" for i in range(1, 5)))
    try:
        made = room.create(str(SMALL), roster, 3600, name, spec=str(SMALL_SPEC), variants=1, workers=3)
        assert made.variants == 1 and {c.variant for c in made.candidates} == {1}
        labs = [room.candidate_lab(c) for c in made.candidates]
        assert all(lab is not None for lab in labs) and len({lab.id for lab in labs if lab}) == 4
        assert len({lab.seed for lab in labs if lab}) == 1  # one variant, shared
        assert len({lab.nodes["h1"].host_key for lab in labs if lab}) == 4  # each lab its own identity
        assert [(r.health, r.variant) for r in room.status(made)] == [("ok", 1)] * 4
        audit = room.audit_log(made).entries()
        assert audit[0]["action"] == "create" and audit[0]["details"]["variants"] == 1
        room.grade(load_session(name), workers=4)
        store = room.results_store(made)
        assert all(store.latest(name, c.id) is not None for c in made.candidates)
        store.close()
    finally:
        with contextlib.suppress(Exception):
            room.destroy(load_session(name))
        shutil.rmtree(sessions_dir() / name, ignore_errors=True)
