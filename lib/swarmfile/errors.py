"""One exception hierarchy for Swarmfile.

Catch ``SwarmError`` to handle anything the runtime raises on purpose::

    SwarmError
    ├── ParseError          a file does not parse (path, line); it was left untouched
    ├── ValidationError     a value has the wrong type or shape (path, line, field)
    ├── InvalidIdError      an agent or task id that must not reach a path (also ValueError)
    ├── NotFoundError       a task, agent or file that does not exist
    ├── DuplicateTaskError  a new task is too close to an existing one
    ├── LockTimeout         a file lock was not acquired in time (path, holder; also TimeoutError)
    │   └── StateLockError  ... the lock of agent-state.yaml
    ├── StateSyncError      agent-state.yaml could not be read or written
    │   ├── StateParseError     ... because it does not parse (also a ParseError)
    │   └── StateShapeError     ... because it holds the wrong shape (also a ValidationError)
    ├── ReservationConflict files asked for are reserved by another live agent (holders, overlaps)
    ├── GitError            a git command failed (command, returncode, stderr)
    ├── WorktreeBusy        a worktree was kept: its lease is live or it holds uncommitted work
    ├── MergeRefused        nothing was merged: the root checkout is not ready
    ├── TmuxError           tmux is not installed, or a tmux command failed
    ├── AlreadyClaimed      a task is leased by another agent (holder)
    ├── NotClaimable        a task is not ready: done, blocked, waiting for a retry
    ├── LeaseLost           a lease action presented a token that is no longer current
    └── BackendUnavailable  the Redis backend could not be reached or refused a command; retry later

Every error renders as ``FILE:LINE: what went wrong (what to do)`` so a CLI can print
``error: {exc}`` as its one line on stderr.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import logging

__all__ = [
    "HAND_FIX",
    "swarm_logger",
    "SwarmError",
    "ParseError",
    "ValidationError",
    "InvalidIdError",
    "NotFoundError",
    "DuplicateTaskError",
    "LockTimeout",
    "StateLockError",
    "StateSyncError",
    "AlreadyClaimed",
    "LeaseLost",
    "NotClaimable",
    "StateParseError",
    "StateShapeError",
    "ReservationConflict",
    "GitError",
    "WorktreeBusy",
    "MergeRefused",
    "TmuxError",
    "BackendUnavailable",
    "warn_once",
]

# The one hint for a shared file that does not parse: Swarmfile never rewrites it (fail closed).
HAND_FIX = "fix the file by hand; it was not changed"


class SwarmError(Exception):
    """Base of every error Swarmfile raises on purpose."""

    def __init__(
        self,
        reason: str,
        *,
        path: "Optional[os.PathLike[str] | str]" = None,
        line: Optional[int] = None,
        hint: Optional[str] = None,
        task_id: Optional[str] = None,
        holder: Optional[str] = None,
    ) -> None:
        self.reason = reason
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        self.hint = hint
        self.task_id = task_id
        self.holder = holder
        super().__init__(reason)

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        text = f"{where}{self.reason}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ParseError(SwarmError):
    """A file does not parse; it was not changed."""


class ValidationError(SwarmError, ValueError):
    """A value in a file or an argument has the wrong type or shape."""


class InvalidIdError(SwarmError, ValueError):
    """An agent or task id that is not safe to use in a path."""


class NotFoundError(SwarmError, LookupError):
    """A task, agent or file that does not exist."""


class DuplicateTaskError(SwarmError):
    """A task was refused because a near-duplicate already exists."""


class LockTimeout(SwarmError, TimeoutError):
    """A file lock was not acquired within the timeout."""

    def __init__(self, path, timeout: float, holder: Optional[str] = None) -> None:
        self.timeout = timeout
        held = f" held by {holder}" if holder else ""
        super().__init__(
            f"could not lock within {timeout:g}s{held}",
            path=path,
            holder=holder,
            hint="retry, or check that the holder is alive",
        )


class StateLockError(LockTimeout):
    """The lock of agent-state.yaml was not acquired in time."""


class StateSyncError(SwarmError):
    """agent-state.yaml could not be read or written."""


class AlreadyClaimed(SwarmError):
    """A task is already leased by another agent."""


class LeaseLost(SwarmError):
    """A holder action used a lease whose token is no longer current."""


class BackendUnavailable(SwarmError):
    """The shared-state server (Redis) could not be reached or refused the command; retry later."""


class NotClaimable(SwarmError):
    """A task cannot be claimed now: it is finished, blocked or backing off before a retry."""


class StateParseError(StateSyncError, ParseError):
    """agent-state.yaml does not parse; it was not changed."""


class StateShapeError(StateSyncError, ValidationError):
    """agent-state.yaml parses but holds the wrong shape or a bad value; it was not changed."""


class ReservationConflict(SwarmError):
    """Patterns asked for overlap live reservations of other agents; nothing was reserved.

    ``overlaps`` lists each clash (reservations.Overlap); ``holders`` the agents in the way
    (``holder`` is the first).
    """

    def __init__(self, agent_id: str, overlaps: list, path=None) -> None:
        self.overlaps = list(overlaps)
        self.holders = sorted({o.holder.agent_id for o in self.overlaps})
        super().__init__(f"{agent_id} cannot reserve: " + "; ".join(map(str, self.overlaps)),
                         path=path, holder=self.holders[0] if self.holders else None,
                         hint="wait for the holder to release it, or pick other work")


_warned: dict[tuple[str, str], tuple] = {}


def swarm_logger() -> "logging.Logger":
    """The "swarmfile" logger. ``logging`` is imported on first use: a command that logs nothing
    (``python lib/claims.py ready``) starts without it."""
    import logging

    return logging.getLogger("swarmfile")


def warn_once(logger: "logging.Logger", template: str, *args: object, about: object = None) -> bool:
    """Log a warning unless the same one about the same, unchanged file was logged already.

    Loops poll every few seconds: a bad file is named once, and again once it changes (its
    size or mtime) or the complaint does. ``about`` is the file (default: the ``path`` of the
    first argument that is a SwarmError). True when it was logged.
    """
    if about is None:
        about = next((a.path for a in args if isinstance(a, SwarmError) and a.path), "")
    key = (template, os.fspath(about) if about else "")
    try:
        st = os.stat(key[1]) if key[1] else None
        stamp = None if st is None else (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    seen = (stamp, tuple(str(a) for a in args))
    if _warned.get(key) == seen:
        return False
    _warned[key] = seen
    logger.warning(template, *args)
    return True


def _first_line(text: str) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


class GitError(SwarmError):
    """A git command failed; ``command``, ``returncode`` and ``stderr`` say how."""

    def __init__(self, command: list, cwd, returncode: int, stderr: str, stdout: str = "",
                 hint: Optional[str] = None) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        complaint = _first_line(stderr) or _first_line(stdout) or f"exit status {returncode}"
        super().__init__(f"git {command[0] if command else ''} failed: {complaint}", path=cwd, hint=hint)


class WorktreeBusy(SwarmError):
    """A worktree was not removed: its task's lease is live, or it holds uncommitted work."""


class MergeRefused(SwarmError):
    """Nothing was merged: the root checkout is not on the base branch or has uncommitted changes."""


class TmuxError(SwarmError):
    """tmux is not installed, or a tmux command failed."""
