"""The event log as files: events.yaml, one flow line per event, rotated into archives beside it.

``FileEventLog`` implements event_log's ``EventLog``; the only module that knows the layout:

* ``append`` checks first that an appended line joins the list: the first content line must be
  ``events:`` (``events: []`` alone is turned into ``events:``, which loses nothing) or a ``- ``
  item of a bare list, and the last top-level line must be an entry. Anything else raises
  ValidationError and the file stays byte-for-byte. A missing or empty file starts with
  ``events:``. A torn last line is cut off by fileio and recorded as a ``repaired`` event. Past
  ``events.rotate_bytes`` the log moves to ``events-<UTC stamp>.yaml`` next to it. One write and
  one fsync (when ``events.fsync``, made after the lock is let go) per event. The checks read the
  log only when the lock's note (locks.py) does not say it is as the last append left it. An
  event's id is ``<dev>.<inode>:<end offset>`` of the file it was written to, which keeps its
  identity when rotated.
* ``read`` with a ``limit`` reads backwards from the end and parses only the entries it returns
  (and a cheap look at those a filter passes over), so the cost grows with the limit, not with
  the log; without one the whole file is parsed. The mechanism (layout check, backward scan,
  torn-tail rule, parse errors with their line) is yaml_log's; the filters are event_query's.
* ``follow`` polls: an entry is yielded once whole (a flow line when its newline is written, a
  block entry when the next begins or the log rests). When the log is rotated the old file is
  read to its end, then any archives rotated after it, then the new log; when it is replaced by
  a rewrite, the entries the new file repeats are skipped; when it shrinks, it is read again
  from the start (logged as a warning).
* ``check`` parses every entry of the log and its archives in bounded memory (event_check) and
  reports torn last lines (``cut-tail`` repairs them) and a log appends would refuse.

The append check reads only the head and the tail of the log: a top-level key in the middle
(``events: [...]`` then ``other:`` then more ``- `` lines) is not detected.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from .clock import format_ts, utc_now
from .config import Config
from .errors import ValidationError
from .event_check import append_problem, scan_log
from .event_log import EventLog, Since, Types, make_event
from .event_query import Matcher, matcher
from .descriptors import Kept
from .fileio import (YAML_ERROR, append_line_unlocked, append_state, append_whole, atomic_write, dump_flow,
                     keep_for_append, line_at, locked, sync_appended, take_for_append)
from .locks import pad_note
from .store_check import ERROR, WARNING, Problem, read_problems
from .yaml_log import FIX as _FIX
from .yaml_log import (append_layout, archive_keys, classify, cut_torn_tail, identity, is_blank, is_entry, open_log,
                       parse_batch, path_identity, read_all, read_at, read_last, torn_tail, whole_lines_end)

__all__ = ["FileEventLog", "HEADER"]

log = logging.getLogger("swarmfile")

HEADER = "events:\n"
_ID = re.compile(r"(\d+)\.(\d+):(\d+)")


def _entry_line(event: dict[str, Any]) -> str:
    try:
        return "- " + dump_flow(event)
    except (YAML_ERROR, ValueError, TypeError) as exc:  # e.g. an object YAML cannot represent
        raise ValidationError(f"event cannot be written as YAML: {exc}",
                              hint="use strings, numbers, booleans, lists and mappings") from None


class FileEventLog(EventLog):
    """events.yaml of a workspace (or the log at ``path``), with its archives beside it."""

    def __init__(self, cfg: Config, path: Optional[Path] = None) -> None:
        self.cfg = cfg
        self.path = cfg.events_file if path is None else path
        # Read once: a Config is never changed (stores make a new log for a new one).
        self._fsync = bool(cfg.get("events", "fsync"))
        self._rotate_bytes = cfg.get("events", "rotate_bytes")
        self._lock_dir, self._lock_timeout = str(cfg.lock_dir), cfg.lock_timeout
        self._where = str(self.path)  # locks and kept descriptors are keyed by str: a Path converts in Python
        # The note this process left last, as the sidecar holds it, and the stat key it says: found again
        # (no one appended since), the log is known to be as it was left without formatting its stat.
        self._left: tuple[bytes, tuple] = (b"", ())
        self._idle_locks: list[locked] = []  # lock objects between appends, each used by one thread at a time
        self._id_prefix: tuple[tuple[int, int], str] = ((-1, -1), "")  # (dev, ino) of the log -> "dev.ino:"

    def where(self) -> str:
        return str(self.path)

    def archives(self) -> list[str]:
        return [str(archive) for _, archive in archive_keys(self.path)]

    def owns(self, path: str) -> bool:
        real = Path(os.path.realpath(path))
        live = Path(os.path.realpath(self.path))
        # the live log, or a rotated archive of it
        return real == live or (real.parent == live.parent and real.name.startswith(live.stem + "-"))

    def create(self) -> Optional[str]:
        if self.path.exists():
            return None
        atomic_write(self.path, HEADER)
        return str(self.path)

    # ------------------------------------------------------------------------ append

    def append(self, event: dict[str, Any], *, rotate_bytes: Optional[int] = None) -> str:
        """Append the event's line under the log's lock, then fsync it after letting go (see
        fileio.sync_appended: the fsyncs of concurrent writers share one flush); returns its id
        once it is durable."""
        payload = (_entry_line(event) + "\n").encode("utf-8")
        idle = self._idle_locks
        try:
            lock = idle.pop()  # atomic: two threads never get one object
        except IndexError:
            lock = self._lock()
        with lock:
            written = self._write(lock, payload, event["agent"], self._rotate_bytes if rotate_bytes is None else rotate_bytes)
        if len(idle) < 8:
            idle.append(lock)
        return self._sync(written)

    def append_after(self, key: str, pending: Callable[[Optional[Any]], list[dict]], *,
                     rotate_bytes: Optional[int] = None) -> int:
        """Append the events ``pending(last)`` returns, ``last`` being the ``key`` field of the newest
        event that has one (archives included; None if none does); how many were appended.

        Finding ``last`` and appending happen under the log's one lock, so two copiers from one
        source never write an event twice, and a copier killed mid-way resumes where the file ends
        (a torn last line is not read, and is cut off by this append). The events go in one write.
        """
        lock = self._lock()
        with lock:
            events = pending(self._last_value(key))
            if not events:
                return 0
            payload = "".join(_entry_line(event) + "\n" for event in events).encode("utf-8")
            written = self._write(lock, payload, events[-1]["agent"],
                                  self._rotate_bytes if rotate_bytes is None else rotate_bytes)
        self._sync(written)
        return len(events)

    def _lock(self) -> locked:
        return locked(self._where, lock_dir=self._lock_dir, timeout=self._lock_timeout)

    def _last_value(self, key: str) -> Optional[Any]:
        needle = f"{key}:".encode("utf-8")
        for source in [self.path] + [archive for _, archive in reversed(archive_keys(self.path))]:
            fd = open_log(source)
            if fd is None:
                continue
            try:
                found = read_last(fd, source, 1, lambda event: key in event, lambda raw: needle in raw)
            finally:
                os.close(fd)
            if found:
                return found[0][key]
        return None

    def _write(self, lock: locked, payload: bytes, agent: str, limit: Optional[int]) -> tuple[Kept, int, int, str]:
        """Append ``payload`` (whole lines) in one write, unsynced, under ``lock`` (held): (a descriptor of
        the file written, where the write starts and ends, the id of its last line).

        The lock's note says how the last append left the log (fileio.append_state): found so, the log
        is known to join the list and to end with a whole line, and the checks are skipped. Every
        append leaves it; anyone else's change of the log (an editor, a rotation, doctor) changes its
        stat key, so the next append checks it all again.
        """
        path = self.path
        kept, st = take_for_append(self._where)
        fd = kept.fd
        try:
            found, left = lock.padded_note, self._left
            if (found == left[0] and (st.st_size, st.st_ctime_ns, st.st_mtime_ns, st.st_ino, st.st_dev) == left[1]) \
                    or found == pad_note(append_state(st)):  # the usual case: one write
                start = st.st_size
                end = append_whole(fd, payload, start, path)
            else:
                first, replaced = self._prepare(fd, st.st_size)
                if replaced:  # rewritten by an atomic replace: append to the new file
                    os.close(fd)
                    kept, st = take_for_append(self._where)
                    fd = kept.fd
                if first:
                    payload = first.encode("utf-8") + payload
                result = append_line_unlocked(path, payload.decode("utf-8"), fsync=False, fd=fd)
                start = result.offset
                end = start + len(payload)
                if result.torn_tail is not None:
                    note = _entry_line(make_event("repaired", agent, None, {
                        "file": path.name, "dropped_bytes": result.repaired_bytes,
                        "dropped_text": result.torn_tail[:200]}))
                    end = append_whole(fd, (note + "\n").encode("utf-8"), end, path)
                    log.warning("%s: a torn last line (%d bytes) was cut off; recorded as a 'repaired' event",
                                path, result.repaired_bytes)
            prefix = self._id_prefix
            if prefix[0] != kept.ident:
                prefix = self._id_prefix = (kept.ident, f"{st.st_dev}.{st.st_ino}:")
            event_id = prefix[1] + str(start + len(payload))
            after = os.fstat(fd)
            lock.leave_note(append_state(after))
            self._left = (lock.padded_note, (after.st_size, after.st_ctime_ns, after.st_mtime_ns, after.st_ino,
                                             after.st_dev))
            if limit and end >= limit:
                self._rotate()
        except BaseException:
            os.close(fd)
            raise
        return kept, start, end, event_id

    def _sync(self, written: tuple[Kept, int, int, str]) -> str:
        """fsync what ``_write`` wrote, after the lock (keeps its descriptor for the next append, or
        closes it when the fsync failed); the id of its last line."""
        kept, start, end, event_id = written
        if self._fsync:
            try:  # the descriptor follows the file through a rotation: the fsync reaches the line
                sync_appended(kept.fd, start, end, relock=self._lock, close=False)
            except OSError as exc:
                if exc.filename is None:
                    exc.filename = os.fspath(self.path)
                raise
        keep_for_append(self._where, kept)
        return event_id

    def _prepare(self, fd: int, size: int) -> tuple[str, bool]:
        """Check under the lock that a line appended to the log open at ``fd`` (``size`` bytes) joins the
        list: (text to write first, whether the file was replaced to make it so)."""
        kind, at, body = append_layout(fd, self.path, size)
        if kind == "empty":
            return HEADER, False
        if kind != "flow_empty":
            return "", False
        # The one shape a line cannot be appended to that can be fixed without losing anything.
        data = read_at(fd, size, 0)
        line = data[at:body]
        atomic_write(self.path, data[:at] + line.replace(b"[]", b"", 1) + data[body:], fsync=self._fsync)
        return "", True

    def _rotate(self) -> Path:
        """Move the live log to a new archive and start a fresh one; the caller holds the lock."""
        path = self.path
        moment = utc_now()
        key = (moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z", 1)
        existing = archive_keys(path)
        if existing and existing[-1][0] >= key:  # same millisecond, or the clock went back
            key = (existing[-1][0][0], existing[-1][0][1] + 1)
        while True:
            target = path.with_name(f"{path.stem}-{key[0]}{'' if key[1] == 1 else f'-{key[1]}'}{path.suffix}")
            if not target.exists():
                break
            key = (key[0], key[1] + 1)
        os.rename(path, target)
        atomic_write(path, HEADER, fsync=self._fsync)  # also fsyncs the directory, making the rename durable
        log.info("%s: rotated to %s", path, target.name)
        return target

    # ------------------------------------------------------------------------ read

    def read(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
             since: Since = None, limit: Optional[int] = None, include_archives: bool = False) -> list[dict]:
        match, maybe = matcher(agent, task_id, types, since)
        if limit == 0:
            return []
        path = self.path
        live = open_log(path)  # opened before listing archives, so a rotation in between is seen once
        try:
            files: list[Path] = [path]
            if include_archives:
                files = [archive for _, archive in archive_keys(path)] + files
            found: list[dict] = []
            for source in files if limit is None else reversed(files):
                fd = live if source is path else open_log(source)
                if fd is None or (fd != live and live is not None and identity(fd) == identity(live)):
                    continue
                try:
                    if limit is None:
                        found.extend(e for e in read_all(fd, source) if match(e))
                    else:
                        found.extend(read_last(fd, source, limit - len(found), match, maybe))
                        if len(found) >= limit:
                            break
                finally:
                    if fd != live:
                        os.close(fd)
            return found if limit is None else found[::-1]
        finally:
            if live is not None:
                os.close(live)

    # ------------------------------------------------------------------------ follow

    def follow(self, *, agent: Optional[str] = None, task_id: Optional[str] = None, types: Types = None,
               since: Since = None, backlog: int = 0, after: Optional[str] = None, interval: float = 0.1,
               timeout: Optional[float] = None, stop: Optional[Callable[[], bool]] = None) -> Iterator[dict]:
        match, maybe = matcher(agent, task_id, types, since)
        watcher = _Watcher(self.path, self._resume_point(after))
        try:
            earlier = []
            if backlog and after is None and watcher.fd is not None:
                earlier = read_last(watcher.fd, self.path, backlog, match, maybe, size=watcher.pos)[::-1]
        except BaseException:
            watcher.close()
            raise
        return _follow(watcher, earlier, match, interval, timeout, stop)

    def _resume_point(self, after: Optional[str]) -> Optional[tuple[Path, tuple[int, int], int]]:
        """(file, identity, offset) an id points at: the live log or the archive it was rotated to."""
        if after is None:
            return None
        found = _ID.fullmatch(after) if isinstance(after, str) else None
        if found is None:
            raise ValidationError(f"{after!r} is not an event id of this log",
                                  hint="pass an id that append returned", path=self.path)
        ident, offset = (int(found.group(1)), int(found.group(2))), int(found.group(3))
        for candidate in [self.path] + [archive for _, archive in archive_keys(self.path)]:
            if path_identity(candidate) == ident:
                return candidate, ident, offset
        raise ValidationError(f"the file of event {after} is gone (not the log, nor one of its archives)",
                              path=self.path, hint="follow from now instead, or read the archives that are left")

    # ------------------------------------------------------------------------ check and repair

    def check(self) -> tuple[list[Problem], int]:
        problems: list[Problem] = []
        parts = [(p, True) for p in [self.path] if p.exists()]
        parts += [(archive, False) for _, archive in archive_keys(self.path)]
        for part, is_live in parts:
            where = str(part)
            read = read_problems(where, lambda: scan_log(part))
            problems += read
            found = torn_tail(part)
            if found is not None:
                _, tail, line = found
                fix = f"--fix cuts its {len(tail)} bytes off and keeps them in .swarm/doctor/" if not read else \
                    "fix the parse error first; then --fix can cut it"
                problems.append(Problem(WARNING, "torn-log", where, "last line is torn (no newline, does not parse): "
                                        f"{tail.decode('utf-8', errors='replace')[:60]!r}", fix, line=line,
                                        action=None if read else "cut-tail"))
            refused = append_problem(part) if is_live else None
            if refused is not None:
                problems.append(Problem(
                    ERROR, "log-not-appendable", where,
                    f"appends fail, so every loop stops at its next event: {refused.reason.split('; refusing')[0]}",
                    "fix it by hand: entries start at column 0 ('- {...}' under a bare 'events:' line)",
                    line=refused.line))
        return problems, len(parts)

    def repair(self, action: str, where: str, *, now: datetime) -> str:
        path = Path(where)
        if action != "cut-tail" or not self.owns(where):
            raise ValidationError(f"no repair {action!r} for {where}", path=self.path)
        stamp = format_ts(now).replace(":", "").replace("-", "")
        keep = self.cfg.runtime_dir / "doctor" / f"{path.name}.{stamp}.torn"
        cut = cut_torn_tail(path, keep, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout, hint=_FIX)
        if cut is None:
            return "already whole"
        shown = keep.relative_to(self.cfg.root) if keep.is_relative_to(self.cfg.root) else keep
        return f"cut {cut} bytes, kept in {shown}"


class _Watcher:
    """Reads the entries appended to a log since the last poll, across rotations and rewrites."""

    def __init__(self, path: Path, resume: Optional[tuple[Path, tuple[int, int], int]] = None) -> None:
        self.path = path
        self.fd: Optional[int] = None
        self.ident: Optional[tuple[int, int]] = None
        self.pos = 0  # always at a line start: a partial last line is read again next time
        self.group: list[bytes] = []
        self.group_at = 0
        self.entered = False  # an entry was seen in this file: no header lines after it
        self.seen = 0  # entries taken from this file
        self.skip = 0  # entries a rewritten file repeats from the one before
        self.gone: Optional[tuple[tuple[int, int], int]] = None  # (identity, seen) of the file left
        if resume is None:
            self._open(at_end=True)
        else:
            self._resume(*resume)

    def _open(self, at_end: bool) -> bool:
        fd = open_log(self.path)
        if fd is None:
            return False
        self.fd, self.ident = fd, identity(fd)
        self.pos = whole_lines_end(fd, os.fstat(fd).st_size) if at_end else 0
        self.group, self.entered, self.seen = [], at_end, 0
        return True

    def _resume(self, source: Path, ident: tuple[int, int], offset: int) -> None:
        """Start at ``offset`` of ``source`` (the live log, or an archive: the next poll finishes it)."""
        fd = open_log(source)
        if fd is None or identity(fd) != ident:
            if fd is not None:
                os.close(fd)
            raise ValidationError("the file of that event was replaced meanwhile", path=source,
                                  hint="follow from now instead")
        self.fd, self.ident = fd, ident
        self.pos = min(offset, whole_lines_end(fd, os.fstat(fd).st_size))
        self.entered = True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def poll(self) -> list[dict]:
        """Every entry that became complete since the last poll, oldest first."""
        events: list[dict] = []
        if self.fd is not None and path_identity(self.path) != self.ident:
            events += self._drain(self.fd, final=True)  # rotated or replaced: finish the old file
            self.gone = (self.ident, self.seen)
            self.close()
        if self.fd is None:
            if not self._open(at_end=False):
                return events
            if self.gone is not None:
                events += self._catch_up(*self.gone)
                self.gone = None
        elif os.fstat(self.fd).st_size < self.pos:
            log.warning("%s: the log shrank; reading it again from the start", self.path)
            self.skip, self.pos, self.group, self.entered, self.seen = self.seen, 0, [], False, 0
        return events + self._drain(self.fd, final=False)

    def _catch_up(self, old: tuple[int, int], seen: int) -> list[dict]:
        """The archives rotated after the file left, up to the one now open; or, if that file
        was replaced rather than rotated, skip the entries the new one repeats."""
        later = [(a, path_identity(a)) for _, a in archive_keys(self.path)]
        index = next((i for i, (_, ident) in enumerate(later) if ident == old), None)
        if index is None:
            self.skip = seen
            return []
        events: list[dict] = []
        for archive, ident in later[index + 1:]:
            fd = open_log(archive)
            if ident == self.ident or fd is None:
                break
            try:
                events += read_all(fd, archive)
            finally:
                os.close(fd)
        return events

    def _drain(self, fd: int, final: bool) -> list[dict]:
        events: list[dict] = []
        size = os.fstat(fd).st_size
        data = read_at(fd, size - self.pos, self.pos) if size > self.pos else b""
        cut = data.rfind(b"\n") + 1
        offset = self.pos
        for line in data[:cut].split(b"\n")[:-1]:
            line += b"\n"
            if is_entry(line):
                events += self._flush(fd)
                self.group, self.group_at, self.entered = [line], offset, True
            elif self.group:
                self.group.append(line)
            elif is_blank(line) or line[:1] in (b" ", b"\t"):
                pass  # a comment, or the rest of an entry already taken on an idle poll
            elif self.entered or classify(line) not in ("blank", "mapping", "flow_empty"):
                raise ValidationError("a top-level line that is not an event entry", path=self.path,
                                      line=line_at(fd, offset), hint=_FIX)
            offset += len(line)
        self.pos += cut
        # One flow line is a whole event; a block entry is whole when the next begins or the log rests.
        whole = len(self.group) == 1 and self.group[0].startswith(b"- {")
        if final or whole or cut == 0:
            events += self._flush(fd)
        return events

    def _flush(self, fd: int) -> list[dict]:
        if not self.group:
            return []
        event = parse_batch(fd, self.path, [(self.group_at, b"".join(self.group))])[0]
        self.group = []
        self.seen += 1
        if self.skip:
            self.skip -= 1
            return []
        return [event]


def _follow(watcher: _Watcher, earlier: list[dict], match: Matcher, interval: float,
            timeout: Optional[float], stop: Optional[Callable[[], bool]]) -> Iterator[dict]:
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        yield from earlier
        while True:
            new = watcher.poll()
            for event in new:
                if match(event):
                    yield event
            if stop is not None and stop():
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if not new:
                time.sleep(interval if remaining is None else min(interval, remaining))
    finally:
        watcher.close()
