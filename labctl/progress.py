"""Progress display for long work (image builds, lab creation, playbooks).

Library code reports through a `Progress`; the CLI decides where it goes. On a terminal
the current step is rewritten in place with a counter; elsewhere (CI logs, pipes) each
finished step is one plain line with its duration.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    """Reports steps of long work to a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self._current: str | None = None

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Time one step; print it when it finishes (or fails)."""
        start = time.monotonic()
        self._current = title
        if self.live:
            self._write(f"\r\033[K… {title}")
        try:
            yield
        except BaseException:
            self._finish(title, start, ok=False)
            raise
        self._finish(title, start, ok=True)

    def _finish(self, title: str, start: float, *, ok: bool) -> None:
        mark = "✓" if ok else "✗"
        prefix = "\r\033[K" if self.live else ""
        self._write(f"{prefix}{mark} {title} ({time.monotonic() - start:.1f} s)\n")
        self._current = None

    def update(self, detail: str) -> None:
        """Show what is happening inside the current step (terminal only)."""
        if self.live and self._current:
            self._write(f"\r\033[K… {self._current}: {detail[:100]}")

    def note(self, text: str) -> None:
        """A line of information that is not a step."""
        prefix = "\r\033[K" if self.live else ""
        self._write(f"{prefix}  {text}\n")


QUIET = Progress(quiet=True)
