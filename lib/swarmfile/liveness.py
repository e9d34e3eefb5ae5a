"""Is the process behind an agent or a lease still alive?

On this host a dead process is detected at once: its pid is gone, or the pid now belongs to
another process (pid reuse), which the recorded process start time reveals. A process on
another host cannot be checked: callers fall back to its last heartbeat or lease expiry.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from typing import Any, Iterable, Optional

from .clock import HOSTNAME
__all__ = ["process_start_time", "pid_alive", "dead_reason", "my_identity", "stop_processes"]


def _proc_stat(pid: int) -> Optional[list[bytes]]:
    """The fields of /proc/<pid>/stat from the third (state) on, or None (no such process, no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return data[data.rfind(b")") + 2 :].split()


def _start_of(fields: Optional[list[bytes]]) -> Optional[int]:
    try:
        return int(fields[19])  # type: ignore[index]  # field 22 of stat(5), counted from field 3
    except (TypeError, IndexError, ValueError):  # no fields, or a malformed /proc entry
        return None


def process_start_time(pid: int) -> Optional[int]:
    """When ``pid`` started, in clock ticks since boot (Linux), or None when unknown."""
    return _start_of(_proc_stat(pid))


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (zombies count as dead)."""
    return _alive(pid)[0]


def _alive(pid: int) -> tuple[bool, Optional[list[bytes]]]:
    """Whether ``pid`` lives, and its /proc stat fields when they were read (one read serves both)."""
    if pid <= 0:
        return False, None
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False, None
        if exc.errno != errno.EPERM:  # EPERM: it exists but belongs to someone else
            raise
    fields = _proc_stat(pid)
    if fields is None:
        return True, None  # no /proc (not Linux), or gone this instant: os.kill said it exists
    return fields[:1] != [b"Z"], fields


def dead_reason(pid: Any, host: Any, proc_start: Any = None) -> Optional[str]:
    """Why the process (pid, host, start time) is known dead, or None if alive or unknowable.

    Fails closed: only proof of death counts. A process on another host, or a record
    without a pid, is never reported dead here.
    """
    if host != HOSTNAME or not isinstance(pid, int) or isinstance(pid, bool):
        return None
    alive, fields = _alive(pid)
    if not alive:
        return f"process {pid} is dead"
    if proc_start is not None:
        now_start = _start_of(fields)
        if now_start is not None and str(now_start) != str(proc_start):
            return f"pid {pid} was reused by another process"
    return None


_mine: dict[int, dict[str, Any]] = {}  # by pid: a forked child must not inherit its parent's


def my_identity() -> dict[str, Any]:
    """pid, host and process start time of this process, as recorded in heartbeats and leases."""
    pid = os.getpid()
    found = _mine.get(pid)
    if found is None:
        found = _mine[pid] = {"pid": pid, "host": HOSTNAME, "proc_start": process_start_time(pid)}
    return dict(found)


def stop_processes(procs: Iterable["subprocess.Popen[Any]"], grace: float) -> None:
    """SIGTERM every child still running, then wait for each, SIGKILLing one still there after ``grace`` s.

    All are asked first, then waited for: they shut down together, not one after another.
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
