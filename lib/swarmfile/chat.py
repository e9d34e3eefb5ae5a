"""Messages between agents: send, inbox, read state, replies, threads, help requests.

A message has an id, a sender, a recipient (an agent id, or ``all``: a broadcast, for everyone
but the sender), a type, optionally a task and the message it answers. The messages are kept by
the workspace's ``ChatLog`` (chat_store.py): chat-log.yaml in RALF's format by default, one
appended line per message (chat_log_file.py); the Redis server for a Redis ``backend:``, with ids
from a server counter so that two hosts never share one (redis_chat.py). Ids grow in the order
messages were sent, and every list here is in id order.

Read state never touches the log: ``.swarm/chat-read/<agent>.yaml`` holds ``read_through``
(every message to the agent with an id up to it is read) and ``read``, the read ids above it.
It is this host's: an agent reads its inbox where it runs.

Each message also appends a ``message`` event to the event log. Fail closed: a log that does
not parse raises ParseError or ValidationError naming where and what to do, and is never
rewritten.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from . import events, stores
from .chat_store import BROADCAST, ChatLog, Message, MessageType, is_message_id, message_type
from .clock import format_ts
from .config import Config, load_config, validate_id
from .errors import NotFoundError, SwarmError, ValidationError
from .fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_file, locked

__all__ = [
    "BROADCAST", "MessageType", "Message", "send", "reply", "inbox", "mark_read", "read_messages",
    "thread", "ask_for_help", "answers_for", "main",
]

log = logging.getLogger("swarmfile")

PathLike = Union[str, "os.PathLike[str]"]

_ABSENT = object()


def _where(root: Optional[PathLike]) -> tuple[Config, ChatLog]:
    cfg = load_config(root=root)
    return cfg, stores.chat_log(cfg)


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
    kind = message_type(type)
    if not isinstance(content, str) or not content.strip():
        raise ValidationError("a message needs some text")
    if reply_to is not None and not is_message_id(reply_to):
        raise ValidationError(f"reply_to must be a message id, got {reply_to!r:.40}")
    cfg, chat_log = _where(root)
    message = chat_log.append(Message(id=0, from_agent=from_agent, to=to_agent, content=content, type=kind,
                                      timestamp=format_ts(), task_id=task_id, reply_to=reply_to))
    try:
        events.append_event("message", agent=from_agent, task_id=task_id, root=cfg.root, to=to_agent,
                            message_id=message.id, type_=kind.value)
    except SwarmError as exc:  # the message is delivered: raising would invite a duplicate resend
        log.warning("message %d was sent, but its event was not logged: %s", message.id, exc)
    return message


# ---------------------------------------------------------------------------- read


def read_messages(*, root: Optional[PathLike] = None, since_id: Optional[int] = None,
                  agent: Optional[str] = None, task_id: Optional[str] = None,
                  type: Union[MessageType, str, None] = None, limit: Optional[int] = None) -> list[Message]:
    """The log's messages in id order, optionally filtered.

    Filters: ids after ``since_id``; from or to ``agent`` (broadcasts included); about
    ``task_id``; of one ``type``. ``limit`` keeps the last ones. A missing log has no messages. Raises ParseError/ValidationError for a corrupt log.
    """
    kind = None if type is None else message_type(type)
    found = []
    for message in _where(root)[1].read():
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


def _get(messages: list[Message], message_id: int, where: str) -> Message:
    for message in messages:
        if message.id == message_id:
            return message
    raise NotFoundError(f"no message with id {message_id!r:.40}", path=where)


def reply(message_or_id: Union[Message, int], from_agent: str, content: str,
          *, root: Optional[PathLike] = None, type: Union[MessageType, str] = MessageType.ANSWER) -> Message:
    """Answer a message: sent to its sender (about the same task), with ``reply_to`` set.

    Raises NotFoundError when the id is not in the log.
    """
    original = message_or_id
    if not isinstance(original, Message):
        chat_log = _where(root)[1]
        original = _get(chat_log.read(), message_or_id, chat_log.where())
    to = original.from_agent if original.from_agent != from_agent else original.to
    return send(from_agent, to, content, task_id=original.task_id, type=type, root=root,
                reply_to=original.id)


def thread(message_id: int, *, root: Optional[PathLike] = None) -> list[Message]:
    """The whole conversation ``message_id`` belongs to: its first message and every reply, by id."""
    chat_log = _where(root)[1]
    messages = chat_log.read()
    by_id = {m.id: m for m in messages}
    top, seen = _get(messages, message_id, chat_log.where()), set()
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
    if not is_message_id(through) or not isinstance(ids, list) or not all(is_message_id(i) for i in ids):
        raise ValidationError("'read_through' must be a message id and 'read' a list of ids", path=path,
                              hint="fix or delete the file (deleting marks everything unread)")
    extra = {k: v for k, v in data.items() if k not in ("agent", "read_through", "read", "updated")}
    return through, set(ids), extra


def _is_read(state: tuple[int, set[int], Any], message_id: int) -> bool:
    return message_id <= state[0] or message_id in state[1]


def inbox(agent: str, unread: bool = True, *, root: Optional[PathLike] = None) -> list[Message]:
    """Messages to ``agent`` (or to all, not from it) in id order; only the unread ones by default."""
    agent = validate_id(agent, "agent id")
    cfg, chat_log = _where(root)
    mine = [m for m in chat_log.read() if m.addressed_to(agent)]
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
    if not all(is_message_id(i) for i in wanted):
        raise ValidationError(f"message ids must be whole numbers >= 0, got {wanted!r:.80}")
    cfg, chat_log = _where(root)
    messages = chat_log.read()
    known = {m.id for m in messages}
    missing = sorted(set(wanted) - known)
    if missing:
        raise NotFoundError(f"no message with id {', '.join(map(str, missing[:10]))}", path=chat_log.where())
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
    messages = _where(root)[1].read()
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
