"""Attaching what a lab recorded in its vault (controller side) to the checks that need it."""

from __future__ import annotations

from pathlib import Path

from labctl.grading.checks.integrity import parse_sums
from labctl.grading.spec import GradingSpec, ManifestCheck, SshLoginCheck


def attach_vault(spec: GradingSpec, vault: Path) -> GradingSpec:
    """Give each manifest check the checksums recorded in `vault` (none if not recorded yet), and
    each ssh_login check with a key its private key (kept there by the setup, never in a node)."""
    for check in spec.checks:
        if isinstance(check, ManifestCheck):
            listing = vault / check.manifest
            if listing.is_file():
                check.attach(parse_sums(listing.read_text(encoding="utf-8", errors="replace")))
        elif isinstance(check, SshLoginCheck) and check.key is not None:
            key = vault / check.key
            if key.is_file():
                check.attach_key(key.read_text(encoding="utf-8", errors="replace"))
    return spec
