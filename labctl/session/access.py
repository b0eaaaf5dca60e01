"""Candidates' access: one gateway account per candidate on the exam host.

A candidate logs in with a plain SSH client (`ssh LOGIN@HOST`, random per-session password).
sshd forces their login (Match block) into `labctl session gateway`, run through sudo with a
rule naming that exact command: it knows the candidate from SUDO_USER, offers their lab's
nodes only, and opens `ssh` to the chosen node through the lab's out-of-band path. No port
forwarding, no other command. At the end of their time the account is locked and their
processes ended; `session destroy` removes the accounts and both configuration files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from labctl import paths
from labctl.errors import PlatformError, PrivilegeError, profile_hint
from labctl.session.model import CandidateRecord, Session, SessionError, load_session

PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
SSHD_CONFIG = Path(os.environ.get("LABCTL_SSHD_CONFIG", "/etc/ssh/sshd_config"))
SSHD_DIR = Path(os.environ.get("LABCTL_SSHD_CONFIG_DIR", "/etc/ssh/sshd_config.d"))
SUDOERS_DIR = Path(os.environ.get("LABCTL_SUDOERS_DIR", "/etc/sudoers.d"))
SHELL_DIR = Path(os.environ.get("LABCTL_GATEWAY_SHELL_DIR", "/usr/local/lib/labctl"))


def new_password(length: int = 14) -> str:
    """A random password from an alphabet without look-alike characters."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def login_for(session: Session, index: int) -> str:
    """The gateway account of the session's candidate number `index` (session id makes it unique)."""
    return f"exam-{session.id}-{index:02d}"


def labctl_command() -> str:
    """The absolute path of the labctl entry point (sudo rules name it exactly)."""
    beside = Path(sys.executable).parent / "labctl"
    found = str(beside) if beside.exists() else shutil.which("labctl")
    if not found:
        raise PlatformError("cannot find the labctl command for the gateway", "install labctl (scripts/bootstrap.sh)")
    return found


def gateway_command(session: Session) -> str:
    """What sshd forces for every candidate of the session."""
    return f"{labctl_command()} session gateway --home {paths.home()} {session.name}"


def shell_file(session: Session) -> Path:
    """The accounts' login shell: it runs the gateway whatever the client asks (even without the Match block)."""
    return SHELL_DIR / f"gateway-{session.name}"


def sshd_file(session: Session) -> Path:
    """The session's sshd Match block."""
    return SSHD_DIR / f"labctl-session-{session.name}.conf"


def sudoers_file(session: Session) -> Path:
    """The session's sudo rules (file names in sudoers.d must not contain a dot)."""
    return SUDOERS_DIR / ("labctl-session-" + re.sub(r"[^A-Za-z0-9_-]", "_", session.name))


def _exists(login: str) -> bool:
    try:
        pwd.getpwnam(login)
    except KeyError:
        return False
    return True


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise PlatformError(f"{what} failed: {done.stderr.strip() or done.returncode}")


def open_accounts(session: Session) -> dict[str, str]:
    """Create every candidate's account with a fresh password; returns passwords by candidate.

    Passwords are not stored: they go to the access sheets only (see `write_access_sheets`).
    """
    if os.geteuid() != 0:
        raise PrivilegeError("creating gateway accounts needs root", "run it with sudo")
    for tool in ("useradd", "chpasswd", "usermod", "userdel", "sudo", "sshd"):
        if shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") is None:
            raise PlatformError(f"gateway accounts need {tool} (exam sessions' profile)", profile_hint("--sessions"))
    logins = {c.id: login_for(session, i) for i, c in enumerate(session.candidates, start=1)}
    taken = [login for login in logins.values() if _exists(login)]
    if taken:
        raise SessionError(f"accounts already exist: {', '.join(taken)} (never reused)",
                           f"remove the old session's accounts: labctl session destroy {session.name}")
    passwords = {cid: new_password() for cid in logins}

    def remember(fresh: Session) -> None:
        for c in fresh.candidates:
            c.login, c.access = logins[c.id], "open"

    session = session.update(remember)  # recorded first: destroy removes them even after a crash
    SHELL_DIR.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(shell_file(session), f"#!/bin/sh\n# labctl session {session.name}: the gateway, whatever "
                       f"is asked\nexec sudo -n {gateway_command(session)}\n", mode=0o755)
    for c in session.candidates:
        assert c.login
        _run(["useradd", "--no-create-home", "--home-dir", "/", "--shell", str(shell_file(session)),
              "--user-group", "--comment", f"labctl session {session.name} candidate {c.id}", c.login],
             f"creating account {c.login}")
    _run(["chpasswd"], "setting passwords",
         "".join(f"{c.login}:{passwords[c.id]}\n" for c in session.candidates))
    write_config(session)
    write_access_sheets(session, passwords)
    return passwords


def write_config(session: Session) -> None:
    """The sshd Match block and the sudo rules for the session's open accounts."""
    logins = [c.login for c in session.candidates if c.login]
    command = gateway_command(session)
    sshd = (f"# labctl session {session.name}: candidates land in their own lab only\n"
            f"Match User {','.join(logins)}\n"
            f"    ForceCommand sudo -n {command}\n"
            "    PasswordAuthentication yes\n    KbdInteractiveAuthentication no\n"
            "    AllowTcpForwarding no\n    AllowStreamLocalForwarding no\n    AllowAgentForwarding no\n"
            "    X11Forwarding no\n    PermitTunnel no\n    PermitTTY yes\n    PermitUserRC no\n")
    SSHD_DIR.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(sshd_file(session), sshd, mode=0o644)
    rules = f"# labctl session {session.name}: each account may run its gateway, nothing else\n"
    rules += "".join(f"{login} ALL=(root) NOPASSWD: {command}\n" for login in logins)
    SUDOERS_DIR.mkdir(parents=True, exist_ok=True)
    staging = SUDOERS_DIR / f".{sudoers_file(session).name}.new"
    paths.write_atomic(staging, rules, mode=0o440)
    if shutil.which("visudo"):
        check = subprocess.run(["visudo", "-cf", str(staging)], capture_output=True, text=True)
        if check.returncode != 0:
            staging.unlink(missing_ok=True)
            raise PlatformError(f"sudo rules rejected: {check.stdout.strip()} {check.stderr.strip()}")
    os.replace(staging, sudoers_file(session))
    _reload_sshd()


def _sshd() -> str:
    return shutil.which("sshd") or "/usr/sbin/sshd"


def running_sshd() -> int | None:
    """The PID of the host's sshd (from the PidFile its configuration names), if it runs."""
    shown = subprocess.run([_sshd(), "-T", "-f", str(SSHD_CONFIG)], capture_output=True, text=True)
    pidfile = next((line.split(None, 1)[1] for line in shown.stdout.splitlines() if line.startswith("pidfile ")),
                   "/run/sshd.pid")
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        program = os.readlink(f"/proc/{pid}/exe")  # not cmdline: sshd rewrites its process title
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(program).name == "sshd" else None


def sshd_managed() -> bool:
    """True when systemd runs the host's services (it reloads sshd)."""
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def _reload_sshd() -> None:
    """Make the host's sshd read its configuration again: systemd's reload, else SIGHUP to its PID.

    The configuration is checked first (`sshd -t`): a rejected one would stop sshd at its next
    restart, so it is refused here, naming sshd's complaint. No running sshd: nothing to reload
    (`session start` warns the proctor that candidates cannot connect).
    """
    systemd = sshd_managed()
    pid = None if systemd or not Path(_sshd()).exists() else running_sshd()
    if not systemd and pid is None:
        return
    check = subprocess.run([_sshd(), "-t", "-f", str(SSHD_CONFIG)], capture_output=True, text=True)
    if check.returncode != 0:
        raise PlatformError(f"sshd rejects its configuration ({SSHD_CONFIG}): {check.stderr.strip()}",
                            f"fix it, then run the command again (the session's block is in {SSHD_DIR})")
    if systemd:
        subprocess.run(["systemctl", "try-reload-or-restart", "ssh"], capture_output=True)
    elif pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)  # sshd's documented reload: it re-executes itself with the new file


def _end_processes(login: str) -> None:
    """End the account's processes, the gateways run for it through sudo, and what its
    sessions run inside nodes (session/cutoff.py)."""
    from labctl.session import cutoff

    try:
        uid = pwd.getpwnam(login).pw_uid
    except KeyError:
        return
    cutoff.end_sessions([login], [uid])


def close_account(session: Session, candidate: CandidateRecord) -> None:
    """Lock the candidate's account and end their connections (their lab stays, for review)."""
    if not candidate.login or not _exists(candidate.login):
        return
    _run(["usermod", "--lock", "--expiredate", "1", candidate.login], f"locking {candidate.login}")
    _end_processes(candidate.login)


def remove_accounts(session: Session) -> None:
    """Remove every account the session made and its configuration files; idempotent."""
    if os.geteuid() != 0:
        return
    for c in session.candidates:
        if c.login and _exists(c.login):
            _run(["usermod", "--lock", c.login], f"locking {c.login}")
            _end_processes(c.login)
            subprocess.run(["userdel", c.login], capture_output=True)
            subprocess.run(["groupdel", c.login], capture_output=True)
    sshd_file(session).unlink(missing_ok=True)
    sudoers_file(session).unlink(missing_ok=True)
    shell_file(session).unlink(missing_ok=True)
    _reload_sshd()
    if (session.directory / "session.json").exists():
        def forget(fresh: Session) -> None:
            for c in fresh.candidates:
                if c.access == "open":
                    c.access = "closed"

        session.update(forget)


def refresh(session: Session) -> Session:
    """The session as now on disk."""
    return load_session(session.name)


def exam_host() -> str:
    """The host name candidates connect to (LABCTL_EXAM_HOST, else this machine's name)."""
    return os.environ.get("LABCTL_EXAM_HOST") or os.uname().nodename


def write_access_sheets(session: Session, passwords: dict[str, str], port: int | None = None) -> list[Path]:
    """One printable HTML sheet per candidate (root-only files): host, login, password, brief."""
    from labctl.session.reports import access_sheet

    folder = session.directory / "sheets"
    folder.mkdir(mode=0o700, exist_ok=True)
    written = []
    for c in session.candidates:
        if c.login and c.id in passwords:
            path = folder / f"{c.id}.html"
            paths.write_atomic(path, access_sheet(session, c, passwords[c.id], exam_host(), port), mode=0o600)
            written.append(path)
    return written
