"""The merge queue on Redis: one order and one merge lock for every host.

Keys, under the workspace's prefix ``swarm:{NAMESPACE}:`` (redis_backend):

    merge:queue     a list: the queue's records as JSON, in the order they were appended (RPUSH)
    merge:lock      the merge lock: its holder's token, with an expiry (``PX``)

The lock (``RedisLock``) is ``SET NX PX`` with a token unique to the holding ``with`` block. A
thread renews the expiry every third of the lock's lifetime while the block runs, so a long merge
keeps it, and a holder that died (or lost the server) frees it at most
``worktrees.merge_lock_ttl_seconds`` later. Renewal and release are compare-and-set scripts: a
holder whose lock expired and was taken by another can neither extend nor delete the other's
lock. A holder that finds its lock gone logs it; the merge it is running is not cut short: with
``worktrees.remote`` the remote takes the base only as a fast-forward, so an overlap costs a
retry, not a lost merge. Single Redis node: no Redlock.

Inside the Redis lock the host's own file lock is taken as well (merge_queue_store.host_lock):
the Redis lock orders the hosts; the file lock keeps two processes of one host out of its
checkout at once even after a Redis lock expired under a paused holder.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from .clock import HOSTNAME
from .config import Config
from .errors import BackendUnavailable, LockTimeout, SwarmError, ValidationError
from .merge_queue_store import MergeQueueStore, check_records, host_lock
from .redis_backend import RedisStore, call

__all__ = ["RedisMergeQueue", "RedisLock"]

log = logging.getLogger("swarmfile")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_FIX = "fix it with LSET, or LREM it; it was not changed"
_POLL_FIRST, _POLL_MOST = 0.01, 0.25  # seconds between attempts to take a held lock (doubling)


class RedisLock:
    """A lock on one Redis key with a token and an expiry renewed while held (see the module docstring).

    ``store`` is the RedisStore whose client and error handling it uses; ``ttl`` seconds is how
    long the lock outlives a holder that stopped renewing it.
    """

    def __init__(self, store: RedisStore, key: str, ttl: float) -> None:
        self.store, self.key, self.ttl_ms = store, key, max(1, int(ttl * 1000))
        self._scripts: dict[str, Any] = {}

    def _script(self, name: str, source: str) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self.store.client.register_script(source)
        return self._scripts[name]

    def _call(self, action: str, fn: Any) -> Any:
        return call(self.store.url, action, fn)

    def acquire(self, timeout: float) -> str:
        """Take the lock, waiting at most ``timeout`` seconds; returns the token that holds it."""
        token = f"{HOSTNAME}:{os.getpid()}:{uuid.uuid4().hex}"
        deadline, pause = time.monotonic() + timeout, _POLL_FIRST
        while True:
            if self._call("take the merge lock",
                          lambda: self.store.client.set(self.key, token, nx=True, px=self.ttl_ms)):
                return token
            left = deadline - time.monotonic()
            if left <= 0:
                holder = self._call("read the merge lock", lambda: self.store.client.get(self.key))
                shown = holder.decode(errors="replace") if isinstance(holder, bytes) else holder
                raise LockTimeout(f"redis key {self.key}", timeout, holder=shown.rsplit(":", 1)[0] if shown else None)
            time.sleep(min(pause, left))  # no event to wait on: the holder may be on another host
            pause = min(pause * 2, _POLL_MOST)

    def renew(self, token: str) -> bool:
        """Extend the lock held by ``token`` by its lifetime; False when it is not held by ``token`` any more."""
        return bool(self._call("renew the merge lock",
                               lambda: self._script("renew", _RENEW)(keys=[self.key], args=[token, self.ttl_ms])))

    def release(self, token: str) -> bool:
        """Free the lock if ``token`` still holds it; False when it had expired (and maybe gone to another)."""
        return bool(self._call("release the merge lock",
                               lambda: self._script("release", _RELEASE)(keys=[self.key], args=[token])))

    @contextmanager
    def held(self, timeout: float) -> Iterator[str]:
        """Hold the lock for the ``with`` block, renewed by a thread; yields the token."""
        token = self.acquire(timeout)
        stop = threading.Event()

        def keep() -> None:
            while not stop.wait(self.ttl_ms / 3000):
                try:
                    if not self.renew(token):
                        log.warning("the merge lock %s expired while held (a pause longer than %.1f s?); "
                                    "another holder may be merging", self.key, self.ttl_ms / 1000)
                        return
                except SwarmError as exc:  # the server is unreachable: try again, the expiry decides
                    log.warning("could not renew the merge lock %s: %s", self.key, exc)

        renewer = threading.Thread(target=keep, name="merge-lock-renewer", daemon=True)
        renewer.start()
        try:
            yield token
        finally:
            stop.set()
            renewer.join()
            try:
                self.release(token)
            except BackendUnavailable as exc:  # it frees itself at expiry
                log.warning("could not release the merge lock %s: %s", self.key, exc)


class RedisMergeQueue(RedisStore, MergeQueueStore):
    """The merge queue of one workspace in one Redis database (see the module docstring)."""

    shared = True

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.queue = self._key("merge:queue")
        self.merge_lock = RedisLock(self, self._key("merge:lock"),
                                    float(cfg.get("worktrees", "merge_lock_ttl_seconds")))

    def where(self) -> str:
        return f"redis key {self.queue}"

    def append(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        self._run("add to the merge queue", lambda: self.client.rpush(self.queue, text))

    def records(self) -> list[dict[str, Any]]:
        raw = self._run("read the merge queue", lambda: self.client.lrange(self.queue, 0, -1))
        items: list[Any] = []
        for number, text in enumerate(raw, 1):
            try:
                items.append(json.loads(text))
            except ValueError as exc:
                raise ValidationError(f"queue entry {number} does not parse: {exc}", path=self.where(),
                                      hint=_FIX) from None
        return check_records(items, self.where())

    @contextmanager
    def lock(self, timeout: float) -> Iterator[Optional[str]]:
        started = time.monotonic()
        with self.merge_lock.held(timeout) as token:
            with host_lock(self.cfg, max(0.0, timeout - (time.monotonic() - started))):
                yield token
