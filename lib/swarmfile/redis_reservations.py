"""File reservations on Redis: one table shared by the agents of every host, checked on one clock.

Key, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    reservations    a string: every reservation as one JSON list, in the order they were made

``update`` is an optimistic transaction: WATCH the key, read the list, let reservations.py
check the overlaps and build the new list, write it in MULTI/EXEC. A writer that came in
between makes EXEC fail, and the round runs again on what that writer stored; so of 8 hosts
reserving overlapping patterns at once exactly one wins, as under the file's lock. A list that
does not parse stops every reader and writer, naming the key, and is never overwritten.

The overlap of patterns is decided here for every host; the identity check (two spellings of one
file, by device and inode) looks at this host's checkout, inside the same round. ``now()`` is the
server's ``TIME``, so expiries set and judged by hosts whose clocks differ agree. A holder's
liveness by pid counts only on its own host (liveness.dead_reason); elsewhere its TTL decides.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from .config import Config
from .errors import BackendUnavailable, ValidationError
from .redis_backend import RedisStore
from .reservation_store import Change, Reservation, ReservationTable

__all__ = ["RedisReservationTable"]

_RETRIES = 100  # optimistic rounds before giving up: 8 writers racing settle in a handful
_FIX = "fix it with SET, or DEL it (every reservation is then gone); it was not changed"


class RedisReservationTable(RedisStore, ReservationTable):
    """The reservations of one workspace in one Redis database (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.key = self._key("reservations")

    def where(self) -> str:
        return f"redis key {self.key}"

    def now(self) -> datetime:
        seconds, micros = self._run("read the server's clock", lambda: self.client.time())
        return datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int(micros))

    def _decode(self, raw: Any) -> list[Reservation]:
        if raw is None:
            return []
        try:
            items = json.loads(raw)
            if not isinstance(items, list):
                raise ValueError(f"not a list but {type(items).__name__}")
        except ValueError as exc:
            raise ValidationError(f"does not parse: {exc}", path=self.where(), hint=_FIX) from None
        return [Reservation.from_dict(item, f"{self.where()} item {n + 1}", hint=_FIX) for n, item in enumerate(items)]

    def read(self) -> list[Reservation]:
        return self._decode(self._run("read the reservations", lambda: self.client.get(self.key)))

    def update(self, change: Change, after: Optional[Callable[[list[Reservation]], None]] = None) -> None:
        import redis  # only a Redis backend gets here

        def attempt() -> tuple[bool, Optional[list[Reservation]]]:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self.key)
                    new = change(self._decode(pipe.get(self.key)))
                    if new is None:
                        return True, None
                    pipe.multi()
                    pipe.set(self.key, json.dumps([r.to_dict() for r in new], separators=(",", ":"),
                                                  ensure_ascii=False))
                    pipe.execute()
                    return True, new
                except redis.exceptions.WatchError:
                    return False, None  # another writer came first: check again against what it stored

        for _ in range(_RETRIES):
            done, written = self._run("update the reservations", attempt)
            if done:
                if written is not None and after is not None:
                    after(written)
                return
        raise BackendUnavailable(f"the reservations kept changing under {_RETRIES} attempts to update them",
                                 path=self.where(), hint="retry")
