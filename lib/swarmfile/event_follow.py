"""Follow the event log: yield events as they are appended, across rotations and rewrites.

``follow`` is re-exported as ``events.follow``; the parsing and archive names are yaml_log's,
the filters event_query's (those of ``events.read_events``). An entry is yielded once it is whole: a flow line when its newline is
written, a block entry when the next entry begins or the log rests. When the log is rotated
the old file is read to its end, then any archives rotated after it, then the new log; when
it is replaced by a rewrite, the entries the new file repeats are skipped; when it shrinks,
it is read again from the start (logged as a warning).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

from .errors import ValidationError
from .event_query import Matcher, PathLike, log_path, matcher
from .fileio import line_at
from .yaml_log import FIX as _FIX
from .yaml_log import (archive_keys, classify, identity, is_blank, is_entry, open_log, parse_batch, path_identity,
                      read_all, read_at, read_last, whole_lines_end)

__all__ = ["follow"]

log = logging.getLogger("swarmfile")


class _Watcher:
    """Reads the entries appended to a log since the last poll, across rotations and rewrites."""

    def __init__(self, path: Path) -> None:
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
        self._open(at_end=True)

    def _open(self, at_end: bool) -> bool:
        fd = open_log(self.path)
        if fd is None:
            return False
        self.fd, self.ident = fd, identity(fd)
        self.pos = whole_lines_end(fd, os.fstat(fd).st_size) if at_end else 0
        self.group, self.entered, self.seen = [], at_end, 0
        return True

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


def follow(agent: Optional[str] = None, task_id: Optional[str] = None,
           types: Union[str, Iterable[str], None] = None, since: Union[str, datetime, None] = None,
           *, root: Optional[PathLike] = None, events_file: Optional[PathLike] = None, backlog: int = 0,
           interval: float = 0.1, timeout: Optional[float] = None,
           stop: Optional[Callable[[], bool]] = None) -> Iterator[dict]:
    """Matching events as they are appended, oldest first (a generator; ``close()`` ends it).

    The position is taken when ``follow`` is called, so nothing appended after the call is
    missed; the last ``backlog`` matches from before it come first. Polls every ``interval``
    seconds; ends after ``timeout`` seconds or once ``stop()`` is true. Follows rotations.
    """
    match, maybe = matcher(agent, task_id, types, since)
    _, path = log_path(root=root, events_file=events_file)
    watcher = _Watcher(path)
    try:
        earlier = []
        if backlog and watcher.fd is not None:
            earlier = read_last(watcher.fd, path, backlog, match, maybe, size=watcher.pos)[::-1]
    except BaseException:
        watcher.close()
        raise
    return _follow(watcher, earlier, match, interval, timeout, stop)


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
