"""The event log on Redis: one Stream per workspace, shared by every host.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    events          a Stream, one entry per event; its one field ``e`` holds the event as the
                    flow mapping events.yaml would hold, so it reads back as the very same dict
    events:created  present once the log exists (``create``)
    events:trimmed  the newest id ``trim`` dropped (a follow from before it is refused)

An event's id is its Stream id (``1764500000000-0``), given by the server on ``XADD``: appends
from every host fall in the server's one order, each appender's in its own. ``append`` returns
once the server has the event (with ``appendfsync always``: once it is on the server's disk); a
connection failure or a reply that does not come within redis_backend's socket timeout raises
BackendUnavailable, and the event may or may not be stored (an append is not retried here, so it
is never stored twice by this call). ``read`` pages through the stream (backwards with a
``limit``) and parses a page with one YAML parse; ``follow`` waits in ``XREAD BLOCK``, woken by
the next append rather than polling.

Trimming: ``append`` never trims. event_mirror copies the stream into the operator host's
events.yaml and only then calls ``trim``, which keeps every event after the last one mirrored and
``events.stream_keep`` of those before it: no event leaves the stream before it is in the mirror
file. Without a mirror running the stream grows. ``rotate_bytes`` does not apply, and the stream
has no archives. ``follow(after=id)`` refuses an id whose successors were trimmed (read them in
the mirror).

The mirror file is this workspace's events.yaml: ``owns`` and ``repair`` are its, and ``check``
checks it too, so doctor's file-log checks apply to the mirror as they did to the log.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Iterator, Optional

from .config import Config
from .errors import ParseError, ValidationError
from .event_log import EventLog, Since, Types
from .event_query import Matcher, matcher
from .fileio import YAML_ERROR, dump_flow, load_yaml_text
from .redis_backend import RedisStore
from .store_check import Problem, read_problems
from .yaml_log import looks_whole

__all__ = ["RedisEventLog"]

_ID = re.compile(r"(\d+)-(\d+)")
_PAGE = 1000  # stream entries fetched per round trip
_WAIT_MAX = 1.0  # longest XREAD BLOCK: below redis_backend's socket timeout, so a wait is never a failure
_WAIT_MIN = 0.05  # shortest: an idle follower asks stop() at most 20 times a second
_HAND_FIX = "XDEL the entry (an entry cannot be changed in place); it was not changed"

# Drop the oldest mirrored entries beyond ARGV[2] (at most ARGV[3] a call), never one after ARGV[1]
# (the last mirrored id); remember the newest id dropped in KEYS[2], so a follow from before it is
# refused (XINFO's max-deleted-entry-id counts XDEL only). Counting and trimming in one script: no
# append can slip in between and be counted as mirrored.
_TRIM = """
local cap = tonumber(ARGV[3])
local after = #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', cap)
if after >= cap then return 0 end
local length = redis.call('XLEN', KEYS[1])
local drop = math.min(length - after - tonumber(ARGV[2]), cap)
if drop <= 0 then return 0 end
local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', drop)
redis.call('XTRIM', KEYS[1], 'MAXLEN', length - drop)
redis.call('SET', KEYS[2], gone[#gone][1])
return drop
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _flow(event: dict[str, Any]) -> str:
    try:
        return dump_flow(event)
    except (YAML_ERROR, ValueError, TypeError) as exc:  # e.g. an object YAML cannot represent
        raise ValidationError(f"event cannot be written as YAML: {exc}",
                              hint="use strings, numbers, booleans, lists and mappings") from None


def _id_key(ident: str) -> tuple[int, int]:
    found = _ID.fullmatch(ident)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _worth_parsing(batch: list, maybe: Callable[[bytes], bool]) -> list:
    """The raw entries a filter may pass, and any that might not parse (a bad entry is reported, not skipped)."""
    kept = []
    for entry in batch:
        raw = entry[1].get(b"e")
        if raw is None or maybe(raw) or not looks_whole(b"- " + raw + b"\n"):
            kept.append(entry)
    return kept


class RedisEventLog(RedisStore, EventLog):
    """The events of one workspace in one Redis Stream (see the module docstring)."""

    def __init__(self, cfg: Config, mirror: EventLog) -> None:
        """``mirror``: this host's events.yaml (a FileEventLog), the mirror on the operator host."""
        super().__init__(cfg)
        self.stream = self._key("events")
        self.mirror = mirror

    def where(self) -> str:
        return f"redis stream {self.stream}"

    def archives(self) -> list[str]:
        return []

    def owns(self, path: str) -> bool:
        return self.mirror.owns(path)

    def create(self) -> Optional[str]:
        made = self._run("create the event log", lambda: self.client.set(self._key("events:created"), 1, nx=True))
        mirror = self.mirror.create()
        return self.where() if made else mirror

    # ------------------------------------------------------------------------ append

    def append(self, event: dict[str, Any], *, rotate_bytes: Optional[int] = None) -> str:
        text = _flow(event)
        return _text(self._run("append an event", lambda: self.client.xadd(self.stream, {"e": text})))

    # ------------------------------------------------------------------------ read

    def _parse(self, entries: list) -> list[tuple[str, dict]]:
        """(id, event) of each raw stream entry, in the order given; one YAML parse for all when they are plain."""
        ids, texts = [], []
        for raw_id, fields in entries:
            ident = _text(raw_id)
            raw = fields.get(b"e", fields.get("e"))
            if raw is None:
                raise ValidationError("has no field 'e' (the event)", path=f"{self.where()} entry {ident}",
                                      hint=_HAND_FIX)
            ids.append(ident)
            texts.append(raw if isinstance(raw, bytes) else str(raw).encode("utf-8"))
        if all(b"\n" not in text for text in texts):
            try:
                items = load_yaml_text(b"".join(b"- " + text + b"\n" for text in texts).decode("utf-8"))
                if isinstance(items, list) and len(items) == len(ids) and all(isinstance(i, dict) for i in items):
                    return list(zip(ids, items))
            except (UnicodeDecodeError, ParseError):
                pass
        found = []
        for ident, text in zip(ids, texts):  # find the entry that does not parse, and name it
            where = f"{self.where()} entry {ident}"
            try:
                item = load_yaml_text(text.decode("utf-8"), where)
            except UnicodeDecodeError:
                raise ParseError("is not UTF-8 text", path=where, hint=_HAND_FIX) from None
            except ParseError as exc:
                raise ParseError(exc.reason, path=where, hint=_HAND_FIX) from None
            if not isinstance(item, dict):
                raise ValidationError("is not a mapping", path=where, hint=_HAND_FIX)
            found.append((ident, item))
        return found

    def _forward(self, after: Optional[str], page: int = _PAGE) -> Iterator[list]:
        """Pages of raw entries after the id ``after`` (None: from the first), oldest first."""
        low = "-" if after is None else f"({after}"
        while True:
            batch = self._run("read the event log", lambda: self.client.xrange(self.stream, min=low, max="+",
                                                                                count=page))
            if batch:
                yield batch
            if len(batch) < page:
                return
            low = f"({_text(batch[-1][0])}"

    def _newest(self, want: int, match: Matcher, maybe: Callable[[bytes], bool], upto: str = "+") -> list[dict]:
        """The last ``want`` matches at or before ``upto``, oldest first, reading backwards."""
        found: list[dict] = []
        high, page = upto, min(want, _PAGE)  # unfiltered, one page is the answer; filtered, pages double
        while len(found) < want:
            batch = self._run("read the event log", lambda: self.client.xrevrange(self.stream, max=high, min="-",
                                                                                   count=page))
            found.extend(event for _, event in self._parse(_worth_parsing(batch, maybe)) if match(event))
            if len(batch) < page:
                break
            high, page = f"({_text(batch[-1][0])}", min(2 * page, _PAGE)
        return found[:want][::-1]

    def read(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
             since: Since = None, limit: Optional[int] = None, include_archives: bool = False) -> list[dict]:
        match, maybe = matcher(agent, task_id, types, since)
        if limit == 0:
            return []
        if limit is not None:
            return self._newest(limit, match, maybe)
        return [event for batch in self._forward(None)
                for _, event in self._parse(_worth_parsing(batch, maybe)) if match(event)]

    def entries_after(self, after: Optional[str], count: int) -> list[tuple[str, dict]]:
        """Up to ``count`` (id, event) after the id ``after`` (None: from the first), oldest first."""
        low = "-" if after is None else f"({after}"
        batch = self._run("read the event log", lambda: self.client.xrange(self.stream, min=low, max="+", count=count))
        return self._parse(batch)

    def last_id(self) -> Optional[str]:
        """The id of the newest event, or None when the stream is empty."""
        newest = self._run("read the event log", lambda: self.client.xrevrange(self.stream, count=1))
        return _text(newest[0][0]) if newest else None

    def trimmed_after(self, after: Optional[str]) -> bool:
        """Whether an event after the id ``after`` (None: any event) was trimmed or deleted from the stream."""
        import redis  # only a Redis backend gets here

        def newest_gone() -> str:
            trimmed = _text(self.client.get(self._key("events:trimmed")) or "0-0")
            try:
                deleted = _text(self.client.xinfo_stream(self.stream).get("max-deleted-entry-id", "0-0"))
            except redis.exceptions.ResponseError:  # no such key: nothing was ever deleted
                deleted = "0-0"
            return max(trimmed, deleted, key=_id_key)

        return _id_key(self._run("read the event log", newest_gone)) > (_id_key(after) if after else (0, 0))

    def trim(self, mirrored: str, keep: int) -> int:
        """Drop the oldest events up to ``mirrored`` beyond the last ``keep`` of them; how many went."""
        script = self.client.register_script(_TRIM)
        return int(self._run("trim the event log", lambda: script(
            keys=[self.stream, self._key("events:trimmed")], args=[mirrored, keep, 10_000])))

    def wait(self, after: Optional[str], seconds: float) -> bool:
        """Wait up to ``seconds`` (at most a second) for an event after ``after``; whether one is there."""
        start = after or "0-0"
        block = max(1, int(min(seconds, _WAIT_MAX) * 1000))
        got = self._run("follow the event log", lambda: self.client.xread({self.stream: start}, count=1, block=block))
        return bool(got)

    # ------------------------------------------------------------------------ follow

    def follow(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
               since: Since = None, backlog: int = 0, after: Optional[str] = None, interval: float = 0.1,
               timeout: Optional[float] = None, stop: Optional[Callable[[], bool]] = None) -> Iterator[dict]:
        match, maybe = matcher(agent, task_id, types, since)
        if after is not None:
            start, earlier = self._resume_point(after), []
        else:
            start = self.last_id() or "0-0"
            earlier = self._newest(backlog, match, maybe, upto=start) if backlog and start != "0-0" else []
        # A look is a wait that an append ends at once; ``interval`` only says how often stop() is asked.
        wait = _WAIT_MAX if stop is None else min(max(interval, _WAIT_MIN), _WAIT_MAX)
        return self._follow(start, earlier, match, wait, timeout, stop)

    def _resume_point(self, after: str) -> str:
        if not isinstance(after, str) or not _ID.fullmatch(after):
            raise ValidationError(f"{after!r} is not an event id of this log", path=self.where(),
                                  hint="pass an id that append returned (a stream id such as 1764500000000-0)")
        if self.trimmed_after(after):
            raise ValidationError(f"events after {after} were trimmed from the stream", path=self.where(),
                                  hint="read them in the mirror (events.yaml on the operator host), "
                                       "or follow from now")
        return after

    def _follow(self, start: str, earlier: list[dict], match: Matcher, wait: float, timeout: Optional[float],
                stop: Optional[Callable[[], bool]]) -> Iterator[dict]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = start
        yield from earlier
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            block = max(1, int((wait if remaining is None else min(wait, remaining)) * 1000))
            got = self._run("follow the event log",
                            lambda: self.client.xread({self.stream: last}, count=_PAGE, block=block))
            entries = got[0][1] if got else []
            if entries:
                last = _text(entries[-1][0])
                for _, event in self._parse(entries):
                    if match(event):
                        yield event
            if stop is not None and stop():
                return

    # ------------------------------------------------------------------------ check and repair

    def check(self) -> tuple[list[Problem], int]:
        def scan() -> None:
            for batch in self._forward(None):
                self._parse(batch)

        problems = read_problems(self.where(), scan)
        mirrored, parts = self.mirror.check()
        return problems + mirrored, 1 + parts

    def repair(self, action: str, where: str, *, now: Any) -> str:
        if self.mirror.owns(where):
            return self.mirror.repair(action, where, now=now)
        raise ValidationError(f"no repair {action!r} for {where}", path=self.where(),
                              hint="fix the stream by hand (XDEL a bad entry)")
