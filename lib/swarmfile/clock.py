"""Time and host identity: the two clocks and the name of this machine, for every module below the loops.

Stored times are ISO-8601 UTC with ``Z`` (``format_ts``); ``parse_ts`` reads what people and
other tools wrote (``Z``, offsets, naive = UTC). Waits inside a process use ``time.monotonic()``,
never these. Every expiry function elsewhere takes ``now`` so tests inject the clock.
"""

from __future__ import annotations

import os
import re
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

__all__ = ["HOSTNAME", "utc_now", "format_ts", "now_ts", "parse_ts", "seconds_since", "in_seconds"]

# This machine's name in leases and liveness: $SWARM_HOST when set (two "hosts" on one machine, in
# tests or containers sharing a pid namespace), else the kernel's node name (socket.gethostname()
# without importing socket).
HOSTNAME = os.environ.get("SWARM_HOST", "").strip() or os.uname().nodename


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def format_ts(moment: Optional[datetime] = None) -> str:
    """``moment`` (default now) as ISO-8601 UTC with milliseconds and ``Z``."""
    if moment is None:
        moment = utc_now()
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # Not strftime: every event and lease stamps one, and strftime cost four times this.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (moment.year, moment.month, moment.day, moment.hour,
                                                  moment.minute, moment.second, moment.microsecond // 1000)


# (second, its text up to the seconds) of the last now_ts, swapped whole: threads read it unlocked.
_second: tuple[int, str] = (-1, "")
_MILLIS = tuple(f".{n:03d}Z" for n in range(1000))


def now_ts() -> str:
    """``format_ts()`` of now, made without a datetime: every event is stamped, and this costs a fifth.

    The same text: both take the system clock's microseconds rounded down, then milliseconds.
    """
    global _second
    micros = time.time_ns() // 1000
    seconds = micros // 1_000_000
    known = _second
    if known[0] != seconds:
        known = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return known[1] + _MILLIS[micros // 1000 % 1000]


_OFFSET_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_ts(value: Any) -> datetime:
    """A stored time as an aware UTC datetime.

    Accepts ``Z``, ``+07:00``, ``+0700`` and naive times (taken as UTC), as strings or as the
    datetime/date objects YAML makes of unquoted timestamps. Raises ValueError otherwise.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, str):
        if len(value) == 24 and value[-1] == "Z" and value[10] == "T":  # format_ts's own: the common case
            try:
                return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
            except ValueError:
                pass  # not a time after all: the general path below says why
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        text = _OFFSET_NO_COLON.sub(r"\1:\2", text) if "T" in text or " " in text else text
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value!r}") from None
    else:
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def seconds_since(value: Any, now: Optional[datetime] = None) -> float:
    """Seconds from the stored time ``value`` to ``now`` (default: the current time)."""
    return ((now or utc_now()) - parse_ts(value)).total_seconds()


def in_seconds(seconds: float, now: Optional[datetime] = None) -> datetime:
    """``now`` (default the current time) plus ``seconds``."""
    return (now or utc_now()) + timedelta(seconds=seconds)
