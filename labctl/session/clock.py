"""The exam clock, computed only from timestamps stored on disk (never process memory).

A candidate's end = session start + duration (+ one third of it for tiers temps)
+ extra minutes granted by the proctor.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from labctl.errors import InvalidInputError, Problem

DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)(?:m|min))?(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> int:
    """Seconds in '3h', '90m', '2h30m', '45s' (or bare minutes: '90')."""
    value = text.strip().lower().replace(" ", "")
    if value.isdigit():
        return int(value) * 60
    match = DURATION.match(value)
    if not value or not match or not any(match.groupdict().values()):
        raise InvalidInputError([Problem("--duration", 0, f"bad duration {text!r}", "e.g. 3h, 90m, 2h30m")])
    seconds = int(match["h"] or 0) * 3600 + int(match["m"] or 0) * 60 + int(match["s"] or 0)
    if seconds <= 0:
        raise InvalidInputError([Problem("--duration", 0, "the duration must be positive")])
    return seconds


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def stamp(moment: datetime | None = None) -> str:
    """A UTC ISO-8601 timestamp (second precision) as stored on disk."""
    return (moment or now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> datetime:
    """Read back a timestamp written by `stamp`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def allowed_seconds(duration_s: int, tiers_temps: bool, extra_minutes: int) -> int:
    """A candidate's working time: duration, + one third for tiers temps, + extra minutes."""
    base = duration_s + (duration_s + 2) // 3 if tiers_temps else duration_s
    return base + extra_minutes * 60


def end_time(started: str, duration_s: int, tiers_temps: bool, extra_minutes: int) -> datetime:
    """When a candidate's time ends."""
    return parse_stamp(started) + timedelta(seconds=allowed_seconds(duration_s, tiers_temps, extra_minutes))


def format_left(seconds: float) -> str:
    """'1:05:09' for time left; '0:00:00' once over."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
