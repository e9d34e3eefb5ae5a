"""The chat log on Redis: the messages of every host in one place, numbered by the server.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    chat        a sorted set: each message as JSON (its id first), scored by its id
    chat:seq    the last id given (INCR): it never goes back, so two hosts never share an id

An append is one Lua script, atomic on the server: take the next id and store the message
under it. Readers get the messages in id order, which is the order the server took them in.
With ``appendfsync always`` a message is on the server's disk before ``append`` returns. A reply
lost to a timeout leaves the outcome unknown (no retry inside redis-py: a resent script would
store the message twice). A stored message that does not parse stops every reader, naming the
key and the id, and is never rewritten.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .chat_store import ChatLog, Message
from .config import Config
from .errors import ValidationError
from .redis_backend import RedisStore

__all__ = ["RedisChatLog"]

# ARGV[1] is the message as a JSON object without its id: the id goes in front, so a stored
# member reads like a line of chat-log.yaml, id first.
_APPEND = """
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, '{"id":' .. id .. ',' .. string.sub(ARGV[1], 2))
return id
"""

_FIX = "fix it with ZADD under the same score, or ZREM it; it was not changed"


class RedisChatLog(RedisStore, ChatLog):
    """The messages of one workspace in one Redis database (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.key, self.seq = self._key("chat"), self._key("chat:seq")
        self._append: Any = None

    def where(self) -> str:
        return f"redis key {self.key}"

    def append(self, message: Message) -> Message:
        if self._append is None:
            self._append = self.client.register_script(_APPEND)
        record = {k: v for k, v in message.to_dict().items() if k != "id"}
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        new_id = self._run("send a message", lambda: self._append(keys=[self.seq, self.key], args=[body]))
        return replace(message, id=int(new_id))

    def read(self) -> list[Message]:
        raw = self._run("read the messages", lambda: self.client.zrange(self.key, 0, -1, withscores=True))
        messages = []
        for member, score in raw:
            try:
                messages.append(Message.from_dict(json.loads(member)))
            except ValueError as exc:  # a JSON error, or ValidationError from the record
                reason = exc.reason if isinstance(exc, ValidationError) else f"does not parse: {exc}"
                raise ValidationError(f"message {int(score)}: {reason}", path=self.where(), hint=_FIX) from None
        return messages
