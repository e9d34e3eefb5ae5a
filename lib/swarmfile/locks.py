"""Sidecar locks: ``locked(target, lock_dir=...)``, the one lock every shared file is written under.

The only module that touches portalocker or fcntl (fileio re-exports ``locked`` and ``lock_path``).

* The lock is on a sidecar file under ``lock_dir``, never on the data file itself, because the data
  file is replaced on every rewrite and a lock on a replaced inode protects nothing. Sidecars are
  never deleted: deleting a held lock file would let a second process lock a new inode at the same
  path. Should one be deleted or replaced all the same, the next lock opens the file the path names
  now (a descriptor kept from before is not used).
* The first bytes of a sidecar say who holds it exclusively, for the LockTimeout of whoever waits
  next; the next ``NOTE_WIDTH`` bytes are a note the holder may leave for the next holder
  (``read_note``/``leave_note``, or ``padded_note``/``leave_note`` of the lock in hand: the event log
  says there how it left the log).
* A process keeps the descriptors of the sidecars it let go of, for its next lock of the same
  file (descriptors.py: one user at a time, never across a fork, never once the path names
  another file).
* A lock found held is tried again a few times after yielding the CPU, then waited for in the
  kernel by a waiter thread, kept for the next wait.
* Files of which there are many, and each locked rarely (task files, leases: ``many=True``), are not
  given a sidecar each: creating a file costs more than the rest of a claim on some file systems,
  and a task is claimed once. Their locks are byte ranges of one shared file, ``many.lock`` in the
  lock folder, one byte at an offset hashed from the file's real path (Linux's open file description
  locks, which like flock exclude threads of one process too). The holder record is kept in one of
  ``_HOLDER_SLOTS`` slots of that file (two files hashed to one slot share it: it is a hint for a
  message). Elsewhere (no such locks) they get sidecars like any other file.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

# portalocker imports redis-py, when it is installed, for a RedisLock we never use: that import alone
# costs a CLI several times its start-up. A None entry makes portalocker's optional import fail at once,
# and portalocker is made for that case (its RedisLock then only raises when constructed).
sys.modules.setdefault("portalocker.redis", None)  # type: ignore[arg-type]
import portalocker  # noqa: E402

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: portalocker locks with msvcrt there
    fcntl = None  # type: ignore[assignment]

from .clock import HOSTNAME, format_ts  # noqa: E402
from .descriptors import DescriptorPool, Kept, this_pid  # noqa: E402
from .errors import LockTimeout  # noqa: E402

__all__ = ["locked", "lock_path", "read_note", "leave_note", "pad_note", "NOTE_WIDTH"]

PathLike = Union[str, "os.PathLike[str]"]

_lock_names: dict[tuple[str, str], tuple[Path, str]] = {}  # (target, lock_dir) -> sidecar, as a Path and a str
_real_dirs: dict[str, str] = {}  # folder -> its real path, resolved once per process
_HOLDER_WIDTH = 160  # bytes of the holder record at the start of a sidecar
NOTE_WIDTH = 160  # bytes of the note after it
_IDLE_MAX = 64  # idle sidecar descriptors a process keeps (a claim locks many files: the rest are closed)


def lock_path(target: PathLike, lock_dir: PathLike) -> Path:
    """The sidecar lock file of ``target`` inside ``lock_dir``.

    Named after the file and a hash of its real path, so two processes that reach one file
    through different spellings (relative, symlinked root) still share one lock.
    """
    return _sidecar_of(target, lock_dir)[0]


def _sidecar_of(target: PathLike, lock_dir: PathLike) -> tuple[Path, str]:
    key = (os.fspath(target), os.fspath(lock_dir))
    found = _lock_names.get(key)
    if found is None:
        real, digest = _real_digest(key[0])
        sidecar = Path(lock_dir) / f"{os.path.basename(real)[:80]}.{digest}.lock"
        found = _lock_names[key] = (sidecar, str(sidecar))
    return found


def _real_digest(target: str) -> tuple[str, str]:
    """``target``'s real path (its folder resolved, once per process) and 48 bits of its hash, in hex."""
    folder, name = os.path.split(os.path.abspath(target))
    real_dir = _real_dirs.get(folder)
    if real_dir is None:
        real_dir = _real_dirs[folder] = os.path.realpath(folder)
    real = os.path.join(real_dir, name)
    import hashlib  # here: most commands never lock, and start-up time shows

    return real, hashlib.sha1(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]


# Byte-range locks of one open file description (F_OFD_SETLK): 64-bit Linux, where ``struct flock``
# is two shorts, two 64-bit offsets and an int, padded to 32 bytes.
_RANGES = (fcntl is not None and sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")
           and struct.calcsize("P") == 8)
_FLOCK = struct.Struct("hhxxxxqqixxxx")
_MANY_FILE = "many.lock"
_HOLDER_SLOTS = 4096
_RANGE_BASE = _HOLDER_SLOTS * 160  # lock bytes start past the holder slots (a lock need not lie in the file)
_many_names: dict[str, tuple[Path, str]] = {}  # lock_dir -> its many.lock, as a Path and a str


def _many_of(target: PathLike, lock_dir: PathLike) -> tuple[Path, str, int]:
    """The shared lock file of ``lock_dir`` and the offset of ``target``'s byte in it."""
    key = os.fspath(lock_dir)
    names = _many_names.get(key)
    if names is None:
        path = Path(lock_dir) / _MANY_FILE
        names = _many_names[key] = (path, str(path))
    # 48 bits of the real path's hash: two files of one workspace never share a byte.
    return names[0], names[1], _RANGE_BASE + int(_real_digest(os.fspath(target))[1], 16)


def _holder_slot(at: Optional[int]) -> int:
    """Where the holder record of a lock is: the sidecar's start, or a slot of the shared file."""
    return 0 if at is None else (at % _HOLDER_SLOTS) * _HOLDER_WIDTH


def _holder_of(path: Path, at: Optional[int] = None, fd: Optional[int] = None) -> Optional[str]:
    """The holder record of a lock: read through ``fd`` (a descriptor of the lock file) if given."""
    try:
        if fd is not None:
            raw = os.pread(fd, _HOLDER_WIDTH, _holder_slot(at))
        else:
            with open(path, "rb") as handle:
                handle.seek(_holder_slot(at))
                raw = handle.read(_HOLDER_WIDTH)
    except OSError:
        return None
    return raw.decode("utf-8", errors="replace").strip("\0 \n") or None


# ---------------------------------------------------------------------------- descriptors


def _open_sidecar(path: str) -> int:
    # Not O_APPEND: on Linux a pwrite to an O_APPEND file ignores its offset and appends.
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


# A kept descriptor is used only while the path still names its inode: a lock on a sidecar since deleted
# or replaced would exclude nobody who opens the path now. Checked before the flock, as a new descriptor
# is opened before it (the window between the two is the one every open has).
_sidecars = DescriptorPool(_open_sidecar, _IDLE_MAX)


def _forget_waiters_after_fork() -> None:
    _waiters.clear()  # their threads did not cross the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_waiters_after_fork)


# ---------------------------------------------------------------------------- locks

# Plain ints where fcntl is there: portalocker's are IntFlag members, and their "|" costs more than the flock.
_SHARED, _EXCLUSIVE = ((fcntl.LOCK_SH, fcntl.LOCK_EX) if fcntl is not None
                       else (portalocker.LOCK_SH, portalocker.LOCK_EX))
_held: dict[tuple[int, str], "locked"] = {}  # (thread, sidecar) -> each exclusive lock of a sidecar held


class locked:
    """Hold the lock of ``target`` for the ``with`` block; yields the sidecar path.

    Waits at most ``timeout`` seconds (monotonic clock), then raises ``error`` (a LockTimeout
    subclass) naming the file and, when it is known, the process that holds it. The lock is
    per open file description, so threads of one process exclude each other too; it is not
    re-entrant. (A class, not a generator: it is taken on every append, and a generator's
    context manager cost a third of the lock.)
    """

    __slots__ = ("target", "sidecar", "key", "at", "timeout", "shared", "error", "handle", "padded_note")

    def __init__(self, target: PathLike, *, lock_dir: PathLike, timeout: float = 30.0, shared: bool = False,
                 error: type = LockTimeout, many: bool = False) -> None:
        self.target, self.timeout, self.shared, self.error = target, timeout, shared, error
        self.at: Optional[int] = None  # the byte locked in the shared file, or None: a sidecar's flock
        if many and _RANGES:
            self.sidecar, self.key, self.at = _many_of(target, lock_dir)
        else:
            self.sidecar, self.key = _sidecar_of(target, lock_dir)  # str keys: a Path hashes in Python
        self.handle: Optional[Kept] = None
        self.padded_note = b""  # the note as the sidecar holds it (``pad_note``), read when the lock is taken

    def __enter__(self) -> Path:
        key, at = self.key, self.at
        flags = _SHARED if self.shared else _EXCLUSIVE
        handle = _sidecars.take(key)[0]
        fd = handle.fd
        try:
            taken = _lock_now(fd, flags, at) or (self.timeout > 0 and _spin(fd, flags, at))
        except BaseException:  # e.g. KeyboardInterrupt between two tries: the lock may be held
            os.close(fd)
            raise
        if not taken:
            self._wait(handle, flags)
        self.handle = handle
        if flags == _EXCLUSIVE:
            try:
                # Who holds it, for the LockTimeout of whoever waits next. Written in place over the
                # last holder's record, padded to a fixed width: no truncate, so no metadata change for
                # the file system to journal (the sidecar's inode must never change). Left as it is
                # when it already says this (this process, this second).
                # The note is read with it: no one else writes it while this lock is held.
                record = _holder_record()
                if at is None:
                    head = os.pread(fd, _HOLDER_WIDTH + NOTE_WIDTH, 0)
                    if not head.startswith(record):  # the record is _HOLDER_WIDTH bytes
                        os.pwrite(fd, record, 0)
                    self.padded_note = head[_HOLDER_WIDTH:]
                    _held[(threading.get_ident(), key)] = self
                else:
                    slot = _holder_slot(at)
                    if os.pread(fd, _HOLDER_WIDTH, slot) != record:
                        os.pwrite(fd, record, slot)
            except BaseException:
                self.handle = None
                os.close(fd)
                raise
        return self.sidecar

    def _wait(self, handle: Kept, flags: int) -> None:
        """Wait for the lock found held (the descriptor is the waiter's if we give up: see _wait_for)."""
        timeout, at = self.timeout, self.at
        if timeout <= 0:  # no wait asked for: no thread either
            holder = _holder_of(self.sidecar, at, handle.fd)
            _sidecars.give_back(self.key, handle)
            raise self.error(self.target, timeout, holder=holder) from None
        if not _wait_for(handle.fd, flags, timeout, at):
            raise self.error(self.target, timeout, holder=_holder_of(self.sidecar, at)) from None

    @property
    def note(self) -> bytes:
        """The note the last exclusive holder of this sidecar left (b"" if none), read when it was taken."""
        return self.padded_note.rstrip(b" \n\0")

    def leave_note(self, note: bytes) -> None:
        """Leave ``note`` for the next holder (see the module's ``leave_note``); this lock is held exclusively."""
        handle = self.handle
        if handle is None or self.shared or self.at is not None:
            raise RuntimeError(f"{self.sidecar}: a lock note is left only under the exclusive lock of a sidecar")
        if len(note) >= NOTE_WIDTH or note.find(b"\n") >= 0:  # (``in`` tries the needle as a number first)
            raise ValueError(f"a lock note is one line under {NOTE_WIDTH} bytes, got {note[:40]!r}")
        padded = pad_note(note)
        os.pwrite(handle.fd, padded, _HOLDER_WIDTH)  # in place, like the holder record
        self.padded_note = padded

    def __exit__(self, kind: Any, value: Any, trace: Any) -> None:
        handle, self.handle = self.handle, None
        if handle is None:  # pragma: no cover - exited without entering
            return
        at = self.at
        if at is None and not self.shared:
            _held.pop((threading.get_ident(), self.key), None)
        if kind is None:
            _release(self.key, handle, at)
        else:
            os.close(handle.fd)  # closing releases the lock: after a failure nothing is kept


def _release(sidecar: str, handle: Kept, at: Optional[int] = None) -> None:
    if fcntl is None:  # pragma: no cover - Windows: closing releases it, nothing is kept
        os.close(handle.fd)
        return
    try:
        if at is None:
            fcntl.flock(handle.fd, fcntl.LOCK_UN)
        else:
            fcntl.fcntl(handle.fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, at, 1, 0))
    except OSError:  # pragma: no cover - closing releases it whatever went wrong
        os.close(handle.fd)
        raise
    _sidecars.give_back(sidecar, handle)


def _held_lock(sidecar: Path) -> locked:
    held = _held.get((threading.get_ident(), os.fspath(sidecar)))
    if held is None:
        raise RuntimeError(f"{sidecar}: a lock note is read and left only under the exclusive lock")
    return held


def read_note(sidecar: Path) -> bytes:
    """The note the last exclusive holder of the lock left (b"" if none); the caller holds it exclusively.

    A note says nothing about a file unless every writer of that file leaves it: a reader must
    check it against the file (the event log compares it with the log's stat key).
    """
    return _held_lock(sidecar).note


def leave_note(sidecar: Path, note: bytes) -> None:
    """Leave ``note`` (at most NOTE_WIDTH - 1 bytes, one line) for the next holder; the caller holds
    the lock exclusively (``locked.leave_note`` does the same for the lock in hand)."""
    _held_lock(sidecar).leave_note(note)


def pad_note(note: bytes) -> bytes:
    """``note`` as a sidecar holds it: padded with spaces to NOTE_WIDTH, ending with a newline (compare
    it with ``locked.padded_note`` to skip the strip)."""
    return note.ljust(NOTE_WIDTH - 1) + b"\n"


def _range_lock(fd: int, flags: int, at: int, wait: bool) -> None:
    kind = fcntl.F_RDLCK if flags == _SHARED else fcntl.F_WRLCK
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, at, 1, 0))


def _lock_now(fd: int, flags: int, at: Optional[int] = None) -> bool:
    """Take the lock if it is free now: whether it was."""
    if at is not None:
        try:
            _range_lock(fd, flags, at, wait=False)
            return True
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held by another
            return False
    if fcntl is not None:
        # On POSIX portalocker makes this very call; made directly, it skips portalocker's checks
        # of its arguments, which cost ten times the system call (a claim takes several locks).
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    try:  # pragma: no cover - Windows
        portalocker.lock(fd, flags | portalocker.LOCK_NB)
        return True
    except portalocker.LockException as exc:  # pragma: no cover - AlreadyLocked, or a bare EAGAIN
        if not isinstance(exc, portalocker.AlreadyLocked) and not isinstance(exc.__cause__, BlockingIOError):
            raise
        return False


_SPINS = 20  # tries, each after yielding the CPU, before a wait is handed to a waiter thread
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def _spin(fd: int, flags: int, at: Optional[int] = None) -> bool:
    """Try for the lock a few times, letting other processes run in between: whether it was taken.

    Most holders let go within microseconds (an event append holds its log's lock for one write),
    and a try after a yield took the lock at a fraction of the cost of a waiter thread's wake-ups
    (eight writers on one log: about 1.6 times the appends per second). A lock still held after
    that is waited for in the kernel (``_wait_for``).
    """
    for _ in range(_SPINS):
        _yield()
        if _lock_now(fd, flags, at):
            return True
    return False


_holder: list = [None, b""]  # (pid, second) -> the record of that second, made once


def _holder_record() -> bytes:
    """This process's holder record, padded to the sidecar's fixed width."""
    now = time.time()
    key = (this_pid(), int(now))
    if _holder[0] != key:
        record = f"pid {key[0]} on {HOSTNAME} since {format_ts()}".encode()[:_HOLDER_WIDTH - 1]
        _holder[:] = [key, record.ljust(_HOLDER_WIDTH - 1) + b"\n"]
    return _holder[1]


# ---------------------------------------------------------------------------- waits


class _Wait:
    """One wait handed to a waiter thread."""

    __slots__ = ("fd", "flags", "at", "taken", "gave_up", "error", "mutex", "settled")

    def __init__(self, fd: int, flags: int, at: Optional[int]) -> None:
        self.fd, self.flags, self.at = fd, flags, at
        self.taken = self.gave_up = False
        self.error: Optional[BaseException] = None
        self.mutex = threading.Lock()
        self.settled = threading.Event()


_waiters: list[Any] = []  # the inboxes of idle waiter threads


def _waiter(inbox: Any) -> None:
    while True:
        wait = inbox.get()
        try:
            if wait.at is not None:
                _range_lock(wait.fd, wait.flags, wait.at, wait=True)
            elif fcntl is not None:
                fcntl.flock(wait.fd, wait.flags)
            else:  # pragma: no cover - Windows
                portalocker.lock(wait.fd, wait.flags)
        except BaseException as exc:  # pragma: no cover - e.g. ENOLCK, EINTR
            wait.error = exc
        with wait.mutex:
            if wait.gave_up:
                os.close(wait.fd)  # ours now: releases the lock if it was taken
            else:
                wait.taken = wait.error is None
                wait.settled.set()
        _waiters.append(inbox)


def _hand_over(wait: _Wait) -> None:
    """Give ``wait`` to an idle waiter thread, or to a new one."""
    try:
        inbox = _waiters.pop()
    except IndexError:
        import queue

        inbox = queue.SimpleQueue()
        threading.Thread(target=_waiter, args=(inbox,), name="swarmfile-lock-wait", daemon=True).start()
    inbox.put(wait)


def _wait_for(fd: int, flags: int, timeout: float, at: Optional[int] = None) -> bool:
    """Wait in the kernel for a held lock, at most ``timeout`` seconds; whether it was taken.

    flock has no timeout, so a waiter thread makes the blocking call while this one waits for
    it with one: the lock passes to a waiter the moment its holder lets go (a waiter that
    polled would leave it idle for up to a sleep, which under contention cost more than the
    work done under the lock). Waiter threads are kept for the next wait: starting one per
    wait cost more than the wait itself when eight writers queue for one log. A caller that
    gives up leaves the descriptor to the waiter, which closes it once its call returns (so a
    lock taken too late is let go at once); closing it here instead could hand its number to
    another open file mid-call. So a wait that timed out leaves a thread blocked and a
    descriptor open until the holder lets go.
    """
    wait = _Wait(fd, flags, at)
    _hand_over(wait)
    try:
        wait.settled.wait(max(0.0, timeout))
    except BaseException:  # e.g. KeyboardInterrupt: nobody will hold this lock
        with wait.mutex:
            if wait.settled.is_set():
                os.close(fd)  # the waiter is done with it
            else:
                wait.gave_up = True
        raise
    with wait.mutex:
        if not wait.settled.is_set():
            wait.gave_up = True
            return False
    if wait.error is not None:  # pragma: no cover
        os.close(fd)
        raise wait.error
    return True
