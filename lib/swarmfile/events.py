"""The append-only event log (events.yaml): append, read, filter, tail, follow, rotate.

The log is a top-level ``events:`` list (RALF's block-style entries are read as they are).
Writers append exactly one line per event, a flow mapping, under the log's lock, so an
append never rewrites what is already there::

    events:
    - {timestamp: '2026-11-22T10:00:00.123Z', type: started, agent: executor-1, task_id: TASK-1}

* ``append_event`` checks first that an appended line joins the list: the first content line
  must be ``events:`` (``events: []`` alone is turned into ``events:``, which loses nothing)
  or a ``- `` item of a bare list, and the last top-level line must be an entry. Anything else
  raises ValidationError and the file stays byte-for-byte. A missing or empty file starts with
  ``events:``. A torn last line is cut off by fileio and recorded as a ``repaired`` event.
  Past ``events.rotate_bytes`` the log moves to ``events-<UTC stamp>.yaml`` next to it.
* ``read_events``/``tail`` with a ``limit`` read backwards from the end and parse only the
  entries they return, so the cost grows with the limit, not with the log. An entry a filter
  passes over is checked too (a cheap look at a one-line entry, a parse of anything else), so a
  reader that meets a bad line raises ParseError with file and line instead of answering from
  the part before it; a corrupt entry older than everything a reader needed is not noticed
  (doctor checks every entry). Without a limit the whole file is parsed and any error raises
  ParseError naming the bad entry's line. A last line without its newline is read only if it
  parses on its own (fileio's rule for keeping it), so a torn line is skipped.
* A bad line in the middle does not stop appends: an appended line still joins the list at the
  end, so the loops keep running on a log whose history is damaged, and the line stays where it
  is for a person to fix (readers that meet it and doctor name it). Only a log that an appended
  line would not join (below) refuses appends.
* ``follow`` yields events as they are appended, across rotations (it lives in event_follow.py).
* The log mechanism itself (layout check, backward scan, torn-tail rule, parsing with lines)
  is yaml_log.py's; the filters and the choice of file are event_query.py's.
* ``StatusBroadcaster`` announces an agent's START/DONE/WAIT/ERROR/HELP/SKIP.

The append check reads only the head and the tail of the log: a top-level key in the middle
(``events: [...]`` then ``other:`` then more ``- `` lines) is not detected.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .clock import format_ts, utc_now
from .config import validate_id
from .errors import ParseError, ValidationError
from .event_follow import follow
from .event_query import log_path, matcher
from .fileio import YAML_ERROR, append_line_unlocked, atomic_write, dump_flow, load_yaml_text, locked
from .yaml_log import append_layout, archive_keys, identity, open_log, read_all, read_at, read_last

__all__ = ["HEADER", "Broadcast", "StatusBroadcaster", "append_event", "read_events", "tail", "follow",
           "archives", "main"]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]

HEADER = "events:\n"
_RESERVED = ("timestamp", "type", "agent", "task_id")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Broadcast(str, Enum):
    """The broadcast states and the event types they are logged as."""

    START = "started"
    DONE = "completed"
    WAIT = "waiting"
    ERROR = "failed"
    HELP = "help"
    SKIP = "skipped"


# ---------------------------------------------------------------------------- paths


def archives(*, root: Optional[PathLike] = None, events_file: Optional[PathLike] = None) -> list[Path]:
    """The rotated archives of the log, oldest first."""
    return [archive for _, archive in archive_keys(log_path(root=root, events_file=events_file)[1])]


def _rotate(path: Path, fsync: bool) -> Path:
    """Move the live log to a new archive and start a fresh one; the caller holds the lock."""
    moment = utc_now()
    key = (moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z", 1)
    existing = archive_keys(path)
    if existing and existing[-1][0] >= key:  # same millisecond, or the clock went back
        key = (existing[-1][0][0], existing[-1][0][1] + 1)
    while True:
        target = path.with_name(f"{path.stem}-{key[0]}{'' if key[1] == 1 else f'-{key[1]}'}{path.suffix}")
        if not target.exists():
            break
        key = (key[0], key[1] + 1)
    os.rename(path, target)
    atomic_write(path, HEADER, fsync=fsync)  # also fsyncs the directory, making the rename durable
    log.info("%s: rotated to %s", path, target.name)
    return target


# ---------------------------------------------------------------------------- append


def _make_event(type: str, agent: str, task_id: Optional[str], data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(type, str) or not _TYPE.fullmatch(type):
        raise ValidationError(f"invalid event type {type!r}",
                              hint="use a lowercase word: a-z first, then a-z, 0-9 or '_'")
    event: dict[str, Any] = {"timestamp": format_ts(), "type": type, "agent": validate_id(agent, "agent id")}
    if task_id is not None:
        event["task_id"] = validate_id(task_id, "task id")
    for key, value in data.items():
        if key in _RESERVED:
            raise ValidationError(f"event field {key!r} is set by append_event, not by data")
        event[key] = value
    return event


def _entry_line(event: dict[str, Any]) -> str:
    try:
        return "- " + dump_flow(event)
    except (YAML_ERROR, ValueError, TypeError) as exc:  # e.g. an object YAML cannot represent
        raise ValidationError(f"event cannot be written as YAML: {exc}",
                              hint="use strings, numbers, booleans, lists and mappings") from None


def _prepare(path: Path, fsync: bool) -> str:
    """Check under the lock that a line appended to ``path`` joins its list; returns text to write first."""
    fd = open_log(path, symlink="refusing to append through it")
    if fd is None:
        return HEADER
    try:
        size = os.fstat(fd).st_size
        kind, at, body = append_layout(fd, path, size)
        if kind == "empty":
            return HEADER
        if kind == "flow_empty":
            data = read_at(fd, size, 0)
    finally:
        os.close(fd)
    if kind == "flow_empty":
        # The one shape a line cannot be appended to that can be fixed without losing anything.
        line = data[at:body]
        atomic_write(path, data[:at] + line.replace(b"[]", b"", 1) + data[body:], fsync=fsync)
    return ""


def _append(type: str, agent: str, task_id: Optional[str], root: Optional[PathLike],
            events_file: Optional[PathLike], rotate_bytes: Optional[int], data: dict[str, Any]) -> dict[str, Any]:
    event = _make_event(type, agent, task_id, data)
    line = _entry_line(event)
    cfg, path = log_path(root=root, events_file=events_file)
    fsync = bool(cfg.get("events", "fsync"))
    limit = cfg.get("events", "rotate_bytes") if rotate_bytes is None else rotate_bytes
    with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        payload = _prepare(path, fsync) + line + "\n"
        result = append_line_unlocked(path, payload, fsync=fsync)
        end = result.offset + len(payload.encode("utf-8"))
        if result.torn_tail is not None:
            note = _entry_line(_make_event("repaired", agent, None, {
                "file": path.name, "dropped_bytes": result.repaired_bytes,
                "dropped_text": result.torn_tail[:200]}))
            end += len(note.encode("utf-8")) + 1
            append_line_unlocked(path, note, fsync=fsync)
            log.warning("%s: a torn last line (%d bytes) was cut off; recorded as a 'repaired' event",
                        path, result.repaired_bytes)
        if limit and end >= limit:
            _rotate(path, fsync)
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
    """The events that match every given filter, in file order (a missing log has none).

    ``types``: one type or several; ``since``: events at or after this time. ``limit``: only
    the last ``limit`` matches, read backwards from the end. ``include_archives``: the rotated
    archives first (oldest first), then the live log.
    Raises ParseError/ValidationError naming the file (and line when known).
    """
    match, maybe = matcher(agent, task_id, types, since)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be a whole number >= 0, got {limit!r}")
    if limit == 0:
        return []
    _, path = log_path(root=root, events_file=events_file)
    live = open_log(path)  # opened before listing archives, so a rotation in between is seen once
    try:
        files: list[Path] = [path]
        if include_archives:
            files = [archive for _, archive in archive_keys(path)] + files
        found: list[dict] = []
        for source in files if limit is None else reversed(files):
            fd = live if source is path else open_log(source)
            if fd is None or (fd != live and live is not None and identity(fd) == identity(live)):
                continue
            try:
                if limit is None:
                    found.extend(e for e in read_all(fd, source) if match(e))
                else:
                    found.extend(read_last(fd, source, limit - len(found), match, maybe))
                    if len(found) >= limit:
                        break
            finally:
                if fd != live:
                    os.close(fd)
        return found if limit is None else found[::-1]
    finally:
        if live is not None:
            os.close(live)


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
    return top


def _run(args: Any) -> int:
    import json

    from .cli import print_json

    events_file = os.path.abspath(args.events_file) if args.events_file else None  # relative to the cwd
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
    """``events.py tail|append ...``; exit 0 ok, 2 bad usage or a log that does not parse."""
    from .cli import run

    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))
