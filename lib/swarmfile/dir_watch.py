"""Which names in a directory changed since this process last asked: the kernel's inotify, on Linux.

A process that lists a task folder again and again (an executor's claim loop) learns from the
kernel which files changed, instead of reading the whole folder each time: at 2,000 task files a
``scandir`` per claim cost more than the claim. ``changes(directory)`` returns the names created,
written, replaced, renamed, removed or touched in it since the previous call (not those starting
with a dot: temporary files, never tasks), or None when that is not known (no watch yet, the event
queue overflowed, a subfolder came or went, the folder itself was moved or deleted, after a fork):
then the caller reads the folder in full, as it would without a watch.

An event is queued by the system call that changed the file, before that call returns: a change
another process made before ours is in the queue when we read it. Writes through a shared memory
map and changes made on another host over a network file system are not reported (the file backend
is for one host; listings also read every file now and then, see task_cache).

Elsewhere (not Linux, no inotify, the per-user limits reached) ``available()`` is False and nothing is
watched. ctypes is imported on the first watch, never by a command that lists once.
"""

from __future__ import annotations

import os
import struct
from typing import Optional

__all__ = ["available", "watch", "changes", "unwatch", "watched"]

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x1000000
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = 0o2000000
_MASK = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
         | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR)
_LOST = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED  # the folder itself is gone: its watch ends
_SPECIAL = _LOST | _IN_Q_OVERFLOW | _IN_ISDIR
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
# Folders one process watches at most (the kernel's default per-user limit is 8,192 or more, shared by
# every process of the user): a process that lists many workspaces (a test run) gives up the oldest.
MAX_WATCHED = 64


class _State:
    """This process's inotify descriptor and what it has seen, per watched folder."""

    def __init__(self) -> None:
        self.fd: Optional[int] = None
        self.failed = False  # inotify cannot be had here: never try again in this process
        self.libc = None
        self.folders: dict[str, int] = {}  # folder -> watch descriptor, least recently used first
        self.by_wd: dict[int, str] = {}
        self.pending: dict[str, Optional[set]] = {}  # folder -> names (bytes) changed since the last ask (None: unknown)


_state = _State()


def _forget_after_fork() -> None:
    # The child shares its parent's inotify queue: reading from it would take the parent's events.
    global _state
    if _state.fd is not None:
        try:
            os.close(_state.fd)
        except OSError:
            pass
    failed = _state.failed
    _state = _State()
    _state.failed = failed


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def available() -> bool:
    """Whether this process can watch folders (Linux with inotify, and the limits not reached)."""
    return _open() is not None


def _open() -> Optional[int]:
    state = _state
    if state.fd is not None or state.failed:
        return state.fd
    try:
        import ctypes  # here: a command that lists once never pays for it

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):  # not Linux, or no inotify in this C library
        fd = -1
    if fd < 0:
        state.failed = True
        return None
    state.fd, state.libc = fd, libc
    return fd


def watch(directory: str) -> bool:
    """Start reporting the changes in ``directory`` (a real folder path); False when it cannot be
    watched. Changes are reported from now on: the caller reads the folder in full after this."""
    state = _state
    if directory in state.folders:
        state.pending[directory] = set()
        return True
    fd = _open()
    if fd is None:
        return False
    if len(state.folders) >= MAX_WATCHED:
        unwatch(next(iter(state.folders)))
    wd = state.libc.inotify_add_watch(fd, os.fsencode(directory), _MASK)
    if wd < 0:  # gone, not a folder, or the user's watch limit reached: list it the plain way
        return False
    old = state.by_wd.get(wd)  # the same folder by another spelling: one watch descriptor
    if old is not None and old != directory:
        unwatch(old)
        wd = state.libc.inotify_add_watch(fd, os.fsencode(directory), _MASK)
        if wd < 0:
            return False
    state.folders[directory] = wd
    state.by_wd[wd] = directory
    state.pending[directory] = set()
    return True


def watched(directory: str) -> bool:
    return directory in _state.folders


def unwatch(directory: str) -> None:
    """Stop watching ``directory`` (nothing if it is not watched)."""
    state = _state
    wd = state.folders.pop(directory, None)
    state.pending.pop(directory, None)
    if wd is None:
        return
    state.by_wd.pop(wd, None)
    if state.fd is not None:
        state.libc.inotify_rm_watch(state.fd, wd)  # fails harmlessly if the kernel already ended it


def changes(directory: str) -> Optional[set]:
    """The names changed in ``directory`` since the last call (or since ``watch``), or None when
    that is not known: the caller then reads the folder in full (the watch, if any, goes on)."""
    state = _state
    wd = state.folders.get(directory)
    if wd is None:
        return None
    _drain(state)
    if directory not in state.folders:  # the folder went while we were away
        return None
    raw = state.pending[directory]
    state.pending[directory] = set()
    found = None if raw is None else set(map(os.fsdecode, raw))
    # Least recently used first: a folder asked about moves to the end.
    del state.folders[directory]
    state.folders[directory] = wd
    return found


def _drain(state: _State) -> None:
    fd = state.fd
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # the descriptor broke: every folder is unknown, and never watched again here
            _give_up(state)
            return
        at, end = 0, len(data)
        unpack = _HEADER.unpack_from
        pending, by_wd = state.pending, state.by_wd
        while at < end:
            wd, mask, _cookie, size = unpack(data, at)
            start = at + 16
            at = start + size
            if mask & _SPECIAL:
                _special(state, wd, mask)
                continue
            names = pending.get(by_wd.get(wd))  # type: ignore[arg-type]
            if names is not None and size and data[start] != 0x2E:  # a dot file (a temporary one): not a task
                names.add(data[start:at].rstrip(b"\0"))


def _special(state: _State, wd: int, mask: int) -> None:
    """An event that is not a plain file's change: an overflow, a subfolder's, the folder's own."""
    pending = state.pending
    if mask & _IN_Q_OVERFLOW:  # events were dropped: nothing is known
        for folder in pending:
            pending[folder] = None
        return
    folder = state.by_wd.get(wd)
    if folder is None:
        return
    if mask & _LOST:
        state.folders.pop(folder, None)
        pending.pop(folder, None)
        state.by_wd.pop(wd, None)
    elif folder in pending:  # a subfolder came, went or was renamed: the caller lists in full
        pending[folder] = None


def _give_up(state: _State) -> None:
    global _state
    try:
        os.close(state.fd)
    except OSError:
        pass
    _state = _State()
    _state.failed = True
