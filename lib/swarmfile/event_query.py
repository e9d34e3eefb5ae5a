"""What a reader of the event log asks for: which events (the filters of ``events.read_events``).

Shared by every EventLog implementation, so a filter means the same whatever keeps the events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterable, Optional, Union

from .clock import parse_ts
from .errors import ValidationError
from .yaml_log import Matcher

__all__ = ["Matcher", "matcher"]


def matcher(agent: Optional[str], task_id: Optional[str], types: Union[str, Iterable[str], None],
            since: Union[str, datetime, None]) -> tuple[Matcher, Callable[[bytes], bool]]:
    """The event filter, and a cheap test on raw bytes that every match passes (to skip parsing)."""
    wanted = {types} if isinstance(types, str) else set(types) if types is not None else None
    cutoff = None
    if since is not None:
        try:
            cutoff = parse_ts(since)
        except ValueError as exc:
            raise ValidationError(f"since: {exc}", hint="give an ISO-8601 time") from None

    def match(event: dict) -> bool:
        if agent is not None and event.get("agent") != agent:
            return False
        if task_id is not None and event.get("task_id") != task_id:
            return False
        if wanted is not None and event.get("type") not in wanted:
            return False
        if cutoff is not None:
            try:
                return parse_ts(event.get("timestamp")) >= cutoff
            except ValueError:
                return False
        return True

    # Ids and types are never quoted or escaped in a way that changes their bytes.
    needles = [[str(value).encode("utf-8")] for value in (agent, task_id) if value is not None]
    if wanted is not None:
        needles.append([str(value).encode("utf-8") for value in wanted])
    return match, lambda chunk: all(any(n in chunk for n in group) for group in needles)
