"""Where the merge queue is kept: the ``MergeQueueStore`` interface and its file implementation.

merge_queue.py holds the rules (what pending means, merging, the done records); a store holds
the queue's records in order and its lock. The queue is a log of records, each a mapping with an
``id`` and an ``op``: ``enqueue`` (with ``branch``, ``task_id``, ``agent_id``, ``base``) or
``done`` (with ``status``); records are only ever appended, so their order is the queue's.
``lock()`` is the merge lock: while one process holds it no other merges, on any host that shares
the store. ``stores.merge_queue(cfg)`` picks the implementation ``swarm.yaml``'s ``backend:``
names; ``files`` (the default) is ``FileMergeQueue``, a Redis URL redis_merge_queue's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .config import Config
from .errors import HAND_FIX, ValidationError
from .fileio import append_line, dump_flow, load_yaml_text, locked
from .yaml_log import read_kept

__all__ = ["MergeQueueStore", "FileMergeQueue", "HEADER", "check_records", "host_lock"]

HEADER = "queue:\n"


def check_records(items: list, where: str) -> list[dict[str, Any]]:
    """``items`` when each is a well-formed queue record; ValidationError naming ``where`` otherwise."""
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or item.get("op") not in ("enqueue", "done"):
            raise ValidationError(f"queue entry {number} is not a mapping with an id and op enqueue|done",
                                  path=where, hint=HAND_FIX)
        if item["op"] == "enqueue" and not all(isinstance(item.get(k), str)
                                               for k in ("branch", "task_id", "agent_id", "base")):
            raise ValidationError(f"queue entry {number} lacks branch, task_id, agent_id or base",
                                  path=where, hint=HAND_FIX)
    return items


@contextmanager
def host_lock(cfg: Config, timeout: float) -> Iterator[Path]:
    """This host's merge lock: a sidecar lock of ``.swarm/merge.lock``; yields the sidecar."""
    with locked(cfg.runtime_dir / "merge.lock", lock_dir=cfg.lock_dir, timeout=timeout) as sidecar:
        yield sidecar


class MergeQueueStore(ABC):
    """The merge queue of one workspace; subclasses implement every method."""

    # Whether other hosts merge this queue's entries too: then a branch is pushed before it is queued.
    shared = False

    @abstractmethod
    def where(self) -> str:
        """Where the queue is kept, for messages (a path, or a key)."""

    @abstractmethod
    def append(self, record: dict[str, Any]) -> None:
        """Add one record at the end of the queue; it is durable once this returns."""

    @abstractmethod
    def records(self) -> list[dict[str, Any]]:
        """Every record in queue order, checked (check_records); [] when there is no queue."""

    @abstractmethod
    def lock(self, timeout: float) -> Any:
        """A context manager holding the merge lock for its ``with`` block.

        Waits at most ``timeout`` seconds, then LockTimeout naming the holder when known.
        """


class FileMergeQueue(MergeQueueStore):
    """``.swarm/merge-queue.yaml``, append-only (one line per record), and this host's merge lock.

    The lock orders the merges of one host; with ``worktrees.remote`` the hosts are kept from
    overwriting each other's merges by the remote, which takes a push of the base only as a
    fast-forward (remote_merge.py).
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.path = cfg.runtime_dir / "merge-queue.yaml"

    def where(self) -> str:
        return str(self.path)

    def append(self, record: dict[str, Any]) -> None:
        append_line(self.path, "- " + dump_flow(record), lock_dir=self.cfg.lock_dir,
                    timeout=self.cfg.lock_timeout, header=HEADER)

    def records(self) -> list[dict[str, Any]]:
        text = read_kept(self.path)  # a torn last line (an append cut short) is not part of the queue
        if text is None:
            return []
        data = load_yaml_text(text, self.path)
        if not isinstance(data, dict) or "queue" not in data:
            raise ValidationError("must be a mapping with a 'queue' list", path=self.path, line=1, hint=HAND_FIX)
        items = data["queue"] if data["queue"] is not None else []
        if not isinstance(items, list):
            raise ValidationError("'queue' must be a list", path=self.path, line=1, hint=HAND_FIX)
        return check_records(items, self.where())

    def lock(self, timeout: float) -> Any:
        return host_lock(self.cfg, timeout)
