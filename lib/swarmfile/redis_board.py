"""The task board on Redis: tasks published by the operator checkout, claimed by a script on the server.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend), beside redis_lease's:

    board             a hash: ``publisher`` (host and root of the operator checkout), ``published_at``
    board:task:<id>   a hash: ``meta`` (task_board.BoardEntry.meta as JSON), ``text``, ``sha``, and
                      ``member`` and ``score`` (its place in the queue)
    board:facts       a hash: task id -> what the scripts judge it by, one line ``status<TAB>seen<TAB>
                      eligible (1/0)<TAB>sha<TAB>dependencies (JSON list)``: one field of one key, so
                      the ready query fetches the facts of many tasks in one call
    board:ids         the set of published ids
    board:queue       a sorted set of the tasks a claim should look at, in claim order
                      (task_board.order_key: score minus the priority rank, member ``<created ms>|<id>``)
    board:held        the same members, scored by when their lease expires (ms): claimed tasks wait
                      here, and go back to the queue once that moment has passed (a take-over)
    board:done        ids of tasks the Markdown shows completed (dependencies count them done)

The queue is a hint, the script decides: one claim is one script (``_CLAIM``) that walks the queue
in order and takes the first task that is eligible, whose status allows a claim (the Markdown's
while the lease is the one it showed, else the lease's own mirror: task_board's docstring), whose
retry time (``not_before``) has passed, whose dependencies are all done (on the board or by a
completed lease), whose lease is not held (or held but expired by the server's clock, ``TIME``)
and whose lease lock (redis_lease ``lock:<id>``) nobody holds; it writes the lease exactly as
redis_lease's write script would (``lease:<id>``, ``token:<id>`` one higher, ``leases``) and takes
the task out of the queue into ``board:held``. Tasks it finds finished leave the queue; those it
finds held move to ``board:held`` by their lease's expiry. Every claim first moves the held tasks
whose moment has passed back to the queue, where they are judged again (a renewed lease goes back
to ``board:held`` with its new expiry; an expired one is taken over). A lease that ends unfinished
queues its task again at once (``requeue``), and the planner's publish repairs whatever a crash
left out. Tasks it must skip for now (dependencies, retry time, a held lock) stay in the queue.

The script names keys it builds from the prefix rather than declaring each in KEYS: every key of a
workspace shares the namespace's hash tag, so they live on one server (or one Cluster slot).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

from .clock import format_ts, utc_now
from .config import Config
from .errors import AlreadyClaimed, NotClaimable, NotFoundError, SwarmError, ValidationError
from .lease_store import Lease
from .redis_backend import RedisStore
from .task_board import BoardEntry, TaskBoard, order_key

__all__ = ["RedisTaskBoard"]

# Shared by the claim and the ready scripts: how a task is judged. ARGV[1] is the key prefix.
_JUDGE = r"""
local P = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function ms_of(text)
  if type(text) ~= 'string' then return nil end
  local y, m, d, H, M, S, f = string.match(text, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$')
  if not y then return nil end
  y, m = tonumber(y), tonumber(m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + tonumber(d) - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  local frac = 0
  if f ~= '' then frac = tonumber(string.sub(f .. '000', 1, 3)) end
  return (days * 86400 + tonumber(H) * 3600 + tonumber(M) * 60 + tonumber(S)) * 1000 + frac
end

local function iso(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, math.floor(rem / 3600),
                       math.floor((rem % 3600) / 60), rem % 60, ms - s * 1000)
end

local NO_LEASE = {false, false, false, false}

local function done(dep)
  if redis.call('SISMEMBER', P .. 'board:done', dep) == 1 then return true end
  return redis.call('HGET', P .. 'lease:' .. dep, 'state') == 'completed'
end

-- The verdict on one task: 'take' (with its old lease record or false), 'keep' (look again
-- later: dependencies, retry time, a held lock), or a reason it is out of the queue for now.
-- ``facts`` (its board:facts line, false when it has none) and ``leased`` (false: it has no lease
-- hash) may be given by a caller that fetched them for many tasks at once.
local function judge(id, unlocked, facts, leased)
  if facts == nil then facts = redis.call('HGET', P .. 'board:facts', id) end
  if not facts then return 'missing' end
  local status, seen, eligible, sha, deps = string.match(facts, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  if eligible ~= '1' then return 'split' end
  if not unlocked and redis.call('EXISTS', P .. 'lock:' .. id) == 1 then return 'locked' end
  local l = NO_LEASE
  if leased ~= false then l = redis.call('HMGET', P .. 'lease:' .. id, 'token', 'state', 'exp', 'rec') end
  local old, held_expired = false, false
  if l[1] then
    old = cjson.decode(l[4])
    if l[2] == 'held' then
      if tonumber(l[3]) > now then return 'held' end
      held_expired = true
    end
    local shown = l[1] .. ':' .. l[2] .. ':'
    if string.sub(seen, 1, #shown) ~= shown then
      -- the lease moved on since the Markdown showed it: its own mirror is the status until the planner's is
      status = 'pending'
      if type(old['mirror']) == 'table' and type(old['mirror']['Status']) == 'string' then
        status = old['mirror']['Status']
      end
    end
    if not held_expired and old['not_before'] ~= nil and old['not_before'] ~= cjson.null then
      local nb = ms_of(old['not_before'])
      if nb == nil or now < nb then return 'keep' end
    end
  end
  if not (status == 'pending' or (held_expired and (status == 'claimed' or status == 'in_progress'))) then
    return 'status', status
  end
  if deps ~= '[]' then
    for _, dep in ipairs(cjson.decode(deps)) do
      if not done(dep) then return 'keep' end
    end
  end
  if unlocked then return 'take', sha end
  return 'take', old
end
"""

_CLAIM = _JUDGE + r"""
-- ARGV: 2 agent, 3 ttl ms, 4 pid, 5 host, 6 proc start, 7 only this id ('' for any), 8 skip (JSON list)
if redis.call('EXISTS', P .. 'board') == 0 then return {'noboard'} end
local function take(id, old)
  local top = tonumber(redis.call('GET', P .. 'token:' .. id) or '0')
  if old and tonumber(old['token']) > top then top = tonumber(old['token']) end
  local rec = {}
  if old then for k, v in pairs(old) do rec[k] = v end end
  local attempts = rec['attempts']
  if type(attempts) ~= 'number' then attempts = 0 end
  if old and type(old['mirror']) == 'table' and old['mirror']['Status'] == 'blocked' then
    attempts = 0  -- marked blocked by us and set pending again by a person: a fresh start
  end
  local exp = now + tonumber(ARGV[3])
  rec['task_id'] = id
  rec['agent_id'] = ARGV[2]
  rec['token'] = top + 1
  rec['acquired_at'] = iso(now)
  rec['expires_at'] = iso(exp)
  rec['pid'] = tonumber(ARGV[4]) or cjson.null
  rec['host'] = ARGV[5] ~= '' and ARGV[5] or cjson.null
  rec['proc_start'] = tonumber(ARGV[6]) or cjson.null
  rec['state'] = 'held'
  rec['attempts'] = attempts
  rec['acknowledged_at'] = cjson.null
  rec['not_before'] = cjson.null
  rec['ended_at'] = cjson.null
  rec['error'] = cjson.null
  rec['mirror'] = {['Status'] = 'claimed', ['Claimed By'] = ARGV[2]}
  rec['task_file'] = nil
  local json = cjson.encode(rec)
  local member = redis.call('HGET', P .. 'board:task:' .. id, 'member')
  if member then
    redis.call('ZREM', P .. 'board:queue', member)
    redis.call('ZADD', P .. 'board:held', exp, member)
  end
  redis.call('HSET', P .. 'lease:' .. id, 'rec', json, 'token', top + 1, 'state', 'held', 'exp', exp,
             'host', ARGV[5], 'pid', ARGV[4], 'start', ARGV[6])
  redis.call('SET', P .. 'token:' .. id, top + 1)
  redis.call('SADD', P .. 'leases', id)
  return {'ok', json}
end
-- Held tasks whose lease's moment has passed are looked at again (a bounded batch per claim).
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'board:held', '-inf', now, 'LIMIT', 0, 64)) do
  redis.call('ZREM', P .. 'board:held', member)
  local b = redis.call('HMGET', P .. 'board:task:' .. string.sub(member, 17), 'score', 'member')
  if b[1] and b[2] == member then redis.call('ZADD', P .. 'board:queue', b[1], member) end
end
if ARGV[7] ~= '' then
  local verdict, detail = judge(ARGV[7])
  if verdict == 'take' then return take(ARGV[7], detail) end
  return {verdict, detail or ''}
end
local skip = {}
for _, id in ipairs(cjson.decode(ARGV[8])) do skip[id] = true end
local start = 0
while true do
  local batch = redis.call('ZRANGE', P .. 'board:queue', start, start + 63)
  if #batch == 0 then return {'none'} end
  local kept = 0
  for _, member in ipairs(batch) do
    local id = string.sub(member, 17)
    local verdict, detail = 'keep', nil
    if not skip[id] then verdict, detail = judge(id) end
    if verdict == 'take' then return take(id, detail) end
    if verdict == 'keep' or verdict == 'locked' then
      kept = kept + 1
    else
      redis.call('ZREM', P .. 'board:queue', member)  -- finished or gone: back by requeue or publish
      if verdict == 'held' then  -- looked at again when its lease would expire
        redis.call('ZADD', P .. 'board:held', redis.call('HGET', P .. 'lease:' .. id, 'exp'), member)
      end
    end
  end
  start = start + kept
end
"""

# Read-only: the tasks the claim script would take, in its order (a task whose lease lock is held
# counts: the lock is a moment's), as lines "<id> <text digest>", so a reader fetches only what it lacks.
# Held tasks past their moment are merged in by their queue score (they would be taken over).
_READY = _JUDGE + r"""
local found, late = {}, {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', P .. 'board:held', '-inf', now)) do
  local id = string.sub(member, 17)
  local score = redis.call('HGET', P .. 'board:task:' .. id, 'score')
  if score and not redis.call('ZSCORE', P .. 'board:queue', member) then
    late[#late + 1] = {tonumber(score), member}
  end
end
table.sort(late, function(x, y) return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2]) end)
local ids = {}
local queue, i, j = {}, 1, 1
if #late == 0 then  -- the common case: the queue's own order, no scores needed
  for k, member in ipairs(redis.call('ZRANGE', P .. 'board:queue', 0, -1)) do ids[k] = string.sub(member, 17) end
else
  queue = redis.call('ZRANGE', P .. 'board:queue', 0, -1, 'WITHSCORES')
end
while i <= #queue or j <= #late do
  local member
  if j > #late or (i <= #queue and (tonumber(queue[i + 1]) < late[j][1]
      or (tonumber(queue[i + 1]) == late[j][1] and queue[i] < late[j][2]))) then
    member = queue[i]
    i = i + 2
  else
    member = late[j][2]
    j = j + 1
  end
  ids[#ids + 1] = string.sub(member, 17)
end
-- Facts and lease presence 256 tasks a call: one lookup per task would cost most of the query.
for first = 1, #ids, 256 do
  local chunk = {unpack(ids, first, math.min(first + 255, #ids))}
  local facts = redis.call('HMGET', P .. 'board:facts', unpack(chunk))
  local leased = redis.call('SMISMEMBER', P .. 'leases', unpack(chunk))
  for k, id in ipairs(chunk) do
    local verdict, sha = judge(id, true, facts[k], leased[k] == 1)
    if verdict == 'take' then found[#found + 1] = id .. ' ' .. (sha or '') end
  end
end
return table.concat(found, '\n')  -- one reply, not thousands: the client parses it in one go
"""

_REASONS = {
    "held": (AlreadyClaimed, "is held by another agent"),
    "locked": (AlreadyClaimed, "is being claimed or changed by another agent right now"),
    "keep": (NotClaimable, "waits for its dependencies or its retry time"),
    "split": (NotClaimable, "was split into sub-tasks (or its id is used twice); it completes when they do"),
    "missing": (NotFoundError, "is not on the task board"),
}


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else "" if value is None else str(value)


class RedisTaskBoard(RedisStore, TaskBoard):
    """The task board of one workspace in one Redis database (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self._scripts: dict[str, Any] = {}
        self._known: dict[str, tuple[str, BoardEntry]] = {}  # task id -> (digest, entry): ready() fetches the rest

    def _script(self, name: str) -> Any:
        if name not in self._scripts:
            source = {"claim": _CLAIM, "ready": _READY}[name]
            self._scripts[name] = self.client.register_script(source)
        return self._scripts[name]

    def _task_key(self, task_id: str) -> str:
        return self._key("board:task", task_id)

    # ------------------------------------------------------------------ publishing

    def publish(self, entries: Iterable[BoardEntry], *, publisher: str, withdraw: Iterable[str] = (),
                done: Iterable[str] = ()) -> None:
        entries, withdraw, done = list(entries), list(withdraw), list(done)

        def send() -> None:
            fetch = self.client.pipeline(transaction=False)
            for task_id in [*withdraw, *(e.task_id for e in entries)]:
                fetch.hget(self._task_key(task_id), "member")
            members = fetch.execute()
            gone = dict(zip(withdraw, members))
            before = dict(zip((e.task_id for e in entries), members[len(withdraw):]))
            pipe = self.client.pipeline(transaction=False)
            for entry in entries:
                score, member = order_key(entry.task(None))
                old = before.get(entry.task_id)
                if old is not None and _text(old) != member:  # its Created line changed: its place did
                    pipe.zrem(self._key("board:queue"), old)
                    pipe.zrem(self._key("board:held"), old)
                meta = json.dumps(entry.meta(), separators=(",", ":"), ensure_ascii=False)
                pipe.hset(self._task_key(entry.task_id), mapping={
                    "meta": meta, "text": entry.text, "sha": entry.sha, "member": member, "score": repr(score)})
                pipe.hset(self._key("board:facts"), entry.task_id, "\t".join((
                    " ".join(entry.status.split()), entry.seen, "1" if entry.eligible else "0", entry.sha,
                    json.dumps(list(entry.depends_on)))))
                pipe.sadd(self._key("board:ids"), entry.task_id)
                if entry.eligible and entry.status in ("pending", "claimed", "in_progress"):
                    pipe.zadd(self._key("board:queue"), {member: score})
                else:
                    pipe.zrem(self._key("board:queue"), member)
                if entry.status == "completed":
                    pipe.sadd(self._key("board:done"), entry.task_id)
                else:
                    pipe.srem(self._key("board:done"), entry.task_id)
            for task_id, member in gone.items():
                pipe.delete(self._task_key(task_id))
                pipe.hdel(self._key("board:facts"), task_id)
                pipe.srem(self._key("board:ids"), task_id)
                if member is not None:
                    pipe.zrem(self._key("board:queue"), member)
                    pipe.zrem(self._key("board:held"), member)
            for task_id in done:
                pipe.sadd(self._key("board:done"), task_id)
            # Last: a claim sees a board (and so no longer finds nothing to do) only once it has tasks.
            pipe.hset(self._key("board"), mapping={"publisher": publisher, "published_at": format_ts(utc_now())})
            pipe.execute()

        self._run("publish the tasks", send)

    def published(self) -> dict[str, tuple[str, str]]:
        def fetch() -> dict[str, tuple[str, str]]:
            # The facts line holds both: a task's hash has no ``seen`` field, and a new planner that
            # read "" for it mirrored every lease again, over a person's edit made since.
            ids = sorted(_text(n) for n in self.client.smembers(self._key("board:ids")))
            found = {}
            for first in range(0, len(ids), 1000):
                chunk = ids[first:first + 1000]
                for task_id, facts in zip(chunk, self.client.hmget(self._key("board:facts"), chunk)):
                    parts = _text(facts).split("\t")
                    found[task_id] = (parts[3], parts[1]) if len(parts) == 5 else ("", "")
            return found

        return self._run("list the published tasks", fetch)

    def _entry(self, task_id: str, meta: Any, text: Any = "") -> BoardEntry:
        try:
            data = json.loads(_text(meta))
            return BoardEntry.from_meta(data, _text(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(f"published task does not parse: {exc}", path=f"redis key {self._task_key(task_id)}",
                                  task_id=task_id, hint="the planner publishes it again when its file changes; "
                                                        "or delete the key") from None

    def entry(self, task_id: str) -> Optional[BoardEntry]:
        meta, text = self._run(f"read the task {task_id}",
                               lambda: self.client.hmget(self._task_key(task_id), "meta", "text"))
        return None if meta is None else self._entry(task_id, meta, text)

    def entries(self, errors: Optional[list] = None) -> list[BoardEntry]:
        def fetch() -> list[tuple[str, Any]]:
            ids = sorted(_text(n) for n in self.client.smembers(self._key("board:ids")))
            pipe = self.client.pipeline(transaction=False)
            for task_id in ids:
                pipe.hget(self._task_key(task_id), "meta")
            return list(zip(ids, pipe.execute()))

        found = []
        for task_id, meta in self._run("list the published tasks", fetch):
            if meta is None:
                continue  # withdrawn between the two reads
            try:
                found.append(self._entry(task_id, meta))
            except ValidationError as exc:
                if errors is None:
                    raise
                errors.append(exc)
        return found

    def requeue(self, task_id: str) -> None:
        def send() -> None:
            member, score = self.client.hmget(self._task_key(task_id), "member", "score")
            if member is not None and score is not None:
                self.client.zadd(self._key("board:queue"), {_text(member): float(score)})

        self._run(f"requeue {task_id}", send)

    def publisher(self) -> Optional[str]:
        found = self._run("read the board", lambda: self.client.hget(self._key("board"), "publisher"))
        return None if found is None else _text(found)

    # ------------------------------------------------------------------ the ready query and claims

    def ready(self) -> list[BoardEntry]:
        found = _text(self._run("read the ready tasks", lambda: self._script("ready")(args=[self.prefix])))
        pairs = [line.partition(" ")[::2] for line in found.split("\n")] if found else []
        known = self._known
        missing = [task_id for task_id, sha in pairs if known.get(task_id, ("",))[0] != sha]
        if missing:
            def fetch() -> list:
                pipe = self.client.pipeline(transaction=False)
                for task_id in missing:
                    pipe.hmget(self._task_key(task_id), "meta", "sha")
                return pipe.execute()

            for task_id, (meta, sha) in zip(missing, self._run("read the ready tasks", fetch)):
                if meta is not None:
                    known[task_id] = (_text(sha), self._entry(task_id, meta))
        return [known[task_id][1] for task_id, _ in pairs if task_id in known]

    def claim(self, agent_id: str, ttl: float, *, pid: Optional[int], host: Optional[str],
              proc_start: Optional[int], skip: Iterable[str] = (), only: Optional[str] = None) -> Optional[Lease]:
        args = [self.prefix, agent_id, max(1, int(ttl * 1000)), "" if pid is None else pid, host or "",
                "" if proc_start is None else proc_start, only or "", json.dumps(sorted(set(skip)))]
        reply = self._run(f"claim {only or 'the next ready task'}", lambda: self._script("claim")(args=args))
        verdict = _text(reply[0])
        if verdict == "ok":
            where = f"redis key {self._key('lease', only or '?')}"
            return Lease.from_dict(json.loads(_text(reply[1])), where)  # type: ignore[arg-type]
        if verdict == "noboard":
            if only is not None:
                raise NotFoundError(f"task {only} is not on the task board: no planner has published yet",
                                    task_id=only, hint="start the planner on the operator checkout")
            return None
        if only is None:
            return None
        if verdict == "status":
            raise NotClaimable(f"task {only} is {_text(reply[1])!r}, not pending", task_id=only,
                               hint="set **Status:** pending in the operator checkout to make it claimable")
        kind, why = _REASONS.get(verdict, (SwarmError, verdict))
        raise kind(f"task {only} {why}", task_id=only)
