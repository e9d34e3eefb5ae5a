"""The task board: the tasks of one workspace as every host sees them, and claims taken from it.

On the file backend there is no board: every process reads the one checkout's Markdown
(task_store, ready_query) and that is the board. On a Redis backend with ``task_board: true`` in
swarm.yaml, the operator checkout (where people edit the Markdown and the planner runs) publishes
every task to the server each planning round (board_sync.publish), and executors on any host take
the next ready task, and its text, from there (``TaskBoard``; redis_board's ``RedisTaskBoard``).

What a board keeps per task is a ``BoardEntry``: the facts the ready query and the claim judge by
(status, priority, dependencies, whether it may be claimed at all) and the file's text, so that an
executor without the file can run it. ``seen`` is the lease the Markdown showed when the entry was
published (``stamp``): while the lease is still that one, the Markdown (and so a person's edit) is
the word on the task's status; once the lease has moved on, the lease's own mirror is, until the
planner has written it into the Markdown (board_sync.mirror) and published again.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from . import tasks as taskmod
from .lease_store import Lease

__all__ = ["BoardEntry", "TaskBoard", "stamp", "order_key", "digest", "copy_path", "board_status"]

PathLike = Union[str, "os.PathLike[str]"]

# Markdown statuses whose task a claim may take when its lease allows (claims.claim_task's rule).
CLAIMABLE = frozenset({taskmod.Status.PENDING.value, taskmod.Status.CLAIMED.value, taskmod.Status.IN_PROGRESS.value})


def stamp(lease: Optional[Lease]) -> str:
    """The part of a lease its Markdown mirror shows: token and state (and whether work started)."""
    if lease is None:
        return ""
    return f"{lease.token}:{lease.state.value}:{1 if lease.acknowledged_at else 0}"


def order_key(task: taskmod.Task) -> tuple[float, str]:
    """(score, member) of a task in a sorted set that orders as ``tasks.ready_order_key``.

    Higher priority first (the score is minus the rank); equal scores sort by member, bytewise:
    the Created moment in milliseconds (zero-padded; none sorts last), then the task id.
    """
    moment = task.created_at
    millis = min(max(int(moment.timestamp() * 1000), 0), 10**15 - 1) if moment else 10**15 - 1
    return -task.priority_rank, f"{millis:015d}|{task.task_id}"


def board_status(entry: "BoardEntry", lease: Optional[Lease]) -> str:
    """The task's status as the board knows it: the Markdown's while its lease is the one the Markdown
    showed (``seen``), else the lease's own mirror (the claim script's rule; pending when it has none)."""
    if lease is None or stamp(lease) == entry.seen:
        return entry.status
    return str((lease.mirror or {}).get("Status") or taskmod.Status.PENDING.value)


def copy_path(runtime_dir: Path, task_id: str) -> Path:
    """Where a host keeps its copy of a published task's file for an agent CLI that needs a path.

    Under the runtime folder (``.swarm/tasks/``), never tasks/active: only the operator checkout
    holds the Markdown people edit.
    """
    return runtime_dir / "tasks" / f"{task_id}.md"


def digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", errors="surrogateescape")).hexdigest()


@dataclass(frozen=True)
class BoardEntry:
    """One published task (see the module docstring)."""

    task_id: str
    title: str
    status: str  # the Status value, or the Markdown's own words when they name none
    priority: str  # as written ("high", "7"); "" when the file has none
    created: str  # as written; "" when none
    depends_on: tuple[str, ...]
    parent: str  # "" when none
    path: str  # the file, relative to the operator's root
    text: str  # the whole file
    eligible: bool  # not split, not a parent, its id used once: a claim may take it when ready
    seen: str = ""  # stamp() of the lease the Markdown showed when published
    fields: dict = field(default_factory=dict)  # the header fields, for the ready list
    files_to_modify: tuple[str, ...] = ()

    @property
    def sha(self) -> str:
        return digest(self.text)

    @classmethod
    def of(cls, task: taskmod.Task, text: str, path: str, eligible: bool, seen: str) -> "BoardEntry":
        status = task.status.value if task.status is not None else (task.status_text or "")
        return cls(task_id=task.task_id, title=task.title, status=status, priority=task.priority_text or "",
                   created=task.created or "", depends_on=tuple(task.depends_on), parent=task.parent or "",
                   path=path, text=text, eligible=eligible, seen=seen, fields=dict(task.fields),
                   files_to_modify=tuple(task.files_to_modify))

    def meta(self) -> dict[str, Any]:
        """Everything but the text, as JSON can hold it."""
        return {"task_id": self.task_id, "title": self.title, "status": self.status, "priority": self.priority,
                "created": self.created, "depends_on": list(self.depends_on), "parent": self.parent,
                "path": self.path, "eligible": self.eligible, "seen": self.seen, "fields": self.fields,
                "files_to_modify": list(self.files_to_modify)}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], text: str = "") -> "BoardEntry":
        return cls(task_id=str(meta["task_id"]), title=str(meta.get("title", "")), status=str(meta.get("status", "")),
                   priority=str(meta.get("priority", "")), created=str(meta.get("created", "")),
                   depends_on=tuple(meta.get("depends_on") or ()), parent=str(meta.get("parent") or ""),
                   path=str(meta.get("path", "")), text=text, eligible=bool(meta.get("eligible")),
                   seen=str(meta.get("seen", "")), fields=dict(meta.get("fields") or {}),
                   files_to_modify=tuple(meta.get("files_to_modify") or ()))

    def task(self, path: Optional[Path] = None) -> taskmod.Task:
        """A Task of the header facts alone (no sections or checklist), at ``path``: for lists."""
        status = taskmod.Status.parse(self.status)
        return taskmod.Task(
            task_id=self.task_id, title=self.title, path=path, fields=dict(self.fields), field_lines={},
            status=status, status_text=self.status, priority=taskmod.Priority.parse(self.priority),
            priority_text=self.priority or None, created=self.created or None, depends_on=self.depends_on,
            parent=self.parent or None, assigned_to=None, sub_tasks=(), sections=(), checklist=(),
            files_to_modify=self.files_to_modify)


class TaskBoard(ABC):
    """The published tasks of one workspace. Subclasses implement all methods."""

    @abstractmethod
    def publish(self, entries: Iterable[BoardEntry], *, publisher: str, withdraw: Iterable[str] = (),
                done: Iterable[str] = ()) -> None:
        """Put ``entries`` on the board (replacing those of the same ids), remove the ``withdraw`` ids.

        ``done`` are ids that count as completed for dependencies without an entry of their own
        (a task in the completed folder). ``publisher`` names the operator checkout.
        """

    @abstractmethod
    def published(self) -> dict[str, tuple[str, str]]:
        """Every published task id with the digest of its text and its ``seen`` stamp."""

    @abstractmethod
    def entry(self, task_id: str) -> Optional[BoardEntry]:
        """The published task with its text, or None."""

    @abstractmethod
    def entries(self, errors: Optional[list] = None) -> list[BoardEntry]:
        """Every published task, texts left out: for lists (``swarm.py status``).

        A task whose record does not parse raises ValidationError, or with ``errors`` is left out
        and its error appended there.
        """

    @abstractmethod
    def ready(self) -> list[BoardEntry]:
        """The tasks a claim may take now, in the order ``claim`` takes them (texts left out)."""

    @abstractmethod
    def claim(self, agent_id: str, ttl: float, *, pid: Optional[int], host: Optional[str],
              proc_start: Optional[int], skip: Iterable[str] = (), only: Optional[str] = None) -> Optional[Lease]:
        """Lease the first ready task (or ``only`` that one) to ``agent_id``, atomically; None if none is.

        The lease is the lease table's, with the next fencing token. With ``only``, a task that
        cannot be taken raises AlreadyClaimed, NotClaimable or NotFoundError instead of None.
        """

    @abstractmethod
    def publisher(self) -> Optional[str]:
        """Who published the board last (host and root of the operator checkout), or None: no board."""

    @abstractmethod
    def requeue(self, task_id: str) -> None:
        """A lease of the task ended without completing it: let claims look at it again."""
