"""The one error family of labctl.

Library code raises these; only the CLI turns them into a message and an exit code.
Each error knows its exit code, so a caller never has to map types to numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---- exit codes: one meaning each, so a script or CI job can tell outcomes apart ----------
EXIT_OK = 0            # done; `grade`: every check PASSed
EXIT_FAIL = 1          # `grade`: some check FAILed; `doctor`: a requirement is missing
EXIT_INPUT = 2         # a file or argument is wrong (also click's usage errors); nothing was done
EXIT_NOT_FOUND = 3     # a named lab, node, scenario, session or provider does not exist
EXIT_PRIVILEGE = 4     # needs root or a capability
EXIT_PLATFORM = 5      # the machine lacks a tool or kernel feature
EXIT_PROVIDER = 6      # a provider failed to build, reach or remove a lab
EXIT_PROVISION = 7     # a playbook failed
EXIT_VERIFICATION = 8  # `scenario verify`: the scenario does not behave as it declares
EXIT_TAMPERED = 9      # signed session results or the audit log were changed / are invalid
EXIT_CHECK_ERROR = 10  # `grade`: some check could not be judged (ERROR)
EXIT_ERROR = 11        # any other labctl error
EXIT_BUSY = 12         # another labctl command holds this lab's or session's lock
EXIT_INTERNAL = 70     # a bug in labctl (rerun with --debug for the traceback)
EXIT_TIMEOUT = 124     # `labctl exec`/`ssh` timed out (as timeout(1) does)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success; grade: every check PASSed",
    EXIT_FAIL: "grade: some check FAILed (none ERROR); doctor: a requirement is missing",
    EXIT_INPUT: "bad input: a file or argument is wrong, or a usage error; nothing was done",
    EXIT_NOT_FOUND: "not found: no such lab, node, scenario, session or provider",
    EXIT_PRIVILEGE: "privilege: needs root",
    EXIT_PLATFORM: "platform: the machine lacks a tool or kernel feature (see labctl doctor)",
    EXIT_PROVIDER: "provider: building, reaching or removing a lab failed",
    EXIT_PROVISION: "provisioning: a playbook failed",
    EXIT_VERIFICATION: "scenario verify: the scenario does not behave as it declares",
    EXIT_TAMPERED: "signed session results or audit log changed or invalid",
    EXIT_CHECK_ERROR: "grade: some check could not be judged (ERROR)",
    EXIT_ERROR: "any other labctl error",
    EXIT_BUSY: "busy: another labctl command holds this lab's or session's lock",
    EXIT_INTERNAL: "internal error (a bug; rerun with --debug)",
    EXIT_TIMEOUT: "exec/ssh: the command timed out",
    EXIT_INTERRUPTED: "interrupted",
}


def exit_codes_text() -> str:
    """The table as `labctl --help` and the README show it."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())


def profile_hint(option: str) -> str:
    """How to install what one of scripts/bootstrap.sh's options adds (--sessions, --libvirt, --dev):
    the light default installs only what the local provider needs."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bootstrap.sh"
    where = str(script) if script.is_file() else "scripts/bootstrap.sh (in labctl's repository)"
    return f"sudo {where} {option} installs it"


class LabctlError(Exception):
    """Base of every error labctl reports to a user (exit code 11 unless a subclass says)."""

    exit_code = EXIT_ERROR

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

    exit_code = EXIT_INPUT

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

    exit_code = EXIT_NOT_FOUND


class PrivilegeError(LabctlError):
    """The operation needs root (or a capability) that this process does not have."""

    exit_code = EXIT_PRIVILEGE


class PlatformError(LabctlError):
    """The machine lacks something the operation needs (a tool, a kernel feature)."""

    exit_code = EXIT_PLATFORM


class ProviderError(LabctlError):
    """A provider failed while building, reaching or removing a lab."""

    exit_code = EXIT_PROVIDER


class ProvisionError(LabctlError):
    """A playbook failed; the message names the host and the task."""

    exit_code = EXIT_PROVISION


class BusyError(LabctlError):
    """Another labctl command holds the lab's or session's lock (it waited, then gave up)."""

    exit_code = EXIT_BUSY


class NameTakenError(LabctlError):
    """`up --name X` when a lab named X exists (and --replace was not given)."""

    exit_code = EXIT_INPUT


class VerificationError(LabctlError):
    """`scenario verify` found that a scenario does not behave as it declares."""

    exit_code = EXIT_VERIFICATION
