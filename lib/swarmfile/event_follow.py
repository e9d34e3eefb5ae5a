"""Follow the event log: yield events as they are appended, across rotations.

``follow`` is re-exported as ``events.follow``; it asks the workspace's ``EventLog`` (see
``stores.event_log``) to follow, with the filters of ``events.read_events``. An event is
yielded once it is whole and once only; how the log is watched is the implementation's.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Callable, Iterable, Iterator, Optional, Union

from .config import load_config
from .stores import event_log

__all__ = ["follow"]

PathLike = Union[str, "os.PathLike[str]"]


def follow(agent: Optional[str] = None, task_id: Optional[str] = None,
           types: Union[str, Iterable[str], None] = None, since: Union[str, datetime, None] = None,
           *, root: Optional[PathLike] = None, events_file: Optional[PathLike] = None, backlog: int = 0,
           interval: float = 0.1, timeout: Optional[float] = None,
           stop: Optional[Callable[[], bool]] = None, after: Optional[str] = None) -> Iterator[dict]:
    """Matching events as they are appended, oldest first (a generator; ``close()`` ends it).

    The position is taken when ``follow`` is called, so nothing appended after the call is
    missed; the last ``backlog`` matches from before it come first. ``after``: an event id the
    log's ``append`` returned, to resume right after that event instead. Polls every
    ``interval`` seconds; ends after ``timeout`` seconds or once ``stop()`` is true.
    """
    store = event_log(load_config(root=root), events_file=events_file)
    return store.follow(agent=agent, task_id=task_id, types=types, since=since, backlog=backlog, after=after,
                        interval=interval, timeout=timeout, stop=stop)
