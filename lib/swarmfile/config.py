"""Root resolution, swarm.yaml, paths, defaults, timestamps and id validation.

Every default lives in ``DEFAULTS`` below with a one-line comment; ``swarm.yaml`` at the
workspace root overrides any of them with the same nesting, so the runtime can be pointed
at an existing RALF tree::

    paths:
      heartbeat: .autonomous/communications/heartbeat.yaml
      tasks_active: .autonomous/tasks/active
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

from .clock import HOSTNAME, format_ts, in_seconds, parse_ts, seconds_since, utc_now  # noqa: F401 (re-exported)
from .errors import InvalidIdError, ValidationError

__all__ = [
    "DEFAULTS",
    "Config",
    "load_config",
    "resolve_root",
    "utc_now",
    "format_ts",
    "parse_ts",
    "validate_id",
    "ID_PATTERN",
    "HOSTNAME",
    "seconds_since",
    "in_seconds",
]

PathLike = Union[str, "os.PathLike[str]"]

DEFAULTS: dict[str, Any] = {
    "backend": "files",  # where shared state is kept: files (this workspace's disk, no server)
    # with a Redis backend: true = the planner publishes this checkout's tasks to the server and
    # every host claims from there (task_board.py); false = each checkout claims from its own Markdown
    "task_board": False,
    "paths": {
        "heartbeat": "heartbeat.yaml",  # agent registry
        "events": "events.yaml",  # append-only event log
        "state": "agent-state.yaml",  # per-agent state and context
        "chat": "chat-log.yaml",  # messages between agents
        "tasks_active": "tasks/active",  # open task Markdown files
        "tasks_completed": "tasks/completed",  # finished tasks are moved here
        "runtime": ".swarm",  # locks, claims, runs, worktrees: never committed
    },
    "timeouts": {
        "heartbeat_seconds": 120,  # an agent not seen for this long is inactive
        "lock_seconds": 30,  # longest wait for a file lock before LockTimeout
        "lease_seconds": 300,  # default TTL of a task lease
    },
    "events": {
        "rotate_bytes": 64 * 1024 * 1024,  # past this size the log moves to an archive
        "fsync": True,  # fsync every append (durable; off only for throwaway logs)
        # Redis backend: mirrored events the stream keeps for tail/follow (unmirrored ones are never trimmed)
        "stream_keep": 100_000,
    },
    "distribution": {
        "max_subtasks": 3,  # most sub-tasks one split creates
        # words that say units of a task can run apart
        "parallel_keywords": [
            "parallel", "independent", "independently", "separate", "separately",
            "concurrent", "concurrently", "each", "multiple", "several",
            "simultaneously", "in any order",
        ],
        # words that say units must run in order
        "sequential_keywords": [
            "then", "after", "afterwards", "before", "depends on", "once",
            "followed by", "next", "finally", "sequential", "sequentially", "in order",
            "first",
        ],
    },
    "duplicates": {
        "threshold": 0.8,  # keyword Jaccard similarity at which two tasks are near-duplicates
    },
    "state": {
        "stale_seconds": 600,  # cleanup_stale drops agent states not updated for this long
    },
    "executor": {
        "max_attempts": 3,  # failed runs of one task before it is marked blocked
        "backoff_seconds": 5,  # wait before the first retry; doubles on every further failure
        "run_timeout_seconds": 3600,  # an agent run longer than this is killed and counts as failed
        "poll_seconds": 5,  # idle wait between looks for ready work
        "wait_retry_seconds": 60,  # a task whose agent said [WAIT] or [HELP] is retried after this
    },
    "planner": {
        # the planner's agent id: not "planner", the key a host repository's own planner loop
        # keeps in heartbeat.yaml (RALF's does), which a planner of ours would rewrite
        "agent_id": "swarm-planner",
        "interval_seconds": 10,  # one planning round every this many seconds
        "ack_timeout_seconds": 30,  # an assignment not acknowledged by its executor in time goes back
        "min_executors_to_split": 2,  # split parallelizable tasks only with this many active executors
    },
    "agents": {
        "presets": {},  # name: command template, adding to or overriding the built-in presets
    },
    "worktrees": {
        "base_branch": None,  # branch tasks are cut from and merged into; None: the root's current branch
        "remove_after_merge": True,  # retire a merged task's worktree and branch once its lease is over
        "merge_lock_seconds": 300,  # longest wait for the merge lock: merges queue behind one another
        "merge_lock_ttl_seconds": 30,  # Redis backend: a merge lock whose holder died frees itself this much later
        "remote": None,  # a git remote (origin) whose base branch every host merges into; None: the root checkout's
        "push_attempts": 5,  # remote merges: fetch, merge and push again this often when other hosts merge first
    },
    "reservations": {
        # Half an hour: longer than one step of a typical task, short enough that a holder that
        # vanished on another host (whose death we cannot see) blocks nobody for long.
        "ttl_seconds": 1800,
    },
    "memory": {
        "directory": None,  # per-agent memory files; None: <runtime>/agents
    },
}

# The least value of each numeric setting, checked when swarm.yaml is read: a lease of -1 s,
# a poll of 0 s (a spin) or a split into 0 sub-tasks are refused with the file and line.
# (section, key): (minimum, whole number, minimum allowed itself)
_NUMBERS: dict[tuple[str, str], tuple[float, bool, bool]] = {
    ("timeouts", "heartbeat_seconds"): (0, False, False),
    ("timeouts", "lock_seconds"): (0, False, False),
    ("timeouts", "lease_seconds"): (0, False, False),
    ("events", "rotate_bytes"): (0, True, True),  # 0: never rotate
    ("events", "stream_keep"): (0, True, True),  # 0: the stream holds only what is not mirrored yet
    ("distribution", "max_subtasks"): (2, True, True),  # one sub-task is no split
    ("state", "stale_seconds"): (0, False, False),
    ("executor", "max_attempts"): (1, True, True),
    ("executor", "backoff_seconds"): (0, False, True),
    ("executor", "run_timeout_seconds"): (0, False, False),
    ("executor", "poll_seconds"): (0, False, False),
    ("executor", "wait_retry_seconds"): (0, False, True),
    ("planner", "interval_seconds"): (0, False, False),
    ("planner", "ack_timeout_seconds"): (0, False, False),
    ("planner", "min_executors_to_split"): (0, True, True),
    ("worktrees", "merge_lock_seconds"): (0, False, False),
    ("worktrees", "merge_lock_ttl_seconds"): (0, False, False),
    ("worktrees", "push_attempts"): (1, True, True),
    ("reservations", "ttl_seconds"): (0, False, False),
}


def _check_numbers(settings: dict[str, Any], config_file: Path, text: str) -> None:
    from .fileio import key_line

    for (section, key), (least, whole, inclusive) in _NUMBERS.items():
        value = settings.get(section, {}).get(key)
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        ok = number and value == value and value != float("inf") and (value >= least if inclusive else value > least)
        if ok and whole and not float(value).is_integer():
            ok = False
        if not ok:
            what = "a whole number" if whole else "a number of seconds" if key.endswith("seconds") else "a number"
            bound = f">= {least:g}" if inclusive else f"> {least:g}"
            start = text.find(f"{section}:")
            raise ValidationError(f"'{section}.{key}' must be {what} {bound}, got {value!r:.40}", path=config_file,
                                  line=key_line(text, key, nested=True, start=max(start, 0)), hint="fix swarm.yaml")


# Ids reach file names (leases, sub-task files, lock files): nothing that can climb a path.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")



def resolve_root(*, root: Optional[PathLike] = None) -> Path:
    """The workspace root: ``root`` if given, else ``$SWARM_ROOT``, else the current directory."""
    if root is None:
        root = os.environ.get("SWARM_ROOT") or os.getcwd()
    return Path(root).expanduser().absolute()


def _merge(base: dict, override: dict, where: str) -> dict:
    for key, value in override.items():
        if isinstance(base.get(key), dict):
            if not isinstance(value, dict):
                raise ValidationError(f"'{where}{key}' must be a mapping, got {type(value).__name__}")
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value
    return base


class Config:
    """Resolved settings and paths of one workspace."""

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = root
        self.settings = settings
        paths = settings["paths"]
        self.heartbeat_file = self._path(paths["heartbeat"])
        self.events_file = self._path(paths["events"])
        self.state_file = self._path(paths["state"])
        self.chat_file = self._path(paths["chat"])
        self.tasks_active = self._path(paths["tasks_active"])
        self.tasks_completed = self._path(paths["tasks_completed"])
        self.runtime_dir = self._path(paths["runtime"])
        self.lock_dir = self.runtime_dir / "locks"
        self.heartbeat_timeout = self.seconds("timeouts", "heartbeat_seconds")
        self.lock_timeout = self.seconds("timeouts", "lock_seconds")
        self.lease_seconds = self.seconds("timeouts", "lease_seconds")

    def seconds(self, section: str, key: str) -> float:
        """A duration setting as a float; ValidationError naming swarm.yaml if it is not a number >= 0."""
        value = self.settings[section][key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValidationError(f"'{section}.{key}' must be a number of seconds, got {value!r:.40}",
                                  path=self.root / "swarm.yaml", hint="fix swarm.yaml")
        return float(value)

    def _path(self, value: Any) -> Path:
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() else self.root / path

    def get(self, section: str, key: str) -> Any:
        return self.settings[section][key]

    def __repr__(self) -> str:
        return f"Config(root={str(self.root)!r})"


_cache: dict[str, tuple[Optional[int], Config]] = {}  # by swarm.yaml's path, a str: a Path hashes in Python
# An absolute root as callers pass it (str or Path) -> (its Path, its swarm.yaml): every call of
# every module starts here (an append_event costs two), and building the Path each time showed.
_resolved: dict[Any, tuple[Path, str]] = {}


def load_config(*, root: Optional[PathLike] = None) -> Config:
    """Settings of the workspace at ``root`` (see ``resolve_root``), cached until swarm.yaml changes.

    Raises ParseError/ValidationError naming swarm.yaml when it is malformed.
    """
    known = _resolved.get(root) if root is not None else None
    if known is None:
        resolved = resolve_root(root=root)
        known = (resolved, os.path.join(resolved, "swarm.yaml"))
        if root is not None and os.path.isabs(root) and len(_resolved) < 4096:  # not relative: no cwd in it
            _resolved[root] = known
    resolved, config_name = known
    try:
        stamp: Optional[int] = os.stat(config_name).st_mtime_ns
    except FileNotFoundError:
        stamp = None
    cached = _cache.get(config_name)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    config_file = resolved / "swarm.yaml"
    settings = copy.deepcopy(DEFAULTS)
    if stamp is not None:
        from .fileio import load_yaml_file  # here: a workspace without swarm.yaml needs no YAML (claims.py ready)

        data = load_yaml_file(config_file, default=None)
        if data is not None:
            if not isinstance(data, dict):
                raise ValidationError(
                    f"must be a mapping of settings, got {type(data).__name__}",
                    path=config_file, line=1, hint="see operations/example-swarm.yaml",
                )
            try:
                _merge(settings, data, "")
            except ValidationError as exc:
                raise ValidationError(exc.reason, path=config_file, hint="fix swarm.yaml") from None
            _check_numbers(settings, config_file, config_file.read_text(encoding="utf-8", errors="replace"))
    config = Config(resolved, settings)
    _cache[config_name] = (stamp, config)
    return config


def validate_id(value: Any, kind: str = "id") -> str:
    """``value`` if it is a safe agent/task id, else InvalidIdError saying what is allowed."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) else repr(value[:60])
        raise InvalidIdError(
            f"invalid {kind} {shown}",
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value
