"""The candidate's side of the gateway: what runs when a candidate logs in over SSH.

It runs as root through one sudo rule, learns the candidate from SUDO_USER (set by sudo,
not by the candidate), refuses once their time is over, and lets them open a shell on a
node of their own lab only, through the lab's out-of-band path.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from labctl.session.model import CandidateRecord, Session, load_session

MAX_LINE = 256  # bytes of an answer kept; the rest of a longer line is read and dropped
SHOWN = 40  # characters of a refused answer echoed back


def read_line() -> str | None:
    """One line from stdin, read byte by byte so nothing meant for the node is consumed;
    any bytes (invalid UTF-8, control characters) and any length are accepted."""
    data = bytearray()
    while True:
        chunk = os.read(0, 1)
        if not chunk:
            return data.decode(errors="replace").strip() if data else None
        if chunk == b"\n":
            return data.decode(errors="replace").strip()
        if len(data) < MAX_LINE:
            data += chunk


def pick(answer: str, nodes: list[str]) -> str | None:
    """The node an answer names (its name, or its number in the list), else None."""
    if answer.isascii() and answer.isdecimal() and len(answer) <= 4:  # '²'.isdigit() is True
        index = int(answer)
        return nodes[index - 1] if 0 < index <= len(nodes) else None
    return answer if answer in nodes else None


def shown(answer: str) -> str:
    """An answer as it may be echoed to the terminal: printable characters only, short."""
    text = "".join(c if c.isprintable() else "?" for c in answer)
    return text if len(text) <= SHOWN else text[:SHOWN] + "…"


def node_ssh_argv(session: Session, candidate: CandidateRecord, node: str) -> list[str]:
    """`ssh` to `node` of the candidate's lab through its out-of-band path (as `labctl ssh`)."""
    from labctl.providers import get_provider
    from labctl.provision import known_hosts
    from labctl.session.room import candidate_lab

    lab = candidate_lab(candidate)
    assert lab is not None
    access = get_provider(lab.provider).access(lab, node)
    return ["ssh", "-i", str(access.key_file), "-o", "IdentitiesOnly=yes",
            "-o", f"ProxyCommand={shlex.join(access.oob_command)}", "-o", f"HostKeyAlias={node}",
            "-o", f"UserKnownHostsFile={known_hosts(lab)}", "-o", "StrictHostKeyChecking=yes",
            *access.ssh_client_options(), *(["-t"] if sys.stdin.isatty() else ["-T"]), f"{access.user}@{node}"]


def say(text: str) -> None:
    """Write to the candidate's terminal."""
    sys.stdout.write(text)
    sys.stdout.flush()


def run(session_name: str) -> int:
    """The gateway loop; returns the exit status for the candidate's SSH client."""
    from labctl.session import clock
    from labctl.session.room import candidate_lab

    login = os.environ.get("SUDO_USER", "")
    session = load_session(session_name)
    candidate = next((c for c in session.candidates if c.login and c.login == login), None)
    if candidate is None:
        say("Accès refusé : ce compte n'appartient à aucun candidat de cette session.\n")
        return 1
    while True:
        session = load_session(session_name)
        candidate = session.candidate(candidate.id)
        left = candidate.seconds_left(session)
        if candidate.access != "open" or left is None or left <= 0:
            say("L'épreuve est terminée pour vous : accès fermé. / Your time is over: access closed.\n")
            return 1
        lab = candidate_lab(candidate)
        if lab is None:
            say("Votre laboratoire n'est pas disponible : prévenez le surveillant. "
                "/ Lab unavailable: tell the proctor.\n")
            return 1
        nodes = [n.name for n in lab.plan.nodes]
        say(f"Session {session.name} — candidat {candidate.id} — temps restant {clock.format_left(left)}\n")
        say("Nœuds / nodes: " + "  ".join(f"{i}) {n}" for i, n in enumerate(nodes, start=1)) + "\n")
        say("Nœud (nom ou numéro, q pour quitter) / node (name or number, q to quit) ? ")
        answer = read_line()
        if answer is None or answer.lower() in ("q", "quit", "exit"):
            say("\n")
            return 0
        chosen = pick(answer, nodes)
        if chosen is None:
            say(f"\n'{shown(answer)}' n'est pas un nœud de votre laboratoire. / not a node of your lab.\n")
            continue
        say(f"\nConnexion à {chosen} / connecting to {chosen}\n")
        subprocess.run(node_ssh_argv(session, candidate, chosen))
