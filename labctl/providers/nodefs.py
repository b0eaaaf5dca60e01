"""Seeding a node's writable layer before it starts.

Files placed in the overlay's upper folder appear inside the node. Owners are shifted
into the node's uid range, and each parent folder copies the owner and mode of the
image's folder, because an upper folder's attributes hide the lower one's.
"""

from __future__ import annotations

import os
from pathlib import Path

from labctl.image import UID_BASE


def _make_parents(lower: Path, upper: Path, relative: Path) -> None:
    current_lower, current_upper = lower, upper
    for part in relative.parent.parts:
        current_lower, current_upper = current_lower / part, current_upper / part
        if current_upper.exists():
            continue
        if current_lower.is_dir():
            info = current_lower.stat()
            current_upper.mkdir(mode=info.st_mode & 0o7777)
            os.chmod(current_upper, info.st_mode & 0o7777)
            os.lchown(current_upper, info.st_uid, info.st_gid)
        else:
            current_upper.mkdir(mode=0o755)
            os.lchown(current_upper, UID_BASE, UID_BASE)


def place(lower: Path, upper: Path, path: str, content: str | bytes, *,
          mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    """Put a file at `path` (absolute inside the node), owned by node uid/gid."""
    relative = Path(path.lstrip("/"))
    _make_parents(lower, upper, relative)
    target = upper / relative
    data = content.encode() if isinstance(content, str) else content
    target.write_bytes(data)
    os.chmod(target, mode)
    os.lchown(target, UID_BASE + uid, UID_BASE + gid)


def prepare_upper(upper: Path) -> None:
    """Create an empty upper folder owned by the node's root."""
    upper.mkdir(parents=True, exist_ok=True)
    os.chmod(upper, 0o755)
    os.lchown(upper, UID_BASE, UID_BASE)


def place_link(lower: Path, upper: Path, path: str, target: str) -> None:
    """Put a symbolic link at `path` (absolute inside the node) pointing to `target`, owned
    by node root (e.g. a unit enabled: a `.wants/` link)."""
    relative = Path(path.lstrip("/"))
    _make_parents(lower, upper, relative)
    link = upper / relative
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    os.lchown(link, UID_BASE, UID_BASE)
