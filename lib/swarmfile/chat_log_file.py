"""The chat log in a file: chat-log.yaml in RALF's format, one appended line per message.

A message is one flow-mapping line appended under the log's lock, like an event in
events.yaml, so an append never rewrites what is already there::

    - {id: 12, timestamp: '2026-11-22T10:00:00.123Z', from: executor-1, to: planner, type: question, task_id: TASK-1, content: 'which API?', reply_to: 11}

Layout. RALF's file has ``messages: []`` followed by a ``metadata:`` block: no line can be
appended to that. The first append to such a file converts it once, under the lock, with an
atomic rewrite that keeps everything: the comment header stays on top, the other keys
(``metadata``) follow as they were, and ``messages:`` becomes the last key, a block sequence
whose items are then appended one line each. Block-style entries already there are kept as
they are (moved left to column 0 when they were indented). The new text must parse to the
same data before it replaces the file. After that the log is never rewritten (unless a hand
edit puts another key below ``messages``: the next append moves it up the same way). Appends
are fsynced when ``events.fsync`` is on.

Ids. ``metadata.last_message_id`` cannot be kept current without a rewrite, so it stays as it
was. Under the lock, a new id is one more than the larger of that value and the ``id`` of the
last message in the file (the last ``- `` item at column 0, parsed alone, block style too), so
ids stay unique and increasing across writers. An append reads the file's column-0 lines
backwards (bytes, no YAML) to check that ``messages:`` is still the last key, and parses only
the header and the last entry; readers parse and check the whole file.

Fail closed: a log that does not parse, is empty, or whose ``messages`` is not a list of
messages raises ParseError or ValidationError naming the file and line, and is never
rewritten. A torn last line left by a crash is skipped by readers and cut off by fileio on the
next append.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from .chat_store import ChatLog, Message, is_message_id
from .config import Config
from .errors import ParseError, ValidationError
from .fileio import (append_line_unlocked, atomic_write, dump_flow, dump_yaml, expect_mapping, kept_end, key_line, line_at,
                    load_yaml_text, locked)
from .yaml_log import FIX as _FIX
from .yaml_log import classify, decode, is_entry, open_log, parse_range, read_at, read_kept, top_level_backward

__all__ = ["FileChatLog"]

log = logging.getLogger("swarmfile")

_NOTE = ("# Messages are appended below, one line each (lib/chat.py). metadata.last_message_id\n"
         "# is not updated: a new message's id is one more than the last one's.\n")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*:(?=[ \t\r\n]|\Z)(.*)", re.S)
_EMPTY_FLOW = re.compile(r"\[\][ \t]*(?:#.*)?")


# ---------------------------------------------------------------------------- bytes

class _NotAppendable(Exception):
    """The last top-level key is not a bare ``messages:``: the file needs converting first."""


def _scan(read: Callable[[int, int], bytes], end: int) -> tuple[int, Optional[int]]:
    """(offset of the ``messages:`` line, offset of the last item after it, or None).

    ``read(size, offset)`` gives the log's bytes (from the file, or from a candidate text).

    Walks the column-0 lines backwards from ``end``; raises _NotAppendable on any top-level
    line other than an item before a bare ``messages:`` is reached.
    """
    last = None
    for offset, chunk, top in top_level_backward(read, 0, end):
        if not top:
            break
        if is_entry(chunk[:2]):
            if last is None:
                last = offset
            continue
        newline = chunk.find(b"\n")
        if classify(chunk if newline < 0 else chunk[:newline + 1], "messages") == "mapping":
            return offset, last
        break
    raise _NotAppendable


def _decode(fd: int, path: Path, start: int, end: int) -> str:
    return decode(read_at(fd, end - start, start), path, fd, start)


# ---------------------------------------------------------------------------- whole file


def _item_line(text: str, index: int) -> Optional[int]:
    """Best-effort line of the ``index``-th entry of ``messages`` (block style)."""
    lines = text.splitlines()
    start = key_line(text, "messages")
    if start is None:
        return None
    indent, count = None, -1
    for number in range(start, len(lines)):
        line = lines[number]
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        item = stripped == "-" or stripped.startswith(("- ", "-\t"))
        depth = len(line) - len(stripped)
        if depth == 0 and not item:
            break
        if item and indent is None:
            indent = depth
        if item and depth == indent:
            count += 1
            if count == index:
                return number + 1
    return start


def _parse_log(text: str, path: Path) -> tuple[dict, list[Message]]:
    """The document and its messages, checked; ParseError/ValidationError with the line."""
    data = load_yaml_text(text, path)
    if data is None:
        raise ValidationError("is empty; expected 'messages:'", path=path, line=1,
                              hint="restore it, or delete it to start a new chat log")
    expect_mapping(data, path, "the chat log", line=1)
    if "messages" not in data:
        raise ValidationError("has no 'messages' key", path=path, line=1, hint=_FIX)
    raw = data["messages"]
    if raw is None:  # `messages:` with nothing under it yet
        raw = []
    if not isinstance(raw, list):
        raise ValidationError(f"'messages' must be a list, got {type(raw).__name__}", path=path,
                              line=key_line(text, "messages"), hint=_FIX)
    messages = []
    for index, item in enumerate(raw):
        try:
            messages.append(Message.from_dict(item))
        except ValidationError as exc:
            raise ValidationError(f"message {index + 1}: {exc.reason}", path=path,
                                  line=_item_line(text, index), hint=_FIX) from None
    return data, messages


def _fits(text: str, data: dict) -> bool:
    """True when ``text`` takes appends and parses to ``data``: the check before a conversion."""
    raw = text.encode("utf-8")
    try:
        _scan(lambda size, offset: raw[offset:offset + size], len(raw))
        new = load_yaml_text(text)
    except (_NotAppendable, ParseError):
        return False
    return isinstance(new, dict) and {**new, "messages": new.get("messages") or []} == {
        **data, "messages": data["messages"] or []}


def _blank(line: str) -> bool:
    return not line.strip()


def _rearranged(text: str, data: dict) -> Optional[str]:
    """``text`` with the ``messages`` section moved to the end as a block list; None if unsure."""
    lines = text.splitlines(keepends=True)
    keys: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines):
        if _blank(line) or line[:1] in " \t#" or is_entry(line[:2].encode()):
            continue
        found = _KEY.match(line)
        if not found:  # '---', a quoted key, a directive: rebuild instead
            return None
        keys.append((number, found.group(1), found.group(2).strip()))
    which = [n for n, key in enumerate(keys) if key[1] == "messages"]
    if len(which) != 1:
        return None
    starts = [keys[0][0]]
    for n in range(1, len(keys)):  # comments and blank lines just above a key go with it
        start = keys[n][0]
        while start - 1 > keys[n - 1][0] and (_blank(lines[start - 1]) or lines[start - 1][:1] == "#"):
            start -= 1
        starts.append(start)
    bounds = list(zip(starts, starts[1:] + [len(lines)]))
    out = lines[:starts[0]]

    def add(chunk: list[str]) -> None:
        chunk = [line if line.endswith("\n") else line + "\n" for line in chunk]
        while chunk and (not out or _blank(out[-1])) and _blank(chunk[0]):
            chunk = chunk[1:]
        out.extend(chunk)

    for n, (start, stop) in enumerate(bounds):
        if n != which[0]:
            add(lines[start:stop])
    start, stop = bounds[which[0]]
    key_at, rest = keys[which[0]][0], keys[which[0]][2]
    body = lines[key_at + 1:stop]
    if rest.startswith("#") or not rest:
        depth = next((len(l) - len(l.lstrip(" ")) for l in body
                      if not _blank(l) and not l.lstrip(" ").startswith("#")), 0)
        moved = []
        for line in body:
            if _blank(line):
                moved.append("\n")
            elif line[:depth].strip(" ") == "":
                moved.append(line[depth:])
            elif line.lstrip(" ")[:1] == "#":
                moved.append(line.lstrip(" "))
            else:
                return None
        body = moved
    elif _EMPTY_FLOW.fullmatch(rest):
        body = [line for line in body if not _blank(line)]
    else:  # a flow list: one line per entry instead
        body = ["- " + dump_flow(item) + "\n" for item in data["messages"]]
    while body and _blank(body[-1]):
        body.pop()
    if out and not _blank(out[-1]):
        out.append("\n")
    add(lines[start:key_at])
    return "".join(out) + _NOTE + "messages:\n" + "".join(body)


def _rebuilt(text: str, data: dict) -> str:
    """The leading comments, the other keys as block YAML, then the messages one line each."""
    header = []
    for line in text.splitlines(keepends=True):
        if not (_blank(line) or line.startswith("#")):
            break
        header.append(line if line.endswith("\n") else line + "\n")
    others = {key: value for key, value in data.items() if key != "messages"}
    body = "".join(header) + (dump_yaml(others) + "\n" if others else "")
    return body + _NOTE + "messages:\n" + "".join("- " + dump_flow(m) + "\n" for m in data["messages"] or [])


def _convert(path: Path, fd: int, end: int, fsync: bool) -> None:
    """Rewrite the log once into the appendable layout (the caller holds the lock)."""
    text = _decode(fd, path, 0, end)
    data, _ = _parse_log(text, path)
    for candidate in (_rearranged(text, data), _rebuilt(text, data)):
        if candidate is not None and _fits(candidate, data):
            atomic_write(path, candidate, fsync=fsync)
            log.info("%s: converted once so that messages can be appended", path)
            return
    raise ValidationError("cannot be laid out for appends without changing its data", path=path,
                          line=key_line(text, "messages"),
                          hint="make 'messages:' the last key, one '- ' entry per message")


# ---------------------------------------------------------------------------- append


def _next_id(path: Path, fsync: bool) -> tuple[int, Optional[str]]:
    """The id of the next message and the header a new file starts with; caller holds the lock."""
    fd = open_log(path, symlink="refusing to use it")
    if fd is None:
        return 1, "messages:\n"
    try:
        for attempt in (1, 2):
            end = kept_end(fd, os.fstat(fd).st_size)
            try:
                messages_at, last = _scan(lambda size, offset: read_at(fd, size, offset), end)
                break
            except _NotAppendable:
                if attempt == 2:  # pragma: no cover - _convert checks its output
                    raise ValidationError("is not in an appendable layout", path=path, hint=_FIX) from None
                _convert(path, fd, end, fsync)
                os.close(fd)
                fd = open_log(path, symlink="refusing to use it")
                if fd is None:  # pragma: no cover - we hold the lock
                    return 1, "messages:\n"
        head = parse_range(fd, path, 0, messages_at)
        if head is not None:
            expect_mapping(head, path, "the chat log", line=1)
        metadata = (head or {}).get("metadata")
        floor = metadata.get("last_message_id") if isinstance(metadata, dict) else None
        floor = floor if is_message_id(floor) else 0
        if last is None:
            return floor + 1, None
        item = parse_range(fd, path, last, end)
        try:
            if not isinstance(item, list) or len(item) != 1:  # pragma: no cover - one '- ' item by _scan
                raise ValidationError("is not one list entry")
            return max(floor, Message.from_dict(item[0]).id) + 1, None
        except ValidationError as exc:
            raise ValidationError(f"last message: {exc.reason}", path=path, line=line_at(fd, last),
                                  hint=_FIX) from None
    finally:
        os.close(fd)


class FileChatLog(ChatLog):
    """chat-log.yaml (``paths.chat`` in swarm.yaml): see the module docstring."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.path: Path = cfg.chat_file

    def where(self) -> str:
        return str(self.path)

    def append(self, message: Message) -> Message:
        fsync = bool(self.cfg.get("events", "fsync"))
        with locked(self.path, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout):
            next_id, header = _next_id(self.path, fsync)
            message = replace(message, id=next_id)
            append_line_unlocked(self.path, "- " + dump_flow(message.to_dict()), fsync=fsync, header=header)
        return message

    def read(self) -> list[Message]:
        text = read_kept(self.path, symlink="refusing to use it")
        return [] if text is None else sorted(_parse_log(text, self.path)[1], key=lambda m: m.id)
