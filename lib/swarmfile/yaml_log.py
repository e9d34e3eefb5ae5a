"""An append-only YAML log: a top-level key or bare list whose entries are one-line flow mappings appended one at a time.

The one mechanism under events.yaml (and its archives), chat-log.yaml and the merge queue's
records, and what doctor checks them with::

    events:
    - {timestamp: '2026-11-22T10:00:00.123Z', type: started, agent: executor-1}

Entries are column-0 ``- `` items; RALF's block-style entries (indented fields under a ``- ``
line) and comments between entries are read as they are. What lives here:

* the **layout check**: ``classify`` and ``layout`` say how a log starts (a bare ``<key>:``,
  ``<key>: []``, a bare list, empty, or something else) and ``append_layout`` whether a line
  appended at the end would join the list (ValidationError naming the line that stops it);
* the **backward scan**: ``top_level_backward`` walks the column-0 lines from the end, a
  doubling block at a time, so the cost of ``tail`` grows with what it returns, not with the
  log; ``entries_backward``/``read_last`` build on it;
* the **torn-tail rule**: a last line without its newline is read only if it parses on its own
  (fileio's ``kept_end``), so readers see a log as the next append will leave it;
  ``read_kept`` reads a whole log that way, ``torn_tail`` finds a torn line and
  ``cut_torn_tail`` cuts it off;
* **decode errors with their line**: ``decode``, ``parse_range`` and ``parse_batch`` raise
  ParseError naming the line in the whole file, not in the chunk parsed;
* the **safe open**: ``open_log`` (None when missing; refuses a symlink when asked).

Every read goes through ``read_at`` (tests count the bytes). Errors keep the wording of the
logs that use them: ``noun`` names an entry ("event"), ``key`` the list's key ("events").
"""

from __future__ import annotations

import errno
import functools
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from .errors import HAND_FIX, ParseError, SwarmError, ValidationError
from .fileio import atomic_write, kept_end, last_line_start, line_at, load_yaml_text, locked, tail_is_complete

__all__ = ["FIX", "Irregular", "Matcher", "read_at", "is_entry", "is_blank", "decode", "parse_range", "lines_forward",
           "classify", "layout", "top_level_backward", "entries_backward", "batches_forward", "parse_batch",
           "looks_whole", "read_all", "read_last", "append_layout", "open_log", "identity", "path_identity",
           "archive_keys", "read_kept", "whole_lines_end", "torn_tail", "cut_torn_tail"]

PathLike = Union[str, "os.PathLike[str]"]
Matcher = Callable[[dict], bool]

FIX = HAND_FIX
_COL0 = re.compile(rb"^[^ \t\r\n#]", re.M)  # a top-level line that is not a comment
_BOM = b"\xef\xbb\xbf"
_BLOCK = 16 * 1024  # first backward read; doubles up to _MAX_BLOCK
_MAX_BLOCK = 1024 * 1024
_PLAIN_ENTRY = re.compile(rb"- \{[^\n]*\}[ \t]*\r?\n?")


class Irregular(Exception):
    """The entries are not a plain column-0 list (indented, or a top-level key among them)."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


# ---------------------------------------------------------------------------- bytes and lines


def read_at(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``: every read of a log goes through here (tests count them)."""
    return os.pread(fd, size, offset)


def is_entry(line: bytes) -> bool:
    """A top-level line that starts a list entry (``- ...``)."""
    return line[:1] == b"-" and line[1:2] in (b" ", b"\t", b"\r", b"\n", b"")


def is_blank(line: bytes) -> bool:
    """Blank or a comment: nothing YAML sees."""
    text = line.strip()
    return not text or text[:1] == b"#"


def decode(chunk: bytes, path: Path, fd: int, offset: int) -> str:
    """``chunk`` (read at ``offset``) as text; ParseError with the line of the first bad byte."""
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"is not valid UTF-8 (byte {offset + exc.start})", path=path,
                         line=line_at(fd, offset + exc.start), hint=FIX) from None


def parse_range(fd: int, path: Path, start: int, end: int) -> object:
    """Parse bytes [start, end) of the log; errors carry the line in the whole file."""
    text = decode(read_at(fd, end - start, start), path, fd, start)
    try:
        return load_yaml_text(text, path)
    except ParseError as exc:
        line = None if exc.line is None else exc.line + line_at(fd, start) - 1
        raise ParseError(exc.reason, path=path, line=line, hint=FIX) from None


def lines_forward(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line with its newline) for each line in [start, end); the last may lack one."""
    pos, carry, carry_at, step = start, b"", start, 1024  # the header is usually the first line
    while pos < end:
        block = read_at(fd, min(step, end - pos), pos)
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


# ---------------------------------------------------------------------------- layout


@functools.lru_cache(maxsize=None)
def _key_lines(key: str) -> tuple[re.Pattern, re.Pattern]:
    name = re.escape(key.encode("utf-8"))
    return re.compile(name + rb":[ \t]*(?:#.*)?"), re.compile(name + rb":[ \t]*\[\][ \t]*(?:#.*)?")


def classify(line: bytes, key: str = "events") -> str:
    """What a line at the top of the log is: "blank" (or a comment), "list" (an entry), "mapping"
    (``<key>:``), "flow_empty" (``<key>: []``) or "other"."""
    stripped = line.rstrip()
    if is_blank(line) or stripped == b"---":
        return "blank"
    if is_entry(line):
        return "list"
    header, flow_empty = _key_lines(key)
    if flow_empty.fullmatch(stripped):
        return "flow_empty"
    return "mapping" if header.fullmatch(stripped) else "other"


def layout(fd: int, end: int, key: str = "events") -> tuple[str, int, int]:
    """How the log starts: (kind, offset where its entries begin, offset of its first content line).

    kind is one of ``classify``'s, or "empty" when there are only blanks and comments.
    """
    for offset, line in lines_forward(fd, 0, end):
        kind = classify(line[3:] if offset == 0 and line.startswith(_BOM) else line, key)
        if kind != "blank":
            return kind, offset + (len(line) if kind in ("mapping", "flow_empty") else 0), offset
    return "empty", end, end


def append_layout(fd: int, path: Path, size: int, key: str = "events",
                  noun: str = "event") -> tuple[str, int, int]:
    """(kind, offset of the first content line, offset of the entries) of a log that an appended
    line joins (see ``layout``); ValidationError naming the line that stops it otherwise."""
    end = kept_end(fd, size)
    kind, body, at = layout(fd, end, key)

    def refuse(offset: int, reason: str) -> ValidationError:
        return ValidationError(f"{reason}; refusing to append", path=path, line=line_at(fd, offset), hint=FIX)

    if kind == "other":
        raise refuse(at, f"does not start with '{key}:' or a '- ' list item")
    if kind == "empty":
        return kind, at, body
    try:
        # Only the last entry matters here: a small first read finds it on a log of any size.
        last = next(entries_backward(fd, body, end, first_block=256, noun=noun, key=key), None)
    except Irregular as exc:
        raise refuse(exc.offset, f"an appended line would not join the {key} list ({exc.reason})") from None
    if kind == "flow_empty" and last is not None:
        raise refuse(at, f"'{key}: []' is followed by entries")
    return kind, at, body


# ---------------------------------------------------------------------------- scans


def top_level_backward(read: Callable[[int, int], bytes], start: int, end: int,
                       first_block: int = _BLOCK) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, bytes, top) of each top-level part of [start, end), newest first.

    A part runs from a column-0 line that is not a comment to the next one (comments and indented
    lines belong to the part above them); ``top`` is True for those. What comes before the first
    such line, if anything, is yielded last with ``top`` False. ``read(size, offset)`` gives the
    bytes; the first read is ``first_block`` long and each further one doubles.
    """
    pos, buf, block = end, b"", first_block
    while True:
        if pos > start:
            size = min(block, pos - start)
            pos -= size
            buf = read(size, pos) + buf
            block = min(block * 2, _MAX_BLOCK)
        whole = pos == start  # only then is buf[0] known to start a line
        marks = [m.start() for m in _COL0.finditer(buf) if m.start() > 0 or whole]
        cut = len(buf)
        for mark in reversed(marks):
            yield pos + mark, buf[mark:cut], True
            cut = mark
        buf = buf[:cut]
        if whole:
            if buf:
                yield pos, buf, False
            return


def entries_backward(fd: int, start: int, end: int, first_block: int = _BLOCK, noun: str = "event",
                     key: str = "events") -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each entry in [start, end), newest first.

    An entry runs from a top-level ``- `` line to the next one. Raises Irregular on any other
    top-level line or on indented content before the first entry.
    """
    for offset, chunk, top in top_level_backward(lambda size, at: read_at(fd, size, at), start, end, first_block):
        if not top:
            for line in chunk.splitlines(keepends=True):
                if not is_blank(line):
                    raise Irregular(offset, f"{noun} entries indented under '{key}:'")
                offset += len(line)
            return
        if not is_entry(chunk[:2]):
            raise Irregular(offset, f"a top-level line that is not an {noun} entry")
        yield offset, chunk


def batches_forward(fd: int, start: int, end: int, size: int, noun: str = "event",
                    key: str = "events") -> Iterator[list[tuple[int, bytes]]]:
    """The entries in [start, end) in batches of about ``size`` bytes, each newest first (as
    ``parse_batch`` takes them). Raises Irregular where the entries are not a column-0 list."""
    batch: list[tuple[int, bytes]] = []
    held, entry_at, parts = 0, -1, []  # the entry being gathered: its offset and lines
    for offset, line in lines_forward(fd, start, end):
        if is_entry(line):
            if parts:
                batch.append((entry_at, b"".join(parts)))
                held += offset - entry_at
            entry_at, parts = offset, [line]
            if held >= size:
                yield batch[::-1]
                batch, held = [], 0
        elif parts and (is_blank(line) or line[:1] in (b" ", b"\t")):
            parts.append(line)  # a block entry's fields, or a comment between entries
        elif parts or not is_blank(line):
            raise Irregular(offset, f"a top-level line that is not an {noun} entry" if parts
                            else f"{noun} entries indented under '{key}:'")
    if parts:
        batch.append((entry_at, b"".join(parts)))
    if batch:
        yield batch[::-1]


def parse_batch(fd: int, path: Path, batch: list[tuple[int, bytes]], noun: str = "event") -> list[dict]:
    """The entries of ``batch`` (newest first) with one parse; on failure find the bad entry's line."""
    try:
        items = load_yaml_text(b"".join(chunk for _, chunk in reversed(batch)).decode("utf-8"), path)
        if isinstance(items, list) and len(items) == len(batch) and all(isinstance(i, dict) for i in items):
            return items[::-1]
    except (UnicodeDecodeError, ParseError):
        pass
    entries = []
    for offset, chunk in batch:
        try:
            items = load_yaml_text(decode(chunk, path, fd, offset), path)
        except ParseError as exc:
            # The parser may point past the entry (at the end of the chunk): keep the line inside it.
            line = line_at(fd, offset) + min(exc.line or 1, max(1, chunk.count(b"\n"))) - 1
            raise ParseError(exc.reason, path=path, line=line, hint=exc.hint) from None
        if not (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)):
            raise ValidationError(f"{noun} entry is not a mapping", path=path,
                                  line=line_at(fd, offset), hint=FIX)
        entries.append(items[0])
    return entries


def looks_whole(chunk: bytes) -> bool:
    """A cheap test that an entry a filter skips would parse: one flow-mapping line with its
    brackets and quotes paired (what writers append). Anything else is parsed to be sure."""
    return (_PLAIN_ENTRY.fullmatch(chunk) is not None and chunk.count(b"{") == chunk.count(b"}")
            and chunk.count(b"[") == chunk.count(b"]") and chunk.count(b"'") % 2 == 0
            and chunk.count(b'"') % 2 == 0)


# ---------------------------------------------------------------------------- reading


def _entries_in(data: object, path: Path, key: str, noun: str) -> list[dict]:
    if isinstance(data, dict):
        if key not in data:
            raise ValidationError(f"has no '{key}' list", path=path, hint=FIX)
        data = data[key]
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValidationError(f"'{key}' must be a list, got {type(data).__name__}", path=path, hint=FIX)
    for number, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise ValidationError(f"{noun} {number} is not a mapping", path=path, hint=FIX)
    return data


def read_all(fd: int, path: Path, size: Optional[int] = None, key: str = "events", noun: str = "event") -> list[dict]:
    """Every entry of the log, parsing all of it; a torn last line is skipped.

    Raises ParseError naming the bad entry's line, ValidationError when the shape is wrong.
    """
    end = kept_end(fd, os.fstat(fd).st_size if size is None else size)
    try:
        return _entries_in(load_yaml_text(decode(read_at(fd, end, 0), path, fd, 0), path), path, key, noun)
    except ParseError:
        # The parser points where it gave up, often the line after: name the entry that is bad.
        kind, body, _ = layout(fd, end, key)
        if kind in ("mapping", "list"):
            try:
                for batch in batches_forward(fd, body, end, 64 * 1024, noun, key):
                    parse_batch(fd, path, batch, noun)
            except Irregular:
                pass
        raise


def read_last(fd: int, path: Path, want: int, match: Matcher, maybe: Callable[[bytes], bool],
              size: Optional[int] = None, key: str = "events", noun: str = "event") -> list[dict]:
    """The last ``want`` entries that ``match``, newest first, reading backwards.

    ``maybe(raw)`` is a cheap test every match passes: entries it rejects are not parsed (only
    checked with ``looks_whole``, so a bad line is still reported).
    """
    size = os.fstat(fd).st_size if size is None else size
    end = kept_end(fd, size)
    kind, body, _ = layout(fd, end, key)
    found: list[dict] = []
    try:
        if kind not in ("mapping", "list"):
            raise Irregular(0, kind)
        batch: list[tuple[int, bytes]] = []
        for entry in entries_backward(fd, body, end, noun=noun, key=key):
            if maybe(entry[1]):
                batch.append(entry)
            elif not looks_whole(entry[1]):
                parse_batch(fd, path, [entry], noun)  # a bad entry the filter passes over is still reported
            if batch and (len(batch) >= want - len(found)):
                found.extend(e for e in parse_batch(fd, path, batch, noun) if match(e))
                batch = []
                if len(found) >= want:
                    break
        if batch:
            found.extend(e for e in parse_batch(fd, path, batch, noun) if match(e))
    except Irregular:  # not a plain column-0 list: let the YAML parser make sense of it
        found = [e for e in reversed(read_all(fd, path, size, key, noun)) if match(e)]
    return found[:want]


# ---------------------------------------------------------------------------- files


def open_log(path: Path, *, symlink: Optional[str] = None) -> Optional[int]:
    """A read-only descriptor of the log, or None when it is missing.

    With ``symlink`` (the end of the message, e.g. "refusing to use it"), a symlink is not
    followed: ValidationError "is a symlink; <symlink>" instead.
    """
    try:
        return os.open(path, os.O_RDONLY | (getattr(os, "O_NOFOLLOW", 0) if symlink else 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if symlink and exc.errno == errno.ELOOP:
            raise ValidationError(f"is a symlink; {symlink}", path=path,
                                  hint="replace the link with a regular file") from None
        raise


def identity(fd: int) -> tuple[int, int]:
    """(device, inode) of an open file: the same file under another name, or a new one."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def path_identity(path: Path) -> Optional[tuple[int, int]]:
    """(device, inode) of the file now at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def archive_keys(path: Path) -> list[tuple[tuple[str, int], Path]]:
    """The rotated archives ``<stem>-<UTC stamp>[-n]<suffix>`` of the log at ``path`` with their
    (stamp, n) sort keys, oldest first."""
    pattern = re.compile(re.escape(path.stem) + r"-(\d{8}T\d{9}Z)(?:-(\d+))?" + re.escape(path.suffix) + r"\Z")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return sorted(((m.group(1), int(m.group(2) or 1)), path.parent / m.group(0))
                  for m in map(pattern.match, names) if m)


def read_kept(path: Path, *, symlink: Optional[str] = None) -> Optional[str]:
    """The whole text of the log as readers see it (a torn last line left out), or None when
    it is missing (``symlink``: see ``open_log``). ParseError with the line of the first byte
    that is not UTF-8."""
    fd = open_log(path, symlink=symlink)
    if fd is None:
        return None
    try:
        end = kept_end(fd, os.fstat(fd).st_size)
        return decode(read_at(fd, end, 0), path, fd, 0)
    finally:
        os.close(fd)


def whole_lines_end(fd: int, size: int) -> int:
    """End of the last whole line: a last line without its newline may still be being written."""
    if size == 0 or read_at(fd, 1, size - 1) == b"\n":
        return size
    return last_line_start(fd, size)


# ---------------------------------------------------------------------------- torn tail


def _torn(data: bytes) -> Optional[int]:
    """Where the torn last line of ``data`` starts (fileio's rule, ``tail_is_complete``), or None."""
    if not data or data.endswith(b"\n"):
        return None
    start = data.rfind(b"\n") + 1
    return None if tail_is_complete(data[start:]) else start


def torn_tail(path: PathLike) -> Optional[tuple[int, bytes, int]]:
    """(offset, bytes, line) of the torn last line of the file at ``path``, or None.

    Reads the last line, then counts lines a block at a time: a big log is never held in memory.
    """
    block = 1 << 20
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0 or handle.seek(size - 1) < 0 or handle.read(1) == b"\n":
                return None  # the usual case: a big log is not read
            start = size
            while start > 0:
                begin = max(0, start - block)
                handle.seek(begin)
                newline = handle.read(start - begin).rfind(b"\n")
                start = begin + newline + 1 if newline >= 0 else begin
                if newline >= 0:
                    break
            handle.seek(start)
            tail = handle.read()
            # _torn judges the last line of the data it is given: the newline before it says where it starts
            if _torn((b"\n" if start else b"") + tail) is None:
                return None
            handle.seek(0)
            lines, left = 0, start
            while left > 0:
                chunk = handle.read(min(left, block))
                lines, left = lines + chunk.count(b"\n"), left - len(chunk)
    except FileNotFoundError:
        return None
    return start, tail, lines + 1


def cut_torn_tail(path: Path, keep: Path, *, lock_dir: Optional[Path] = None, timeout: Optional[float] = None,
                  hint: str = FIX) -> Optional[int]:
    """Cut a torn last line off ``path`` under its lock, saving the cut bytes to ``keep`` first.

    Re-checked under the lock: only a torn line after at least one whole line, with everything
    before it parsing, is cut. Returns the bytes cut, or None when the log was already whole.
    Raises SwarmError (the whole file is one torn line, or it changed meanwhile), ParseError.
    """
    with locked(path, lock_dir=lock_dir, timeout=timeout):
        data = path.read_bytes()
        start = _torn(data)
        if start is None:
            return None
        if start == 0:
            raise SwarmError("the whole file is one torn line", path=path, hint=hint)
        tail = data[start:]
        try:
            load_yaml_text(data[:start].decode("utf-8"), path)
        except UnicodeDecodeError:
            raise ParseError("is not valid UTF-8", path=path, hint=hint) from None
        atomic_write(keep, tail)
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            if os.fstat(fd).st_size != start + len(tail):  # pragma: no cover - an appender ignored the lock
                raise SwarmError("changed while being repaired", path=path, hint="run doctor again")
            os.ftruncate(fd, start)
            os.fsync(fd)
        finally:
            os.close(fd)
    return len(tail)
