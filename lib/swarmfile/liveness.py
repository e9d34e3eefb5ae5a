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


def process_start_time(pid: int) -> Optional[int]:
    """When ``pid`` started, in clock ticks since boot (Linux), or None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of stat(5), counted from field 3
    except (IndexError, ValueError):  # pragma: no cover - malformed /proc entry
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        if exc.errno != errno.EPERM:  # EPERM: it exists but belongs to someone else
            raise
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] != b"Z"
    except OSError:
        return True  # no /proc (not Linux): os.kill said it exists


def dead_reason(pid: Any, host: Any, proc_start: Any = None) -> Optional[str]:
    """Why the process (pid, host, start time) is known dead, or None if alive or unknowable.

    Fails closed: only proof of death counts. A process on another host, or a record
    without a pid, is never reported dead here.
    """
    if host != HOSTNAME or not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if not pid_alive(pid):
        return f"process {pid} is dead"
    if proc_start is not None:
        now_start = process_start_time(pid)
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
