"""The event log's public functions: append, read, filter, tail, follow, rotate; status broadcast.

Thin callers of the workspace's ``EventLog`` (event_log.py), which ``stores.event_log`` picks
from ``swarm.yaml`` ``backend:``; with the default ``files`` that is events.yaml, a top-level
``events:`` list with one flow line per event (event_log_file.py says how it is kept)::

    events:
    - {timestamp: '2026-11-22T10:00:00.123Z', type: started, agent: executor-1, task_id: TASK-1}

* ``append_event`` checks the event (a lowercase type, valid ids, no reserved key in the data)
  and appends it; a log an appended event would not join raises ValidationError and is left
  as it was. Past ``events.rotate_bytes`` the log is rotated into an archive.
* ``read_events``/``tail`` with a ``limit`` cost what they return, not the size of the log; a
  reader that meets a bad entry raises ParseError with where it is (doctor checks every entry).
* A bad entry in the middle does not stop appends: the loops keep running on a log whose
  history is damaged, and the entry stays where it is for a person to fix.
* ``follow`` yields events as they are appended, across rotations (event_follow.py).
* ``StatusBroadcaster`` announces an agent's START/DONE/WAIT/ERROR/HELP/SKIP.

An ``events_file`` argument names a log file to use instead of the workspace's (always a file,
whatever the backend); a relative one is taken from the workspace root.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .config import Config, load_config, validate_id
from .errors import ParseError, ValidationError
from .event_follow import follow
from .event_log import RESERVED as _RESERVED
from .event_log import EventLog, make_event
from .fileio import dump_flow, load_yaml_text
from .stores import event_log

__all__ = ["Broadcast", "StatusBroadcaster", "append_event", "read_events", "tail", "follow", "archives", "main"]

PathLike = Union[str, "os.PathLike[str]"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Broadcast(str, Enum):
    """The broadcast states and the event types they are logged as."""

    START = "started"
    DONE = "completed"
    WAIT = "waiting"
    ERROR = "failed"
    HELP = "help"
    SKIP = "skipped"


def _log(root: Optional[PathLike], events_file: Optional[PathLike]) -> tuple[Config, EventLog]:
    cfg = load_config(root=root)
    return cfg, event_log(cfg, events_file=events_file)


def archives(*, root: Optional[PathLike] = None, events_file: Optional[PathLike] = None) -> list[Path]:
    """Where the rotated archives of the log are, oldest first."""
    return [Path(where) for where in _log(root, events_file)[1].archives()]


# ---------------------------------------------------------------------------- append


# (Config, events_file, EventLog) of the last append: a loop appends to one log, and asking stores for it
# on every event cost more than the checks of the event. Swapped whole, so threads read it unlocked.
_last_log: tuple = (None, None, None)


def _append(type: str, agent: str, task_id: Optional[str], root: Optional[PathLike],
            events_file: Optional[PathLike], rotate_bytes: Optional[int], data: dict[str, Any]) -> dict[str, Any]:
    global _last_log
    event = make_event(type, agent, task_id, data)
    cfg = load_config(root=root)  # a new Config when swarm.yaml changed: then the log is asked for again
    last = _last_log
    if last[0] is cfg and last[1] == events_file:
        store = last[2]
    else:
        store = event_log(cfg, events_file=events_file)
        _last_log = (cfg, events_file, store)
    store.append(event, rotate_bytes=rotate_bytes)
    return event


def append_event(type: str, agent: str, task_id: Optional[str] = None, *, root: Optional[PathLike] = None,
                 events_file: Optional[PathLike] = None, rotate_bytes: Optional[int] = None,
                 **data: Any) -> dict[str, Any]:
    """Append one event to the log and return it.

    ``type`` is a lowercase word; ``agent``/``task_id`` must be valid ids; ``data`` becomes the
    event's other fields. ``rotate_bytes`` overrides ``events.rotate_bytes`` (0: never rotate).
    A relative ``events_file`` is taken from the workspace root.
    Raises ValidationError (bad value, or a log an appended line would not join), LockTimeout.
    """
    return _append(type, agent, task_id, root, events_file, rotate_bytes, data)


# ---------------------------------------------------------------------------- read


def read_events(agent: Optional[str] = None, task_id: Optional[str] = None,
                types: Union[str, Iterable[str], None] = None, since: Union[str, datetime, None] = None,
                limit: Optional[int] = None, *, root: Optional[PathLike] = None,
                events_file: Optional[PathLike] = None, include_archives: bool = False) -> list[dict]:
    """The events that match every given filter, in log order (a missing log has none).

    ``types``: one type or several; ``since``: events at or after this time. ``limit``: only
    the last ``limit`` matches, read backwards from the end. ``include_archives``: the rotated
    archives first (oldest first), then the live log.
    Raises ParseError/ValidationError naming the file (and line when known).
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be a whole number >= 0, got {limit!r}")
    return _log(root, events_file)[1].read(agent=agent, task_id=task_id, types=types, since=since, limit=limit,
                      include_archives=include_archives)


def tail(n: int = 10, **filters: Any) -> list[dict]:
    """The last ``n`` matching events, oldest first (the filters of ``read_events``)."""
    return read_events(limit=n, **filters)


# ---------------------------------------------------------------------------- broadcast


def _announcer(state: Broadcast) -> Callable[..., dict[str, Any]]:
    def announce(self: StatusBroadcaster, task_id: Optional[str] = None, message: Optional[str] = None,
                 meta: Optional[dict] = None, **extra: Any) -> dict[str, Any]:
        return self.broadcast(state, task_id, message, meta, **extra)

    announce.__name__ = announce.__qualname__ = state.name.lower()
    announce.__doc__ = f"Log a ``{state.value}`` event; ``extra`` keywords are merged into ``meta``."
    return announce


class StatusBroadcaster:
    """Announces one agent's status changes as events carrying ``message`` and ``meta``."""

    def __init__(self, agent_id: str, root: Optional[PathLike] = None,
                 events_file: Optional[PathLike] = None) -> None:
        self.agent_id = validate_id(agent_id, "agent id")
        self.root = root
        self.events_file = events_file

    def broadcast(self, state: Union[Broadcast, str], task_id: Optional[str] = None,
                  message: Optional[str] = None, meta: Optional[dict] = None, **extra: Any) -> dict[str, Any]:
        """Append the event of ``state`` (a Broadcast, its name or its type) and return it."""
        kind = next((b for b in Broadcast if state == b or state in (b.name, b.name.lower())), None)
        if kind is None:
            raise ValidationError(f"unknown broadcast state {state!r}", hint="use START, DONE, WAIT, ERROR, HELP or SKIP")
        return _append(kind.value, self.agent_id, task_id, self.root, self.events_file, None,
                       {"message": message, "meta": {**(meta or {}), **extra}})

    start = _announcer(Broadcast.START)
    done = _announcer(Broadcast.DONE)
    wait = _announcer(Broadcast.WAIT)
    error = _announcer(Broadcast.ERROR)
    help = _announcer(Broadcast.HELP)
    skip = _announcer(Broadcast.SKIP)


# ---------------------------------------------------------------------------- CLI


def _scalar(raw: str) -> Any:
    """``raw`` as a YAML scalar (``3`` -> 3, ``true`` -> True); anything else stays the text."""
    try:
        value = load_yaml_text(raw)
    except ParseError:
        return raw
    return raw if isinstance(value, (dict, list, date, datetime)) else value


def _parse_data(items: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not _FIELD.fullmatch(key):
            raise ValidationError(f"--data {item!r} is not KEY=VALUE", hint="e.g. --data n=3 note='text'")
        data[key] = _scalar(raw)
    return data


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = dump_flow(value)
    return " ".join(str(value).split())


def _row(event: dict) -> str:
    from .cli import show_time

    rest = " ".join(f"{k}={_show(v)}" for k, v in event.items() if k not in _RESERVED)
    cells = ["-" if event.get(k) is None else _show(event[k]) for k in _RESERVED]
    cells[0] = show_time(event.get("timestamp"))  # one zone (UTC) whatever each writer used
    return _table_row(*cells, rest if len(rest) <= 90 else rest[:89] + "…")


def _table_row(when: str, kind: str, agent: str, task: str, summary: str) -> str:
    return f"{when:<24}  {kind:<12}  {agent:<14}  {task:<16}  {summary}".rstrip()


def _build_parser():
    from .cli import non_negative_int, parser

    # A named log to read needs no workspace; appending takes its lock in the workspace.
    top = parser("events.py", "Append to and read the Swarmfile event log (events.yaml).",
                 needs_workspace=lambda args: not (args.command == "tail" and args.events_file))
    top.add_global("--events-file", metavar="FILE", help="the log to use instead of the workspace's events.yaml")
    sub = top.add_subparsers(dest="command", required=True)
    show = sub.add_parser("tail", help="print the last events, optionally following new ones")
    show.add_argument("-n", type=non_negative_int, default=10, help="how many events (default 10)")
    show.add_argument("-f", "--follow", action="store_true", help="keep printing new events until Ctrl-C")
    show.add_argument("--agent", help="only this agent's events")
    show.add_argument("--task", help="only this task's events")
    show.add_argument("--type", dest="types", nargs="+", action="extend", metavar="TYPE", help="only these types")
    show.add_argument("--since", metavar="ISO", help="only events at or after this time")
    show.add_argument("--archives", action="store_true", help="also read the rotated archives")
    add = sub.add_parser("append", help="append one event and print it")
    add.add_argument("type", help="event type, a lowercase word (started, progress, ...)")
    add.add_argument("--agent", required=True, help="agent id")
    add.add_argument("--task", help="task id")
    add.add_argument("--data", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="more fields; values are YAML scalars (n=3 is a number)")
    mirror = sub.add_parser("mirror", help="Redis backend: copy the event stream's new events into events.yaml")
    mirror.add_argument("-f", "--follow", action="store_true", help="keep mirroring as events arrive, until Ctrl-C")
    return top


def _mirror(args: Any) -> int:
    from .cli import print_json
    from .event_mirror import follow_mirror, mirror_once

    cfg = load_config(root=args.root)
    if cfg.settings.get("backend", "files") in ("files", "journal"):
        print("nothing to mirror: on the files backend events.yaml is the event log itself")
        return 0
    if not args.follow:
        total = mirror_once(cfg)
    else:
        def copied(count: int) -> None:
            if not args.json:
                print(f"mirrored {count} events into {cfg.events_file}", flush=True)

        total = 0
        try:
            total = follow_mirror(cfg, on_copy=copied)
        except KeyboardInterrupt:  # the way a follow ends; what was copied is on disk
            return 0
    if args.json:
        print_json({"mirrored": total, "file": str(cfg.events_file)})
    elif not args.follow:
        print(f"mirrored {total} events into {cfg.events_file}")
    return 0


def _run(args: Any) -> int:
    import json

    from .cli import print_json

    events_file = os.path.abspath(args.events_file) if args.events_file else None  # relative to the cwd
    if args.command == "mirror":
        return _mirror(args)
    if args.command == "append":
        event = _append(args.type, args.agent, args.task, args.root, events_file, None, _parse_data(args.data))
        if args.json:
            print_json(event)
        else:
            print("- " + dump_flow(event))
        return 0
    if args.n < 0:
        raise ValidationError(f"-n must be >= 0, got {args.n}")
    filters = dict(agent=args.agent, task_id=args.task, types=args.types, since=args.since,
                   root=args.root, events_file=events_file)
    if not args.follow:
        shown = read_events(limit=args.n, include_archives=args.archives, **filters)
        if args.json:
            print_json(shown)
        else:
            print(_table_row("TIME", "TYPE", "AGENT", "TASK", "SUMMARY"))
            for event in shown:
                print(_row(event))
        return 0
    stream = follow(backlog=args.n, **filters)
    try:
        for event in stream:
            print(json.dumps(event, default=str, ensure_ascii=False) if args.json else _row(event), flush=True)
    except KeyboardInterrupt:  # the way a follow ends
        return 0
    finally:
        stream.close()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``events.py tail|append|mirror ...``; exit 0 ok, 2 bad usage or a log that does not parse."""
    from .cli import run

    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))
