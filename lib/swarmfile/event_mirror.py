"""The operator host's events.yaml as a mirror of the Redis event stream: in order, gap-free, each event once.

On the Redis backend every host appends to the stream (redis_events); grep and git still want
events.yaml. ``mirror_once(cfg)`` appends to the workspace's events.yaml every stream event after
the last one it holds, oldest first, each with its stream id beside it (``stream_id``), through
the file log's own append (one write per batch; rotation as configured). The planner calls it
every round; ``events.py mirror [--follow]`` runs it by hand or as a service.

Crash safety: where to resume is read back from the file itself (the ``stream_id`` of its last
whole event, looking into the archives after a rotation) under the file's lock, and the batch is
appended under the same lock hold. A mirror killed mid-write leaves at most a torn last line,
which is not read and is cut off by the next append; so a crash neither loses nor duplicates an
event, and two mirrors racing (two planners) never write one twice. Only after a batch is on
disk does the stream drop what is mirrored beyond ``events.stream_keep`` (redis_events.trim).

One mirror file per stream: two operator hosts each mirroring into their own events.yaml would
each trim what the other may not have copied yet. On the files backend there is nothing to mirror.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Callable, Optional

from .config import Config
from .errors import BackendUnavailable, ValidationError
from .event_log import STREAM_ID
from .redis_events import RedisEventLog
from .stores import event_log

__all__ = ["BATCH", "mirror_once", "follow_mirror"]

log = logging.getLogger("swarmfile")

BATCH = 500  # events per lock hold and write: a mirror far behind catches up in steps, not one huge write
_STREAM_ID = re.compile(r"\d+-\d+")
_BACKOFF = (0.5, 30.0)  # first and longest pause of follow_mirror while Redis is unreachable


def _mirror(cfg: Config, batch: int,
            on_copy: Optional[Callable[[int], None]] = None) -> tuple[int, Optional[str]]:
    """Mirror what is new: (how many events were appended, the id of the last event mirrored)."""
    source = event_log(cfg)
    if not isinstance(source, RedisEventLog):
        return 0, None
    total, last, first = 0, None, True
    while True:
        def pending(after: Optional[str]) -> list[dict]:
            nonlocal last, first
            if after is not None and not (isinstance(after, str) and _STREAM_ID.fullmatch(after)):
                raise ValidationError(f"the last {STREAM_ID} in the mirror is {after!r}, not a stream id",
                                      path=source.mirror.where(), hint=f"fix that line's {STREAM_ID} "
                                      "(as the stream has it: redis-cli XRANGE) or remove the line; nothing was written")
            if first and source.trimmed_after(after):
                log.warning("%s: events after %s were trimmed from %s before they were mirrored; the mirror "
                            "has a gap there", source.mirror.where(), after or "the start", source.where())
            first = False
            found = source.entries_after(after, batch)
            last = found[-1][0] if found else after
            return [{**event, STREAM_ID: ident} for ident, event in found]

        copied = source.mirror.append_after(STREAM_ID, pending)
        total += copied
        if copied and on_copy is not None:
            on_copy(copied)
        if copied < batch:
            break
    if total and last is not None:
        source.trim(last, int(cfg.get("events", "stream_keep")))
    return total, last


def mirror_once(cfg: Config, *, batch: int = BATCH) -> int:
    """Append every stream event after the last one in events.yaml to it, in order; how many were appended.

    0 on the files backend. Raises BackendUnavailable (nothing half-done: rerun it),
    ParseError/ValidationError when events.yaml cannot be read or appended to (it is left as it was).
    """
    return _mirror(cfg, batch)[0]


def follow_mirror(cfg: Config, *, stop: Optional[Callable[[], bool]] = None, timeout: Optional[float] = None,
                  on_copy: Optional[Callable[[int], None]] = None, batch: int = BATCH) -> int:
    """Mirror now and again whenever the stream grows, until ``stop()`` or ``timeout``; events appended.

    Waits for new events in XREAD BLOCK (no polling). While Redis is unreachable it logs once,
    pauses (0.5 s, doubling up to 30 s) and retries. ``on_copy(n)`` is called after each batch of ``n`` copied.
    """
    source = event_log(cfg)
    if not isinstance(source, RedisEventLog):
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    pause, down, total, last = _BACKOFF[0], False, 0, None
    pausing = threading.Event()  # waited on, never set: a pause that a stop() check can cut short
    while not (stop is not None and stop()):
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        try:
            copied, last = _mirror(cfg, batch, on_copy)
            if down:
                log.warning("%s: reachable again; mirroring resumed", source.where())
            down, pause = False, _BACKOFF[0]
            total += copied
            source.wait(None if last is None else str(last), 1.0 if remaining is None else min(1.0, remaining))
        except BackendUnavailable as exc:
            if not down:
                log.warning("%s; mirroring pauses and retries", exc)
            down = True
            pausing.wait(pause if remaining is None else min(pause, max(remaining, 0)))
            pause = min(pause * 2, _BACKOFF[1])
    return total
