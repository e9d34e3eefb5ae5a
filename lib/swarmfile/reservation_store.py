"""Where file reservations are kept: the ``ReservationTable`` interface and its file implementation.

reservations.py holds the rules (patterns, overlaps, TTLs, the ``files_locked`` mirror); a table
holds only the records and gives one primitive, ``update``: read every reservation, let a
function decide the new list, and write it, with no other writer in between. That is what makes
the overlap check atomic, on one host (the file's lock) and across hosts (the Redis server's
transaction, redis_reservations.py). ``stores.reservations(cfg)`` picks the implementation that
``swarm.yaml``'s ``backend:`` names; ``files`` (the default) is ``FileReservationTable``.

What every implementation guarantees (``tests/test_reservations.py`` runs its races on each):
concurrent ``update``s from many processes are serialised, so two agents never both hold
overlapping exclusive patterns; a table that cannot be read raises (naming where and what to
do) and is never rewritten; records keep the keys this version does not know.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .clock import format_ts, parse_ts, utc_now
from .config import Config, validate_id
from .errors import SwarmError, ValidationError
from .fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_text, locked, read_text
from .globs import normalize_pattern
from .liveness import dead_reason
from .records import Record

__all__ = ["Reservation", "ReservationTable", "FileReservationTable", "Change", "UNCHANGED_HINT"]

PathLike = Union[str, "os.PathLike[str]"]

UNCHANGED_HINT = "fix or restore the file by hand; it was not changed"


@dataclass(frozen=True)
class Reservation(Record):
    """One agent's hold on some patterns; ``extra`` keeps keys this version does not know."""

    id: str
    agent_id: str
    patterns: tuple[str, ...]
    acquired_at: str
    expires_at: str
    exclusive: bool = True
    task_id: Optional[str] = None
    pid: Optional[int] = None
    host: Optional[str] = None
    proc_start: Optional[int] = None
    extra: dict = field(default_factory=dict, compare=False)

    def free_reason(self, now: Optional[datetime] = None) -> Optional[str]:
        """Why this reservation binds nobody any more (expired, holder dead), or None."""
        if (now or utc_now()) >= parse_ts(self.expires_at):
            return f"expired at {self.expires_at}"
        return dead_reason(self.pid, self.host, self.proc_start)

    @property
    def mode(self) -> str:
        return "exclusive" if self.exclusive else "shared"

    @classmethod
    def from_dict(cls, data: Any, path: Optional[PathLike] = None, line: Optional[int] = None,
                  hint: str = UNCHANGED_HINT) -> "Reservation":
        """A record as stored; ValidationError naming where (``path``: a file or a key) when malformed."""
        try:
            values, extra = cls.split(expect_mapping(data, "-", "a reservation"))
            validate_id(values.get("id"), "reservation id")
            validate_id(values.get("agent_id"), "agent id")
            if values.get("task_id") is not None:
                validate_id(values["task_id"], "task id")
            if not isinstance(values.get("patterns"), list) or not values["patterns"]:
                raise ValidationError("patterns must be a non-empty list")
            values["patterns"] = tuple(normalize_pattern(p) for p in values["patterns"])
            for key in ("acquired_at", "expires_at"):
                values[key] = format_ts(parse_ts(values[key]))
            if not isinstance(values.get("exclusive", True), bool):
                raise ValidationError("exclusive must be true or false")
            if values.get("pid") is not None and type(values["pid"]) is not int:
                raise ValidationError("pid must be an integer")
        except (KeyError, ValueError) as exc:  # ValidationError and InvalidIdError are ValueErrors
            reason = (exc.reason if isinstance(exc, SwarmError)
                      else f"{exc} is missing" if isinstance(exc, KeyError) else str(exc))
            raise ValidationError(f"malformed reservation: {reason}", path=path, line=line, hint=hint) from None
        return cls(**values, extra=extra)


# What ``update`` runs: given every stored reservation, the list to store instead, or None to
# write nothing. It may raise (nothing is written then). On a backend with optimistic
# transactions it may run more than once, so what it does besides returning must be idempotent.
Change = Callable[[list[Reservation]], Optional[list[Reservation]]]


class ReservationTable(ABC):
    """The reservations of one workspace; subclasses implement every method."""

    @abstractmethod
    def where(self) -> str:
        """Where the reservations are kept, for messages (a path, or a key)."""

    @abstractmethod
    def now(self) -> datetime:
        """The clock expiries are judged by: this host's for files, the server's for a shared table."""

    @abstractmethod
    def read(self) -> list[Reservation]:
        """Every stored reservation (live or not) in the order they were made; [] when none."""

    @abstractmethod
    def update(self, change: Change, after: Optional[Callable[[list[Reservation]], None]] = None) -> None:
        """Run ``change`` over the stored list and store what it returns, atomically.

        ``after`` runs with the list written, once the write is final (under the file's lock, for files).
        Raises what ``change`` raises, ParseError/ValidationError for a table that cannot be
        read (never rewritten), LockTimeout or BackendUnavailable.
        """


def _item_lines(text: str) -> list[int]:
    """Line numbers where the items of the ``reservations:`` list start (best effort)."""
    items = [(n + 1, len(line) - len(line.lstrip())) for n, line in enumerate(text.splitlines())
             if re.match(r"\s*- ", line)]
    return [n for n, indent in items if indent == items[0][1]] if items else []


class FileReservationTable(ReservationTable):
    """``.swarm/reservations.yaml``: every change a read-check-write under the file's lock."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.path: Path = cfg.runtime_dir / "reservations.yaml"

    def where(self) -> str:
        return str(self.path)

    def now(self) -> datetime:
        return utc_now()

    def _read(self) -> tuple[dict[str, Any], list[Reservation]]:
        """The whole document and its reservations; a missing file holds none."""
        path = self.path
        try:
            text = read_text(path)
        except FileNotFoundError:
            return {"reservations": []}, []
        data = load_yaml_text(text, path)
        if data is None:
            raise ValidationError("is empty; expected 'reservations:'", path=path, line=1, hint=UNCHANGED_HINT)
        expect_mapping(data, path, "the reservations file", line=1)
        if "reservations" not in data:
            raise ValidationError("has no 'reservations' key", path=path, line=1, hint=UNCHANGED_HINT)
        items = data["reservations"] if data["reservations"] is not None else []
        if not isinstance(items, list):
            raise ValidationError(f"'reservations' must be a list, got a {type(items).__name__}",
                                  path=path, hint=UNCHANGED_HINT)
        starts = _item_lines(text)
        return data, [Reservation.from_dict(item, path, starts[n] if n < len(starts) else None)
                      for n, item in enumerate(items)]

    def read(self) -> list[Reservation]:
        return self._read()[1]

    def update(self, change: Change, after: Optional[Callable[[list[Reservation]], None]] = None) -> None:
        with locked(self.path, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout):
            doc, table = self._read()
            new = change(table)
            if new is None:
                return
            # The document's other keys (a hand-written note) are kept.
            atomic_write(self.path, dump_yaml({**doc, "reservations": [r.to_dict() for r in new]}))
            if after is not None:
                after(new)
