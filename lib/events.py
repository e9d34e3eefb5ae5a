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
* ``StatusBroadcaster`` announces an agent's START/DONE/WAIT/ERROR/HELP/SKIP.

The append check reads only the head and the tail of the log: a top-level key in the middle
(``events: [...]`` then ``other:`` then more ``- `` lines) is not detected.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Union

from clock import format_ts, parse_ts, utc_now

from config import Config, load_config, validate_id
from errors import ParseError, ValidationError
from fileio import (YAML_ERROR, append_line_unlocked, atomic_write, dump_flow, kept_end, line_at, load_yaml_text,
                    locked)

if TYPE_CHECKING:  # for readers and type checkers; at run time __getattr__ below loads it
    from event_follow import follow

__all__ = ["HEADER", "Broadcast", "StatusBroadcaster", "append_event", "read_events", "tail", "follow",
           "archives", "main"]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]

HEADER = "events:\n"
_RESERVED = ("timestamp", "type", "agent", "task_id")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEADER_LINE = re.compile(rb"events:[ \t]*(?:#.*)?")
_FLOW_EMPTY_LINE = re.compile(rb"events:[ \t]*\[\][ \t]*(?:#.*)?")
_COL0 = re.compile(rb"^[^ \t\r\n#]", re.M)  # a top-level line that is not a comment
_BOM = b"\xef\xbb\xbf"
_BLOCK = 16 * 1024  # first backward read; doubles up to _MAX_BLOCK
_MAX_BLOCK = 1024 * 1024
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIX = "fix the file by hand; it was not changed"


class Broadcast(str, Enum):
    """The broadcast states and the event types they are logged as."""

    START = "started"
    DONE = "completed"
    WAIT = "waiting"
    ERROR = "failed"
    HELP = "help"
    SKIP = "skipped"


# ---------------------------------------------------------------------------- bytes


def _read_at(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``: every read of a log goes through here (tests count them)."""
    return os.pread(fd, size, offset)


def _is_entry(line: bytes) -> bool:
    """A top-level line that starts a list entry (``- ...``)."""
    return line[:1] == b"-" and line[1:2] in (b" ", b"\t", b"\r", b"\n", b"")


def _is_blank(line: bytes) -> bool:
    """Blank or a comment: nothing YAML sees."""
    text = line.strip()
    return not text or text[:1] == b"#"


def _decode(chunk: bytes, path: Path, fd: int, offset: int) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"is not valid UTF-8 (byte {offset + exc.start})", path=path,
                         line=line_at(fd, offset + exc.start), hint=_FIX) from None


def _lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its newline) for each line in [start, end); the last may lack one."""
    pos, carry, carry_at, step = start, b"", start, 1024  # the header is usually the first line
    while pos < end:
        block = _read_at(fd, min(step, end - pos), pos)
        if not block:
            break
        pos, step = pos + len(block), min(step * 2, _BLOCK)
        carry += block
        begin = 0
        while (newline := carry.find(b"\n", begin)) >= 0:
            yield carry_at + begin, carry[begin:newline + 1]
            begin = newline + 1
        carry, carry_at = carry[begin:], carry_at + begin
    if carry:
        yield carry_at, carry


def _classify(line: bytes) -> str:
    """What a line at the top of the log is: "blank" (or a comment), "list" (an entry), "mapping"
    (``events:``), "flow_empty" (``events: []``) or "other"."""
    stripped = line.rstrip()
    if _is_blank(line) or stripped == b"---":
        return "blank"
    if _is_entry(line):
        return "list"
    if _FLOW_EMPTY_LINE.fullmatch(stripped):
        return "flow_empty"
    return "mapping" if _HEADER_LINE.fullmatch(stripped) else "other"


def _layout(fd: int, end: int) -> tuple[str, int, int]:
    """How the log starts: (kind, offset where its entries begin, offset of its first content line).

    kind is one of ``_classify``'s, or "empty" when there are only blanks and comments.
    """
    for offset, line in _lines_forward(fd, 0, end):
        kind = _classify(line[3:] if offset == 0 and line.startswith(_BOM) else line)
        if kind != "blank":
            return kind, offset + (len(line) if kind in ("mapping", "flow_empty") else 0), offset
    return "empty", end, end


class _Irregular(Exception):
    """The entries are not a plain column-0 list (indented, or a top-level key among them)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _entries_backward(fd: int, start: int, end: int, first_block: int = _BLOCK) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each entry in [start, end), newest first.

    ``first_block`` is the size of the first read; each further read doubles.

    An entry runs from a top-level ``- `` line to the next one; comments and indented lines
    belong to it. Raises _Irregular on any other top-level line or on indented content
    before the first entry.
    """
    pos, buf, block = end, b"", first_block
    while True:
        if pos > start:
            size = min(block, pos - start)
            pos -= size
            buf = _read_at(fd, size, pos) + buf
            block = min(block * 2, _MAX_BLOCK)
        whole = pos == start  # only then is buf[0] known to start a line
        marks = [m.start() for m in _COL0.finditer(buf) if m.start() > 0 or whole]
        cut = len(buf)
        for mark in reversed(marks):
            if not _is_entry(buf[mark:mark + 2]):
                raise _Irregular(pos + mark, "a top-level line that is not an event entry")
            yield pos + mark, buf[mark:cut]
            cut = mark
        buf = buf[:cut]
        if whole:
            offset = pos
            for line in buf.splitlines(keepends=True):
                if not _is_blank(line):
                    raise _Irregular(offset, "event entries indented under 'events:'")
                offset += len(line)
            return


# ---------------------------------------------------------------------------- paths


def _where(root: Optional[PathLike], events_file: Optional[PathLike]) -> tuple[Config, Path]:
    cfg = load_config(root)
    if events_file is None:
        return cfg, cfg.events_file
    path = Path(os.path.expanduser(os.fspath(events_file)))
    return cfg, path if path.is_absolute() else cfg.root / path


def _archive_keys(path: Path) -> list[tuple[tuple[str, int], Path]]:
    """The archives of the log at ``path`` with their (stamp, n) sort keys, oldest first."""
    pattern = re.compile(re.escape(path.stem) + r"-(\d{8}T\d{9}Z)(?:-(\d+))?" + re.escape(path.suffix) + r"\Z")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return sorted(((m.group(1), int(m.group(2) or 1)), path.parent / m.group(0))
                  for m in map(pattern.match, names) if m)


def archives(root: Optional[PathLike] = None, events_file: Optional[PathLike] = None) -> list[Path]:
    """The rotated archives of the log, oldest first."""
    return [archive for _, archive in _archive_keys(_where(root, events_file)[1])]


def _rotate(path: Path, fsync: bool) -> Path:
    """Move the live log to a new archive and start a fresh one; the caller holds the lock."""
    moment = utc_now()
    key = (moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z", 1)
    existing = _archive_keys(path)
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


def _append_layout(fd: int, path: Path, size: int) -> tuple[str, int, int]:
    """(kind, offset of the first content line, offset of the entries) of a log that an appended
    line joins (see ``_layout``); ValidationError naming the line that stops it otherwise."""
    end = kept_end(fd, size)
    kind, body, at = _layout(fd, end)

    def refuse(offset: int, reason: str) -> ValidationError:
        return ValidationError(f"{reason}; refusing to append", path=path, line=line_at(fd, offset), hint=_FIX)

    if kind == "other":
        raise refuse(at, "does not start with 'events:' or a '- ' list item")
    if kind == "empty":
        return kind, at, body
    try:
        # Only the last entry matters here: a small first read finds it on a log of any size.
        last = next(_entries_backward(fd, body, end, first_block=1024), None)
    except _Irregular as exc:
        raise refuse(exc.offset, f"an appended line would not join the events list ({exc.reason})") from None
    if kind == "flow_empty" and last is not None:
        raise refuse(at, "'events: []' is followed by entries")
    return kind, at, body


def _prepare(path: Path, fsync: bool) -> str:
    """Check under the lock that a line appended to ``path`` joins its list; returns text to write first."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return HEADER
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValidationError("is a symlink; refusing to append through it", path=path,
                                  hint="replace the link with a regular file") from None
        raise
    try:
        size = os.fstat(fd).st_size
        kind, at, body = _append_layout(fd, path, size)
        if kind == "empty":
            return HEADER
        if kind == "flow_empty":
            data = _read_at(fd, size, 0)
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
    cfg, path = _where(root, events_file)
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


def append_event(type: str, agent: str, task_id: Optional[str] = None, root: Optional[PathLike] = None,
                 events_file: Optional[PathLike] = None, *, rotate_bytes: Optional[int] = None,
                 **data: Any) -> dict[str, Any]:
    """Append one event to the log and return it.

    ``type`` is a lowercase word; ``agent``/``task_id`` must be valid ids; ``data`` becomes the
    event's other fields. ``rotate_bytes`` overrides ``events.rotate_bytes`` (0: never rotate).
    A relative ``events_file`` is taken from the workspace root.
    Raises ValidationError (bad value, or a log an appended line would not join), LockTimeout.
    """
    return _append(type, agent, task_id, root, events_file, rotate_bytes, data)


# ---------------------------------------------------------------------------- read


Matcher = Callable[[dict], bool]


def _matcher(agent: Optional[str], task_id: Optional[str], types: Union[str, Iterable[str], None],
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


def _events_in(data: Any, path: Path) -> list[dict]:
    if isinstance(data, dict):
        if "events" not in data:
            raise ValidationError("has no 'events' list", path=path, hint=_FIX)
        data = data["events"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValidationError(f"'events' must be a list, got {type(data).__name__}", path=path, hint=_FIX)
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise ValidationError(f"event {number} is not a mapping", path=path, hint=_FIX)
    return data


def _read_all(fd: int, path: Path, size: Optional[int] = None) -> list[dict]:
    """Every event of the file, parsing all of it; a torn last line is skipped."""
    end = kept_end(fd, os.fstat(fd).st_size if size is None else size)
    try:
        return _events_in(load_yaml_text(_decode(_read_at(fd, end, 0), path, fd, 0), path), path)
    except ParseError:
        # The parser points where it gave up, often the line after: name the entry that is bad.
        kind, body, _ = _layout(fd, end)
        if kind in ("mapping", "list"):
            try:
                for batch in _batches_forward(fd, body, end, 64 * 1024):
                    _parse_batch(fd, path, batch)
            except _Irregular:
                pass
        raise


def _batches_forward(fd: int, start: int, end: int, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The entries in [start, end) in batches of about ``size`` bytes, each newest first (as
    ``_parse_batch`` takes them). Raises _Irregular where the entries are not a column-0 list."""
    batch: list[tuple[int, bytes]] = []
    held, entry_at, parts = 0, -1, []  # the entry being gathered: its offset and lines
    for offset, line in _lines_forward(fd, start, end):
        if _is_entry(line):
            if parts:
                batch.append((entry_at, b"".join(parts)))
                held += offset - entry_at
            entry_at, parts = offset, [line]
            if held >= size:
                yield batch[::-1]
                batch, held = [], 0
        elif parts and (_is_blank(line) or line[:1] in (b" ", b"\t")):
            parts.append(line)  # a block entry's fields, or a comment between entries
        elif parts or not _is_blank(line):
            raise _Irregular(offset, "a top-level line that is not an event entry" if parts
                             else "event entries indented under 'events:'")
    if parts:
        batch.append((entry_at, b"".join(parts)))
    if batch:
        yield batch[::-1]


def _parse_batch(fd: int, path: Path, batch: list[tuple[int, bytes]]) -> list[dict]:
    """The events of ``batch`` (newest first) with one parse; on failure find the bad entry's line."""
    try:
        items = load_yaml_text(b"".join(chunk for _, chunk in reversed(batch)).decode("utf-8"), path)
        if isinstance(items, list) and len(items) == len(batch) and all(isinstance(i, dict) for i in items):
            return items[::-1]
    except (UnicodeDecodeError, ParseError):
        pass
    events = []
    for offset, chunk in batch:
        try:
            items = load_yaml_text(_decode(chunk, path, fd, offset), path)
        except ParseError as exc:
            # The parser may point past the entry (at the end of the chunk): keep the line inside it.
            line = line_at(fd, offset) + min(exc.line or 1, max(1, chunk.count(b"\n"))) - 1
            raise ParseError(exc.reason, path=path, line=line, hint=exc.hint) from None
        if not (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)):
            raise ValidationError("event entry is not a mapping", path=path,
                                  line=line_at(fd, offset), hint=_FIX)
        events.append(items[0])
    return events


_PLAIN_ENTRY = re.compile(rb"- \{[^\n]*\}[ \t]*\r?\n?")


def _looks_whole(chunk: bytes) -> bool:
    """A cheap test that an entry a filter skips would parse: one flow-mapping line with its
    brackets and quotes paired (what writers append). Anything else is parsed to be sure."""
    return (_PLAIN_ENTRY.fullmatch(chunk) is not None and chunk.count(b"{") == chunk.count(b"}")
            and chunk.count(b"[") == chunk.count(b"]") and chunk.count(b"'") % 2 == 0
            and chunk.count(b'"') % 2 == 0)


def _read_last(fd: int, path: Path, want: int, match: Matcher, maybe: Callable[[bytes], bool],
               size: Optional[int] = None) -> list[dict]:
    """The last ``want`` matching events of the file, newest first, reading backwards."""
    size = os.fstat(fd).st_size if size is None else size
    end = kept_end(fd, size)
    kind, body, _ = _layout(fd, end)
    found: list[dict] = []
    try:
        if kind not in ("mapping", "list"):
            raise _Irregular(0, kind)
        batch: list[tuple[int, bytes]] = []
        for entry in _entries_backward(fd, body, end):
            if maybe(entry[1]):
                batch.append(entry)
            elif not _looks_whole(entry[1]):
                _parse_batch(fd, path, [entry])  # a bad entry the filter passes over is still reported
            if batch and (len(batch) >= want - len(found)):
                found.extend(e for e in _parse_batch(fd, path, batch) if match(e))
                batch = []
                if len(found) >= want:
                    break
        if batch:
            found.extend(e for e in _parse_batch(fd, path, batch) if match(e))
    except _Irregular:  # not a plain column-0 list: let the YAML parser make sense of it
        found = [e for e in reversed(_read_all(fd, path, size)) if match(e)]
    return found[:want]


def _open(path: Path) -> Optional[int]:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def read_events(agent: Optional[str] = None, task_id: Optional[str] = None,
                types: Union[str, Iterable[str], None] = None, since: Union[str, datetime, None] = None,
                limit: Optional[int] = None, root: Optional[PathLike] = None,
                events_file: Optional[PathLike] = None, include_archives: bool = False) -> list[dict]:
    """The events that match every given filter, in file order (a missing log has none).

    ``types``: one type or several; ``since``: events at or after this time. ``limit``: only
    the last ``limit`` matches, read backwards from the end. ``include_archives``: the rotated
    archives first (oldest first), then the live log.
    Raises ParseError/ValidationError naming the file (and line when known).
    """
    match, maybe = _matcher(agent, task_id, types, since)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be a whole number >= 0, got {limit!r}")
    if limit == 0:
        return []
    _, path = _where(root, events_file)
    live = _open(path)  # opened before listing archives, so a rotation in between is seen once
    try:
        files: list[Path] = [path]
        if include_archives:
            files = [archive for _, archive in _archive_keys(path)] + files
        found: list[dict] = []
        for source in files if limit is None else reversed(files):
            fd = live if source is path else _open(source)
            if fd is None or (fd != live and live is not None and _identity(fd) == _identity(live)):
                continue
            try:
                if limit is None:
                    found.extend(e for e in _read_all(fd, source) if match(e))
                else:
                    found.extend(_read_last(fd, source, limit - len(found), match, maybe))
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


def __getattr__(name: str) -> Any:
    # event_follow imports this module's helpers, so it is loaded on first use of ``follow``.
    if name == "follow":
        from event_follow import follow
        return follow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from cli import show_time

    rest = " ".join(f"{k}={_show(v)}" for k, v in event.items() if k not in _RESERVED)
    cells = ["-" if event.get(k) is None else _show(event[k]) for k in _RESERVED]
    cells[0] = show_time(event.get("timestamp"))  # one zone (UTC) whatever each writer used
    return _table_row(*cells, rest if len(rest) <= 90 else rest[:89] + "…")


def _table_row(when: str, kind: str, agent: str, task: str, summary: str) -> str:
    return f"{when:<24}  {kind:<12}  {agent:<14}  {task:<16}  {summary}".rstrip()


def _build_parser():
    from cli import non_negative_int, parser

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

    from cli import print_json
    from event_follow import follow

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
    from cli import run

    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
