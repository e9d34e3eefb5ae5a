"""RenewWatch: a lease holder's timer that gives the lease up when renewals stop succeeding in time.

An executor (and an agent session) renews its lease from a beat thread; if no renewal succeeds
for too long (the server unreachable, the machine paused), the holder must stop its agent before
the lease can expire and be handed to someone else. claims.py re-exports both names.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

__all__ = ["RenewWatch", "RENEW_MARGIN_SECONDS"]

# A holder gives its lease up (stops its agent) when no renewal has succeeded by this long (or a
# third of the TTL, if less) before the lease could expire: 2 s for the agent to exit after
# SIGTERM, and 1 s to spare. Timed on the holder's monotonic clock from the moment it sent its
# last renewal that succeeded, by a timer (RenewWatch), so a renewal stuck on an unreachable
# server cannot delay it: a lease granted by the server's clock outlives its agent.
RENEW_MARGIN_SECONDS = 3.0


class RenewWatch:
    """Calls ``give_up`` (once, in a timer thread) unless the lease in hand is renewed in time.

    ``renewed(asked)`` after each successful claim or renewal (``asked``: ``time.monotonic()``
    when its request was sent); ``stop()`` when the lease is no longer in hand. ``fired`` says
    whether ``give_up`` was called for the lease in hand.
    """

    def __init__(self, ttl: float, give_up: "Callable[[], None]") -> None:
        self.ttl = ttl
        self._give_up = give_up
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self.fired = False

    def renewed(self, asked: float) -> None:
        deadline = asked + self.ttl - min(RENEW_MARGIN_SECONDS, self.ttl / 3)
        with self._lock:
            self.stop_unlocked()
            self.fired = False
            self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self.fired or self._timer is None:
                return
            self.fired, self._timer = True, None
        self._give_up()

    def stop_unlocked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        with self._lock:
            self.stop_unlocked()
