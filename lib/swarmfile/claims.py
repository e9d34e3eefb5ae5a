"""Task leases with fencing tokens: who may work on a task, and until when.

The lease table (``stores.lease_table``: the file backend's journal under ``.swarm/leases/``)
is the truth about a claim; the task's ``**Status:**`` line in the Markdown only mirrors it
for people, written after the lease and repaired from it (``reap_expired``). Every claim of a task gets a
token one higher than any before it, and every holder action (renew, start, release,
complete, fail) presents its lease: if the token is no longer current, or the lease has
expired, the action raises LeaseLost and changes nothing. So a holder that was paused past
its TTL (SIGSTOP, a laptop lid, a long GC) can never complete a task someone else now owns.

A lease is free again when it expires, or at once when its holder is a dead process on this
host. Lock order, everywhere: the lease's lock, then the task file's lock.

Lease records are never deleted: the token of the next claim is read from them.

On a task board (a Redis backend with ``task_board: true``; task_board.py) ``claim_next`` and
``claim_task`` are the board's one script on the server, and nothing here writes task Markdown:
the planner mirrors every lease into it on the operator checkout (board_sync).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from . import task_graph
from . import tasks as taskmod
from . import task_store
from .clock import format_ts, in_seconds, parse_ts
from .config import Config, load_config, validate_id
from .errors import (AlreadyClaimed, BackendUnavailable, LeaseLost, LockTimeout, NotClaimable, NotFoundError,
                     SwarmError, warn_once)
from .lease_store import Assignment, Lease, LeaseState, LeaseTable
from .ready_query import claim_candidates, ready_tasks
from .stores import lease_table, task_board
from .liveness import dead_reason, my_identity
from .renew_watch import RENEW_MARGIN_SECONDS, RenewWatch

__all__ = [
    "Lease",
    "LeaseState",
    "claim_task",
    "claim_next",
    "ready_tasks",
    "renew",
    "start",
    "release",
    "complete",
    "fail",
    "revoke_unacknowledged",
    "reap_expired",
    "get_lease",
    "list_leases",
    "assign",
    "assignment_for",
    "clear_assignment",
    "list_assignments",
    "Assignment",
    "completed_in_place",
    "lease_lock",
    "RENEW_MARGIN_SECONDS",
    "RenewWatch",
    "uses_board",
]

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("swarmfile")


# ---------------------------------------------------------------------------- the lease table
# Storage is lease_store's: these helpers only name the workspace's table.


def _table(cfg: Config) -> LeaseTable:
    return lease_table(cfg)


def _read(cfg: Config, task_id: str) -> Optional[Lease]:
    return _table(cfg).read(task_id)


def _write(cfg: Config, lease: Lease) -> None:
    _table(cfg).write(lease)


def _lease_lock(cfg: Config, task_id: str, timeout: Optional[float] = None):
    return _table(cfg).lock(task_id, timeout)


def uses_board(*, root: Optional[PathLike] = None) -> bool:
    """Whether claims come from a shared task board (task_board.py): then only the planner writes
    task Markdown (board_sync.mirror), on the operator checkout, and nothing here does."""
    return task_board(load_config(root=root)) is not None


def get_lease(task_id: str, *, root: Optional[PathLike] = None) -> Optional[Lease]:
    """The current lease record of a task (held or ended), or None if it was never claimed."""
    return _read(load_config(root=root), validate_id(task_id, "task id"))


def list_leases(*, root: Optional[PathLike] = None, held_only: bool = False,
                errors: Optional[list] = None) -> list[Lease]:
    """All lease records, ordered by task id.

    A lease record that cannot be read raises its error, unless ``errors`` is a list: then the
    error is appended there and the record skipped (and left as it is).
    """
    leases = _table(load_config(root=root)).list(errors=errors)
    return [lease for lease in leases if not held_only or lease.state is LeaseState.HELD]


# ---------------------------------------------------------------------------- the task mirror


def _commit(cfg: Config, lease: Lease, task_path: Optional[Path] = None) -> None:
    """Write the lease, then mirror it into the task file.

    The lease is written first because it is the truth. A crash between the two writes
    leaves the task file showing the previous, runtime-owned status (claimed or
    in_progress); ``reap_expired`` finds such tasks and writes the lease's mirror again.
    The mirror of a lease still held (start) is not fsynced: only a power cut loses it, and that
    kills its holder too. An ended lease's mirror is: a task shown pending again after its
    completion was lost would look like a person's reopening, and be done twice.
    """
    _write(cfg, lease)
    if lease.mirror and task_board(cfg) is None:
        task_store.set_fields(task_path or _task_path(cfg, lease.task_id, lease), lease.mirror, root=cfg.root,
                              durable=lease.state is not LeaseState.HELD)


def _task_path(cfg: Config, task_id: str, lease: Optional[Lease] = None) -> Path:
    """The task's file: the one its lease was taken on while it is still there and holds the task.

    So a copy of the file made while the task runs (one id, two files) does not stop its holder
    from recording the outcome; ready_tasks leaves the id out until the copy is gone.
    """
    leased = (lease.extra.get("task_file") if lease is not None else None)
    if isinstance(leased, str):
        try:
            if task_store.load_task(leased).task_id == task_id:
                return Path(leased)
        except SwarmError:
            pass  # moved or broken since: look it up
    task = task_store.find_task(task_id, root=cfg.root)
    return task.path


# ---------------------------------------------------------------------------- claiming

# The statuses only the runtime writes: a task showing one of them is mirroring a lease.
_CLAIMABLE_WHEN_FREE = {taskmod.Status.CLAIMED, taskmod.Status.IN_PROGRESS}
_REQUEUED = {"Status": "pending", "Claimed By": "none"}


def claim_task(
    task_id: str,
    agent_id: str,
    ttl: Optional[float] = None,
    *,
    root: Optional[PathLike] = None,
    now: Optional[datetime] = None,
    pid: Optional[int] = None,
    host: Optional[str] = None,
    proc_start: Optional[int] = None,
    task_path: Optional[Path] = None,
    _from_ready: bool = False,
    _listed: Optional[taskmod.Task] = None,
) -> Lease:
    """Lease ``task_id`` to ``agent_id`` for ``ttl`` seconds (default: the configured lease TTL).

    The holder process defaults to this one; a planner claiming for an executor passes the
    executor's pid/host/proc_start. Raises AlreadyClaimed naming the live holder,
    NotClaimable when the task is not pending (or is backing off), NotFoundError.
    """
    cfg = load_config(root=root)
    if not _from_ready:  # claim_next checked the agent's id once, and a listed task's id is one
        validate_id(task_id, "task id")
        validate_id(agent_id, "agent id")
    ttl = cfg.lease_seconds if ttl is None else ttl
    if pid is None:
        ident = my_identity()
        pid, host, proc_start = ident["pid"], ident["host"], ident["proc_start"]
    board = task_board(cfg)
    if board is not None:  # one script on the server judges and leases (by its clock), or raises why not
        return board.claim(agent_id, ttl, pid=pid, host=host, proc_start=proc_start, only=task_id)  # type: ignore[return-value]
    now = now or _table(cfg).now()  # the table's clock: the Redis server's, shared by every host
    path = task_path or _task_path(cfg, task_id)
    if not _from_ready:
        # Lock-free first look: losers of a race skip a freshly claimed task without queueing
        # on its lock. Safe because a lease record is only ever read whole. (claim_next has just
        # looked, in its view of the table.)
        current = _read(cfg, task_id)
        if current is not None and current.free_reason(now) is None:
            raise AlreadyClaimed(f"task {task_id} is held by {current.agent_id} until {current.expires_at}",
                                 task_id=task_id, holder=current.agent_id)
    # From claim_next, a lock someone holds means they are claiming this very task: move on
    # at once (LockTimeout) rather than queue behind them for a task they are about to own.
    with _lease_lock(cfg, task_id, timeout=0 if _from_ready else None):
        current = _read(cfg, task_id)
        free = current.free_reason(now) if current is not None else "never claimed"
        if free is None:
            raise AlreadyClaimed(f"task {task_id} is held by {current.agent_id} until {current.expires_at}",
                                 task_id=task_id, holder=current.agent_id)
        if current is not None and current.not_before and now < parse_ts(current.not_before):
            raise NotClaimable(f"task {task_id} waits until {current.not_before} before its retry",
                               task_id=task_id)
        taken_over = current is not None and current.state is LeaseState.HELD
        # Check and mirror under the task's lock: a planner splitting the task holds the same
        # lock, so a task is never both claimed and split into sub-tasks.
        written: Optional[Lease] = None
        try:
            with task_store.edit_task(path, root=cfg.root, durable=False) as document:
                task = document.task
                if _listed is not None and _judged_otherwise(_listed, task):
                    raise _Changed(f"task {task_id} changed since it was listed", task_id=task_id, path=path)
                # ready_tasks already left out parents found by their sub-tasks' Parent Task field.
                if task.sub_tasks or (not _from_ready and _has_children(cfg, task_id)):
                    raise NotClaimable(f"task {task_id} was split into sub-tasks; it completes when they do",
                                       task_id=task_id, path=path)
                if not (task.status is taskmod.Status.PENDING
                        or (taken_over and task.status in _CLAIMABLE_WHEN_FREE)):
                    raise NotClaimable(f"task {task_id} is {task.status_text!r}, not pending", task_id=task_id,
                                       path=path, hint="set **Status:** pending to make it claimable")
                attempts = current.attempts if current else 0
                if current is not None and (current.mirror or {}).get("Status") == taskmod.Status.BLOCKED.value:
                    attempts = 0  # we marked it blocked and a person set it pending again: a fresh start
                lease = Lease(
                    task_id=task_id, agent_id=agent_id, token=(current.token if current else 0) + 1,
                    acquired_at=format_ts(now), expires_at=format_ts(in_seconds(ttl, now)),
                    pid=pid, host=host, proc_start=proc_start,
                    attempts=attempts,
                    mirror={"Status": taskmod.Status.CLAIMED.value, "Claimed By": agent_id},
                    extra={**(current.extra if current else {}), "task_file": str(path)},
                )
                _write(cfg, lease)  # the truth first; the mirror below is written when the block ends
                written = lease
                for name, value in lease.mirror.items():
                    document.set_field(name, value)
        except OSError as exc:
            if written is not None:
                # The lease is on disk but the task file could not be written (disk full): give
                # the claim back, or its own retry would meet AlreadyClaimed until the TTL ends.
                _write(cfg, replace(written, state=LeaseState.RELEASED, ended_at=format_ts(now),
                                    error=f"status mirror failed: {exc}"[:300], mirror=None))
            raise
        return lease


class _Changed(NotClaimable):
    """The task file read under its lock is not the one the ready list was judged by (a hand edit)."""


def _judged_otherwise(listed: taskmod.Task, task: taskmod.Task) -> bool:
    """Whether the ready query could judge ``task`` otherwise than ``listed``: status, order, family."""
    return (task.task_id != listed.task_id or task.status is not listed.status
            or taskmod.ready_order_key(task) != taskmod.ready_order_key(listed)
            or task.depends_on != listed.depends_on or task.sub_tasks != listed.sub_tasks
            or task.parent != listed.parent)


def _has_children(cfg: Config, task_id: str) -> bool:
    # Through the task index: a claim by id in a new process (an agent given its task) would
    # otherwise parse every task file to learn whether one names this task as its parent.
    return bool(task_graph.family(task_store.indexed_listing(cfg, errors=[])).children.get(task_id))


def claim_next(
    agent_id: str,
    ttl: Optional[float] = None,
    *,
    root: Optional[PathLike] = None,
    now: Optional[datetime] = None,
    skip: Iterable[str] = (),
    pid: Optional[int] = None,
    host: Optional[str] = None,
    proc_start: Optional[int] = None,
) -> Optional[Lease]:
    """Lease the first ready task (see ``ready_tasks``) to ``agent_id``, or None if none is free.

    On the files, each task is read again under its lock before it is leased: one edited by hand
    since the ready list was made (its status, priority, dependencies) is judged again from its file.
    """
    cfg = load_config(root=root)
    board = task_board(cfg)
    if board is not None:  # the shared board: pick and lease in one script on the server
        if pid is None:
            ident = my_identity()
            pid, host, proc_start = ident["pid"], ident["host"], ident["proc_start"]
        return board.claim(validate_id(agent_id, "agent id"), cfg.lease_seconds if ttl is None else ttl,
                           pid=pid, host=host, proc_start=proc_start, skip=skip)
    validate_id(agent_id, "agent id")
    if pid is None:
        ident = my_identity()
        pid, host, proc_start = ident["pid"], ident["host"], ident["proc_start"]
    skipped = set(skip)
    table = _table(cfg)
    for attempt in range(_RELISTS):
        last = attempt == _RELISTS - 1
        # What this process knows of the leases: a task leased by another agent is skipped unread
        # (its file, just rewritten by that claim, is not parsed again to learn it is taken).
        try:
            leased = table.held_view(now or table.now())
        except BackendUnavailable:
            raise
        except SwarmError:  # an unreadable table: each claim below reads it, and skips what it cannot read
            leased = None
        ready = claim_candidates(cfg, leased)
        # Tasks rewritten since the listing were most likely just claimed by another agent: try
        # the untouched ones first, then those (they may only have been edited by a person).
        touched: list[taskmod.Task] = []
        try:
            order, at = list(ready), 0
            if time.monotonic() < _contended_until:
                _spread(order, 0)  # racing other claimers lately: do not all start at the same task
            while at < len(order):  # one stat per task tried, not per task listed
                task = order[at]
                at += 1
                if task.task_id in skipped or (leased is not None and leased(task.task_id)):
                    continue
                if not task_store.unchanged_since_listing(task):
                    touched.append(task)
                    continue
                lease = _try_claim(task, agent_id, ttl, root, now, pid, host, proc_start, last)
                if lease is _LOST:
                    _lost_a_race()
                    _spread(order, at)
                elif lease is not None:
                    return lease
            for task in touched:
                lease = _try_claim(task, agent_id, ttl, root, now, pid, host, proc_start, last)
                if lease is not None and lease is not _LOST:
                    return lease
            return None
        except _Changed as exc:
            task_store.forget_cached(exc.path)  # the next listing reads it again, and judges it by that
    return None


# Ready lists made within one claim_next when tasks turn out edited by hand; in the last, such a
# task is skipped (and read again by the next listing) rather than the list made again.
_RELISTS = 8
# After losing a race, the next task is tried by every other loser too: each takes one of this
# many next tasks instead, picked by its process id (of the same priority: the order of
# priorities always holds).
_SPREAD = 8


def _spread(order: list, at: int) -> None:
    """Move one of the next ``_SPREAD`` tasks of ``order`` (from ``at``), of the same priority as the
    next one, to the front: claimers that lost a race spread out instead of queueing on one task."""
    window = min(_SPREAD, len(order) - at)
    if window < 2:
        return
    pick = at + _PID_SALT % window
    rank = taskmod.ready_order_key(order[at])[0]
    if pick != at and taskmod.ready_order_key(order[pick])[0] == rank:
        order.insert(at, order.pop(pick))


_PID_SALT = 0  # a process's pick among the next tasks (see _spread): from its pid, again after a fork
# Until then (time.monotonic) this process starts each claim_next at its pick among the first tasks, not
# at the first: it lost a race lately, and claimers that all start at the first lose to each other again.
_contended_until = 0.0
_CONTENDED_SECONDS = 1.0


def _lost_a_race() -> None:
    global _contended_until
    _contended_until = time.monotonic() + _CONTENDED_SECONDS


def _new_salt() -> None:
    global _PID_SALT
    _PID_SALT = os.getpid() * 2654435761 >> 7


_new_salt()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_salt)


_LOST: Any = object()  # _try_claim: another agent holds the task, or is claiming it right now (else a Lease or None)


def _try_claim(task: taskmod.Task, agent_id: str, ttl: Optional[float], root: Optional[PathLike],
               now: Optional[datetime], pid: Optional[int], host: Optional[str],
               proc_start: Optional[int], skip_changed: bool = False) -> Any:
    try:
        return claim_task(task.task_id, agent_id, ttl, root=root, now=now, pid=pid, host=host,
                          proc_start=proc_start, task_path=task.path, _from_ready=True, _listed=task)
    except _Changed as exc:
        if not skip_changed:
            raise
        task_store.forget_cached(exc.path)
        return None
    except (AlreadyClaimed, LockTimeout):
        return _LOST  # LockTimeout: another agent is claiming it right now; try the next one
    except (NotClaimable, NotFoundError):
        return None
    except BackendUnavailable:
        raise  # the lease store is down, not this task: the caller pauses
    except SwarmError as exc:  # a corrupt lease or task file: skip that task, keep working
        warn_once(log, "cannot claim %s: %s", task.task_id, exc)
        return None


# ---------------------------------------------------------------------------- holder actions


def _current(cfg: Config, lease: Lease, now: datetime, action: str) -> Lease:
    """The stored lease, if ``lease`` is still the live one; LeaseLost otherwise."""
    stored = _read(cfg, lease.task_id)
    if stored is None or stored.token != lease.token or stored.agent_id != lease.agent_id:
        holder = f"{stored.agent_id} (token {stored.token})" if stored else "nobody"
        raise LeaseLost(f"cannot {action} task {lease.task_id}: token {lease.token} is stale, "
                        f"the task is now with {holder}", task_id=lease.task_id,
                        holder=stored.agent_id if stored else None)
    if stored.state is not LeaseState.HELD:
        raise LeaseLost(f"cannot {action} task {lease.task_id}: lease was already {stored.state.value}",
                        task_id=lease.task_id)
    if stored.expired(now):
        raise LeaseLost(f"cannot {action} task {lease.task_id}: lease expired at {stored.expires_at}",
                        task_id=lease.task_id, hint="renew leases well before they expire")
    return stored


def renew(lease: Lease, ttl: Optional[float] = None, *, root: Optional[PathLike] = None,
          now: Optional[datetime] = None) -> Lease:
    """Extend a live lease by ``ttl`` seconds from now; LeaseLost if it is no longer current."""
    cfg = load_config(root=root)
    now = now or _table(cfg).now()
    with _lease_lock(cfg, lease.task_id):
        stored = _current(cfg, lease, now, "renew")
        renewed = replace(stored, expires_at=format_ts(in_seconds(cfg.lease_seconds if ttl is None else ttl, now)))
        _write(cfg, renewed)
        return renewed


def start(lease: Lease, *, root: Optional[PathLike] = None, now: Optional[datetime] = None) -> Lease:
    """The holder acknowledges the task and starts work: the task shows ``in_progress``."""
    cfg = load_config(root=root)
    now = now or _table(cfg).now()
    with _lease_lock(cfg, lease.task_id):
        stored = _current(cfg, lease, now, "start")
        started = replace(stored, acknowledged_at=format_ts(now),
                          mirror={**(stored.mirror or {}), "Status": taskmod.Status.IN_PROGRESS.value})
        _commit(cfg, started)
        return started


def _end(lease: Lease, state: LeaseState, root: Optional[PathLike], now: Optional[datetime],
         action: str, task_fields: dict[str, str], **changes: Any) -> Lease:
    cfg = load_config(root=root)
    now = now or _table(cfg).now()
    with _lease_lock(cfg, lease.task_id):
        stored = _current(cfg, lease, now, action)
        ended = replace(stored, state=state, ended_at=format_ts(now), mirror=task_fields, **changes)
        _commit(cfg, ended)
    _requeue(cfg, ended)
    return ended


def _requeue(cfg: Config, lease: Lease) -> None:
    """On a task board, let claims look at a task again whose lease ended unfinished."""
    board = task_board(cfg)
    if board is not None and lease.state is not LeaseState.COMPLETED:
        try:
            board.requeue(lease.task_id)
        except SwarmError as exc:  # the planner's next publish queues it again
            warn_once(log, "could not requeue %s on the task board: %s", lease.task_id, exc)


def release(lease: Lease, *, retry_after: float = 0.0, reason: Optional[str] = None,
            status: str = "pending", root: Optional[PathLike] = None, now: Optional[datetime] = None) -> Lease:
    """Give the task back unfinished: it is pending again, for anyone after ``retry_after`` seconds.

    ``status`` other than pending (``needs_attention``) hands it to a person instead.
    """
    now = now or _table(load_config(root=root)).now()
    not_before = format_ts(in_seconds(retry_after, now)) if retry_after > 0 else None
    return _end(lease, LeaseState.RELEASED, root, now, "release", {**_REQUEUED, "Status": status},
                not_before=not_before, error=reason)


def complete(lease: Lease, result: Any = None, *, root: Optional[PathLike] = None,
             now: Optional[datetime] = None) -> Lease:
    """Mark the task completed by the lease holder; refused (LeaseLost) with a stale lease."""
    now = now or _table(load_config(root=root)).now()
    moment = format_ts(now)
    extra = dict(lease.extra)
    if result is not None:
        extra["result"] = result
    return _end(lease, LeaseState.COMPLETED, root, now, "complete",
                {"Status": taskmod.Status.COMPLETED.value, "Completed": moment}, extra=extra)


def fail(lease: Lease, error: str = "", *, max_attempts: int = 1, retry_after: float = 0.0,
         root: Optional[PathLike] = None, now: Optional[datetime] = None) -> Lease:
    """Record a failed run; the task is retried after ``retry_after`` seconds, or blocked.

    After ``max_attempts`` failed runs in all the task is marked ``blocked`` for a person to
    look at; before that it is pending again but no one may claim it before ``not_before``.
    """
    now = now or _table(load_config(root=root)).now()
    attempts = lease.attempts + 1
    if attempts >= max_attempts:
        task_fields = {"Status": taskmod.Status.BLOCKED.value, "Claimed By": "none"}
        not_before = None
    else:
        task_fields = {"Status": taskmod.Status.PENDING.value, "Claimed By": "none"}
        not_before = format_ts(in_seconds(retry_after, now)) if retry_after > 0 else None
    return _end(lease, LeaseState.FAILED, root, now, "fail", task_fields,
                attempts=attempts, not_before=not_before, error=str(error)[:500])


def revoke_unacknowledged(lease: Lease, *, root: Optional[PathLike] = None,
                          now: Optional[datetime] = None) -> Lease:
    """Take back a lease a planner assigned but its executor never acknowledged.

    LeaseLost if the executor acknowledged in the meantime (or the lease moved on): the
    check and the release happen under the same lock as the executor's ``start``.
    """
    cfg = load_config(root=root)
    now = now or _table(cfg).now()
    with _lease_lock(cfg, lease.task_id):
        stored = _read(cfg, lease.task_id)
        if (stored is None or stored.token != lease.token or stored.state is not LeaseState.HELD
                or stored.acknowledged_at is not None):
            raise LeaseLost(f"cannot revoke task {lease.task_id}: it was acknowledged or moved on",
                            task_id=lease.task_id)
        revoked = replace(stored, state=LeaseState.RELEASED, ended_at=format_ts(now), error="not acknowledged",
                          mirror=_REQUEUED)
        _commit(cfg, revoked)
    _requeue(cfg, revoked)
    return revoked


def reap_expired(now: Optional[datetime] = None, *, root: Optional[PathLike] = None) -> list[tuple[Lease, str]]:
    """Requeue every task whose lease expired or whose holder died; repair crash-torn mirrors.

    Looks at the tasks whose file shows a runtime-owned status (claimed, in_progress). A live
    lease is left alone; an expired one, or one held by a dead process, ends as ``expired``
    and its task is pending again; a lease that already ended (its holder died between
    writing the lease and its task file) has its mirror written again. Returns each lease
    changed or repaired with the reason. Tokens are kept, so the next claim outranks the old.
    """
    cfg = load_config(root=root)
    now = now or _table(cfg).now()
    if task_board(cfg) is not None:
        return _reap_leases(cfg, now)
    changed = []
    candidates = [t for t in task_store.list_tasks(root=cfg.root, include_completed=True, errors=[])
                  if t.status in _CLAIMABLE_WHEN_FREE]
    for task in candidates:
        try:
            seen = _read(cfg, task.task_id)
        except BackendUnavailable:
            raise
        except SwarmError as exc:  # one corrupt lease record must not stop the requeue of the rest
            warn_once(log, "cannot reap %s: %s", task.task_id, exc)
            continue
        if seen is None or seen.free_reason(now) is None:
            continue  # live, or claimed by hand without a lease: not ours to undo
        with _lease_lock(cfg, task.task_id):
            stored = _read(cfg, task.task_id)
            reason = stored.free_reason(now) if stored is not None else None
            if stored is None or reason is None:
                continue
            # The listing above was taken before the lock: the holder may have finished (and
            # moved the file) since. Judge by the task as it is now.
            try:
                fresh: Optional[taskmod.Task] = task_store.load_task(task.path, use_cache=False)
            except NotFoundError:
                fresh = None
            shows_held = fresh is not None and fresh.status in _CLAIMABLE_WHEN_FREE
            if stored.state is LeaseState.HELD:
                stored = replace(stored, state=LeaseState.EXPIRED, ended_at=format_ts(now), error=reason,
                                 mirror=dict(_REQUEUED))
                _write(cfg, stored)
            elif not shows_held:
                continue  # ended normally, mirror and all: nothing to repair
            else:
                reason = f"repaired the task status after a crash ({reason})"
            if shows_held and stored.mirror:
                task_store.set_fields(task.path, stored.mirror, root=cfg.root, durable=False)
            changed.append((stored, reason))
    return changed


def _reap_leases(cfg: Config, now: datetime) -> list[tuple[Lease, str]]:
    """reap_expired on a task board: judged by the lease table alone (the planner mirrors the Markdown)."""
    changed = []
    for seen in _table(cfg).list(errors=[]):  # doctor names a record that does not parse
        if seen.state is not LeaseState.HELD or seen.free_reason(now) is None:
            continue
        with _lease_lock(cfg, seen.task_id):
            stored = _read(cfg, seen.task_id)
            reason = stored.free_reason(now) if stored is not None else None
            if stored is None or stored.state is not LeaseState.HELD or reason is None:
                continue
            stored = replace(stored, state=LeaseState.EXPIRED, ended_at=format_ts(now), error=reason,
                             mirror=dict(_REQUEUED))
            _write(cfg, stored)
        _requeue(cfg, stored)
        changed.append((stored, reason))
    return changed


_FINISH_GRACE_SECONDS = 60.0  # a live holder moves its completed task within moments of completing


def completed_in_place(*, root: Optional[PathLike] = None,
                       now: Optional[datetime] = None) -> list[tuple[taskmod.Task, Lease]]:
    """Tasks left in tasks/active with a completed lease by a holder that died before moving them.

    Only holders known dead, or completions older than a minute: a live holder is still
    about to log and move its task itself.
    """
    cfg = load_config(root=root)
    if task_board(cfg) is not None:
        return []  # the planner's mirror moves them (board_sync.mirror)
    now = now or _table(cfg).now()
    found = []
    for task in task_store.list_tasks(directory=cfg.tasks_active, errors=[]):
        if task.status is not taskmod.Status.COMPLETED:
            continue
        try:
            lease = _read(cfg, task.task_id)
        except SwarmError:
            continue  # doctor reports a corrupt lease record
        if lease is None or lease.state is not LeaseState.COMPLETED:
            continue
        old = lease.ended_at is not None and (now - parse_ts(lease.ended_at)).total_seconds() > _FINISH_GRACE_SECONDS
        if old or dead_reason(lease.pid, lease.host, lease.proc_start) is not None:
            found.append((task, lease))
    return found


def lease_lock(task_id: str, *, root: Optional[PathLike] = None):
    """The lock of a task's lease, for work that must not interleave with its holder's actions."""
    cfg = load_config(root=root)
    return _lease_lock(cfg, validate_id(task_id, "task id"))


# ---------------------------------------------------------------------------- planner assignments
# A planner that dispatches first claims the task FOR the executor (so no one else can take
# it), then leaves the lease here for the executor to pick up and acknowledge (``start``).


def assign(lease: Lease, *, root: Optional[PathLike] = None, now: Optional[datetime] = None) -> None:
    """Hand ``lease`` (claimed for its agent) to that agent's next look for work."""
    table = _table(load_config(root=root))
    table.assign(lease, format_ts(now or table.now()))


def assignment_for(agent_id: str, *, root: Optional[PathLike] = None) -> Optional[tuple[Lease, str]]:
    """The lease assigned to ``agent_id`` and when it was assigned, or None."""
    found = _table(load_config(root=root)).assignment(validate_id(agent_id, "agent id"))
    return None if found is None else (found.lease, found.assigned_at)


def list_assignments(*, root: Optional[PathLike] = None, errors: Optional[list] = None) -> list[Assignment]:
    """Every assignment still waiting for its agent, by agent id."""
    return _table(load_config(root=root)).assignments(errors=errors)


def clear_assignment(agent_id: str, token: Optional[int] = None, *, root: Optional[PathLike] = None) -> bool:
    """Remove the assignment of ``agent_id`` (only if it still carries ``token``, when given)."""
    return _table(load_config(root=root)).clear_assignment(validate_id(agent_id, "agent id"), token)
