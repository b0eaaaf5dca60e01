"""Attaching what a lab recorded in its vault (controller side) to the checks that need it."""

from __future__ import annotations

from pathlib import Path

from labctl.grading.checks.integrity import parse_sums
from labctl.grading.spec import GradingSpec, ManifestCheck


def attach_vault(spec: GradingSpec, vault: Path) -> GradingSpec:
    """Give each manifest check the checksums recorded in `vault` (none if not recorded yet)."""
    for check in spec.checks:
        if isinstance(check, ManifestCheck):
            listing = vault / check.manifest
            if listing.is_file():
                check.attach(parse_sums(listing.read_text(encoding="utf-8", errors="replace")))
    return spec
