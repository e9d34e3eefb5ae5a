"""The agent registry on Redis: every host's agents in one place, stamped by the server's clock.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    agents          a hash: agent id -> its entry as JSON (the fields heartbeat.yaml would hold)
    agents:order    a sorted set: agent id by registration number (``entries`` keeps that order)
    agents:seq      the last registration number given
    agents:created  present once the registry exists (``create``, or the first registration)
    agents:beats    a sorted set: agent id by the server time (seconds) its entry was last written

Heartbeats expire by the server's clock: ``stale(older_than)`` names the agents whose last beat is
older than that (default ``timeouts.heartbeat_seconds``), measured with ``TIME`` on the server, so
a host whose clock is off neither keeps a dead agent alive nor declares a live one dead; and
``prune(older_than)`` removes those entries in one script (an agent that beats meanwhile stays).
Redis 7.0 has no per-field expiry on a hash, hence the sorted set beside it.

``update`` is optimistic: it WATCHes the hash, reads it whole (an entry that does not parse
stops every reader and writer, naming the key and field, and is never overwritten), runs the
change, and writes the agent's entry in MULTI/EXEC; a concurrent writer makes EXEC fail and the
step is run again. ``last_seen`` and every other time it stores is the Redis server's (``TIME``),
so agents on hosts whose clocks differ are compared on one clock.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

from .agent_registry import AgentRegistry
from .clock import format_ts
from .errors import BackendUnavailable, ValidationError
from .redis_backend import RedisStore
from .store_check import Problem, read_problems

__all__ = ["RedisAgentRegistry"]

R = TypeVar("R")
_RETRIES = 100  # optimistic rounds before giving up: 8 busy writers settle in a handful


# The server's clock decides an age: TIME inside the script, never a host's. (Reads only, so it
# may run on a replica; ages as strings: Lua numbers are truncated to integers in a reply.)
_STALE = """
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (at - tonumber(ARGV[1])), 'WITHSCORES')
local out = {}
for i = 1, #old, 2 do
  out[#out + 1] = old[i]
  out[#out + 1] = tostring(at - tonumber(old[i + 1]))
end
return out
"""

_PRUNE = """
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (at - tonumber(ARGV[1])))
for _, name in ipairs(old) do
  redis.call('HDEL', KEYS[2], name)
  redis.call('ZREM', KEYS[3], name)
  redis.call('ZREM', KEYS[1], name)
end
return old
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class RedisAgentRegistry(RedisStore, AgentRegistry):
    """The agents of one workspace in one Redis database (see the module docstring)."""

    def where(self) -> str:
        return f"redis key {self._key('agents')}"

    def owns(self, path: str) -> bool:
        return False  # no file of the checkout is this registry

    def create(self) -> Optional[str]:
        made = self._run("create the agent registry", lambda: self.client.set(self._key("agents:created"), 1, nx=True))
        return self.where() if made else None

    def _decode(self, everything: dict, order: list) -> dict[str, dict]:
        ranked = {_text(name): n for n, name in enumerate(order)}
        found: dict[str, dict] = {}
        for raw_name in sorted(everything, key=lambda name: (ranked.get(_text(name), len(ranked)), _text(name))):
            name = _text(raw_name)
            try:
                entry = json.loads(_text(everything[raw_name]))
                if not isinstance(entry, dict):
                    raise ValueError(f"not a mapping but {type(entry).__name__}")
            except ValueError as exc:
                raise ValidationError(f"the entry of agent {name[:60]!r} does not parse: {exc}",
                                      path=f"{self.where()} field {name}",
                                      hint="fix it with HSET, or HDEL it (the agent registers again); "
                                           "it was not changed") from None
            found[name] = entry
        return found

    def entries(self) -> Optional[dict[str, dict]]:
        def fetch() -> tuple:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(self._key("agents:created"))
            pipe.hgetall(self._key("agents"))
            pipe.zrange(self._key("agents:order"), 0, -1)
            return tuple(pipe.execute())

        created, everything, order = self._run("read the agent registry", fetch)
        if not created and not everything:
            return None
        return self._decode(everything, order)

    def update(self, agent_id: str, change: Callable[[dict, str], Optional[R]], *, create: bool) -> Optional[R]:
        import redis  # only a Redis backend gets here

        agents, order = self._key("agents"), self._key("agents:order")
        created, seq, beats_at = self._key("agents:created"), self._key("agents:seq"), self._key("agents:beats")

        def attempt() -> tuple[bool, Optional[R]]:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(agents, created)
                    if not pipe.exists(created) and not pipe.exists(agents) and not create:
                        return True, None
                    beats = self._decode(pipe.hgetall(agents), pipe.zrange(order, 0, -1))
                    seconds, micros = pipe.time()
                    beat_at = int(seconds) + int(micros) / 1e6
                    now = format_ts(datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int(micros)))
                    had = agent_id in beats
                    result = change(beats, now)
                    if result is None:
                        return True, None
                    pipe.multi()
                    pipe.set(created, 1)
                    if agent_id in beats:
                        pipe.hset(agents, agent_id, json.dumps(beats[agent_id], separators=(",", ":"),
                                                               ensure_ascii=False))
                        pipe.zadd(beats_at, {agent_id: beat_at})
                        if not had:
                            pipe.eval("return redis.call('ZADD', KEYS[1], 'NX', redis.call('INCR', KEYS[2]), ARGV[1])",
                                      2, order, seq, agent_id)
                    else:
                        pipe.hdel(agents, agent_id)
                        pipe.zrem(order, agent_id)
                        pipe.zrem(beats_at, agent_id)
                    pipe.execute()
                    return True, result
                except redis.exceptions.WatchError:
                    return False, None  # another writer came first: read again

        for _ in range(_RETRIES):
            done, result = self._run(f"update the entry of {agent_id}", attempt)
            if done:
                return result
        raise BackendUnavailable(f"the entry of {agent_id} kept changing under {_RETRIES} attempts to update it",
                                 path=self.where(), hint="retry")

    def clock(self) -> datetime:
        seconds, micros = self._run("read the server's clock", lambda: self.client.time())
        return datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int(micros))

    def _older_than(self, older_than: Optional[float]) -> float:
        seconds = self.cfg.heartbeat_timeout if older_than is None else float(older_than)
        if seconds < 0:
            raise ValidationError(f"older_than must be >= 0 seconds, got {older_than!r}")
        return seconds

    def stale(self, older_than: Optional[float] = None) -> dict[str, float]:
        """Agents whose last beat is more than ``older_than`` seconds ago by the server's clock, with
        that age (default ``timeouts.heartbeat_seconds``); oldest first."""
        seconds = self._older_than(older_than)
        found = self._run("read the agents' last beats", lambda: self.client.eval(
            _STALE, 1, self._key("agents:beats"), repr(seconds)))
        return {_text(name): float(age) for name, age in zip(found[0::2], found[1::2])}

    def prune(self, older_than: float) -> list[str]:
        """Remove the entries of agents not seen for more than ``older_than`` seconds (server clock);
        their ids. One script: an agent that beats meanwhile is not removed."""
        seconds = self._older_than(older_than)
        keys = [self._key("agents:beats"), self._key("agents"), self._key("agents:order")]
        gone = self._run("prune the agent registry", lambda: self.client.eval(_PRUNE, 3, *keys, repr(seconds)))
        return [_text(name) for name in gone]

    def check(self) -> tuple[list[Problem], int]:
        found: list = []
        problems = read_problems(self.where(), lambda: found.append(self.entries()))
        if not problems and found[0] is None:
            return [], 0  # no registry yet
        return problems, 1
