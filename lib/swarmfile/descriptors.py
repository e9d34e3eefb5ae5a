"""Descriptors a process keeps open between uses of a file: lock sidecars, and logs it appends to.

An open and a close cost more than the flock or the one-line write they were made for, so a
process keeps the descriptors it used, for its next use of the same file. The rules that keep
this from changing what the descriptor does:

* each serves one user at a time (taken, then given back): two threads never share one, as a
  lock is per open file description and two holders of one would not exclude each other;
* one is handed out only while its path still names the inode it was opened on (``lstat``, so
  a symlink put in its place is never followed): a file deleted, replaced or rotated since is
  opened again, as an open per use would have;
* one opened before a fork is never used in the child: it shares its open file description, and
  so its locks, with the parent's;
* at most ``limit`` idle ones are kept per pool; the least recently used are closed first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable, Optional
from weakref import WeakSet

__all__ = ["Kept", "DescriptorPool", "this_pid"]

_pid = [os.getpid()]  # this process's id, kept current across forks (os.getpid is a system call)


class Kept:
    """An open descriptor, the inode it was opened on and the process that opened it."""

    __slots__ = ("fd", "ident", "pid")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd, self.ident, self.pid = fd, (st.st_dev, st.st_ino), _pid[0]


class DescriptorPool:
    """Idle descriptors of files, by path (a str: a Path hashes in Python, and these are taken on every
    append); ``opener(path)`` opens one (and raises what an open raises)."""

    def __init__(self, opener: Callable[[str], int], limit: int) -> None:
        self.opener, self.limit = opener, limit
        self.most_paths = 2 * limit  # paths kept with no descriptor left (one in use, or closed) before a sweep
        self.idle: OrderedDict[str, list[Kept]] = OrderedDict()
        self.count = 0
        self.mutex = threading.Lock()
        _pools.add(self)

    def take(self, path: str) -> tuple[Kept, os.stat_result]:
        """A descriptor of the file ``path`` names now, and that file's stat: a kept one, else a new one."""
        with self.mutex:
            free = self.idle.get(path)
            if free:  # an emptied list stays (a path used once tends to be used again): no reshuffle per use
                found: Optional[Kept] = free.pop()
                self.count -= 1
            else:
                found = None
        if found is not None:
            try:
                st: Optional[os.stat_result] = os.lstat(path)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_ino == found.ident[1] and st.st_dev == found.ident[0]:
                return found, st
            os.close(found.fd)
        fd = self.opener(path)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        return Kept(fd, st), st

    def give_back(self, path: str, kept: Kept) -> None:
        """Keep ``kept`` (its user is done with it, and holds no lock on it) for the next ``take``."""
        if kept.pid != _pid[0]:  # opened before a fork: shared with the parent
            os.close(kept.fd)
            return
        closing = None
        with self.mutex:
            idle = self.idle
            free = idle.get(path)
            if free is None:
                idle[path] = [kept]  # a new key goes last: the most recently used
            else:
                free.append(kept)
                idle.move_to_end(path)
            self.count += 1
            if self.count > self.limit or len(idle) > self.most_paths:
                closing = self._trim()
        if closing:
            for old in closing:
                os.close(old.fd)

    def _trim(self) -> list[Kept]:
        """Drop the least recently used descriptors over the limit, and paths left with none once they are
        many; the caller holds the mutex and closes what is returned."""
        closing = []
        idle = self.idle
        while self.count > self.limit:
            oldest, free = next(iter(idle.items()))
            if free:
                closing.append(free.pop(0))
                self.count -= 1
            if not free:
                del idle[oldest]
        if len(idle) > self.most_paths:
            for path in [path for path, free in idle.items() if not free]:
                del idle[path]
        return closing

    def _forget(self) -> None:
        self.mutex = threading.Lock()  # it may have been held by a thread the fork left behind
        for free in self.idle.values():
            for kept in free:
                os.close(kept.fd)
        self.idle.clear()
        self.count = 0


_pools: "WeakSet[DescriptorPool]" = WeakSet()


def _after_fork_in_child() -> None:
    _pid[0] = os.getpid()
    for pool in list(_pools):
        pool._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def this_pid() -> int:
    """This process's id (kept current across forks: no system call)."""
    return _pid[0]
