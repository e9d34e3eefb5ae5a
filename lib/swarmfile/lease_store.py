"""The lease table: where every task's lease and every planner assignment is stored.

``LeaseTable`` is the interface the rest of Swarmfile sees; ``claims`` builds the lease rules
(claim, renew, start, end, take-over, reaping, the task-file mirror) on it, and nothing else
knows how a lease is kept. ``stores.lease_table(cfg)`` picks the implementation ``swarm.yaml``'s
``backend:`` names: ``files`` (the default, no server; ``journal`` is its other name) is
lease_journal's ``JournalLeaseTable``, one append-only journal with one fsync per lease change.
``FileLeaseTable`` below, a YAML file per lease in ``.swarm/claims/``, is how earlier versions
kept leases: no backend selects it any more (a table writing those files beside the journal
would fork the truth), but the journal reads them through it once, on first use, and the
contract suite still holds it to the interface. The journal keeps its assignments. A Redis URL selects redis_lease's ``RedisLeaseTable``.

What every implementation guarantees (``tests/test_lease_store.py`` holds each to it):

- ``read`` never returns half a record; a record that cannot be read raises, it is never
  "not claimed" (that would restart tokens at 1 and let an old token-1 holder through).
- ``lock(task_id)`` is a cross-process lock of that task's lease. Lock order, everywhere:
  the lease's lock, then the task file's lock. A ``write`` happens under the lease's lock.
- ``list`` skips (``errors`` given) or raises on unreadable records, never drops them silently.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

from .clock import parse_ts, utc_now

from .config import Config
from .errors import SwarmError, ValidationError
from .fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_file, locked
from .liveness import dead_reason
from .records import Record

__all__ = ["Lease", "LeaseState", "Assignment", "LeaseTable", "FileLeaseTable"]


class LeaseState(str, Enum):
    HELD = "held"
    RELEASED = "released"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Lease(Record):
    """One claim of one task; ``token`` grows on every claim of that task."""

    task_id: str
    agent_id: str
    token: int
    acquired_at: str
    expires_at: str
    pid: Optional[int] = None
    host: Optional[str] = None
    proc_start: Optional[int] = None
    state: LeaseState = LeaseState.HELD
    acknowledged_at: Optional[str] = None  # the holder started work (executor ACK)
    attempts: int = 0  # failed runs of this task so far, across leases
    not_before: Optional[str] = None  # a failed task waits until then before its retry
    ended_at: Optional[str] = None
    error: Optional[str] = None
    mirror: Optional[dict] = None  # the task-file fields this lease's last change wrote
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept

    def expired(self, now: Optional[datetime] = None) -> bool:
        return (now or utc_now()) >= parse_ts(self.expires_at)

    def free_reason(self, now: Optional[datetime] = None) -> Optional[str]:
        """Why another agent may take this task now, or None while the lease binds."""
        if self.state is not LeaseState.HELD:
            return f"lease {self.state.value}"
        if self.expired(now):
            return f"lease expired at {self.expires_at}"
        return dead_reason(self.pid, self.host, self.proc_start)

    def seconds_left(self, now: Optional[datetime] = None) -> float:
        return (parse_ts(self.expires_at) - (now or utc_now())).total_seconds()

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Optional[Path] = None) -> "Lease":
        values, extra = cls.split(data)
        try:
            values["state"] = LeaseState(values.get("state", "held"))
            values["token"] = int(values["token"])
            for key in ("task_id", "agent_id", "acquired_at", "expires_at"):
                if not isinstance(values[key], str):
                    raise ValueError(f"{key} must be a string")
            parse_ts(values["expires_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"malformed lease: {exc}", path=path,
                                  hint="fix or delete the lease file; the task's claim is unknown") from None
        return cls(**values, extra=extra)


@dataclass(frozen=True)
class Assignment:
    """A lease a planner claimed for an agent, waiting for that agent to acknowledge it."""

    agent_id: str
    lease: Lease
    assigned_at: str  # "" when the record does not say


class LeaseTable(ABC):
    """The stored leases of one workspace and the planner's assignments. Subclasses implement all methods."""

    def now(self) -> datetime:
        """The clock every lease expiry of this table is computed and judged by.

        This host's for the file tables (one host shares them); the server's for a table that
        several hosts share, so that clock skew between hosts cannot hand a task to two agents.
        """
        return utc_now()

    @abstractmethod
    def read(self, task_id: str) -> Optional[Lease]:
        """The task's lease record (held or ended), None only if the task was never claimed."""

    def held_view(self, now: datetime) -> Optional[Callable[[str], bool]]:
        """A cheap test of "is this task leased (held, not expired) at ``now``", from what this process
        has read of the table, brought up to date once here; None when the table keeps no such view.

        For skipping work only (claim_next passes it to the ready list): a task is read again under
        its lock before anything is done with it. A lease taken after this call is not seen by it.
        """
        return None

    @abstractmethod
    def write(self, lease: Lease) -> None:
        """Store ``lease`` as its task's record, durably; call under ``lock(lease.task_id)``."""

    @abstractmethod
    def lock(self, task_id: str, timeout: Optional[float] = None) -> ContextManager[Any]:
        """Hold the task's lease against every other process (LockTimeout after ``timeout`` s; 0: no wait)."""

    @abstractmethod
    def list(self, *, errors: Optional[list] = None) -> list[Lease]:
        """Every lease record, by task id; unreadable ones raise, or go to ``errors`` when it is a list."""

    @abstractmethod
    def where(self, task_id: str) -> str:
        """Where the task's lease is kept, for messages (a path, or a key)."""

    @abstractmethod
    def assign(self, lease: Lease, assigned_at: str) -> None:
        """Leave ``lease`` for its agent to pick up (one assignment per agent; a new one replaces it)."""

    @abstractmethod
    def assignment(self, agent_id: str) -> Optional[Assignment]:
        """The agent's waiting assignment, or None."""

    @abstractmethod
    def clear_assignment(self, agent_id: str, token: Optional[int] = None) -> bool:
        """Remove the agent's assignment (only if it carries ``token``, when given); whether one was removed."""

    @abstractmethod
    def assignments(self, *, errors: Optional[list] = None) -> list[Assignment]:
        """Every waiting assignment, by agent id."""


_ABSENT: Any = object()


class FileLeaseTable(LeaseTable):
    """A YAML file per lease in ``.swarm/claims/``, a file per assignment in ``.swarm/assignments/``.

    The leases of earlier versions (the journal migrates them); the assignments of every version.

    Lease files are replaced atomically and never deleted (the next claim's token is read
    from them); their locks are sidecars in ``.swarm/locks/``.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.claims_dir = cfg.runtime_dir / "claims"
        self.assignments_dir = cfg.runtime_dir / "assignments"

    def _file(self, task_id: str) -> Path:
        return self.claims_dir / f"{task_id}.yaml"

    def where(self, task_id: str) -> str:
        return str(self._file(task_id))

    def read(self, task_id: str) -> Optional[Lease]:
        path = self._file(task_id)
        data = load_yaml_file(path, default=_ABSENT)
        if data is _ABSENT:
            return None
        if data is None:
            raise ValidationError("lease file is empty", path=path, line=1, task_id=task_id,
                                  hint="restore it, or delete it if the task is not claimed (its token history is lost)")
        return Lease.from_dict(expect_mapping(data, path, "a lease", line=1), path)

    def write(self, lease: Lease) -> None:
        atomic_write(self._file(lease.task_id), dump_yaml(lease.to_dict()))

    def lock(self, task_id: str, timeout: Optional[float] = None) -> ContextManager[Any]:
        return locked(self._file(task_id), lock_dir=self.cfg.lock_dir,
                      timeout=self.cfg.lock_timeout if timeout is None else timeout)

    @staticmethod
    def _names(directory: Path) -> list[str]:
        try:
            return sorted(n[:-5] for n in os.listdir(directory) if n.endswith(".yaml") and not n.startswith("."))
        except FileNotFoundError:
            return []

    def list(self, *, errors: Optional[list] = None) -> list[Lease]:
        leases = []
        for name in self._names(self.claims_dir):
            try:
                lease = self.read(name)
            except SwarmError as exc:
                if errors is None:
                    raise
                exc.task_id = exc.task_id or name
                errors.append(exc)
                continue
            if lease is not None:
                leases.append(lease)
        return leases

    def _assignment_file(self, agent_id: str) -> Path:
        return self.assignments_dir / f"{agent_id}.yaml"

    def assign(self, lease: Lease, assigned_at: str) -> None:
        path = self._assignment_file(lease.agent_id)
        with locked(path, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout):
            atomic_write(path, dump_yaml({**lease.to_dict(), "assigned_at": assigned_at}))

    def assignment(self, agent_id: str) -> Optional[Assignment]:
        path = self._assignment_file(agent_id)
        data = load_yaml_file(path, default=_ABSENT)
        if data is _ABSENT:
            return None
        data = dict(expect_mapping(data, path, "an assignment", line=1))
        assigned_at = str(data.pop("assigned_at", "") or "")
        return Assignment(agent_id, Lease.from_dict(data, path), assigned_at)

    def clear_assignment(self, agent_id: str, token: Optional[int] = None) -> bool:
        path = self._assignment_file(agent_id)
        with locked(path, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout):
            found = self.assignment(agent_id)
            if found is None or (token is not None and found.lease.token != token):
                return False
            path.unlink()
            return True

    def assignments(self, *, errors: Optional[list] = None) -> list[Assignment]:
        found = []
        for name in self._names(self.assignments_dir):
            try:
                one = self.assignment(name)
            except SwarmError as exc:
                if errors is None:
                    raise
                errors.append(exc)
                continue
            if one is not None:
                found.append(one)
        return found
