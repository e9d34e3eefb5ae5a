"""Which implementation of each store a workspace uses: swarm.yaml ``backend:``.

The one place that knows every implementation; everything else asks here for the store of its
workspace and talks only to the interface: ``lease_table`` (lease_store.LeaseTable),
``event_log`` (event_log.EventLog), ``agent_registry`` (agent_registry.AgentRegistry), and
``reservations``, ``chat_log``, ``merge_queue`` (reservation_store, chat_store, merge_queue_store). A backend
is one entry of ``BACKENDS`` naming the factory (a class, or a function taking the Config) of
each store, so a new backend registers in one place; a factory imports its module (and any
client library) when first called, so a command line that never uses a store never loads it. One instance per workspace and
process, so a store that keeps an index or a connection keeps it between calls.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .config import Config
from .errors import ValidationError

if TYPE_CHECKING:  # the interfaces, for types only: a store's module loads when its store is first made
    from .agent_registry import AgentRegistry
    from .chat_store import ChatLog
    from .event_log import EventLog
    from .lease_store import LeaseTable
    from .merge_queue_store import MergeQueueStore
    from .reservation_store import ReservationTable
    from .task_board import TaskBoard

__all__ = ["Backend", "BACKENDS", "lease_table", "event_log", "agent_registry", "task_board",
           "journal_lease_table", "file_event_log", "file_agent_registry",
           "reservations", "chat_log", "merge_queue"]

PathLike = Union[str, "os.PathLike[str]"]

_REDIS_SCHEMES = ("redis", "rediss", "unix")  # redis_backend.SCHEMES, named here so this module loads no client code


# File reservations, chat and the merge queue's order and lock: a file each by default (the
# defaults below), on the Redis server for a Redis URL (BACKENDS, after the table).


def file_reservations(cfg: Config) -> "ReservationTable":
    from .reservation_store import FileReservationTable

    return FileReservationTable(cfg)


def redis_reservations(cfg: Config) -> "ReservationTable":
    from .redis_reservations import RedisReservationTable

    return RedisReservationTable(cfg)


def file_chat_log(cfg: Config) -> "ChatLog":
    from .chat_log_file import FileChatLog

    return FileChatLog(cfg)


def redis_chat_log(cfg: Config) -> "ChatLog":
    from .redis_chat import RedisChatLog

    return RedisChatLog(cfg)


def file_merge_queue(cfg: Config) -> "MergeQueueStore":
    from .merge_queue_store import FileMergeQueue

    return FileMergeQueue(cfg)


def redis_merge_queue(cfg: Config) -> "MergeQueueStore":
    from .redis_merge_queue import RedisMergeQueue

    return RedisMergeQueue(cfg)


@dataclass(frozen=True)
class Backend:
    """The stores of one backend: each a class, or any callable that makes the store from a Config."""

    lease_table: Callable[[Config], "LeaseTable"]
    event_log: Callable[[Config], "EventLog"]
    agent_registry: Callable[[Config], "AgentRegistry"]
    reservations: Callable[[Config], "ReservationTable"] = file_reservations
    chat_log: Callable[[Config], "ChatLog"] = file_chat_log
    merge_queue: Callable[[Config], "MergeQueueStore"] = file_merge_queue


# Each implementation is imported when its first store is made, so that a command line loads only
# the stores it uses (agent_discovery.py's start-up is benchmarked).


def journal_lease_table(cfg: Config) -> "LeaseTable":
    from .lease_journal import JournalLeaseTable

    return JournalLeaseTable(cfg)


def redis_lease_table(cfg: Config) -> "LeaseTable":
    from .redis_lease import RedisLeaseTable

    return RedisLeaseTable(cfg)


def redis_event_log(cfg: Config) -> "EventLog":
    from .redis_events import RedisEventLog

    return RedisEventLog(cfg, file_event_log(cfg))  # events.yaml stays, as the stream's mirror


def redis_agent_registry(cfg: Config) -> "AgentRegistry":
    from .redis_registry import RedisAgentRegistry

    return RedisAgentRegistry(cfg)


def file_event_log(cfg: Config, path: Optional[Path] = None) -> "EventLog":
    from .event_log_file import FileEventLog

    return FileEventLog(cfg, path)


def file_agent_registry(cfg: Config, path: Optional[Path] = None) -> "AgentRegistry":
    from .agent_registry_file import FileAgentRegistry

    return FileAgentRegistry(cfg, path)


# swarm.yaml ``backend:`` value (or the scheme of a URL there) -> its stores
BACKENDS: dict[str, Backend] = {
    # the default: leases in one append-only journal (one fsync per change), events.yaml, heartbeat.yaml.
    # lease_store's FileLeaseTable (a YAML file per lease in .swarm/claims/) is no longer one: the
    # journal reads those files once, on first use, and a table that still wrote them would fork the truth.
    "files": Backend(journal_lease_table, file_event_log, file_agent_registry),
    "journal": Backend(journal_lease_table, file_event_log, file_agent_registry),  # its name before it was the default
    # a Redis URL: leases (redis_lease), the event log (redis_events: a Stream, mirrored into the operator
    # host's events.yaml by event_mirror) and the agent registry (redis_registry) on the server, shared by every host
    **{scheme: Backend(redis_lease_table, redis_event_log, redis_agent_registry) for scheme in _REDIS_SCHEMES},
}

for _scheme in _REDIS_SCHEMES:  # reservations, chat and the merge queue: shared by every host on the server
    BACKENDS[_scheme] = replace(BACKENDS[_scheme], reservations=redis_reservations, chat_log=redis_chat_log,
                                merge_queue=redis_merge_queue)

_made: dict[tuple, Any] = {}
_making = threading.Lock()


def _backend(cfg: Config) -> tuple[str, Backend]:
    name = cfg.settings.get("backend", "files") or "files"
    # a URL (redis://host:6379/0) is the backend its scheme names; the store reads the rest
    kind = name.split("://", 1)[0] if isinstance(name, str) and "://" in name else name
    try:
        return name, BACKENDS[kind]
    except (KeyError, TypeError):
        from .redis_backend import redact  # a password in a mistyped URL is not shown either

        raise ValidationError(f"unknown backend {redact(str(name))!r}", path=cfg.root / "swarm.yaml",
                              hint="use files, journal or a Redis URL (redis://host:6379/0, rediss://..., "
                                   "unix:///path/to/socket)") from None


# The last Config asked about and its table (one tuple, swapped whole: threads read it unlocked).
_last_lease_table: tuple = (None, None)


def lease_table(cfg: Config) -> "LeaseTable":
    """The lease table of ``cfg``'s workspace, as ``swarm.yaml`` ``backend:`` says (default ``files``)."""
    global _last_lease_table
    last = _last_lease_table
    if last[0] is cfg:  # a claim asks four times
        return last[1]
    table = _lease_table(cfg)
    _last_lease_table = (cfg, table)
    return table


def _lease_table(cfg: Config) -> "LeaseTable":
    name, backend = _backend(cfg)
    # Two names of one table share its index; a Redis table is one per URL and namespace.
    server = name if isinstance(name, str) and "://" in name else None
    key = ("lease_table", cfg.root, cfg.runtime_dir, backend.lease_table, server, repr(cfg.settings.get("namespace")))
    table = _made.get(key)
    if table is not None:
        return table
    with _making:
        return _made.setdefault(key, backend.lease_table(cfg))


def _store(kind: str, cfg: Config) -> Any:
    """The ``kind`` store of ``cfg``'s workspace, made again when swarm.yaml changed (a new Config)."""
    name, backend = _backend(cfg)
    key = (kind, cfg.root, name)
    made = _made.get(key)
    if made is not None and made[0] is cfg:
        return made[1]
    with _making:
        made = _made.get(key)
        if made is None or made[0] is not cfg:
            made = _made[key] = (cfg, getattr(backend, kind)(cfg))
        return made[1]


def task_board(cfg: Config) -> Optional["TaskBoard"]:
    """The task board of ``cfg``'s workspace, or None when this checkout's Markdown is the board.

    A board is used with a Redis backend and ``task_board: true`` in swarm.yaml (task_board.py).
    """
    setting = cfg.settings.get("task_board", False)
    if not isinstance(setting, bool):
        raise ValidationError(f"'task_board' must be true or false, got {setting!r:.40}", path=cfg.root / "swarm.yaml",
                              hint="fix swarm.yaml")
    if not setting:
        return None
    name, _ = _backend(cfg)
    if not (isinstance(name, str) and name.split("://", 1)[0] in _REDIS_SCHEMES and "://" in name):
        raise ValidationError("'task_board: true' needs a Redis backend: on files, the checkout is the board",
                              path=cfg.root / "swarm.yaml", hint="set backend: redis://... or remove task_board")
    key = ("task_board", cfg.root, name, repr(cfg.settings.get("namespace")))
    board = _made.get(key)
    if board is None:
        from .redis_board import RedisTaskBoard

        with _making:
            board = _made.setdefault(key, RedisTaskBoard(cfg))
    return board


def _named(path: PathLike, cfg: Config) -> Path:
    named = Path(os.path.expanduser(os.fspath(path)))
    return named if named.is_absolute() else cfg.root / named


def event_log(cfg: Config, *, events_file: Optional[PathLike] = None) -> "EventLog":
    """The event log of ``cfg``'s workspace; ``events_file`` names a log file to use instead
    (always a file, whatever the backend; a relative one is taken from the root)."""
    if events_file is not None:
        return file_event_log(cfg, _named(events_file, cfg))
    return _store("event_log", cfg)


def agent_registry(cfg: Config, *, heartbeat_file: Optional[PathLike] = None) -> "AgentRegistry":
    """The agent registry of ``cfg``'s workspace; ``heartbeat_file`` names a registry file to use
    instead (always a file, whatever the backend; a relative one is taken from the root)."""
    if heartbeat_file is not None:
        return file_agent_registry(cfg, _named(heartbeat_file, cfg))
    return _store("agent_registry", cfg)


def reservations(cfg: Config) -> "ReservationTable":
    """The file reservations of ``cfg``'s workspace (reservation_store.ReservationTable)."""
    return _store("reservations", cfg)


def chat_log(cfg: Config) -> "ChatLog":
    """The chat log of ``cfg``'s workspace (chat_store.ChatLog)."""
    return _store("chat_log", cfg)


def merge_queue(cfg: Config) -> "MergeQueueStore":
    """The merge queue's order and lock of ``cfg``'s workspace (merge_queue_store.MergeQueueStore)."""
    return _store("merge_queue", cfg)
