"""What every shared store of a workspace answers, and what it says when doctor asks it to check itself.

``WorkspaceStore`` is the part the event log and the agent registry share: where the store is
kept, creating it, whether a file is part of it, and checking itself. A store knows its own
layout; doctor does not. ``check()`` on a store returns ``Problem``s in
doctor's terms (severity, code, where, line, what is wrong, what to do, and the name of a repair
the store can make itself), so doctor prints and repairs them without knowing what a file holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import HAND_FIX, SwarmError

__all__ = ["Problem", "WorkspaceStore", "ERROR", "WARNING", "INFO", "read_problems"]

ERROR = "ERROR"  # the store cannot be used as it is
WARNING = "WARNING"  # a crash left something behind, or parts disagree
INFO = "INFO"  # worth knowing; nothing to do


@dataclass(frozen=True)
class Problem:
    """One problem a store found in itself; ``action`` names a repair its ``repair`` makes (None: by hand)."""

    severity: str  # ERROR, WARNING or INFO
    code: str  # parse, unreadable, torn-log, log-not-appendable, ...
    where: str  # a path, or a key: what the operator opens to fix it
    problem: str
    fix: str  # what to do about it
    line: Optional[int] = None
    action: Optional[str] = None


class WorkspaceStore(ABC):
    """What the stores a swarm.yaml ``backend:`` picks (event log, agent registry) all answer."""

    @abstractmethod
    def where(self) -> str:
        """Where the store is kept, for messages (a path, or a key)."""

    @abstractmethod
    def create(self) -> Optional[str]:
        """Start an empty store if there is none; where it was created, or None when one was there."""

    @abstractmethod
    def owns(self, path: str) -> bool:
        """Whether the file at ``path`` is part of this store (a checkout must not treat it as work)."""

    @abstractmethod
    def check(self) -> tuple[list[Problem], int]:
        """Every problem of the store and how many parts were looked at. Reads only."""


def read_problems(where: str, read: Callable[[], Any]) -> list[Problem]:
    """Run ``read``; a SwarmError or OSError becomes the one ERROR problem it is, else none."""
    try:
        read()
    except SwarmError as exc:
        named = exc.path if exc.path and exc.path != "<text>" else where
        return [Problem(ERROR, "parse", str(named), exc.reason, exc.hint or HAND_FIX, line=exc.line)]
    except OSError as exc:
        return [Problem(ERROR, "unreadable", where, f"cannot be read: {exc.strerror or exc}", "check its permissions")]
    return []
