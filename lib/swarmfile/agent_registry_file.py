"""The agent registry as a file: heartbeat.yaml in RALF's format; the only module that knows it.

::

    heartbeats:
      planner: {last_seen: '2026-02-01T13:37:14Z', status: running, role: planner, pid: 4242, ...}
    metadata: {timeout_seconds: 120, last_updated: '...', updated_by: planner}

Writers read-modify-write the whole file under its lock (a sidecar in the workspace's lock
directory) and replace it atomically, keeping every field and top-level key they do not know
and the comment lines that open the file; readers take no lock. A file that does not have this
shape raises with its line and is never rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from .clock import format_ts
from .config import Config
from .errors import HAND_FIX, ValidationError
from .agent_registry import AgentRegistry
from .fileio import atomic_write, dump_yaml, key_line, load_yaml_text, locked, read_text
from .store_check import Problem, read_problems

__all__ = ["FileAgentRegistry", "STARTER"]

R = TypeVar("R")

STARTER = "heartbeats: {}\nmetadata:\n  timeout_seconds: 120\n"  # what `swarm.py init` writes


def _number(value: float) -> Any:
    return int(value) if float(value).is_integer() else value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _parse(path: Path, text: str) -> tuple[dict, dict]:
    """(whole document, heartbeats mapping) of a heartbeat file; raises on a wrong shape."""
    data = load_yaml_text(text, path)
    if not isinstance(data, dict) or "heartbeats" not in data:
        got = "a mapping without 'heartbeats'" if isinstance(data, dict) else _kind(data)
        raise ValidationError(f"must be a mapping with 'heartbeats:', got {got}", path=path, line=1, hint=HAND_FIX)
    beats = data["heartbeats"]
    if beats is None:  # `heartbeats:` with no entries yet
        beats = data["heartbeats"] = {}
    if not isinstance(beats, dict):
        raise ValidationError(f"'heartbeats' must be a mapping of agent id to entry, got {_kind(beats)}",
                              path=path, line=key_line(text, "heartbeats"), hint=HAND_FIX)
    for key, entry in beats.items():
        if not isinstance(entry, dict):
            raise ValidationError(f"heartbeat of {str(key)[:60]!r} must be a mapping, got {_kind(entry)}", path=path,
                                  line=key_line(text, key, nested=True, start=max(text.find("heartbeats"), 0)),
                                  hint=HAND_FIX)
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise ValidationError(f"'metadata' must be a mapping, got {_kind(meta)}", path=path,
                              line=key_line(text, "metadata"), hint=HAND_FIX)
    return data, beats


def _header(text: str) -> str:
    """The comment lines that open the file: kept on rewrite (YAML dumping drops comments)."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[:next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))])


class FileAgentRegistry(AgentRegistry):
    """heartbeat.yaml of a workspace, or the registry file at ``path``."""

    def __init__(self, cfg: Config, path: Optional[Path] = None) -> None:
        self.cfg = cfg
        self.path = cfg.heartbeat_file if path is None else path

    def where(self) -> str:
        return str(self.path)

    def owns(self, path: str) -> bool:
        return os.path.realpath(path) == os.path.realpath(self.path)

    def create(self) -> Optional[str]:
        if self.path.exists():
            return None
        atomic_write(self.path, STARTER)
        return str(self.path)

    def entries(self) -> Optional[dict[str, dict]]:
        try:
            text = read_text(self.path)
        except FileNotFoundError:
            return None
        return _parse(self.path, text)[1]

    def update(self, agent_id: str, change: Callable[[dict, str], Optional[R]], *, create: bool) -> Optional[R]:
        path, cfg = self.path, self.cfg
        with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
            try:
                text = read_text(path)
            except FileNotFoundError:
                if not create:
                    return None
                data: dict = {"heartbeats": {}, "metadata": {"timeout_seconds": _number(cfg.heartbeat_timeout)}}
                beats, header = data["heartbeats"], ""
            else:
                data, beats = _parse(path, text)
                header = _header(text)
            now = format_ts()
            result = change(beats, now)
            if result is None:
                return None
            meta = data.get("metadata")
            if meta is None:
                meta = data["metadata"] = {}
            meta["last_updated"] = now
            meta["updated_by"] = agent_id
            atomic_write(path, header + dump_yaml(data))
            return result

    def check(self) -> tuple[list[Problem], int]:
        if not self.path.exists():
            return [], 0
        return read_problems(str(self.path), self.entries), 1
