"""Messages between agents in chat-log.yaml (RALF format): send, inbox, read state, replies.

A message is one flow-mapping line appended under the log's lock, like an event in
events.yaml, so a send never rewrites what is already there::

    - {id: 12, timestamp: '2026-11-22T10:00:00.123Z', from: executor-1, to: planner, type: question, task_id: TASK-1, content: 'which API?', reply_to: 11}

``to`` is an agent id or ``all`` (a broadcast, for everyone but the sender).

Layout. RALF's file has ``messages: []`` followed by a ``metadata:`` block: no line can be
appended to that. The first send to such a file converts it once, under the lock, with an
atomic rewrite that keeps everything: the comment header stays on top, the other keys
(``metadata``) follow as they were, and ``messages:`` becomes the last key, a block sequence
whose items are then appended one line each. Block-style entries already there are kept as
they are (moved left to column 0 when they were indented). The new text must parse to the
same data before it replaces the file. After that the log is never rewritten (unless a hand
edit puts another key below ``messages``: the next send moves it up the same way). Appends are
fsynced when ``events.fsync`` is on.

Ids. ``metadata.last_message_id`` cannot be kept current without a rewrite, so it stays as it
was. Under the lock, a new id is one more than the larger of that value and the ``id`` of the
last message in the file (the last ``- `` item at column 0, parsed alone, block style too), so
ids stay unique and increasing across writers. An append reads the file's column-0 lines
backwards (bytes, no YAML) to check that ``messages:`` is still the last key, and parses only
the header and the last entry; readers parse and check the whole file.

Read state never touches the log: ``.swarm/chat-read/<agent>.yaml`` holds ``read_through``
(every message to the agent with an id up to it is read) and ``read``, the read ids above it.

Each message also appends a ``message`` event to events.yaml. Fail closed: a log that does
not parse, is empty, or whose ``messages`` is not a list of messages raises ParseError or
ValidationError naming the file and line, and is never rewritten. A torn last line left by a
crash is skipped by readers and cut off by fileio on the next append.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from . import events
from .clock import format_ts
from .config import Config, load_config, validate_id
from .errors import InvalidIdError, NotFoundError, ParseError, SwarmError, ValidationError
from .records import Record
from .fileio import (append_line_unlocked, atomic_write, dump_flow, dump_yaml, expect_mapping, kept_end, key_line, line_at,
                    load_yaml_file, load_yaml_text, locked)
from .yaml_log import FIX as _FIX
from .yaml_log import classify, decode, is_entry, open_log, parse_range, read_at, read_kept, top_level_backward

__all__ = [
    "BROADCAST", "MessageType", "Message", "send", "reply", "inbox", "mark_read", "read_messages",
    "thread", "ask_for_help", "answers_for", "main",
]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]

BROADCAST = "all"
_NOTE = ("# Messages are appended below, one line each (lib/chat.py). metadata.last_message_id\n"
         "# is not updated: a new message's id is one more than the last one's.\n")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*:(?=[ \t\r\n]|\Z)(.*)", re.S)
_EMPTY_FLOW = re.compile(r"\[\][ \t]*(?:#.*)?")
_ABSENT = object()


class MessageType(str, Enum):
    """What a message is for."""

    QUESTION = "question"
    ANSWER = "answer"
    INFO = "info"
    HELP = "help"
    TASK = "task"


def _message_type(value: Any) -> MessageType:
    try:
        return MessageType(value)
    except ValueError:
        raise ValidationError(f"unknown message type {value!r:.40}",
                              hint="use " + ", ".join(t.value for t in MessageType)) from None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _agent(value: Any, what: str, broadcast: bool = False) -> str:
    if broadcast and value == BROADCAST:
        return value
    try:
        return validate_id(value, what)
    except InvalidIdError as exc:
        raise ValidationError(exc.reason, hint=exc.hint) from None


@dataclass(frozen=True)
class Message(Record):
    """One chat message; ``extra`` keeps the fields this module does not know."""

    STORED_AS = {"from_agent": "from"}
    STORED_ORDER = ("id", "timestamp", "from_agent", "to", "type", "task_id", "content", "reply_to")
    OMIT_NONE = True

    id: int
    from_agent: str
    to: str
    content: str
    type: MessageType = MessageType.INFO
    timestamp: Optional[str] = None
    task_id: Optional[str] = None
    reply_to: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def addressed_to(self, agent: str) -> bool:
        """True when ``agent`` should see this in its inbox (to it, or to all, and not from it)."""
        return self.from_agent != agent and self.to in (agent, BROADCAST)

    @classmethod
    def from_dict(cls, data: Any) -> "Message":
        """A message from its stored mapping; ValidationError (without a path) when malformed."""
        if not isinstance(data, dict):
            raise ValidationError(f"must be a mapping, got {type(data).__name__}")
        if not _is_id(data.get("id")):
            raise ValidationError(f"'id' must be a whole number >= 0, got {data.get('id')!r:.40}")
        content = data.get("content")
        if isinstance(content, (dict, list)) or content is None:
            raise ValidationError("'content' must be text")
        stamp = data.get("timestamp")
        if isinstance(stamp, (datetime, date)):  # an unquoted time written by hand
            stamp = format_ts(stamp) if isinstance(stamp, datetime) else stamp.isoformat()
        elif stamp is not None and not isinstance(stamp, str):
            raise ValidationError("'timestamp' must be an ISO-8601 time")
        task_id, reply_to = data.get("task_id"), data.get("reply_to")
        if reply_to is not None and not _is_id(reply_to):
            raise ValidationError(f"'reply_to' must be a message id, got {reply_to!r:.40}")
        return cls(
            id=data["id"], from_agent=_agent(data.get("from"), "'from' agent id"),
            to=_agent(data.get("to"), "'to' agent id", broadcast=True), content=str(content),
            type=_message_type(data.get("type")), timestamp=stamp,
            task_id=None if task_id is None else _agent(task_id, "'task_id'"), reply_to=reply_to,
            extra=cls.split(data)[1],
        )


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


def _where(root: Optional[PathLike]) -> tuple[Config, Path]:
    cfg = load_config(root=root)
    return cfg, cfg.chat_file


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
        floor = floor if _is_id(floor) else 0
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


def _append(root: Optional[PathLike], build: Callable[[int], Message]) -> tuple[Config, Message]:
    cfg, path = _where(root)
    fsync = bool(cfg.get("events", "fsync"))
    with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        next_id, header = _next_id(path, fsync)
        message = build(next_id)
        append_line_unlocked(path, "- " + dump_flow(message.to_dict()), fsync=fsync, header=header)
    return cfg, message


def send(from_agent: str, to_agent: str, content: str, task_id: Optional[str] = None,
         type: Union[MessageType, str] = MessageType.QUESTION, *, root: Optional[PathLike] = None,
         reply_to: Optional[int] = None) -> Message:
    """Append a message from ``from_agent`` to ``to_agent`` (an agent id or ``all``) and return it.

    Also appends a ``message`` event to events.yaml. Raises InvalidIdError for a bad id,
    ValidationError for a bad value or a chat log that cannot take it, ParseError, LockTimeout.
    """
    from_agent = validate_id(from_agent, "agent id")
    if to_agent != BROADCAST:
        validate_id(to_agent, "recipient id")
    if task_id is not None:
        validate_id(task_id, "task id")
    kind = _message_type(type)
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("a message needs some text")
    if reply_to is not None and not _is_id(reply_to):
        raise ValidationError(f"reply_to must be a message id, got {reply_to!r:.40}")
    stamp = format_ts()
    cfg, message = _append(root, lambda next_id: Message(
        id=next_id, from_agent=from_agent, to=to_agent, content=content, type=kind, timestamp=stamp,
        task_id=task_id, reply_to=reply_to))
    try:
        events.append_event("message", agent=from_agent, task_id=task_id, root=cfg.root, to=to_agent,
                            message_id=message.id, type_=kind.value)
    except SwarmError as exc:  # the message is delivered: raising would invite a duplicate resend
        log.warning("message %d was sent, but its event was not logged: %s", message.id, exc)
    return message


# ---------------------------------------------------------------------------- read


def _read_log(path: Path) -> list[Message]:
    text = read_kept(path, symlink="refusing to use it")
    return [] if text is None else sorted(_parse_log(text, path)[1], key=lambda m: m.id)


def read_messages(*, root: Optional[PathLike] = None, since_id: Optional[int] = None,
                  agent: Optional[str] = None, task_id: Optional[str] = None,
                  type: Union[MessageType, str, None] = None, limit: Optional[int] = None) -> list[Message]:
    """The log's messages in id order, optionally filtered.

    Filters: ids after ``since_id``; from or to ``agent`` (broadcasts included); about
    ``task_id``; of one ``type``. ``limit`` keeps the last ones. A missing log has no messages. Raises ParseError/ValidationError for a corrupt log.
    """
    kind = None if type is None else _message_type(type)
    found = []
    for message in _read_log(_where(root)[1]):
        if since_id is not None and message.id <= since_id:
            continue
        if agent is not None and agent not in (message.from_agent, message.to) and message.to != BROADCAST:
            continue
        if task_id is not None and message.task_id != task_id:
            continue
        if kind is not None and message.type != kind:
            continue
        found.append(message)
    return found if limit is None else found[-limit:] if limit > 0 else []


def _get(messages: list[Message], message_id: int, path: Path) -> Message:
    for message in messages:
        if message.id == message_id:
            return message
    raise NotFoundError(f"no message with id {message_id!r:.40}", path=path)


def reply(message_or_id: Union[Message, int], from_agent: str, content: str,
          *, root: Optional[PathLike] = None, type: Union[MessageType, str] = MessageType.ANSWER) -> Message:
    """Answer a message: sent to its sender (about the same task), with ``reply_to`` set.

    Raises NotFoundError when the id is not in the log.
    """
    original = message_or_id
    if not isinstance(original, Message):
        path = _where(root)[1]
        original = _get(_read_log(path), message_or_id, path)
    to = original.from_agent if original.from_agent != from_agent else original.to
    return send(from_agent, to, content, task_id=original.task_id, type=type, root=root,
                reply_to=original.id)


def thread(message_id: int, *, root: Optional[PathLike] = None) -> list[Message]:
    """The whole conversation ``message_id`` belongs to: its first message and every reply, by id."""
    path = _where(root)[1]
    messages = _read_log(path)
    by_id = {m.id: m for m in messages}
    top, seen = _get(messages, message_id, path), set()
    while top.reply_to in by_id and top.id not in seen:  # `seen`: a hand-edited loop must end
        seen.add(top.id)
        top = by_id[top.reply_to]
    members = {top.id}
    for message in messages:
        if message.reply_to in members:
            members.add(message.id)
    return [m for m in messages if m.id in members]


# ---------------------------------------------------------------------------- read state


def _load_state(path: Path) -> tuple[int, set[int], dict[str, Any]]:
    """(read_through, read ids above it, other keys) from an agent's read state file."""
    data = load_yaml_file(path, default=_ABSENT)
    if data is _ABSENT:
        return 0, set(), {}
    expect_mapping(data, path, "the read state", line=1)
    through, ids = data.get("read_through", 0), data.get("read") or []
    if not _is_id(through) or not isinstance(ids, list) or not all(_is_id(i) for i in ids):
        raise ValidationError("'read_through' must be a message id and 'read' a list of ids", path=path,
                              hint="fix or delete the file (deleting marks everything unread)")
    extra = {k: v for k, v in data.items() if k not in ("agent", "read_through", "read", "updated")}
    return through, set(ids), extra


def _is_read(state: tuple[int, set[int], Any], message_id: int) -> bool:
    return message_id <= state[0] or message_id in state[1]


def inbox(agent: str, unread: bool = True, *, root: Optional[PathLike] = None) -> list[Message]:
    """Messages to ``agent`` (or to all, not from it) in id order; only the unread ones by default."""
    agent = validate_id(agent, "agent id")
    cfg, path = _where(root)
    mine = [m for m in _read_log(path) if m.addressed_to(agent)]
    if not unread:
        return mine
    state = _load_state(cfg.runtime_dir / "chat-read" / f"{agent}.yaml")
    return [m for m in mine if not _is_read(state, m.id)]


def mark_read(agent: str, message_ids: Iterable[int], *, root: Optional[PathLike] = None) -> int:
    """Record that ``agent`` has read these messages; returns how many were newly marked.

    Raises NotFoundError (and records nothing) when an id is not in the log.
    """
    agent = validate_id(agent, "agent id")
    wanted = list(message_ids)
    if not all(_is_id(i) for i in wanted):
        raise ValidationError(f"message ids must be whole numbers >= 0, got {wanted!r:.80}")
    cfg, path = _where(root)
    messages = _read_log(path)
    known = {m.id for m in messages}
    missing = sorted(set(wanted) - known)
    if missing:
        raise NotFoundError(f"no message with id {', '.join(map(str, missing[:10]))}", path=path)
    mine = [m.id for m in messages if m.addressed_to(agent)]
    state_file = cfg.runtime_dir / "chat-read" / f"{agent}.yaml"
    with locked(state_file, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        through, read, extra = _load_state(state_file)
        new = {i for i in wanted if not _is_read((through, read), i)}
        if not new:
            return 0
        read |= new
        # Ids only grow, so once every message to the agent up to some id is read, one number says so.
        unread = [i for i in mine if i > through and i not in read]
        through = unread[0] - 1 if unread else max(through, max(known, default=0))
        doc = {"agent": agent, "read_through": through, "read": sorted(i for i in read if i > through),
               "updated": format_ts(), **extra}
        atomic_write(state_file, dump_yaml(doc))
    return len(new)


# ---------------------------------------------------------------------------- help


def ask_for_help(agent: str, task_id: str, question: str, to: Optional[str] = None,
                 *, root: Optional[PathLike] = None) -> Message:
    """An agent stuck on ``task_id`` asks ``to`` (default: the planner, ``planner.agent_id``; or ``all``) for help."""
    if to is None:
        to = load_config(root=root).get("planner", "agent_id")
    return send(agent, to, question, task_id=task_id, type=MessageType.HELP, root=root)


def answers_for(agent: str, task_id: str, *, root: Optional[PathLike] = None) -> list[Message]:
    """Answers to ``agent`` about ``task_id``: replies to its help requests and answers on the task."""
    agent, task_id = validate_id(agent, "agent id"), validate_id(task_id, "task id")
    messages = _read_log(_where(root)[1])
    asked = {m.id for m in messages if m.from_agent == agent and m.task_id == task_id
             and m.type == MessageType.HELP}
    return [m for m in messages if m.addressed_to(agent)
            and (m.reply_to in asked or (m.type == MessageType.ANSWER and m.task_id == task_id))]


# ---------------------------------------------------------------------------- CLI


def _show(messages: list[Message], as_json: bool) -> None:
    from .cli import print_json

    if as_json:
        return print_json([m.to_dict() for m in messages])
    from .cli import show_time

    print(f"{'ID':>5}  {'TIME':<24}  {'FROM -> TO':<28}  {'TYPE':<8}  {'TASK':<16}  CONTENT")
    for m in messages:
        re_ = f" (re #{m.reply_to})" if m.reply_to is not None else ""
        print(f"{m.id:>5}  {show_time(m.timestamp):<24}  {m.from_agent + ' -> ' + m.to:<28}  {m.type.value:<8}  "
              f"{m.task_id or '-':<16}  {' '.join(m.content.split())}{re_}")


def _build_parser():
    from .cli import non_negative_int, parser, positive_int

    top = parser("chat.py", "Send and read messages between agents (chat-log.yaml).")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("send", help="send a message (TO may be 'all')")
    p.add_argument("sender", metavar="FROM")
    p.add_argument("to", metavar="TO")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("--task", help="the task the message is about")
    p.add_argument("--type", default="question", choices=[t.value for t in MessageType])
    p.add_argument("--reply-to", type=positive_int, metavar="ID", help="the message this answers")
    p = sub.add_parser("inbox", help="messages to AGENT (unread only by default)")
    p.add_argument("agent", metavar="AGENT")
    p.add_argument("--all", action="store_true", help="also the messages already read")
    p.add_argument("--mark-read", action="store_true", help="mark the listed messages read")
    p = sub.add_parser("read", help="mark messages read by AGENT")
    p.add_argument("agent", metavar="AGENT")
    p.add_argument("ids", metavar="ID", type=positive_int, nargs="+")
    p = sub.add_parser("log", help="print the last messages")
    p.add_argument("-n", type=non_negative_int, default=20, help="how many (default 20)")
    p.add_argument("--task", help="only messages about this task")
    p = sub.add_parser("reply", help="answer message ID (sent to its sender)")
    p.add_argument("id", metavar="ID", type=positive_int)
    p.add_argument("sender", metavar="FROM")
    p.add_argument("content", metavar="CONTENT")
    return top


def _run(args: Any) -> int:
    from .cli import print_json

    root, as_json = getattr(args, "root", None), getattr(args, "json", False)
    if args.command in ("send", "reply"):
        if args.command == "send":
            message = send(args.sender, args.to, args.content, task_id=args.task, type=args.type,
                           root=root, reply_to=args.reply_to)
        else:
            message = reply(args.id, args.sender, args.content, root=root)
        print_json(message.to_dict()) if as_json else print(f"sent message {message.id} to {message.to}")
    elif args.command == "inbox":
        found = inbox(args.agent, unread=not args.all, root=root)
        if args.mark_read and found:
            mark_read(args.agent, [m.id for m in found], root=root)
        _show(found, as_json)
    elif args.command == "read":
        marked = mark_read(args.agent, args.ids, root=root)
        print_json({"agent": args.agent, "marked": marked}) if as_json else print(f"marked {marked} read")
    else:
        if args.n < 0:
            raise ValidationError(f"-n must be >= 0, got {args.n}")
        _show(read_messages(root=root, task_id=args.task, limit=args.n), as_json)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``chat.py send|inbox|read|log|reply ...``; exit 0 ok, 2 bad usage or a corrupt log."""
    from .cli import run

    args = _build_parser().parse_args(argv)
    return run(lambda: _run(args))
