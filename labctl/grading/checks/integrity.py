"""The manifest check: files on a node match checksums recorded before a fault."""

from __future__ import annotations

import shlex
from typing import Any

from labctl.grading.checks.base import CheckType, Probe, Verdict, error, judged
from labctl.grading.session import CommandResult
from labctl.grading.spec import ManifestCheck

SHOWN = 5


def probe_manifest(check: ManifestCheck) -> Probe:
    """`sha256sum` of every recorded path (missing files are reported on stderr)."""
    if not check.expected:
        return Probe("true")
    paths = " ".join(shlex.quote(path) for path in sorted(check.expected))
    return Probe(f"export LC_ALL=C; sha256sum -- {paths}")


def parse_sums(text: str) -> dict[str, str]:
    """path -> sha256 from `sha256sum` output (binary-mode `*` markers allowed)."""
    sums = {}
    for line in text.splitlines():
        digest, _, path = line.strip().partition(" ")
        if len(digest) == 64 and path:
            sums[path.lstrip(" *")] = digest.lower()
    return sums


def evaluate_manifest(check: ManifestCheck, result: CommandResult) -> Verdict:
    """PASS when every recorded file exists with the recorded content, byte for byte."""
    if not check.expected:
        return error(f"no checksums recorded in the vault ({check.manifest}): was the fault that records "
                     "them injected?")
    if result.exit_code not in (0, 1):
        return error(f"sha256sum failed with exit code {result.exit_code}: {result.stderr.strip()[:200]}")
    seen = parse_sums(result.stdout)
    missing = [p for p in sorted(check.expected) if p not in seen]
    changed = [p for p in sorted(check.expected) if p in seen and seen[p] != check.expected[p]]
    total = len(check.expected)
    if not missing and not changed:
        return judged(True, f"all {total} files match the checksums recorded before the fault")
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({', '.join(missing[:SHOWN])}{', …' if len(missing) > SHOWN else ''})")
    if changed:
        parts.append(f"{len(changed)} differ ({', '.join(changed[:SHOWN])}{', …' if len(changed) > SHOWN else ''})")
    return judged(False, f"{total - len(missing) - len(changed)}/{total} files match; " + "; ".join(parts))


INTEGRITY_TYPES: tuple[CheckType[Any], ...] = (CheckType("manifest", probe_manifest, evaluate_manifest),)
