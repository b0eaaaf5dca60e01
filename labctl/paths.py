"""Where labctl keeps what it builds: images, lab state. One root, overridable.

LABCTL_HOME (default /var/lib/labctl) holds `images/` (cached node root filesystems) and
`labs/` (one folder per running lab: state.json, keys, per-node writable layers).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def home() -> Path:
    """The root folder of labctl's state."""
    return Path(os.environ.get("LABCTL_HOME", "/var/lib/labctl"))


def images_dir() -> Path:
    """Where node images are built and cached."""
    return home() / "images"


def labs_dir() -> Path:
    """Where each lab's state folder lives."""
    return home() / "labs"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """`write_atomic` for a JSON document."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
