"""Debian version ordering (as `dpkg --compare-versions` does), for package checks.

A version is [epoch:]upstream[-revision]. Parts are compared left to right: runs of
non-digits character by character (`~` sorts before everything, even the end; letters
before other characters), then runs of digits as numbers.
"""

from __future__ import annotations

import re

DEBIAN_VERSION = re.compile(r"^(?:(\d+):)?([0-9][A-Za-z0-9.+~:-]*?)(?:-([A-Za-z0-9.+~]+))?$")


def _order(char: str) -> int:
    """Weight of one character in a non-digit run ('' is the end of the run)."""
    if char == "~":
        return -1
    if char == "":
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp on an upstream version or a revision: <0, 0 or >0."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = a[i] if i < len(a) and not a[i].isdigit() else ""
            cb = b[j] if j < len(b) and not b[j].isdigit() else ""
            if _order(ca) != _order(cb):
                return _order(ca) - _order(cb)
            i += 1 if ca else 0
            j += 1 if cb else 0
        start_a, start_b = i, j
        while i < len(a) and a[i].isdigit():
            i += 1
        while j < len(b) and b[j].isdigit():
            j += 1
        na, nb = int(a[start_a:i] or 0), int(b[start_b:j] or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def split_version(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision) of a Debian version; ValueError if it is not one."""
    match = DEBIAN_VERSION.match(version.strip())
    if not match:
        raise ValueError(f"not a Debian version: {version!r}")
    epoch, upstream, revision = match.groups()
    return int(epoch or 0), upstream, revision or ""


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version `a` sorts before, equal to or after `b`."""
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    result = _compare_part(ua, ub) or _compare_part(ra, rb)
    return (result > 0) - (result < 0)
