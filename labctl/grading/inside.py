"""Grading inside the node, for providers whose nodes the controller cannot observe from outside
(libvirt VMs: their kernel is not the controller's).

Probes still run through the node's SSH server, but never as the login user's shell would run
them: each command is handed to an absolute /bin/bash started with no start-up file and a clean
environment (`env -i`, a fixed PATH without /usr/local), so PATH entries, aliases and functions
the candidate defined for interactive use do not apply to it. What cannot be excluded this way
(root's shell start-up file runs before any command sshd starts; a ForceCommand; a replaced
system program) is why every such verdict is reported "observed inside the node".
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from labctl.grading.nodeview import clean_shell_argv
from labctl.grading.session import CommandResult, NodeSession

CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def clean_command(command: str) -> str:
    """`command` for an SSH channel: run by an absolute, non-login bash that reads no start-up
    file, with only PATH, LC_ALL and HOME set."""
    return f"exec /usr/bin/env -i PATH={CLEAN_PATH} LC_ALL=C HOME=/root {shlex.join(clean_shell_argv(command))}"


@dataclass
class InsideSession:
    """A node's SSH session whose shell commands run in a clean shell (implements NodeSession)."""

    session: NodeSession

    def run(self, command: str, timeout: float) -> CommandResult:
        """`command` through the clean shell."""
        return self.session.run(clean_command(command), timeout)

    def cli(self, command: str, timeout: float) -> str:
        """The router CLI, as the node's session reaches it."""
        return self.session.cli(command, timeout)

    def close(self) -> None:
        """Close the SSH session."""
        self.session.close()
