"""The event log: where every event of a workspace is stored, in the order it happened.

``EventLog`` is the interface the rest of Swarmfile sees; ``events`` (append, read, tail,
status broadcast) and ``event_follow`` (follow) are thin callers of it, and nothing else knows
how events are kept. ``stores.event_log(cfg)`` picks the implementation ``swarm.yaml``'s
``backend:`` names; ``files`` (the default) is event_log_file's ``FileEventLog``: events.yaml,
one flow line per event, rotated into archives next to it; a Redis URL is redis_events'
``RedisEventLog``: one Stream shared by every host, which event_mirror copies into the operator
host's events.yaml.

What every implementation guarantees (``tests/test_event_log.py`` holds each to it):

- ``append`` stores one whole event after every event appended before it returned, from any
  process; concurrent appenders lose nothing, and each appender's events keep their order.
  It returns the event's id, an opaque text: ``follow(after=id)`` resumes right after it, even
  after the log was rotated.
- Readers see whole events only, in log order; an event that cannot be read raises (with where
  it is), it is never skipped as if it were not there.
- ``follow`` yields every matching event appended after it was called (or after ``after``),
  once, in order, across rotations.
- ``check`` reports what is wrong in the store's own terms, so doctor need not know its layout.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from .clock import now_ts
from .config import validate_id
from .errors import ValidationError
from .store_check import WorkspaceStore

__all__ = ["EventLog", "Types", "Since", "make_event", "RESERVED", "STREAM_ID"]

Types = Union[str, Iterable[str], None]
Since = Union[str, datetime, None]

RESERVED = ("timestamp", "type", "agent", "task_id")  # set by make_event, never by data
STREAM_ID = "stream_id"  # beside an event mirrored from a Redis stream (event_mirror), never in data
_NOT_DATA = frozenset(RESERVED + (STREAM_ID,))
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")


# Types and ids already found valid (exact str only, at most _KNOWN_MAX each): a loop stamps the same few on
# every event, and a set lookup costs a fraction of the pattern match.
_known_types: set[str] = set()
_known_ids: set[str] = set()
_KNOWN_MAX = 4096


def _check_type(value: Any) -> None:
    if not isinstance(value, str) or not _TYPE.fullmatch(value):
        raise ValidationError(f"invalid event type {value!r}",
                              hint="use a lowercase word: a-z first, then a-z, 0-9 or '_'")
    if value.__class__ is str and len(_known_types) < _KNOWN_MAX:
        _known_types.add(value)


def _check_id(value: Any, kind: str) -> None:
    validate_id(value, kind)
    if value.__class__ is str and len(_known_ids) < _KNOWN_MAX:
        _known_ids.add(value)


def make_event(type: str, agent: str, task_id: Optional[str], data: dict[str, Any]) -> dict[str, Any]:
    """The event every log stores: ``timestamp type agent [task_id]`` then ``data``, checked.

    Raises ValidationError for a type that is not a lowercase word, a bad id, or a reserved key in ``data``.
    """
    if type.__class__ is not str or type not in _known_types:
        _check_type(type)
    known = _known_ids
    if agent.__class__ is not str or agent not in known:
        _check_id(agent, "agent id")
    event: dict[str, Any] = {"timestamp": now_ts(), "type": type, "agent": agent}
    if task_id is not None:
        if task_id.__class__ is not str or task_id not in known:
            _check_id(task_id, "task id")
        event["task_id"] = task_id
    if data:
        for key in data:
            if key in _NOT_DATA:
                raise ValidationError(f"event field {key!r} is set by append_event, not by data")
        event.update(data)
    return event


class EventLog(WorkspaceStore):
    """The append-only event log of one workspace. Subclasses implement all methods.

    The filters of ``read`` and ``follow`` are those of ``events.read_events``: ``agent``,
    ``task_id``, ``types`` (one or several), ``since`` (events at or after this time).
    """

    @abstractmethod
    def append(self, event: dict[str, Any], *, rotate_bytes: Optional[int] = None) -> str:
        """Store ``event`` (made by ``make_event``) after every earlier one; returns its id.

        ``rotate_bytes`` overrides the configured rotation size for this append (0: never
        rotate; an implementation without a size rotates by its own rule and ignores it).
        Raises ValidationError (the store refuses appends as it is), LockTimeout.
        """

    @abstractmethod
    def read(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
             since: Since = None, limit: Optional[int] = None, include_archives: bool = False) -> list[dict]:
        """The matching events in log order; with ``limit`` only the last ``limit`` of them.

        ``include_archives``: the rotated-away events first, then the live ones.
        Raises ParseError/ValidationError naming where the bad event is.
        """

    @abstractmethod
    def follow(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
               since: Since = None, backlog: int = 0, after: Optional[str] = None, interval: float = 0.1,
               timeout: Optional[float] = None, stop: Optional[Callable[[], bool]] = None) -> Iterator[dict]:
        """Matching events as they are appended (a generator; ``close()`` ends it).

        Starts when called (the last ``backlog`` matches first) or, given ``after`` (an id
        ``append`` returned), right after that event. Waits ``interval`` seconds between looks;
        ends after ``timeout`` seconds or once ``stop()`` is true. Raises ValidationError at
        once for an ``after`` this log cannot resume from.
        """

    @abstractmethod
    def archives(self) -> list[str]:
        """Where each rotated-away part of the log is kept, oldest first (for messages and listings)."""

    # where (the live log), create, owns (the log or an archive) and check (every event is read):
    # as every WorkspaceStore

    @abstractmethod
    def repair(self, action: str, where: str, *, now: datetime) -> str:
        """Make the repair ``action`` of a Problem at ``where`` that ``check`` returned; what was done.

        Raises SwarmError when the repair cannot be made (the problem is left as it was).
        """
