"""Where chat messages are kept: the ``Message`` record and the ``ChatLog`` interface.

chat.py holds the rules (who sees what, replies, threads, read state); a chat log holds only the
messages and gives two operations: ``append`` a message under the next id, and ``read`` them
all in id order. ``stores.chat_log(cfg)`` picks the implementation that ``swarm.yaml``'s
``backend:`` names; ``files`` (the default) is chat_log_file's ``FileChatLog`` (chat-log.yaml in
RALF's format), a Redis URL redis_chat's ``RedisChatLog``.

What every implementation guarantees (``tests/test_chat.py`` runs its race on each): ids are
unique and grow in the order messages were appended, across every writer (and every host
sharing the log); an appended message is never lost once ``append`` returned; a log that
cannot be read raises (naming where and what to do) and is never rewritten.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Optional

from .clock import format_ts
from .config import validate_id
from .errors import InvalidIdError, ValidationError
from .records import Record

__all__ = ["BROADCAST", "MessageType", "Message", "ChatLog", "message_type", "is_message_id"]

BROADCAST = "all"


class MessageType(str, Enum):
    """What a message is for."""

    QUESTION = "question"
    ANSWER = "answer"
    INFO = "info"
    HELP = "help"
    TASK = "task"


def message_type(value: Any) -> MessageType:
    """``value`` as a MessageType; ValidationError naming the types when it is none."""
    try:
        return MessageType(value)
    except ValueError:
        raise ValidationError(f"unknown message type {value!r:.40}",
                              hint="use " + ", ".join(t.value for t in MessageType)) from None


def is_message_id(value: Any) -> bool:
    """Whether ``value`` can be a message id (a whole number >= 0, not a bool)."""
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
        if not is_message_id(data.get("id")):
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
        if reply_to is not None and not is_message_id(reply_to):
            raise ValidationError(f"'reply_to' must be a message id, got {reply_to!r:.40}")
        return cls(
            id=data["id"], from_agent=_agent(data.get("from"), "'from' agent id"),
            to=_agent(data.get("to"), "'to' agent id", broadcast=True), content=str(content),
            type=message_type(data.get("type")), timestamp=stamp,
            task_id=None if task_id is None else _agent(task_id, "'task_id'"), reply_to=reply_to,
            extra=cls.split(data)[1],
        )


class ChatLog(ABC):
    """The messages of one workspace; subclasses implement every method."""

    @abstractmethod
    def where(self) -> str:
        """Where the messages are kept, for messages (a path, or a key)."""

    @abstractmethod
    def append(self, message: Message) -> Message:
        """Store ``message`` under the next id (its own ``id`` is ignored) and return it with that id.

        Raises ParseError/ValidationError for a log that cannot take it (never rewritten),
        LockTimeout or BackendUnavailable.
        """

    @abstractmethod
    def read(self) -> list[Message]:
        """Every message in id order; [] when there is no log. ParseError/ValidationError when corrupt."""
