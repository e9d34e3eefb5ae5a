"""What a store says when doctor asks it to check itself: problems, each with where and what to do.

A store knows its own layout; doctor does not. ``check()`` on a store returns ``Problem``s in
doctor's terms (severity, code, where, line, what is wrong, what to do, and the name of a repair
the store can make itself), so doctor prints and repairs them without knowing what a file holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from .errors import HAND_FIX, SwarmError

__all__ = ["Problem", "ERROR", "WARNING", "INFO", "read_problems"]

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
