"""The agent registry: which agents there are, what each is doing, and when each was last seen.

``AgentRegistry`` is the interface the rest of Swarmfile sees; ``agent_discovery`` (register,
heartbeat, deregister, discover, liveness, the command line) is a thin caller of it, and nothing
else knows how the registry is kept. ``stores.agent_registry(cfg)`` picks the implementation
``swarm.yaml``'s ``backend:`` names; ``files`` (the default) is agent_registry_file's
``FileAgentRegistry``: heartbeat.yaml in RALF's format.

An agent's entry is a mapping of ``last_seen status current_action current_task role pid host
started_at proc_start`` and any other fields, which every change keeps. The rules of register,
beat and deregister are written once, here, over one primitive an implementation provides:
``update``, a read-modify-write of one agent's entry that no other writer can interleave with.

What every implementation guarantees (``tests/test_agent_registry.py`` holds each to it):

- concurrent writers from many processes lose no update, and an agent's fields that a change
  does not name are kept;
- a registry that cannot be read raises (with where and what to do), it is never "no agents",
  and a writer never replaces it.
"""

from __future__ import annotations

import os
import re
from abc import abstractmethod
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Mapping, Optional, TypeVar

from .clock import HOSTNAME, format_ts
from .config import validate_id
from .errors import NotFoundError, ValidationError
from .liveness import process_start_time
from .store_check import WorkspaceStore

__all__ = ["AgentRegistry", "AgentStatus", "KEEP", "KNOWN_FIELDS", "FIELD_NAME", "as_pid"]

R = TypeVar("R")


class AgentStatus(str, Enum):
    """Statuses this module writes. A registry may hold others; they are kept as written."""

    RUNNING = "running"
    IDLE = "idle"
    WAITING = "waiting"
    STOPPED = "stopped"  # deregistered: inactive whatever its last_seen


KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()  # leave the field as it is (None clears it)

# Fields with a meaning here, in the order they are written for a new agent.
KNOWN_FIELDS = ("last_seen", "status", "current_action", "current_task", "role", "pid", "host", "started_at",
                "proc_start")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def as_pid(value: Any) -> Optional[int]:
    """``value`` as a pid (a positive int, or digits), else None."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _plain(value: Any, name: str) -> Any:
    """``value`` as something every registry can store (YAML's plain values); ValidationError otherwise."""
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, name) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item, name) for key, item in value.items()}
    raise ValidationError(f"field {name!r} cannot be stored: {type(value).__name__} is not a YAML value",
                          hint="pass str, int, float, bool, None, list or dict")


def _clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    for name in fields:
        if not FIELD_NAME.fullmatch(name):
            raise ValidationError(f"invalid field name {name[:60]!r}", hint="use letters, digits and '_'")
    return {name: _plain(value, name) for name, value in fields.items()}


def _identity(updates: dict[str, Any], record: bool) -> dict[str, Any]:
    """pid, host and proc_start to record, taken out of ``updates``.

    With ``record`` they describe this process unless ``updates`` names another pid or host;
    without it they change only when ``updates`` names a pid.
    """
    if not record and "pid" not in updates:
        return {}
    pid = updates.pop("pid", os.getpid())
    if pid is not None and as_pid(pid) != pid:
        raise ValidationError(f"pid must be a positive integer or None, got {pid!r}")
    host = updates.pop("host", HOSTNAME)
    if "proc_start" in updates:
        start = updates.pop("proc_start")
    else:
        start = process_start_time(pid) if pid is not None and host == HOSTNAME else None
    return {"pid": pid, "host": host, "proc_start": start}


def _apply(entry: dict, updates: Mapping[str, Any]) -> None:
    for key, value in updates.items():
        if key == "proc_start" and value is None:
            entry.pop(key, None)  # unknown start time: record nothing rather than null
        else:
            entry[key] = value


class AgentRegistry(WorkspaceStore):
    """The agent registry of one workspace.

    Subclasses implement the abstract methods; ``register``, ``beat``, ``deregister`` and
    ``get`` are built on them (an implementation may override them to be faster, not different).
    """

    @abstractmethod
    def entries(self) -> Optional[dict[str, dict]]:
        """Every agent's entry by id, in registration order; None when there is no registry yet.

        Raises ParseError/ValidationError naming where the registry is and what is wrong.
        """

    @abstractmethod
    def update(self, agent_id: str, change: Callable[[dict, str], Optional[R]], *, create: bool) -> Optional[R]:
        """Run ``change(entries, now)`` as one step that no other writer interleaves with, and store the result.

        ``entries`` maps ids to entries and holds ``agent_id``'s entry when there is one (it may
        hold others: only ``agent_id``'s may be added, changed or deleted). ``now`` is the time
        of the change as stored. ``change`` returns None to store nothing, which ``update``
        returns. ``create`` False: a registry that does not exist yet is left so (returns None).
        """

    # where, create, owns and check: as every WorkspaceStore

    def clock(self) -> Optional[datetime]:
        """The time on the clock that stamps ``last_seen`` (a server's), to judge ages by; None: this host's."""
        return None

    # ------------------------------------------------------------------------ built on the above

    def get(self, agent_id: str) -> Optional[dict]:
        """The entry of ``agent_id``, or None when it is not registered."""
        validate_id(agent_id, "agent id")
        entry = (self.entries() or {}).get(agent_id)
        return None if entry is None else dict(entry)

    def register(self, agent_id: str, role: Optional[str] = None, **fields: Any) -> dict:
        """Add or re-register ``agent_id`` as running now (see ``agent_discovery.register_agent``); its entry."""
        validate_id(agent_id, "agent id")
        updates = _clean_fields(fields)
        identity = _identity(updates, record=True)
        role = _plain(role, "role")

        def change(beats: dict, now: str) -> dict:
            entry = beats.setdefault(agent_id, {})
            values = {"last_seen": now, "status": AgentStatus.RUNNING.value, "current_action": None,
                      "current_task": None}
            if role is not None or "role" not in entry:
                values["role"] = role
            values.update(identity, started_at=now)
            values.update(updates)
            _apply(entry, values)
            return dict(entry)

        return self.update(agent_id, change, create=True)  # type: ignore[return-value]

    def beat(self, agent_id: str, status: Optional[str] = None, current_action: Any = KEEP,
             current_task: Any = KEEP, *, record_process: bool = True, add_missing: bool = True,
             **fields: Any) -> dict:
        """Mark ``agent_id`` as seen now (see ``agent_discovery.heartbeat``); its entry.

        Raises NotFoundError, storing nothing, for an agent not registered when ``add_missing`` is False.
        """
        validate_id(agent_id, "agent id")
        updates = _clean_fields(fields)
        identity = _identity(updates, record=record_process)
        given = {"current_action": current_action, "current_task": current_task}
        given = {key: _plain(value, key) for key, value in given.items() if value is not KEEP}
        status = _plain(status, "status")

        def change(beats: dict, now: str) -> dict:
            if not add_missing and not isinstance(beats.get(agent_id), dict):
                raise NotFoundError(f"agent {agent_id} is not registered", path=self.where(),
                                    hint=f"register it first: python lib/agent_discovery.py register {agent_id}")
            entry = beats.setdefault(agent_id, {})
            values: dict[str, Any] = {"last_seen": now}
            if status is not None:
                values["status"] = status
            elif str(entry.get("status") or AgentStatus.STOPPED.value).lower() == AgentStatus.STOPPED.value:
                values["status"] = AgentStatus.RUNNING.value  # beating again means alive again
            values.update(given)
            values.update(identity)
            values.update(updates)
            _apply(entry, values)
            return dict(entry)

        return self.update(agent_id, change, create=True)  # type: ignore[return-value]

    def deregister(self, agent_id: str, *, remove: bool = False) -> Optional[dict]:
        """Mark ``agent_id`` stopped (``remove``: delete its entry); the entry as left (or as it was,
        when removed), or None, storing nothing, when the agent or the registry does not exist."""
        validate_id(agent_id, "agent id")

        def change(beats: dict, now: str) -> Optional[dict]:
            entry = beats.get(agent_id)
            if entry is None:
                return None
            if remove:
                del beats[agent_id]
            else:
                _apply(entry, {"last_seen": now, "status": AgentStatus.STOPPED.value, "current_action": None})
            return dict(entry)

        return self.update(agent_id, change, create=False)
