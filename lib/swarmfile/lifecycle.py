"""One task lifecycle: how a task's outcome is decided and recorded, for every driver of an agent.

The executor loop, the tmux bridge and the MCP server each learn in their own way that an
agent acknowledged, finished, failed or is stuck; from there on they all call this module,
so a task finished one way is finished exactly as one finished another way.

Every outcome is recorded in one order, and each step is recoverable if the process dies
after it:

1. the truth: the lease (claims) ends as completed / failed / released, fenced by its token;
   a stale lease raises LeaseLost there and nothing else happens;
2. the event in events.yaml;
3. the task file moves to tasks/completed/ (completions only).

A holder killed after step 1 leaves a completed lease on a task still in tasks/active:
``recover_completions`` (run by executors and the planner on every look) logs the event
unless the log already has one for that lease's token, and moves the file. A move that
fails (a full disk, a name taken in completed/) is reported and left to the same recovery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from . import claims
from . import events
from . import merge_queue
from . import tasks
from . import task_store
from . import worktrees
from .config import Config
from .errors import LeaseLost, SwarmError

__all__ = ["RetryPolicy", "Outcome", "acknowledge", "begin", "merge_back", "merge_failed", "needs_attention", "done", "failed",
           "pause", "give_back", "recover_completions"]

log = logging.getLogger("swarmfile")

_PAUSE_KINDS = ("waiting", "help")


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed task is retried and how long a paused one rests (swarm.yaml ``executor:``)."""

    max_attempts: int  # failed runs in all before the task is blocked for a person
    backoff: float  # seconds before the first retry; doubles with every failure of the task
    wait_retry: float  # seconds before a task given back with waiting/help may be claimed again

    @classmethod
    def from_config(cls, cfg: Config, *, max_attempts: Optional[int] = None, backoff: Optional[float] = None,
                    wait_retry: Optional[float] = None) -> "RetryPolicy":
        setting = cfg.settings["executor"]
        return cls(
            max_attempts=int(setting["max_attempts"] if max_attempts is None else max_attempts),
            backoff=cfg.seconds("executor", "backoff_seconds") if backoff is None else float(backoff),
            wait_retry=cfg.seconds("executor", "wait_retry_seconds") if wait_retry is None else float(wait_retry),
        )

    def retry_after(self, failures_so_far: int) -> float:
        return self.backoff * (2 ** failures_so_far)


@dataclass(frozen=True)
class Outcome:
    """What was recorded: the event written and the lease as it ended (None if it was lost)."""

    event: str  # acknowledged, completed, failed, waiting, help, released, needs_attention or lease_lost
    lease: Optional[claims.Lease]
    reason: str = ""
    blocked: bool = False  # a failure that used up the task's attempts
    moved: bool = False  # a completion whose task file is now in tasks/completed/
    data: Optional[dict[str, Any]] = None  # the event's fields

    @property
    def lost(self) -> bool:
        return self.event == "lease_lost"


def _lost(lease: claims.Lease, agent_id: str, exc: LeaseLost, root: Path, **data: Any) -> Outcome:
    fields = {"reason": exc.reason, "token": lease.token, **data}
    events.append_event("lease_lost", agent_id, lease.task_id, root=root, **fields)
    return Outcome("lease_lost", None, exc.reason, data=fields)


def acknowledge(lease: claims.Lease, agent_id: str, *, root: Path, now: Optional[datetime] = None,
                **data: Any) -> Outcome:
    """The agent has taken the task in hand: the lease is started, ``acknowledged`` logged."""
    try:
        started = claims.start(lease, root=root, now=now)
    except LeaseLost as exc:
        return _lost(lease, agent_id, exc, root, marker="ACK", **data)
    fields = {"token": lease.token, **data}
    events.append_event("acknowledged", agent_id, lease.task_id, root=root, **fields)
    return Outcome("acknowledged", started, data=fields)


def begin(lease: claims.Lease, *, root: Path, now: Optional[datetime] = None) -> Optional[claims.Lease]:
    """A driver that claimed for itself starts at once (nobody to acknowledge): the started lease, or None if lost.

    No event: the driver logs ``started`` with what it knows of the run.
    """
    try:
        return claims.start(lease, root=root, now=now)
    except LeaseLost:
        return None


def merge_back(lease: claims.Lease, agent_id: str, worktree: worktrees.Worktree, *, root: Path,
               title: Optional[str] = None) -> dict[str, Any]:
    """Commit the worktree, queue its branch and drain the merge queue; how this task's merge went.

    Returns the fields for the ``completed`` event (``merge``, ``branch``). Call it while the
    lease is still renewed, then ``done`` (merged, nothing to merge, or queued behind a dirty
    checkout) or ``needs_attention`` (``merge_failed`` says which).
    """
    entry = merge_queue.finish(worktree, title, root=root)
    if entry is None:
        return {"merge": "nothing to merge"}
    try:
        merge_queue.process_queue(root=root)
    except SwarmError as exc:  # e.g. the root checkout is dirty: the entry waits for a later run
        events.append_event("merge_waiting", agent_id, lease.task_id, root=root, reason=str(exc), branch=entry.branch)
        return {"merge": "queued", "branch": entry.branch}
    ours = next((e for e in merge_queue.read_queue(root=root) if e.id == entry.id), None)
    return {"merge": ours.status if ours is not None and ours.status else "queued", "branch": entry.branch}


def merge_failed(merge: dict[str, Any]) -> bool:
    """Whether ``merge_back``'s answer means a person must take over (conflict, or git refused)."""
    return merge.get("merge") in (merge_queue.MergeStatus.CONFLICT.value, merge_queue.MergeStatus.FAILED.value)


def needs_attention(lease: claims.Lease, agent_id: str, reason: str, *, root: Path,
                    now: Optional[datetime] = None) -> Outcome:
    """Hand the task to a person: the lease ends and the task shows ``needs_attention``.

    Logs no event of its own: the caller's cause (the merge queue's ``merge_conflict``) is the record.
    """
    try:
        ended = claims.release(lease, reason=reason, status=tasks.Status.NEEDS_ATTENTION.value, root=root, now=now)
    except LeaseLost as exc:
        return _lost(lease, agent_id, exc, root)
    return Outcome("needs_attention", ended, reason)


def done(lease: claims.Lease, agent_id: str, *, root: Path, result: Optional[dict[str, Any]] = None,
         now: Optional[datetime] = None, **data: Any) -> Outcome:
    """The agent finished: complete the lease, log ``completed``, move the task to tasks/completed/.

    ``result`` is kept in the lease; ``data`` goes into the event. The caller must stop renewing
    the lease first (a renewal after the completion would be refused).
    """
    try:
        ended = claims.complete(lease, result=result, root=root, now=now)
    except LeaseLost as exc:
        return _lost(lease, agent_id, exc, root, marker="DONE")
    fields = {**data, "token": lease.token}
    events.append_event("completed", agent_id, lease.task_id, root=root, **fields)
    return Outcome("completed", ended, moved=_move(lease.task_id, root), data=fields)


def _move(task_id: str, root: Path) -> bool:
    """Move a completed task to tasks/completed/; a failure is reported and left to recovery."""
    if claims.uses_board(root=root):
        return False  # on a task board the planner moves it, on the operator checkout (board_sync.mirror)
    try:
        task_store.move_to_completed(task_id, root=root)
        return True
    except (SwarmError, OSError) as exc:
        log.warning("task %s is completed but could not be moved to tasks/completed/: %s "
                    "(it is moved on a later look once the cause is fixed)", task_id, exc)
        return False


def failed(lease: claims.Lease, agent_id: str, reason: str, *, policy: RetryPolicy, root: Path,
           now: Optional[datetime] = None, **data: Any) -> Outcome:
    """A failed run: the task is retried after a doubling backoff, or blocked after the last attempt.

    Logs ``failed`` (with ``retry_in_seconds`` or ``blocked: true``) and, when blocked, ``blocked``.
    """
    retry = policy.retry_after(lease.attempts)
    try:
        ended = claims.fail(lease, reason, max_attempts=policy.max_attempts, retry_after=retry, root=root, now=now)
    except LeaseLost as exc:
        return _lost(lease, agent_id, exc, root, marker="ERROR")
    blocked = ended.attempts >= policy.max_attempts
    fields = {"error": reason, **data, "token": lease.token,
              **({"blocked": True} if blocked else {"retry_in_seconds": retry})}
    events.append_event("failed", agent_id, lease.task_id, root=root, **fields)
    if blocked:
        events.append_event("blocked", agent_id, lease.task_id, root=root, attempts=ended.attempts, error=reason)
    return Outcome("failed", ended, reason, blocked=blocked, data=fields)


def pause(lease: claims.Lease, agent_id: str, kind: str, message: str, *, policy: RetryPolicy, root: Path,
          now: Optional[datetime] = None, **data: Any) -> Outcome:
    """The agent is blocked (``waiting``) or has a question (``help``): not a failure.

    The task goes back to the queue and rests ``policy.wait_retry`` seconds before anyone may
    claim it again.
    """
    if kind not in _PAUSE_KINDS:
        raise ValueError(f"pause kind must be one of {_PAUSE_KINDS}, not {kind!r}")
    try:
        ended = claims.release(lease, retry_after=policy.wait_retry, reason=f"{kind}: {message}", root=root, now=now)
    except LeaseLost as exc:
        return _lost(lease, agent_id, exc, root, marker=kind.upper())
    fields = {"message": message, **data, "token": lease.token, "retry_in_seconds": policy.wait_retry}
    events.append_event(kind, agent_id, lease.task_id, root=root, **fields)
    return Outcome(kind, ended, message, data=fields)


def give_back(lease: claims.Lease, agent_id: str, reason: str, *, root: Path, now: Optional[datetime] = None,
              **data: Any) -> Outcome:
    """The driver stops before the task is done (a stop signal, a lost pane): free it for anyone now."""
    try:
        ended = claims.release(lease, reason=reason, root=root, now=now)
    except LeaseLost as exc:
        return Outcome("lease_lost", None, exc.reason)  # someone else has it: nothing of ours to give back
    fields = {"reason": reason, **data, "token": lease.token}
    events.append_event("released", agent_id, lease.task_id, root=root, **fields)
    return Outcome("released", ended, reason, data=fields)


def recover_completions(agent_id: str, *, root: Path, now: Optional[datetime] = None) -> list[str]:
    """Finish what a holder killed right after completing left undone: log the event, move the task.

    Returns the task ids recovered. The ``completed`` event is written only if the log has
    none for that lease's token, so a recovery never logs a completion twice.
    """
    recovered = []
    for task, lease in claims.completed_in_place(root=root, now=now):
        # Under the lease's lock: of a planner and executors recovering at once, one does it.
        with claims.lease_lock(task.task_id, root=root):
            try:
                current = task_store.find_task(task.task_id, root=root)
            except SwarmError:
                continue
            if current.path is None or current.path.parent != task.path.parent:
                continue  # moved meanwhile
            logged = any(e.get("token") == lease.token
                         for e in events.read_events(task_id=task.task_id, types=["completed"], root=root))
            if not logged:
                events.append_event("completed", agent_id, task.task_id, root=root, token=lease.token,
                                    recovered=True, completed_by=lease.agent_id)
            if not _move(task.task_id, root):
                continue
        recovered.append(task.task_id)
    return recovered
