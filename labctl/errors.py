"""The one error family of labctl.

Library code raises these; only the CLI turns them into a message and an exit code.
Each error knows its exit code, so a caller never has to map types to numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


class LabctlError(Exception):
    """Base of every error labctl reports to a user (exit code 1 by default)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The message a user reads: what went wrong, then how to fix it."""
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file the user wrote: where it is, what is wrong, how to fix it."""

    file: str
    line: int
    message: str
    hint: str | None = None

    def render(self) -> str:
        """`file:line: message (hint)` — the shape editors and compilers use."""
        text = f"{self.file}:{self.line}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class InvalidInputError(LabctlError):
    """A topology, grading spec or scenario file is wrong; carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found")

    def render(self) -> str:
        lines = [p.render() for p in self.problems]
        lines.append(self.message + "; nothing was created.")
        return "\n".join(lines)


class NotFoundError(LabctlError):
    """A named thing (lab, node, scenario, provider) does not exist."""

    exit_code = 3


class PrivilegeError(LabctlError):
    """The operation needs root (or a capability) that this process does not have."""

    exit_code = 4


class PlatformError(LabctlError):
    """The machine lacks something the operation needs (a tool, a kernel feature)."""

    exit_code = 5


class ProviderError(LabctlError):
    """A provider failed while building, reaching or removing a lab."""

    exit_code = 6


class ProvisionError(LabctlError):
    """A playbook failed; the message names the host and the task."""

    exit_code = 7


class VerificationError(LabctlError):
    """`scenario verify` found that a scenario does not behave as it declares."""

    exit_code = 8
