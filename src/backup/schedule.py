"""When `serve` runs a backup: daily at fixed UTC times, and once at start when the last success
is too old (so a fresh stack has a dump on its first day)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def parse_times(text: str) -> tuple[time, ...]:
    """ "02:30" or "02:30,14:30" -> sorted UTC times; ValueError names the bad part."""
    out = set()
    for part in re.split(r"[\s,]+", text.strip()):
        if not part:
            continue
        m = _HHMM.fullmatch(part)
        if not m:
            raise ValueError(f"{part!r} is not a time HH:MM (UTC, 00:00-23:59)")
        out.add(time(int(m[1]), int(m[2]), tzinfo=UTC))
    if not out:
        raise ValueError("no time given")
    return tuple(sorted(out))


def next_run(now: datetime, times: tuple[time, ...]) -> datetime:
    """The first scheduled moment strictly after `now` (an aware datetime)."""
    now = now.astimezone(UTC)
    candidates = [
        datetime.combine(now.date() + timedelta(days=d), t) for d in (0, 1) for t in times
    ]
    return min(c for c in candidates if c > now)


def due_at_start(last_success: datetime | None, now: datetime, max_age_hours: float) -> bool:
    """Run once at start when no run succeeded within `max_age_hours` (0 disables)."""
    if max_age_hours <= 0:
        return False
    if last_success is None:
        return True
    return now - last_success > timedelta(hours=max_age_hours)
