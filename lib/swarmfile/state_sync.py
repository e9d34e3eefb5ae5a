"""Shared per-agent state and context in agent-state.yaml (RALF format).

Each agent owns one entry: any keys it likes, plus a ``context`` mapping that the other agents
read to stay out of its way::

    agents:
      executor-1:
        counter: 7                          # free-form state of the agent
        context:
          current_file: lib/fileio.py
          status: working                   # working | blocked | done | waiting
          progress: 40                      # 0-100, or a string such as "3/5"
          message: writing the lock tests
          files_locked: [lib/fileio.py, tests/test_fileio_*.py]
          task_id: TASK-1769952151
          last_update: '2026-11-22T10:00:00.123Z'   # set here on every write
    metadata:
      last_updated: '2026-11-22T10:00:00.123Z'
      updated_by: executor-1

Merging: ``sync_agent_state(agent, {"counter": 8, "context": {"status": "done"}})`` replaces
the top-level keys it names, merges ``context`` one level deep (named fields replaced, the
others kept) and leaves everything else, including keys this module does not know, as it was.
``update_context(agent, status="done")`` does the same for context fields alone.

Writes re-read the file under its lock and replace it atomically; reads take no lock. Errors
(all SwarmError): InvalidIdError for a bad id, ValidationError for a bad value, StateLockError
when the lock stays busy, StateSyncError otherwise. A file that does not parse or has the wrong
shape raises StateParseError/StateShapeError (a StateSyncError that is also a ParseError or
ValidationError) naming the file and line, and is never rewritten.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .clock import format_ts, parse_ts, seconds_since

from .config import Config, load_config, validate_id
from .errors import (InvalidIdError, NotFoundError, ParseError, StateLockError, StateParseError, StateShapeError,
                    StateSyncError, SwarmError, ValidationError)
from .records import Record
from .fileio import YAML_ERROR, atomic_write, dump_yaml, key_line, load_yaml_text, locked, read_text
from .cli import show_time, table

__all__ = [
    "AgentStatus", "AgentContext", "StateParseError", "StateShapeError", "sync_agent_state",
    "update_context", "set_files_locked", "get_agent_state", "get_all_states", "clear_agent_state",
    "reset_all_states", "find_file_conflicts", "get_task_summary", "cleanup_stale",
    "normalize_path", "main",
]

PathLike = Union[str, os.PathLike]
_UNCHANGED = "fix or restore the file by hand; it was not changed"


class AgentStatus(str, Enum):
    """What an agent is doing, as stored in ``context.status``."""

    WORKING = "working"
    BLOCKED = "blocked"
    DONE = "done"
    WAITING = "waiting"


# ---------------------------------------------------------------------------- values

_CONTEXT_FIELDS = ("current_file", "status", "progress", "message", "files_locked", "task_id",
                   "last_update")


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def normalize_path(path: Any, what: str = "path") -> str:
    """``path`` as compared for conflicts: ``./`` prefixes, doubled and trailing slashes removed."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValidationError(f"{what} must be a non-empty path, got {path!r:.80}")
    return posixpath.normpath(path)


def _paths(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(f"files_locked must be a list of paths, got {_kind(value)}")
    # dict.fromkeys: drop duplicates, keep the order the agent gave
    return list(dict.fromkeys(normalize_path(item, "files_locked entry") for item in value))


def _status(value: Any) -> Optional[AgentStatus]:
    if value is None:
        return None
    try:
        return AgentStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in AgentStatus)
        raise ValidationError(f"status must be one of {allowed}, got {value!r:.40}") from None


def _progress(value: Any) -> Union[int, float, str, None]:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip() or "\n" in value:
            raise ValidationError(f"progress must be one line such as '3/5', got {value!r:.40}")
        return value
    # `not 0 <= value <= 100` also refuses NaN
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ValidationError(
            f"progress must be 0-100 or a string such as '3/5', got {value!r:.40}")
    return value


def _optional_str(value: Any, name: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, got {_kind(value)}")
    return value


def _timestamp(value: Any) -> Optional[str]:
    if value is None:
        return None
    try:
        moment = parse_ts(value)
    except ValueError:
        raise ValidationError(f"last_update must be an ISO-8601 time, got {value!r:.40}") from None
    return value if isinstance(value, str) else format_ts(moment)


@dataclass
class AgentContext(Record):
    """The ``context`` of one agent; ``extra`` keeps the keys this module does not know."""

    STORED_ORDER = _CONTEXT_FIELDS  # every known field, None as null

    current_file: Optional[str] = None
    status: Optional[AgentStatus] = None
    progress: Union[int, float, str, None] = None
    message: Optional[str] = None
    files_locked: list[str] = field(default_factory=list)
    task_id: Optional[str] = None
    last_update: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> "AgentContext":
        """Validate and normalise ``data``; ValidationError/InvalidIdError name the bad field."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValidationError(f"context must be a mapping, got {_kind(data)}")
        current = data.get("current_file")
        task_id = data.get("task_id")
        return cls(
            current_file=None if current is None else normalize_path(current, "current_file"),
            status=_status(data.get("status")),
            progress=_progress(data.get("progress")),
            message=_optional_str(data.get("message"), "message"),
            files_locked=_paths(data.get("files_locked")),
            task_id=None if task_id is None else validate_id(task_id, "task id"),
            last_update=_timestamp(data.get("last_update")),
            extra=cls.split(data)[1],
        )


def _split_state(state: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a caller's update; returns (top-level keys, context fields)."""
    if not isinstance(state, dict):
        raise ValidationError(f"state must be a mapping, got {_kind(state)}")
    top = dict(state)
    for key in top:
        if not isinstance(key, str) or not key:
            raise ValidationError(f"state keys must be non-empty strings, got {key!r:.40}")
    context = top.pop("context", None)
    if context is None:
        context = {}
    AgentContext.from_dict(context)  # refuse bad values before taking the lock
    # known context fields are normalised by AgentContext; anything else is stored as given
    unknown = {k: v for k, v in context.items() if k not in _CONTEXT_FIELDS}
    try:
        dump_yaml({"state": top, "context": unknown})
    except YAML_ERROR as exc:
        raise ValidationError(f"state holds a value YAML cannot store: {exc}") from None
    return top, context


# ---------------------------------------------------------------------------- the file


def _where(state_file: Optional[PathLike], root: Optional[PathLike]) -> tuple[Path, Config]:
    cfg = load_config(root=root)
    return (cfg.state_file if state_file is None else Path(state_file)), cfg


def _shape_error(reason: str, path: Path, line: Optional[int]) -> StateShapeError:
    return StateShapeError(reason, path=path, line=line, hint=_UNCHANGED)


def _read_doc(path: Path) -> dict[str, Any]:
    """The whole document, checked; a missing file reads as one with no agents."""
    try:
        text = read_text(path)
        data = load_yaml_text(text, path)
    except FileNotFoundError:
        return {"agents": {}, "metadata": {}}
    except ParseError as exc:
        raise StateParseError(exc.reason, path=exc.path, line=exc.line, hint=exc.hint) from None
    except OSError as exc:
        raise StateSyncError(f"could not read: {exc.strerror or exc}", path=path) from None
    if data is None:
        raise _shape_error("is empty; expected 'agents:' and 'metadata:'", path, 1)
    if not isinstance(data, dict):
        raise _shape_error(f"must be a mapping with 'agents' and 'metadata', got {_kind(data)}",
                           path, 1)
    agents = data.get("agents")
    if agents is None:  # `agents:` left blank by hand means no agents, like RALF's `agents: {}`
        agents = {}
        data = {**data, "agents": agents} if "agents" in data else {"agents": agents, **data}
    if not isinstance(agents, dict):
        raise _shape_error(f"'agents' must be a mapping of agent id to state, got {_kind(agents)}",
                           path, key_line(text, "agents"))
    for agent_id, entry in agents.items():
        try:
            validate_id(agent_id, "agent id")
            if not isinstance(entry, dict):
                raise ValidationError(f"must be a mapping, got {_kind(entry)}")
            AgentContext.from_dict(entry.get("context"))
        except (ValidationError, InvalidIdError) as exc:
            raise _shape_error(f"agent {agent_id!r:.60}: {exc.reason}", path,
                               key_line(text, agent_id, nested=True)) from None
    metadata = data.get("metadata")
    if metadata is None:
        data["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise _shape_error(f"'metadata' must be a mapping, got {_kind(metadata)}", path,
                           key_line(text, "metadata"))
    return data


def _update(state_file: Optional[PathLike], root: Optional[PathLike], timeout: Optional[float],
            updated_by: str, now: Optional[datetime],
            change: Callable[[dict[str, Any]], tuple[Any, bool]]) -> Any:
    """Run ``change(agents) -> (result, changed)`` under the lock; rewrite the file if changed."""
    path, cfg = _where(state_file, root)
    wait = cfg.lock_timeout if timeout is None else timeout
    try:
        with locked(path, lock_dir=cfg.lock_dir, timeout=wait, error=StateLockError):
            doc = _read_doc(path)
            result, changed = change(doc["agents"])
            if changed:
                doc["metadata"]["last_updated"] = format_ts(now)
                doc["metadata"]["updated_by"] = updated_by
                atomic_write(path, dump_yaml(doc))
    except SwarmError:
        raise
    except OSError as exc:  # after SwarmError: StateLockError is a TimeoutError, an OSError
        raise StateSyncError(f"could not update: {exc.strerror or exc}", path=path,
                             hint="check permissions and free space; the file was not changed"
                             ) from None
    return result


# ---------------------------------------------------------------------------- writes


def sync_agent_state(agent_id: str, state: dict[str, Any], timeout: Optional[float] = None,
                     state_file: Optional[PathLike] = None, *, root: Optional[PathLike] = None,
                     now: Optional[datetime] = None) -> bool:
    """Merge ``state`` into the agent's entry and stamp ``context.last_update``; returns True.

    Top-level keys of ``state`` replace the stored ones; a ``context`` mapping in it is merged
    one level deep. ``timeout`` is the lock wait (default: the config's lock timeout).
    Raises StateLockError when the lock is busy, StateSyncError for a bad file.
    """
    agent_id = validate_id(agent_id, "agent id")
    top, context = _split_state(state)

    def change(agents: dict[str, Any]) -> tuple[bool, bool]:
        entry = agents.setdefault(agent_id, {})
        merged = dict(entry.get("context") or {})
        merged.update(context)
        fields = AgentContext.from_dict(merged)
        fields.last_update = format_ts(now)
        entry.update(top)
        entry["context"] = fields.to_dict()
        return True, True

    return _update(state_file, root, timeout, agent_id, now, change)


def update_context(agent_id: str, *, timeout: Optional[float] = None,
                   state_file: Optional[PathLike] = None, root: Optional[PathLike] = None,
                   now: Optional[datetime] = None, **fields: Any) -> bool:
    """Set context fields of the agent (``status=``, ``progress=``, ...), keeping the others."""
    return sync_agent_state(agent_id, {"context": fields}, timeout, state_file, root=root, now=now)


def set_files_locked(agent_id: str, paths: Iterable[str], timeout: Optional[float] = None,
                     state_file: Optional[PathLike] = None, *, root: Optional[PathLike] = None,
                     now: Optional[datetime] = None) -> bool:
    """Replace the agent's ``files_locked`` with ``paths`` (normalised, duplicates dropped)."""
    if isinstance(paths, (str, bytes)):
        raise ValidationError("paths must be a list of paths, not one string")
    return update_context(agent_id, timeout=timeout, state_file=state_file, root=root, now=now,
                          files_locked=list(paths))


def clear_agent_state(agent_id: str, timeout: Optional[float] = None,
                      state_file: Optional[PathLike] = None, *, root: Optional[PathLike] = None,
                      updated_by: Optional[str] = None, now: Optional[datetime] = None) -> bool:
    """Remove the agent's entry; False when it had none (the file is then left alone)."""
    agent_id = validate_id(agent_id, "agent id")

    def change(agents: dict[str, Any]) -> tuple[bool, bool]:
        found = agents.pop(agent_id, None) is not None  # entries are mappings, never None
        return found, found

    return _update(state_file, root, timeout, updated_by or agent_id, now, change)


def reset_all_states(timeout: Optional[float] = None, state_file: Optional[PathLike] = None,
                     *, root: Optional[PathLike] = None, updated_by: str = "system",
                     now: Optional[datetime] = None) -> list[str]:
    """Empty ``agents``, keeping metadata and other keys; returns the ids removed."""

    def change(agents: dict[str, Any]) -> tuple[list[str], bool]:
        removed = list(agents)
        agents.clear()
        return removed, True

    return _update(state_file, root, timeout, updated_by, now, change)


def cleanup_stale(timeout: Optional[float] = None, now: Optional[datetime] = None, *,
                  lock_timeout: Optional[float] = None, state_file: Optional[PathLike] = None,
                  root: Optional[PathLike] = None, updated_by: str = "system") -> list[str]:
    """Remove agents whose ``last_update`` is more than ``timeout`` seconds before ``now``.

    ``timeout`` defaults to the config's ``state.stale_seconds``. An entry without a
    ``last_update`` is kept: nothing proves it stale. Returns the removed ids.
    """
    moment = None if now is None else parse_ts(now)
    if timeout is None:
        timeout = float(load_config(root=root).get("state", "stale_seconds"))

    def change(agents: dict[str, Any]) -> tuple[list[str], bool]:
        stale = []
        for agent_id, entry in agents.items():
            stamp = (entry.get("context") or {}).get("last_update")
            if stamp is not None and seconds_since(stamp, moment) > timeout:
                stale.append(agent_id)
        for agent_id in stale:
            del agents[agent_id]
        return stale, bool(stale)

    return _update(state_file, root, lock_timeout, updated_by, now, change)


# ---------------------------------------------------------------------------- reads


def get_all_states(state_file: Optional[PathLike] = None,
                   *, root: Optional[PathLike] = None) -> dict[str, dict[str, Any]]:
    """Every agent's entry by id ({} when the file does not exist yet)."""
    path, _ = _where(state_file, root)
    return _read_doc(path)["agents"]


def get_agent_state(agent_id: str, state_file: Optional[PathLike] = None,
                    *, root: Optional[PathLike] = None) -> Optional[dict[str, Any]]:
    """The agent's entry, or None when it has none."""
    agent_id = validate_id(agent_id, "agent id")
    return get_all_states(state_file, root=root).get(agent_id)


def _covers(locked_entry: str, path: str) -> bool:
    # Either side may be a glob: a lock on "lib/*.py" covers lib/a.py, and a question about
    # "lib/*" must see a lock on lib/a.py.
    return (locked_entry == path or fnmatch.fnmatchcase(path, locked_entry)
            or fnmatch.fnmatchcase(locked_entry, path))


def find_file_conflicts(path: str, exclude_agent: Optional[str] = None,
                        state_file: Optional[PathLike] = None,
                        *, root: Optional[PathLike] = None) -> list[dict[str, Any]]:
    """The agents whose ``files_locked`` covers ``path``, sorted by agent id.

    Paths are compared after ``normalize_path``; an entry or ``path`` may be an fnmatch glob,
    in which ``*`` also matches ``/``.

    Each conflict is ``{"agent_id", "locked", "status", "task_id", "current_file"}``, where
    ``locked`` is the entry that matched.
    """
    wanted = normalize_path(path)
    if exclude_agent is not None:
        validate_id(exclude_agent, "agent id")
    found = []
    for agent_id, entry in sorted(get_all_states(state_file, root=root).items()):
        if agent_id == exclude_agent:
            continue
        context = entry.get("context") or {}
        for item in context.get("files_locked") or []:
            if _covers(normalize_path(item), wanted):
                found.append({"agent_id": agent_id, "locked": item, "status": context.get("status"),
                              "task_id": context.get("task_id"),
                              "current_file": context.get("current_file")})
                break
    return found


def get_task_summary(task_id: str, state_file: Optional[PathLike] = None,
                     *, root: Optional[PathLike] = None) -> dict[str, Any]:
    """The agents whose ``context.task_id`` is ``task_id``, and their count by status.

    ``{"task_id", "agents": [ids], "by_status": {"working": 2, ...}, "total": n}``; an agent
    without a status counts as ``unknown``.
    """
    task_id = validate_id(task_id, "task id")
    agents: list[str] = []
    by_status: dict[str, int] = {}
    for agent_id, entry in sorted(get_all_states(state_file, root=root).items()):
        context = entry.get("context") or {}
        if context.get("task_id") == task_id:
            agents.append(agent_id)
            status = context.get("status") or "unknown"
            by_status[status] = by_status.get(status, 0) + 1
    return {"task_id": task_id, "agents": agents, "by_status": by_status, "total": len(agents)}


# ---------------------------------------------------------------------------- CLI


def _show_progress(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}%" if isinstance(value, (int, float)) else str(value)


def _agents_table(agents: dict[str, dict[str, Any]]) -> str:
    rows = []
    for agent_id, entry in sorted(agents.items()):
        ctx = entry.get("context") or {}
        rows.append([agent_id, str(ctx.get("status") or "-"), str(ctx.get("task_id") or "-"),
                     _show_progress(ctx.get("progress")), str(ctx.get("current_file") or "-"),
                     ", ".join(map(str, ctx.get("files_locked") or [])) or "-",
                     show_time(ctx.get("last_update"))])
    return table(["AGENT", "STATUS", "TASK", "PROGRESS", "FILE", "LOCKED", "UPDATED"], rows)


def _field_value(raw: str) -> Any:
    """A ``--field`` value: numbers, booleans, null and [..]/{..} as YAML, anything else as text."""
    try:
        value = load_yaml_text(raw, "--field")
    except ParseError:
        return raw
    if value is None or isinstance(value, (bool, int, float)) or raw.lstrip()[:1] in ("[", "{"):
        return value
    return raw


def _progress_arg(raw: str) -> Union[int, float, str]:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


# Each command returns (JSON document, human text, exit code); main prints one of the two.
_Output = tuple[Any, str, int]


def _cmd_show(args: Any, where: dict[str, Any]) -> _Output:
    if args.agent is None:
        agents = get_all_states(**where)
        if not agents:
            return {}, f"no agent state in {_where(**where)[0]}", 0
        return agents, _agents_table(agents), 0
    entry = get_agent_state(args.agent, **where)
    if entry is None:
        raise NotFoundError(f"agent {args.agent!r} has no state", path=_where(**where)[0])
    rest = {k: v for k, v in entry.items() if k != "context"}
    text = _agents_table({args.agent: entry}) + ("\n" + dump_yaml(rest).rstrip() if rest else "")
    return {args.agent: entry}, text, 0


def _cmd_set(args: Any, where: dict[str, Any]) -> _Output:
    state: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for item in args.field or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"--field wants KEY=VALUE, got {item!r}")
        if key.startswith("context."):
            context[key[len("context."):]] = _field_value(raw)
        else:
            state[key] = _field_value(raw)
    options = {"status": args.status, "task_id": args.task, "message": args.message,
               "current_file": args.file, "files_locked": args.lock,
               "progress": None if args.progress is None else _progress_arg(args.progress)}
    # an empty value clears a field: `--task ''`
    context.update({k: (v if v != "" else None) for k, v in options.items() if v is not None})
    if context:
        state["context"] = context
    sync_agent_state(args.agent, state, **where)
    entry = get_agent_state(args.agent, **where) or {}
    return entry, _agents_table({args.agent: entry}), 0


def _removed(removed: list[str], what: str) -> _Output:
    return {"removed": removed}, f"removed {len(removed)} {what}: {', '.join(removed) or '-'}", 0


def _cmd_clear(args: Any, where: dict[str, Any]) -> _Output:
    cleared = clear_agent_state(args.agent, **where)
    return _removed([args.agent] if cleared else [], "agent state(s)")


def _cmd_reset(args: Any, where: dict[str, Any]) -> _Output:
    if not args.yes:
        raise ValidationError("reset removes every agent's state", hint="add --yes to confirm")
    return _removed(reset_all_states(**where), "agent state(s)")


def _cmd_cleanup(args: Any, where: dict[str, Any]) -> _Output:
    return _removed(cleanup_stale(args.timeout, **where), "stale agent state(s)")


def _cmd_conflicts(args: Any, where: dict[str, Any]) -> _Output:
    found = find_file_conflicts(args.path, args.exclude, **where)
    text = table(["AGENT", "LOCKED", "STATUS", "TASK"],
                  [[c["agent_id"], str(c["locked"]), str(c["status"] or "-"),
                    str(c["task_id"] or "-")] for c in found])
    return ({"path": normalize_path(args.path), "conflicts": found},
            text if found else f"no conflicts for {args.path}", 1 if found else 0)


def _cmd_summary(args: Any, where: dict[str, Any]) -> _Output:
    summary = get_task_summary(args.task, **where)
    counts = ", ".join(f"{k} {v}" for k, v in summary["by_status"].items()) or "no agents"
    lines = [f"{summary['task_id']}: {summary['total']} agent(s) ({counts})"]
    lines += [f"  {agent_id}" for agent_id in summary["agents"]]
    return summary, "\n".join(lines), 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python lib/state_sync.py [--root DIR] [--state-file F] [--json] COMMAND ...``."""
    from .cli import non_negative_seconds, parser, print_json, run

    top = parser("state_sync.py", "Show and edit the shared per-agent state (agent-state.yaml).")
    top.add_global("--state-file", metavar="F",
                   help="the state file (default: agent-state.yaml at the root, or swarm.yaml's)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = sub.add_parser("show", help="table of agents (or one agent)")
    cmd.add_argument("agent", nargs="?", metavar="AGENT")
    cmd = sub.add_parser("set", help="merge fields into an agent's state")
    cmd.add_argument("agent", metavar="AGENT")
    cmd.add_argument("--status", choices=[s.value for s in AgentStatus])
    cmd.add_argument("--task", metavar="T", help="task id ('' clears it)")
    cmd.add_argument("--progress", metavar="P", help="0-100 or a string such as 3/5")
    cmd.add_argument("--message", metavar="M")
    cmd.add_argument("--file", metavar="F", help="current file")
    cmd.add_argument("--lock", nargs="*", metavar="PATH",
                     help="replace files_locked (globs allowed; no PATH clears it)")
    cmd.add_argument("--field", action="append", metavar="K=V",
                     help="any state key; context.K sets a context field (repeatable)")
    cmd = sub.add_parser("clear", help="remove an agent's state")
    cmd.add_argument("agent", metavar="AGENT")
    cmd = sub.add_parser("reset", help="remove every agent's state")
    cmd.add_argument("--yes", action="store_true", help="confirm")
    cmd = sub.add_parser("conflicts",
                         help="agents holding PATH in files_locked (exit 1 if any)")
    cmd.add_argument("path", metavar="PATH")
    cmd.add_argument("--exclude", metavar="AGENT", help="ignore this agent's locks")
    cmd = sub.add_parser("summary", help="agents on a task, by status")
    cmd.add_argument("task", metavar="TASK")
    cmd = sub.add_parser("cleanup", help="remove agents not updated lately")
    cmd.add_argument("--timeout", type=non_negative_seconds, metavar="S",
                     help="seconds without an update (default: state.stale_seconds)")
    args = top.parse_args(argv)
    commands = {"show": _cmd_show, "set": _cmd_set, "clear": _cmd_clear, "reset": _cmd_reset,
                "conflicts": _cmd_conflicts, "summary": _cmd_summary, "cleanup": _cmd_cleanup}
    # a relative --state-file means relative to where the command was typed
    state_file = None if args.state_file is None else Path(args.state_file).absolute()
    where = {"state_file": state_file, "root": args.root}

    def body() -> int:
        document, text, code = commands[args.command](args, where)
        if args.json:
            print_json(document)
        else:
            print(text)
        return code

    return run(body)
