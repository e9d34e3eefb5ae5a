"""The operator checkout and the task board kept in step: publish the Markdown, mirror the leases back.

Used on a task board (a Redis backend with ``task_board: true``; task_board.py). The planner, which
runs on the operator checkout, does both every round:

- ``mirror`` first: every lease that moved on since the Markdown last showed it (its ``stamp``
  differs from the ``seen`` stamp published with the task) is written into the task's file, the
  way claims writes it on one host (Status, Claimed By, Completed); a completed task moves to
  tasks/completed/. A completion whose ``completed`` event its holder never wrote (it died right
  after completing) gets one, once, as recover_completions does on one host.
- ``publish`` then: every task file that changed since it was last published (by its text's
  digest, or the ``seen`` stamp the mirror just wrote) is put on the board with its text; a task
  whose file is gone is withdrawn.

Executors on any host take the text of the task they run from the board (``local_task``): a copy
under ``.swarm/tasks/`` for the agent CLI, never a file in tasks/active.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable, Optional, Union

from . import claims
from . import events
from . import task_graph
from . import task_store
from . import tasks as taskmod
from .clock import HOSTNAME, parse_ts
from .config import Config, load_config, validate_id
from .errors import NotFoundError, SwarmError, ValidationError, warn_once
from .fileio import atomic_write, read_text
from .liveness import dead_reason
from .stores import lease_table, task_board
from .task_board import BoardEntry, TaskBoard, board_status, copy_path, digest, stamp

__all__ = ["check_new_tasks_publish", "Sync", "BoardView", "board_of", "board_view", "local_task", "RECOVERED"]

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("swarmfile")

RECOVERED = "completed (recovered)"  # what mirror says of a completion whose event it wrote for its dead holder
_FINISH_GRACE_SECONDS = 60.0  # a live holder logs its completion within moments of completing (claims' rule)


def board_of(cfg: Config) -> TaskBoard:
    """The workspace's task board; ValidationError when swarm.yaml names none."""
    board = task_board(cfg)
    if board is None:
        raise ValidationError("no task board: set 'task_board: true' with a Redis backend", path=cfg.root / "swarm.yaml",
                              hint="on the file backend the checkout's Markdown is the board")
    return board


def local_task(task_id: str, *, root: Optional[PathLike] = None) -> taskmod.Task:
    """The task to run: its file here, or on a task board the published text, copied under ``.swarm/tasks/``."""
    cfg = load_config(root=root)
    board = task_board(cfg)
    if board is None:
        return task_store.find_task(task_id, root=cfg.root)
    entry = board.entry(validate_id(task_id, "task id"))
    if entry is None:
        raise NotFoundError(f"task {task_id} is not on the task board", task_id=task_id,
                            hint="the planner publishes the operator checkout's tasks every round")
    path = copy_path(cfg.runtime_dir, task_id)
    try:
        same = read_text(path) == entry.text
    except OSError:
        same = False
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, entry.text, fsync=False, fsync_dir=False)  # a copy: the board has the text
    return taskmod.parse_task(entry.text, path)


@dataclass(frozen=True)
class BoardView:
    """The task board as the lists show it (``swarm.py status``, the dashboard), on any host.

    A checkout that did not publish the board lists its ``entries`` (it may hold no task file,
    or stale ones); the operator checkout (``here``) lists its Markdown. Both show a task's
    ``status`` as the board knows it: the Markdown's, or the lease's for the tasks in ``moved``,
    whose lease moved on since the Markdown showed it (until the planner's next mirror).
    """

    publisher: str  # host and root of the checkout that published the board
    here: bool
    entries: tuple[BoardEntry, ...]  # texts left out
    status: dict  # task id -> its status as the board knows it
    moved: dict  # task id -> its status as the board knows it, for the tasks the Markdown lags behind


def board_view(cfg: Config, leases: Iterable[claims.Lease], errors: Optional[list] = None) -> Optional[BoardView]:
    """The workspace's task board as lists show it; None without a board, or before its first publish.

    ``leases``: every lease record (claims.list_leases). A published task that does not parse is
    left out, its error appended to ``errors`` (raised without it).
    """
    board = task_board(cfg)
    publisher = board.publisher() if board is not None else None
    if board is None or publisher is None:
        return None
    by_id = {lease.task_id: lease for lease in leases}
    entries = tuple(sorted(board.entries(errors=errors), key=lambda e: e.task_id))
    status = {e.task_id: board_status(e, by_id.get(e.task_id)) for e in entries}
    moved = {e.task_id: status[e.task_id] for e in entries if e.task_id in by_id and stamp(by_id[e.task_id]) != e.seen}
    return BoardView(publisher, publisher == _this_checkout(cfg), entries, status, moved)


def _this_checkout(cfg: Config) -> str:
    """How a board names the checkout that published it (``TaskBoard.publisher``)."""
    return f"{HOSTNAME}:{cfg.root}"


def check_new_tasks_publish(cfg: Config) -> None:
    """Refuse a new task file in a checkout other than the one that publishes the task board: its
    planner would never publish it, so no agent would ever see it (ValidationError naming that checkout)."""
    board = task_board(cfg) if cfg.settings.get("task_board") is True else None
    publisher = board.publisher() if board is not None else None
    if publisher is not None and publisher != _this_checkout(cfg):
        raise ValidationError(f"this swarm's tasks are published from {publisher}: a task file written here "
                              "would never reach the task board",
                              hint="add the task in that checkout (swarm.py new-task there); its planner publishes it")


@dataclass
class Sync:
    """The publishing and mirroring state of one operator checkout (one per planner)."""

    cfg: Config
    board: TaskBoard
    agent_id: str = "swarm-planner"  # who logs a completion its holder died before logging
    # task id -> (the Task object published: the stat-keyed cache hands back the same object while
    # its file is unchanged; the text's digest; the seen stamp; the relative path)
    sent: Optional[dict[str, tuple[Optional[taskmod.Task], str, str, str]]] = None
    applied: set = field(default_factory=set)  # (task id, stamp) mirrored into the Markdown by this process
    mirrored: dict = field(default_factory=dict)  # task id -> the stamp mirrored since it was last published
    announced: bool = False  # published once by this process (the board names its publisher)

    @classmethod
    def of(cls, *, root: Optional[PathLike] = None, agent_id: str = "swarm-planner") -> "Sync":
        cfg = load_config(root=root)
        return cls(cfg, board_of(cfg), agent_id)

    @property
    def publisher(self) -> str:
        return _this_checkout(self.cfg)

    def _sent(self) -> dict[str, tuple[Optional[taskmod.Task], str, str, str]]:
        if self.sent is None:  # a new planner: compare with what is on the board by digest
            self.sent = {task_id: (None, sha, seen, "") for task_id, (sha, seen) in self.board.published().items()}
        return self.sent

    # ------------------------------------------------------------------ leases -> Markdown

    def mirror(self, now: Optional[datetime] = None) -> list[tuple[str, str]]:
        """Write every lease change the Markdown does not show yet; (task id, what was done) for each."""
        sent = self._sent()
        done: list[tuple[str, str]] = []
        unreadable: list = []
        for lease in claims.list_leases(root=self.cfg.root, errors=unreadable):
            known = sent.get(lease.task_id)
            now_stamp = stamp(lease)
            if known is None or self.mirrored.get(lease.task_id, known[2]) == now_stamp:
                continue
            try:
                what = self._mirror_one(lease, now_stamp, now)
            except SwarmError as exc:  # one task file gone bad must not stop the others' mirrors
                warn_once(log, "cannot mirror the lease of %s into its task file: %s", lease.task_id, exc)
                continue
            if what is None:
                continue
            self.mirrored[lease.task_id] = now_stamp  # publish sends the task again with this stamp
            done.append((lease.task_id, what))
        for error in unreadable:
            warn_once(log, "cannot mirror a lease that does not parse: %s", error)
        return done

    def _mirror_one(self, lease: claims.Lease, now_stamp: str, now: Optional[datetime]) -> Optional[str]:
        """Mirror one lease; what was done, or None to look again next round (the stamp stays)."""
        root = self.cfg.root
        if (lease.task_id, now_stamp) not in self.applied:
            try:
                task = task_store.find_task(lease.task_id, root=root)
            except NotFoundError:
                return "gone"  # deleted by a person: publish withdraws it
            if lease.mirror and not task_store.is_finished(task, self.cfg):
                task_store.set_fields(task.path, lease.mirror, root=root, durable=lease.state is not claims.LeaseState.HELD)
            if lease.state is claims.LeaseState.COMPLETED:
                task_store.move_to_completed(lease.task_id, root=root)
            self.applied.add((lease.task_id, now_stamp))
        if lease.state is not claims.LeaseState.COMPLETED:
            return lease.state.value if lease.state is not claims.LeaseState.HELD else (
                "in_progress" if lease.acknowledged_at else "claimed")
        # A completion is mirrored once its event is in the log: the holder writes it right after the
        # lease; if it died in between, write it for it (after a grace, or at once when it is known dead).
        logged = any(e.get("token") == lease.token
                     for e in events.read_events(task_id=lease.task_id, types=["completed"], root=root))
        if logged:
            return "completed"
        moment = now or lease_table(self.cfg).now()  # the clock the lease's end was stamped by
        old = lease.ended_at is not None and (moment - parse_ts(lease.ended_at)).total_seconds() > _FINISH_GRACE_SECONDS
        if not old and dead_reason(lease.pid, lease.host, lease.proc_start) is None:
            return None
        events.append_event("completed", self.agent_id, lease.task_id, root=root, token=lease.token,
                            recovered=True, completed_by=lease.agent_id)
        return RECOVERED

    # ------------------------------------------------------------------ Markdown -> board

    def publish(self) -> tuple[int, int]:
        """Publish every task whose file or seen stamp changed and withdraw the deleted; (published, withdrawn)."""
        root = self.cfg.root
        if self.announced and self.board.publisher() is None:  # the board is gone (a flushed or new server)
            self.sent, self.announced = None, False  # so everything is published again
        sent = self._sent()
        unreadable: list = []
        every = task_store.list_tasks(root=root, include_completed=True, errors=unreadable)
        for error in unreadable:
            warn_once(log, "not publishing a task file that does not parse: %s", error)
        twice = task_graph.duplicate_ids(every)
        children = task_graph.family(every).children
        known = {t.task_id for t in every}
        leases: Optional[dict[str, claims.Lease]] = None
        entries: list[BoardEntry] = []
        fresh: dict[str, tuple[Optional[taskmod.Task], str, str, str]] = {}
        for task in every:
            if task.task_id in fresh:
                continue  # an id two files use: the first is published, and never eligible
            before = sent.get(task.task_id)
            if before is not None and before[0] is task and task.task_id not in self.mirrored:
                fresh[task.task_id] = before
                continue
            text = read_text(task.path)
            if task.task_id in self.mirrored:
                seen = self.mirrored.pop(task.task_id)
            elif before is not None:
                seen = before[2]
            else:  # never published: the Markdown shows the lease as it is now (or shows none)
                if leases is None:
                    leases = {lease.task_id: lease for lease in claims.list_leases(root=root, errors=[])}
                seen = stamp(leases.get(task.task_id))
            rel = os.path.relpath(task.path, root)
            sha = digest(text)
            fresh[task.task_id] = (task, sha, seen, rel)
            if before is not None and before[1] == sha and before[2] == seen and before[3] in ("", rel):
                continue  # the same file again (a new planner, or a touch): nothing to send
            # The rules of ready_query._is_ready that do not change with leases and dependencies.
            eligible = (not task.sub_tasks and task.task_id not in children and task.task_id not in twice
                        and not (task.parent and task.parent not in known and task.task_id.startswith(f"{task.parent}-SUB")))
            entry = BoardEntry.of(task, text, rel, eligible, seen)
            if task_store.is_finished(task, self.cfg):  # the completed folder's files count as done
                entry = replace(entry, eligible=False, status=taskmod.Status.COMPLETED.value)
            entries.append(entry)
        withdrawn = sorted(set(sent) - set(fresh))
        for task_id in set(self.mirrored) - set(fresh):
            del self.mirrored[task_id]  # deleted after its lease was mirrored: withdrawn below
        if entries or withdrawn or not self.announced:
            self.board.publish(entries, publisher=self.publisher, withdraw=withdrawn)
            self.announced = True
        self.sent = fresh
        return len(entries), len(withdrawn)
