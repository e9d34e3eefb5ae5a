"""The Redis lease table: leases shared by agents on several hosts, decided on the Redis server.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    lease:<task>    a hash: ``rec`` (the lease as JSON), ``token``, ``state``, ``exp`` (expiry, ms since
                    the epoch), ``host``/``pid``/``start`` (the holder process)
    token:<task>    the highest token ever written for the task: it never goes back, not even when
                    the lease hash is deleted by hand, so a stale holder can never be let back in
    leases          the set of task ids that have a lease hash (``list``)
    lock:<task>     the task's lease lock: its owner, with an expiry (``PX``) in case the owner dies;
                    kept out of the AOF and replicas (see ``_LOCK``)
    assignments     a hash: agent id -> the assigned lease as JSON, with ``assigned_at``

Every write is one Lua script, atomic on the server, that refuses (and changes nothing):

- a write by a process that no longer holds the task's lock (it was paused past the lock's
  expiry and someone else took the lock): BackendUnavailable, as the attempt is void, not the lease;
- a token lower than the task's counter (a holder whose lease was taken over): LeaseLost;
- a new token over a held lease that has not expired by the server's clock (``TIME``), unless
  the writer is on the holder's host and found the holder process dead: AlreadyClaimed;
- the renewal (held -> held, same token) of a lease that expired by the server's clock: LeaseLost.

So the decisions that matter across hosts (who holds a task, until when) are made by the
Redis server's clock, never a host's; ``now()`` is the server's ``TIME`` (advanced by this
host's monotonic clock for up to a second after a reply), which claims uses for every expiry it
computes. With ``appendfsync always`` a write is on the server's disk before
it is acknowledged. A reply lost to a timeout leaves the outcome unknown to the caller: a
claim may have been made, and then it expires after its TTL (no retry inside redis-py: a
resent script could claim twice).

The lock: ``SET NX PX`` with a unique owner, in a script that also hands back the record;
released by a compare-and-delete script. A waiter on the owner's host breaks it at once when
the owner process is dead (as a file lock's kernel would), or when it is this very process's
lock from an attempt whose reply was lost; elsewhere it waits for ``_LOCK_MS``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Optional

from .clock import HOSTNAME, parse_ts
from .config import Config
from .errors import AlreadyClaimed, BackendUnavailable, LeaseLost, LockTimeout, SwarmError, ValidationError
from .lease_store import Assignment, Lease, LeaseTable
from .liveness import dead_reason, my_identity
from .redis_backend import RedisStore, connect

__all__ = ["RedisLeaseTable"]

_NOT_HELD: Any = object()
_LOCK_MS = 10_000  # a lease lock outlives a holder that died (or lost the server) this long at most
_CLOCK_REUSE_S = 1.0  # the server's time seen in a reply stands in for TIME this long (monotonic)

_WRITE = """
local owner = redis.call('GET', KEYS[3])
if owner ~= ARGV[1] then return {'nolock', owner or ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = tonumber(ARGV[3])
local top = tonumber(redis.call('GET', KEYS[2]) or '-1')
if token < top then return {'stale', tostring(top)} end
local old = redis.call('HMGET', KEYS[1], 'token', 'state', 'exp', 'host', 'pid', 'start')
local old_token = tonumber(old[1])
if old_token ~= nil and old[2] == 'held' then
  local old_exp = tonumber(old[3])
  if token > old_token then
    if old_exp > now and not (ARGV[9] ~= '' and ARGV[9] == old[4]) then
      return {'live', tostring(old_exp - now), old[4] or '', old[5] or '', old[6] or ''}
    end
  elseif token == old_token and ARGV[4] == 'held' and old_exp <= now then
    return {'expired', tostring(now - old_exp)}
  end
end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'token', ARGV[3], 'state', ARGV[4], 'exp', ARGV[5],
           'host', ARGV[6], 'pid', ARGV[7], 'start', ARGV[8])
if token > top then redis.call('SET', KEYS[2], ARGV[3]) end
redis.call('SADD', KEYS[4], ARGV[10])
return {'ok', t[1], t[2]}
"""

# Locks are not written to the AOF (nor replicated): a lock lost in a restart or a failover
# only voids its holder's next write (the write script checks the owner), and a lease change
# then costs one fsync, not three. The lock hands back the lease record and the server's time:
# nobody can change the record while the lock is held.
_LOCK = """
redis.set_repl(redis.REPL_NONE)
local t = redis.call('TIME')
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('HGET', KEYS[2], 'rec') or false, t[1], t[2]}
end
return {0, redis.call('GET', KEYS[1]) or false, t[1], t[2]}
"""

_UNLOCK = """
redis.set_repl(redis.REPL_NONE)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_CLEAR_ASSIGNMENT = """
local found = redis.call('HGET', KEYS[1], ARGV[1])
if not found then return 0 end
if ARGV[2] ~= '' then
  local ok, record = pcall(cjson.decode, found)
  if not ok or tostring(record['token']) ~= ARGV[2] then return 0 end
end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def _json(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)



def _record(raw: Any, what: str, where: str, hint: str, **context: Any) -> dict:
    """A stored JSON record as a mapping; ValidationError naming the key when it is none."""
    try:
        data = json.loads(_text(raw))
        if not isinstance(data, dict):
            raise ValueError("not a mapping")
    except ValueError as exc:
        raise ValidationError(f"{what} does not parse: {exc}", path=where, hint=hint, **context) from None
    return data

class RedisLeaseTable(RedisStore, LeaseTable):
    """Leases and assignments of one workspace in one Redis database (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self._scripts: dict[str, Any] = {}
        self._held = threading.local()  # task id -> lock owner, per thread: write() proves it holds the lock
        self._mine: set[str] = set()  # every lock owner this process holds right now, across threads
        self._clock: Optional[tuple[datetime, float]] = None  # the server's time last seen, and our monotonic then

    # ------------------------------------------------------------------ plumbing

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.url)
            for name, source in (("write", _WRITE), ("lock", _LOCK), ("unlock", _UNLOCK), ("clear", _CLEAR_ASSIGNMENT)):
                self._scripts[name] = self._client.register_script(source)
        return self._client

    def _script(self, name: str) -> Any:
        _ = self.client  # connects and registers the scripts on first use
        return self._scripts[name]

    def where(self, task_id: str) -> str:
        return self._key("lease", task_id)

    def now(self) -> datetime:
        """The Redis server's clock: every lease expiry is computed and judged by it.

        The server's time from a reply less than ``_CLOCK_REUSE_S`` old, advanced by this host's
        monotonic clock (which measures intervals well; only its wall clock may be off), else TIME.
        """
        seen = self._clock
        if seen is not None and time.monotonic() - seen[1] < _CLOCK_REUSE_S:
            return seen[0] + timedelta(seconds=time.monotonic() - seen[1])
        asked = time.monotonic()
        seconds, micros = self._run("read the server's clock", lambda: self.client.time())
        return self._saw_time(seconds, micros, asked)

    def _saw_time(self, seconds: Any, micros: Any, asked: float) -> datetime:
        """Note the server's time from a reply to a request sent at monotonic ``asked``."""
        moment = datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int(micros))
        # Taken as of the request: now() then runs ahead of the server by at most one round trip, so a
        # lease granted from it only lasts longer, and a take-over it judges early the server refuses.
        self._clock = (moment, asked)
        return moment

    # ------------------------------------------------------------------ leases

    def _decode(self, raw: Any, task_id: str) -> Lease:
        where = f"redis key {self.where(task_id)}"
        data = _record(raw, "lease record", where, "restore it (HSET ... rec) or delete the key; the task's claim is unknown",
                       task_id=task_id)
        return Lease.from_dict(data, where)  # type: ignore[arg-type]  (a key name, not a path)

    def read(self, task_id: str) -> Optional[Lease]:
        held = self._records().get(task_id, _NOT_HELD)  # under our lock: the record the lock handed back
        raw = held if held is not _NOT_HELD else self._run(
            f"read the lease of {task_id}", lambda: self.client.hget(self.where(task_id), "rec"))
        return None if raw is None else self._decode(raw, task_id)

    def list(self, *, errors: Optional[list] = None) -> list[Lease]:
        def fetch() -> list[tuple[str, Any]]:
            names = sorted(_text(n) for n in self.client.smembers(self._key("leases")))
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hget(self.where(name), "rec")
            return list(zip(names, pipe.execute()))

        leases = []
        for task_id, raw in self._run("list the leases", fetch):
            if raw is None:
                continue
            try:
                leases.append(self._decode(raw, task_id))
            except SwarmError as exc:
                if errors is None:
                    raise
                exc.task_id = exc.task_id or task_id
                errors.append(exc)
        return leases

    def write(self, lease: Lease) -> None:
        owner = self._owners().get(lease.task_id)
        if owner is None:
            raise LeaseLost(f"cannot write the lease of {lease.task_id}: its lock is not held",
                            task_id=lease.task_id, hint="a lease is written under lock(task_id)")
        proof = ""
        record = _json(lease.to_dict())
        while True:
            asked = time.monotonic()
            reply = self._run(f"write the lease of {lease.task_id}", lambda: self._script("write")(
                keys=[self.where(lease.task_id), self._key("token", lease.task_id), self._key("lock", lease.task_id),
                      self._key("leases")],
                args=[owner, record, lease.token, lease.state.value,
                      int(parse_ts(lease.expires_at).timestamp() * 1000), lease.host or "",
                      "" if lease.pid is None else lease.pid, "" if lease.proc_start is None else lease.proc_start,
                      proof, lease.task_id]))
            verdict = [_text(x) for x in reply]
            if verdict[0] == "ok":
                self._saw_time(verdict[1], verdict[2], asked)
                self._records()[lease.task_id] = record
                return
            if verdict[0] == "live" and not proof:
                # Only this host can prove its own process dead; the server checks the host matches.
                host, pid, start = verdict[2], verdict[3], verdict[4]
                if host == HOSTNAME and pid.isdigit() and dead_reason(int(pid), host, start or None):
                    proof = HOSTNAME
                    continue
            break
        task_id = lease.task_id
        if verdict[0] == "live":
            raise AlreadyClaimed(f"task {task_id} is held for {int(verdict[1]) / 1000:.1f} s more by the Redis "
                                 "server's clock", task_id=task_id)
        if verdict[0] == "stale":
            raise LeaseLost(f"token {lease.token} of task {task_id} is stale: the server has given out token "
                            f"{verdict[1]}", task_id=task_id)
        if verdict[0] == "expired":
            raise LeaseLost(f"cannot renew task {task_id}: its lease expired {int(verdict[1]) / 1000:.1f} s ago "
                            "by the Redis server's clock", task_id=task_id, hint="renew leases well before they expire")
        # Not LeaseLost: the lease may well still be ours; only this attempt is void. Callers retry.
        raise BackendUnavailable(f"cannot write the lease of {task_id}: its lock expired while held (was this "
                                 "process or the server paused?); nothing was written", task_id=task_id,
                                 hint="retry the action")

    # ------------------------------------------------------------------ the lock

    def _owners(self) -> dict[str, str]:
        owners = getattr(self._held, "owners", None)
        if owners is None:
            owners = self._held.owners = {}
        return owners

    def _records(self) -> dict[str, Any]:
        records = getattr(self._held, "records", None)
        if records is None:
            records = self._held.records = {}
        return records

    @contextmanager
    def lock(self, task_id: str, timeout: Optional[float] = None) -> Iterator[None]:
        wait = self.cfg.lock_timeout if timeout is None else timeout
        key = self._key("lock", task_id)
        ident = my_identity()
        owner = f"{ident['host']}|{ident['pid']}|{ident['proc_start'] or ''}|{uuid.uuid4().hex}"
        deadline = time.monotonic() + wait
        pause = 0.001
        while True:
            asked = time.monotonic()
            got, record, seconds, micros = self._run(f"lock the lease of {task_id}", lambda: self._script("lock")(
                keys=[key, self.where(task_id)], args=[owner, _LOCK_MS]))
            self._saw_time(seconds, micros, asked)
            if got:
                break
            if self._break_if_dead(key, record):  # a refused lock hands back its owner instead
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                holder = _text(record).rsplit("|", 1)[0]
                raise LockTimeout(f"redis key {key}", wait, holder=holder.replace("|", " pid ", 1) or None)
            time.sleep(min(pause, left))  # no notification to await: Redis keyspace events are off by default
            pause = min(pause * 2, 0.05)
        owners, records = self._owners(), self._records()
        owners[task_id], records[task_id] = owner, record
        self._mine.add(owner)
        try:
            yield
        finally:
            owners.pop(task_id, None)
            records.pop(task_id, None)
            self._mine.discard(owner)
            try:
                self._run(f"unlock the lease of {task_id}",
                          lambda: self._script("unlock")(keys=[key], args=[owner]))
            except SwarmError:
                pass  # unreachable: the lock expires by itself after _LOCK_MS

    def _break_if_dead(self, key: str, owner: Any) -> bool:
        """Delete the lock if its owner is a dead process on this host; whether it was deleted."""
        if not owner:
            return True  # released meanwhile: try again at once
        host, _, rest = _text(owner).partition("|")
        pid, _, rest = rest.partition("|")
        start = rest.partition("|")[0]
        # A lock of this very process that it does not hold: a SET whose reply was lost to a timeout
        # (the server was paused, then ran it). Nobody would release it before it expires.
        stray = host == HOSTNAME and pid == str(os.getpid()) and _text(owner) not in self._mine
        if not stray and (host != HOSTNAME or not pid.isdigit() or dead_reason(int(pid), host, start or None) is None):
            return False
        self._run("break a dead process's lock", lambda: self._script("unlock")(keys=[key], args=[owner]))
        return True

    # ------------------------------------------------------------------ assignments

    def assign(self, lease: Lease, assigned_at: str) -> None:
        record = _json({**lease.to_dict(), "assigned_at": assigned_at})
        self._run(f"assign {lease.task_id}", lambda: self.client.hset(self._key("assignments"), lease.agent_id, record))

    def _assignment(self, agent_id: str, raw: Any) -> Assignment:
        where = f"redis key {self._key('assignments')} field {agent_id}"
        data = _record(raw, "assignment", where, "delete the field (HDEL); the planner assigns again")
        assigned_at = str(data.pop("assigned_at", "") or "")
        return Assignment(agent_id, Lease.from_dict(data, where), assigned_at)  # type: ignore[arg-type]

    def assignment(self, agent_id: str) -> Optional[Assignment]:
        raw = self._run(f"read the assignment of {agent_id}",
                        lambda: self.client.hget(self._key("assignments"), agent_id))
        return None if raw is None else self._assignment(agent_id, raw)

    def clear_assignment(self, agent_id: str, token: Optional[int] = None) -> bool:
        removed = self._run(f"clear the assignment of {agent_id}", lambda: self._script("clear")(
            keys=[self._key("assignments")], args=[agent_id, "" if token is None else token]))
        return bool(removed)

    def assignments(self, *, errors: Optional[list] = None) -> list[Assignment]:
        found = []
        everything = self._run("list the assignments", lambda: self.client.hgetall(self._key("assignments")))
        for name in sorted(everything, key=_text):
            try:
                found.append(self._assignment(_text(name), everything[name]))
            except SwarmError as exc:
                if errors is None:
                    raise
                errors.append(exc)
        return found
