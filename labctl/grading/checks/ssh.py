"""Active SSH checks: log-ins tried from the grader's probe point (ssh_login) and a burst of bad
passwords that must get the probe point banned (ssh_ban).

The acting part is grading/sshprobe.py (local provider, from outside the nodes); this module
holds what is pure: TOTP codes (RFC 6238, so the controller needs no oathtool) and the
judgement on a recorded observation (JSON), tested on recorded facts. No program of a node can
take the grader's place: inside a node these checks are refused (ERROR).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Unobservable, Verdict, error, judged, parse_json, short
from labctl.grading.session import CommandResult
from labctl.grading.spec import SshBanCheck, SshLoginCheck

TOTP_STEP = 30  # seconds, RFC 6238's default and pam_oath's (HOTP/T30)
STALE = 3600  # seconds: a wrong code is the one that was right an hour ago


def totp(secret_hex: str, when: float, digits: int = 6, step: int = TOTP_STEP) -> str:
    """The TOTP code (RFC 6238: HMAC-SHA1 of the time step, dynamic truncation) at `when`."""
    mac = hmac.new(bytes.fromhex(secret_hex), struct.pack(">Q", int(when) // step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10 ** digits).zfill(digits)


def wrong_code(secret_hex: str, when: float, digits: int = 6) -> str:
    """A code that was right an hour ago and is none of the ten steps around `when` (a code a
    too wide window, or no check at all, would accept)."""
    near = {totp(secret_hex, when + k * TOTP_STEP, digits) for k in range(-5, 6)}
    for back in range(STALE, 2 * STALE, TOTP_STEP):
        code = totp(secret_hex, when - back, digits)
        if code not in near:
            return code
    return "0" * digits if "0" * digits not in near else "1" * digits


def refused_inside(check: Any) -> Probe:
    """No program of a node may act for the grader: refused inside (ERROR)."""
    return Probe("echo 'labctl: active SSH checks act from the probe point of the grader (local provider) only' >&2; "
                 "exit 3")


def evaluate_login(check: SshLoginCheck, result: CommandResult) -> Verdict:
    """accepted/refused as the node's own SSH server said; no answer is never a refusal."""
    if result.exit_code != 0:
        return error(short(result.stderr or result.stdout) or f"SSH probe failed (exit {result.exit_code})")
    data = parse_json(result.stdout, "the SSH log-in observation")
    try:
        answered, host_key, outcome = bool(data["answered"]), str(data["host_key"]), str(data["outcome"])
        steps = [str(s) for s in data["steps"]]
    except (KeyError, TypeError) as exc:
        raise Unobservable(f"the SSH log-in observation lacks {exc}") from None
    tried = f"{check.user} with {check.methods} from {data.get('probe', 'the probe point')}"
    if not answered:
        why = data.get("error") or "no SSH banner"
        return judged(False, f"{tried}: the SSH server did not answer ({why}); a refusal needs its answer")
    if host_key != "ok":
        return error(f"tampered: the server that answered is not {check.node}'s SSH server ({host_key})")
    seen = "; ".join(steps)
    if outcome not in ("accepted", "refused", "partial"):
        return error(f"{tried}: {seen or outcome}")
    if "code" in check.methods and outcome == "refused" and not data.get("key_first_factor"):
        return judged(False, f"{tried}: the key itself was refused ({seen}), so no code was ever judged")
    return judged(outcome == check.expect, f"{tried}: {outcome} ({seen})" + (
        "" if outcome == check.expect else f", expected {check.expect}"))


def evaluate_ban(check: SshBanCheck, result: CommandResult) -> Verdict:
    """PASS when the probe point's SYN reached the node and went unanswered after the burst, and
    the undo let it in again."""
    if result.exit_code != 0:
        return error(short(result.stderr or result.stdout) or f"SSH ban probe failed (exit {result.exit_code})")
    data = parse_json(result.stdout, "the SSH ban observation")
    try:
        before, sent, banned = bool(data["before"]), int(data["sent"]), data["banned_after"]
        undone = data["undone"]
    except (KeyError, TypeError, ValueError) as exc:
        raise Unobservable(f"the SSH ban observation lacks {exc}") from None
    probe = data.get("probe", "the probe point")
    if not before:
        return judged(False, f"the SSH server did not answer {probe} before the burst: nothing to ban")
    burst = f"{sent} wrong passwords for {check.user} from {probe}"
    if banned is None:
        return judged(False, f"{burst}: still answered {check.within:g} s later (no ban)")
    verdict = judged(True, f"{burst}: banned {float(banned):.1f} s after the burst (SYN arrived, no answer)")
    if undone is not True:
        return error(f"{verdict.evidence}; but the ban could not be lifted ({undone}): grading again would differ")
    return judged(True, verdict.evidence + "; ban lifted by the undo command")


SSH_TYPES: tuple[CheckType[Any], ...] = (
    CheckType("ssh_login", refused_inside, evaluate_login),
    CheckType("ssh_ban", refused_inside, evaluate_ban),
)
