"""The agent registry: register, heartbeat, deregister, discover, and the liveness of agents.

heartbeat.yaml (RALF format, see DESIGN.md) maps agent ids to entries of ``last_seen status
current_action current_task role pid host started_at proc_start`` and any other fields.
An agent is active while its ``last_seen`` is within the timeout and, when it was recorded on
this host with a pid, while that process is alive and still the same process (its start time,
read from /proc on Linux, is unchanged). Agents on other hosts or without a pid are judged by
``last_seen`` alone.

The entries are kept by the workspace's ``AgentRegistry`` (agent_registry.py), which
``stores.agent_registry`` picks from ``swarm.yaml`` ``backend:``; with the default ``files``
that is heartbeat.yaml (agent_registry_file.py says how it is kept). Every change keeps the
fields it does not name.

Every function takes ``root`` and ``heartbeat_file`` (a registry file to use instead of the
workspace's registry, whatever the backend).
With only ``heartbeat_file``, the root is the nearest directory whose swarm.yaml names that
file, else the file's directory: every process naming the file shares one lock directory.

As a command (``--help`` for all flags)::

    python lib/agent_discovery.py [--root DIR | --heartbeat-file F] [--all] [--json] [--require N]
    python lib/agent_discovery.py register executor-1 --role executor [--pid P]
    python lib/agent_discovery.py beat executor-1 --action executing --task TASK-1
    python lib/agent_discovery.py deregister executor-1
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .agent_registry import FIELD_NAME as _FIELD_NAME
from .agent_registry import KEEP, KNOWN_FIELDS, AgentRegistry, AgentStatus, as_pid
from .clock import HOSTNAME, format_ts, parse_ts, utc_now
from .config import ID_PATTERN, Config, load_config, validate_id
from .errors import ValidationError
from .liveness import dead_reason
from .records import Record
from .cli import duration, table
from .stores import agent_registry

__all__ = ["AgentInfo", "AgentStatus", "KEEP", "register_agent", "heartbeat", "deregister_agent", "read_agents",
           "discover_agents", "get_agent_info", "count_active_agents", "can_coordinate", "main"]

PathLike = Union[str, "os.PathLike[str]"]
Where = Optional[PathLike]


_MIN_COORDINATION = 2  # agents needed before work is worth sharing out
_BAD_TIME = (ValueError, OverflowError, OSError)  # parse_ts of a number can overflow too


@dataclass
class AgentInfo(Record):
    """One agent's heartbeat entry. Times are kept as stored (string or YAML datetime)."""

    STORED_ORDER = ("agent_id",) + KNOWN_FIELDS

    agent_id: str
    last_seen: Any = None
    status: Optional[str] = None
    current_action: Optional[str] = None
    current_task: Optional[str] = None
    pid: Optional[int] = None
    host: Optional[str] = None
    role: Optional[str] = None
    started_at: Any = None
    proc_start: Any = None  # opaque: clock ticks since boot on Linux, compared as text
    extra: dict[str, Any] = field(default_factory=dict)  # fields this module does not know

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], agent_id: Optional[str] = None) -> "AgentInfo":
        """An agent from its entry; ``agent_id`` defaults to ``data['agent_id']``.

        Raises ValidationError when ``data`` is not a mapping or no id is known.
        """
        if not isinstance(data, Mapping):
            raise ValidationError(f"an agent entry must be a mapping, got {type(data).__name__}")
        known, extra = cls.split(data)
        stored_id = known.pop("agent_id", None)
        agent_id = stored_id if agent_id is None else agent_id
        if agent_id is None:
            raise ValidationError("an agent entry needs an agent_id")
        return cls(agent_id=str(agent_id), **known, extra=extra)

    def seconds_since_seen(self, now: Optional[datetime] = None) -> Optional[float]:
        """Seconds since ``last_seen``, or None when it is missing or does not parse."""
        try:
            return (_now(now) - parse_ts(self.last_seen)).total_seconds()
        except _BAD_TIME:
            return None

    def inactive_reason(self, now: Optional[datetime] = None, timeout_seconds: float = 120, *,
                        cache: Optional[dict] = None) -> Optional[str]:
        """Why this agent is not active (e.g. ``"not seen for 5m12s"``), or None if it is.

        ``cache`` (any dict) shares process checks between calls, so each pid is probed once.
        """
        if not ID_PATTERN.fullmatch(self.agent_id):
            return f"invalid agent id {self.agent_id[:60]!r}"
        if str(self.status).lower() == AgentStatus.STOPPED.value:
            return "deregistered (status stopped)"
        if self.last_seen is None:
            return "never seen (no last_seen)"
        try:
            seen = parse_ts(self.last_seen)
        except _BAD_TIME:
            return f"last_seen {str(self.last_seen)[:60]!r} cannot be parsed"
        problem = self._process_problem(cache)
        if problem is not None:
            return problem
        age = (_now(now) - seen).total_seconds()
        return f"not seen for {duration(age)}" if age > timeout_seconds else None

    def is_active(self, now: Optional[datetime] = None, timeout_seconds: float = 120) -> bool:
        """Whether the agent counts as alive (see ``inactive_reason``)."""
        return self.inactive_reason(now, timeout_seconds) is None

    def _process_problem(self, cache: Optional[dict]) -> Optional[str]:
        pid = as_pid(self.pid)
        if pid is None or self.host != HOSTNAME:
            return None  # nothing to probe here: last_seen decides
        key = (pid, None if self.proc_start is None else str(self.proc_start))
        if cache is not None and key in cache:
            return cache[key]
        reason = dead_reason(pid, self.host, self.proc_start)
        if cache is not None:
            cache[key] = reason
        return reason


def _now(now: Any) -> datetime:
    return utc_now() if now is None else parse_ts(now)


# ---------------------------------------------------------------------------- the registry


def _locate(root: Where, heartbeat_file: Where) -> tuple[Path, Config]:
    if heartbeat_file is None:
        cfg = load_config(root=root)
        return cfg.heartbeat_file, cfg
    path = Path(os.path.expanduser(os.fspath(heartbeat_file))).absolute()
    if root is not None:
        return path, load_config(root=root)
    # The root (and so the lock dir) must follow from the file alone, so that every process
    # naming it shares one lock: the nearest workspace whose swarm.yaml names this file as its
    # heartbeat file (a RALF tree), else the file's own directory.
    real = os.path.realpath(path)
    for directory in path.parents:
        if (directory / "swarm.yaml").is_file():
            cfg = load_config(root=directory)
            if os.path.realpath(cfg.heartbeat_file) == real:
                return path, cfg
    return path, load_config(root=path.parent)


def _registry(root: Where, heartbeat_file: Where) -> tuple[AgentRegistry, Config]:
    path, cfg = _locate(root, heartbeat_file)
    return agent_registry(cfg, heartbeat_file=None if heartbeat_file is None else path), cfg


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else value


def _info(entry: Optional[dict], agent_id: str) -> Optional[AgentInfo]:
    return None if entry is None else AgentInfo.from_dict(entry, agent_id)


def _agents(beats: Optional[dict]) -> list[AgentInfo]:
    return [] if beats is None else [AgentInfo.from_dict(entry, key) for key, entry in beats.items()]


# ---------------------------------------------------------------------------- writers


def register_agent(agent_id: str, role: Optional[str] = None, heartbeat_file: Where = None, *, root: Where = None,
                   **fields: Any) -> AgentInfo:
    """Add or re-register ``agent_id`` as running now; creates the registry if it is missing.

    Records this process's pid, host and start time unless ``fields`` give ``pid``/``host``/
    ``proc_start`` (``pid=None``: no process to check). Resets current_action/current_task,
    keeps the role when ``role`` is None, and keeps every field it does not set. Raises
    InvalidIdError for an unsafe id, ValidationError/ParseError for a bad field or registry.
    """
    validate_id(agent_id, "agent id")
    registry = _registry(root, heartbeat_file)[0]
    return AgentInfo.from_dict(registry.register(agent_id, role, **fields), agent_id)


def heartbeat(agent_id: str, status: Optional[str] = None, current_action: Any = KEEP, current_task: Any = KEEP, *,
              heartbeat_file: Where = None, root: Where = None, record_process: bool = True,
              add_missing: bool = True, **fields: Any) -> AgentInfo:
    """Mark ``agent_id`` as seen now, adding it if it is not registered.

    ``add_missing`` False: an agent not in the registry raises NotFoundError and nothing is
    written (the command line's ``beat``: a typo must not create an agent).

    ``status`` None keeps the status (a stopped or missing one becomes running); action and
    task are kept unless given (None clears them). With ``record_process`` the pid, host and
    start time of this process are recorded as in ``register_agent``; without it they change
    only when ``fields`` give a ``pid``.
    """
    validate_id(agent_id, "agent id")
    registry = _registry(root, heartbeat_file)[0]
    entry = registry.beat(agent_id, status, current_action, current_task, record_process=record_process,
                          add_missing=add_missing, **fields)
    return AgentInfo.from_dict(entry, agent_id)


def deregister_agent(agent_id: str, heartbeat_file: Where = None, *, root: Where = None,
                     remove: bool = False) -> Optional[AgentInfo]:
    """Mark ``agent_id`` stopped (or, with ``remove``, delete its entry).

    Returns the entry as it was left (or as it was, when removed); None, writing nothing,
    when the agent or the registry does not exist.
    """
    validate_id(agent_id, "agent id")
    return _info(_registry(root, heartbeat_file)[0].deregister(agent_id, remove=remove), agent_id)


# ---------------------------------------------------------------------------- readers


def read_agents(heartbeat_file: Where = None, *, root: Where = None) -> list[AgentInfo]:
    """Every agent in the registry as stored, active or not, in registration order ([] without one).

    Raises ParseError/ValidationError naming where the registry is (and the line) when it is corrupt.
    """
    return _agents(_registry(root, heartbeat_file)[0].entries())


def _survey(agents: list[AgentInfo], timeout: float, now: Any) -> list[tuple[AgentInfo, Optional[str]]]:
    moment, cache = _now(now), {}
    return [(agent, agent.inactive_reason(moment, timeout, cache=cache)) for agent in agents]


def discover_agents(heartbeat_file: Where = None, timeout_seconds: Optional[float] = None,
                    now: Optional[datetime] = None, *, root: Where = None) -> list[AgentInfo]:
    """The active agents, in file order.

    ``timeout_seconds`` defaults to the workspace's ``timeouts.heartbeat_seconds`` (120).
    Raises ParseError/ValidationError when the file is corrupt; a missing file has no agents.
    """
    registry, cfg = _registry(root, heartbeat_file)
    timeout = cfg.heartbeat_timeout if timeout_seconds is None else float(timeout_seconds)
    # ages on the clock that stamped last_seen (Redis: the server's), so a host whose clock is off judges right
    now = registry.clock() if now is None else now
    return [agent for agent, reason in _survey(_agents(registry.entries()), timeout, now) if reason is None]


def get_agent_info(agent_id: str, heartbeat_file: Where = None, *, root: Where = None) -> Optional[AgentInfo]:
    """The entry of ``agent_id``, active or not, or None when it is not registered."""
    validate_id(agent_id, "agent id")
    return _info(_registry(root, heartbeat_file)[0].get(agent_id), agent_id)


def count_active_agents(heartbeat_file: Where = None, timeout_seconds: Optional[float] = None,
                        now: Optional[datetime] = None, *, root: Where = None) -> int:
    """How many agents are active (see ``discover_agents``)."""
    return len(discover_agents(heartbeat_file, timeout_seconds, now, root=root))


def can_coordinate(min_agents: int = _MIN_COORDINATION, heartbeat_file: Where = None,
                   timeout_seconds: Optional[float] = None, now: Optional[datetime] = None, *,
                   root: Where = None) -> bool:
    """Whether at least ``min_agents`` agents are active, so work can be shared out."""
    return count_active_agents(heartbeat_file, timeout_seconds, now, root=root) >= min_agents


# ---------------------------------------------------------------------------- command line


def _seen(agent: AgentInfo, now: datetime) -> str:
    age = agent.seconds_since_seen(now)
    if age is None:
        return "?"
    return f"{duration(age)} ago" if age >= 0 else f"in {duration(-age)}"  # a clock ahead of ours


def _cell(value: Any, width: int = 32) -> str:
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _listing(args: Any) -> int:
    from . import cli

    registry, cfg = _registry(args.root, args.heartbeat_file)
    timeout = cfg.heartbeat_timeout if args.timeout is None else args.timeout
    now = registry.clock() or utc_now()
    beats = registry.entries()
    surveyed = _survey(_agents(beats), timeout, now)
    active = [agent for agent, reason in surveyed if reason is None]
    inactive = [(agent, reason) for agent, reason in surveyed if reason is not None]
    coordinate = len(active) >= _MIN_COORDINATION
    ok = args.require is None or len(active) >= args.require
    if args.json:
        shown = [(agent, None) for agent in active] + (inactive if args.all else [])
        cli.print_json({
            "file": registry.where(), "exists": beats is not None, "timeout_seconds": _number(timeout),
            "now": format_ts(now), "active": len(active), "inactive": len(inactive),
            "can_coordinate": coordinate, "required": args.require, "ok": ok,
            "agents": [dict(agent.to_dict(), active=reason is None, inactive_reason=reason,
                            seconds_since_seen=agent.seconds_since_seen(now)) for agent, reason in shown],
        })
    else:
        out = [f"heartbeat file: {registry.where()} (timeout {duration(timeout)})"]
        if beats is None:
            out.append("no heartbeat file: no agents registered")
        if active:
            out.append(table(["AGENT", "ROLE", "STATUS", "ACTION", "TASK", "PID", "HOST", "SEEN"],
                          [[_cell(a.agent_id, 40), _cell(a.role), _cell(a.status), _cell(a.current_action),
                            _cell(a.current_task), _cell(a.pid), _cell(a.host), _seen(a, now)] for a in active]))
        if args.all and inactive:
            out += ["", "inactive:", table(
                ["AGENT", "ROLE", "STATUS", "SEEN", "WHY"],
                [[_cell(a.agent_id, 40), _cell(a.role), _cell(a.status), _seen(a, now), why] for a, why in inactive])]
        hidden = "" if args.all or not inactive else " (--all lists them)"
        out += ["", f"{len(active)} active agent{'s' * (len(active) != 1)}, {len(inactive)} inactive{hidden}",
                f"coordination: {'possible' if coordinate else 'not possible'} "
                f"({len(active)} active, {_MIN_COORDINATION} needed)"]
        print("\n".join(out))
    if not ok:
        print(f"check failed: {len(active)} active, {args.require} required", file=sys.stderr)
        return cli.EXIT_CHECK_FAILED
    return cli.EXIT_OK


def _update(args: Any) -> int:
    fields = dict(args.field or ())
    if args.pid is not _UNSET:
        fields["pid"] = args.pid
    if args.command == "register":
        fields.setdefault("pid", os.getppid())  # the calling shell loop, not this short-lived process
        if args.status:
            fields["status"] = args.status
        for key, value in (("current_action", args.action), ("current_task", args.task)):
            if value is not None:
                fields[key] = value or None
        field_role = fields.pop("role", None)  # a named argument of register_agent: never in **fields
        info = register_agent(args.agent, args.role or field_role, args.heartbeat_file, root=args.root, **fields)
    else:
        field_status = fields.pop("status", None)  # named arguments of heartbeat: never in **fields
        action = fields.pop("current_action", KEEP) if args.action is None else (args.action or None)
        task = fields.pop("current_task", KEEP) if args.task is None else (args.task or None)
        info = heartbeat(args.agent, args.status or field_status, action, task, heartbeat_file=args.heartbeat_file,
                         root=args.root, record_process=False, add_missing=False, **fields)
    return _report(args, info, "registered" if args.command == "register" else "heartbeat of")


def _deregister(args: Any) -> int:
    info = deregister_agent(args.agent, args.heartbeat_file, root=args.root, remove=args.remove)
    return _report(args, info, "removed" if args.remove else "deregistered")


def _report(args: Any, info: Optional[AgentInfo], verb: str) -> int:
    from . import cli

    if args.json:
        cli.print_json(info.to_dict() if info else {"agent_id": args.agent, "found": False})
    elif info is None:
        print(f"{args.agent} is not registered: nothing to do")
    else:
        where = f" (pid {info.pid} on {info.host})" if info.pid is not None else ""
        print(f"{verb} {info.agent_id}{where}, status {info.status}, at {info.last_seen}")
    return cli.EXIT_OK


_UNSET: Any = object()
_COMMANDS = ("register", "beat", "deregister")
_VALUED = ("--root", "--heartbeat-file", "--timeout", "--require", "--role", "--pid", "--status", "--action",
           "--task", "--field")  # flags whose value is the next token
_RESERVED = ("agent_id", "heartbeat_file", "root", "record_process", "add_missing")  # not entry fields


def _pid_arg(text: str) -> Optional[int]:
    from argparse import ArgumentTypeError  # already loaded by cli

    if text.lower() in ("none", "null"):
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ArgumentTypeError(f"not a positive pid or 'none': {text!r}")
    return int(text)


def _field_arg(text: str) -> tuple[str, Any]:
    from argparse import ArgumentTypeError

    name, sep, raw = text.partition("=")
    if not sep or not _FIELD_NAME.fullmatch(name) or name in _RESERVED:
        raise ArgumentTypeError(f"expected NAME=VALUE with a plain field name (not {'/'.join(_RESERVED)}), "
                                f"got {text!r}")
    if re.fullmatch(r"[-+]?\d+", raw):
        return name, int(raw)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?", raw):
        return name, float(raw)
    words = {"true": True, "false": False, "null": None, "none": None, "": None}
    return name, words[raw.lower()] if raw.lower() in words else raw


def _split_command(argv: list[str]) -> tuple[Optional[str], list[str]]:
    """The subcommand (first positional) and the other arguments."""
    skip = False
    for index, token in enumerate(argv):
        if skip or token.startswith("-"):
            skip = not skip and token in _VALUED
            continue
        return token, argv[:index] + argv[index + 1:]
    return None, argv


def _parser(command: Optional[str]) -> Any:
    """The parser of ``command`` (None: the listing); only the one needed is built, for start-up speed."""
    from . import cli

    if command is None:
        p = cli.parser("agent_discovery.py", "List the agents in the heartbeat registry.",
                       needs_workspace=lambda args: not args.heartbeat_file)
        p.epilog = "commands (each takes --help): register AGENT, beat AGENT, deregister AGENT"
        p.add_argument("--timeout", type=cli.positive_seconds, metavar="S", help="seconds without a heartbeat before an agent "
                       "is inactive (default: timeouts.heartbeat_seconds, 120)")
        p.add_argument("--all", action="store_true", help="also list inactive agents and why")
        p.add_argument("--require", type=cli.non_negative_int, metavar="N", help="exit 1 unless at least N agents are active")
    else:
        p = cli.parser(f"agent_discovery.py {command}", {
            "register": "Add or re-register an agent as running now.",
            "beat": "Record a heartbeat of a registered agent (its pid is kept unless --pid is given).",
            "deregister": "Mark an agent stopped."}[command], needs_workspace=lambda args: not args.heartbeat_file)
        p.add_argument("agent", metavar="AGENT", help="agent id")
    p.allow_abbrev = False  # _split_command must know every flag that takes a value
    p.add_argument("--heartbeat-file", metavar="F", help="heartbeat file (overrides the configured path)")
    if command == "deregister":
        p.add_argument("--remove", action="store_true", help="delete the entry instead")
    elif command is not None:
        p.add_argument("--pid", type=_pid_arg, default=_UNSET, help="pid of the agent process, or 'none' "
                       "(register default: the calling process, e.g. the shell loop)")
        p.add_argument("--status", help="status word: running, idle, waiting, ...")
        p.add_argument("--action", help="what it is doing now ('' clears)")
        p.add_argument("--task", help="the task it works on ('' clears)")
        p.add_argument("--field", type=_field_arg, action="append", metavar="K=V",
                       help="any other field (repeatable); integers, decimals, true/false and null are typed")
        if command == "register":
            p.add_argument("--role", help="planner, executor, ...")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """List the agents, or register/beat/deregister one; returns the exit code."""
    from . import cli

    command, rest = _split_command(list(sys.argv[1:] if argv is None else argv))
    if command is not None and command not in _COMMANDS:
        _parser(None).error(f"unknown command {command!r} (choose from {', '.join(_COMMANDS)})")
    args = _parser(command).parse_args(rest)
    args.command = command
    body = _listing if command is None else _deregister if command == "deregister" else _update
    return cli.run(lambda: body(args))
