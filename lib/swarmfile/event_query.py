"""What a reader of the event log asks for: which file, and which events (the filters).

Shared by events.py (``read_events``/``tail``) and event_follow.py (``follow``), so neither
imports the other's insides.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from .clock import parse_ts
from .config import Config, load_config
from .errors import ValidationError
from .yaml_log import Matcher

__all__ = ["Matcher", "matcher", "log_path"]

PathLike = Union[str, "os.PathLike[str]"]


def log_path(*, root: Optional[PathLike], events_file: Optional[PathLike]) -> tuple[Config, Path]:
    """The workspace's configuration and the log to use (a relative ``events_file`` is taken from the root)."""
    cfg = load_config(root=root)
    if events_file is None:
        return cfg, cfg.events_file
    path = Path(os.path.expanduser(os.fspath(events_file)))
    return cfg, path if path.is_absolute() else cfg.root / path


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
