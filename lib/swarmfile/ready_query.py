"""The ready query: the pending tasks an agent may claim now, in the order claims take them.

Kept apart from the lease code (claims.py re-exports ``ready_tasks``) so that answering it needs
only the task model and its files: ``python lib/claims.py ready`` starts without the lease
table, the stores or the liveness probes. It lists through the task index (task_cache.list_indexed),
so a cold query in a new process parses only the task files that changed since the index was written.
"""

from __future__ import annotations

import bisect
import operator
import os
from itertools import compress, filterfalse, repeat
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from . import task_graph
from . import task_index
from . import task_cache
from . import tasks as taskmod
from .config import Config, load_config
from .errors import swarm_logger, warn_once

__all__ = ["ready_tasks", "markdown_ready", "claim_candidates"]

PathLike = Union[str, "os.PathLike[str]"]


class _Ready:
    """The last ready list of a workspace, the listings it came from and what it was judged by.

    Not a dataclass: ``python lib/claims.py ready`` starts without importing ``dataclasses`` (tasks.py).
    """

    __slots__ = ("active", "completed", "ready", "twice", "done", "children", "known")

    def __init__(self, active: list, completed: list, ready: list, twice: dict, done: set, children: dict,
                 known: set) -> None:
        self.active, self.completed, self.ready = active, completed, ready
        self.twice = twice  # task id -> the files that use it
        self.done = done  # ids of completed tasks
        self.children = children  # parent id -> child ids
        self.known = known  # every task id


# Per workspace: a listing made of the very same (cached, unchanged) task objects gives the same
# ready list; one where only a few tasks changed their status (claims, by this process or
# another) updates it for those tasks alone, which is what every claim_next meets.
_ready_memo: dict[Path, _Ready] = {}
_warned: dict[Path, set] = {}  # per workspace: the duplicate-id warnings already given (once per change)
_FEW = 64  # changed tasks above which the ready list is computed afresh
_board_tasks: dict[Path, dict] = {}  # per workspace on a task board: task id -> (its entry, the Task made of it)
_ID, _STATUS, _PARENT, _SUB_TASKS, _DEPENDS_ON = map(operator.attrgetter,
                                                    ("task_id", "status", "parent", "sub_tasks", "depends_on"))
_ORDER = operator.attrgetter("_order")  # taskmod.ready_order_key, called from C: a sort calls it for every task


def _same(a: list, b: list) -> bool:
    """Whether two listings hold the very same task objects, in order.

    List equality is identity here (a Task compares by identity: ``eq=False``), and it runs in one C
    loop that tries identity first: 10,000 tasks in microseconds.
    """
    return a == b


def _moved(a: list, b: list) -> Iterator[int]:
    """The positions where two listings of one length hold different task objects (few, after claims)."""
    for at in range(0, len(a), _CHUNK):
        if a[at:at + _CHUNK] != b[at:at + _CHUNK]:  # one C comparison a chunk; a Task compares by identity
            yield from (n for n in range(at, min(at + _CHUNK, len(a))) if a[n] is not b[n])


_CHUNK = 256


def _is_ready(t: taskmod.Task, m: _Ready) -> bool:
    return (t.status is taskmod.Status.PENDING
            and not t.sub_tasks
            and t.task_id not in m.children
            and t.task_id not in m.twice
            and not (t.parent and t.parent not in m.known and t.task_id.startswith(f"{t.parent}-SUB"))
            and all(dep in m.done for dep in t.depends_on))


def _status_changes_only(m: _Ready, active: list, completed: list) -> Optional[list]:
    """The ready list after a few active tasks changed only their status, or None to recompute.

    Ids, files, parents, dependencies and sub-tasks must be as before, and no task may have
    become or stopped being completed (that changes its dependents): then nothing but the
    changed tasks themselves can enter or leave the list.
    """
    if len(active) != len(m.active) or not _same(m.completed, completed):
        return None
    changed = []
    for at in _moved(m.active, active):
        old, new = m.active[at], active[at]
        if (len(changed) >= _FEW or new.task_id != old.task_id or new.path != old.path or new.parent != old.parent
                or new.depends_on != old.depends_on or new.sub_tasks != old.sub_tasks
                or (new.status is taskmod.Status.COMPLETED) != (old.status is taskmod.Status.COMPLETED)):
            return None
        changed.append((old, new))
    ready = list(m.ready)
    for old, new in changed:
        at = bisect.bisect_left(ready, taskmod.ready_order_key(old), key=taskmod.ready_order_key)
        if at < len(ready) and ready[at] is old:  # keys end with the task id: one task per key
            del ready[at]
        if _is_ready(new, m):
            bisect.insort(ready, new, key=taskmod.ready_order_key)
    return ready


def ready_tasks(*, root: Optional[PathLike] = None) -> list[taskmod.Task]:
    """Pending tasks whose dependencies are completed and that were not split, in claim order.

    Left out: a task split into sub-tasks or an epic with children (the planner completes it
    when they all are); a sub-task written by a split (``<PARENT>-SUB<n>``) whose parent no
    longer exists (deleting a split parent cancels its open sub-tasks; doctor names them); an
    id that two files use (both files, with one warning naming them, until one is renamed or
    deleted); a task in a dependency cycle (it waits forever; doctor and status name the cycle). A dependency counts as completed when its file
    says so or sits in the completed folder. Task files that do not parse are skipped (and logged).

    Order: priority (critical > high > medium > low, or a number: higher first), then oldest
    first (FIFO within a priority), then task id.

    On a task board (Redis, ``task_board: true``) the published tasks, by the same rules and also
    leaving out tasks whose lease is held: their paths are this host's copies (task_board.copy_path),
    written only when a task is run.
    """
    cfg = load_config(root=root)
    if cfg.settings.get("task_board") is True:  # looked at first: a file backend never loads the stores
        from .stores import task_board
        from .task_board import copy_path

        board = task_board(cfg)
        if board is not None:  # the published tasks, judged on the server as a claim judges them
            made = _board_tasks.setdefault(cfg.root, {})
            found = []
            for entry in board.ready():
                if entry.task_id not in made or made[entry.task_id][0] is not entry:
                    made[entry.task_id] = (entry, entry.task(copy_path(cfg.runtime_dir, entry.task_id)))
                found.append(made[entry.task_id][1])
            return found
    with task_index.gc_paused():  # at 10,000 tasks the collector's full passes cost more than the query
        return _ready(cfg)


def claim_candidates(cfg: Config, leased: Optional[Callable[[str], bool]]) -> list[taskmod.Task]:
    """The ready list claim_next walks (files only, no task board): ``ready_tasks``, except that a task
    ``leased`` names may appear as its file read before its claim rewrote it, unread since. The
    caller skips those: a leased task is not claimable whatever its file says."""
    with task_index.gc_paused():
        return _ready(cfg, leased)


def markdown_ready(*, root: Optional[PathLike] = None) -> list[taskmod.Task]:
    """``ready_tasks`` of this checkout's Markdown alone, on a task board too: what its planner splits
    (a task on the board may be claimed already; the planner checks its lease under its lock)."""
    with task_index.gc_paused():
        return _ready(load_config(root=root))


def _ready(cfg: Config, leased: Optional[Callable[[str], bool]] = None) -> list[taskmod.Task]:
    unreadable: list = []
    active, completed = task_cache.list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=unreadable,
                                                defer=leased)
    for error in unreadable:  # one bad file must not stop the whole swarm; doctor names it too
        warn_once(swarm_logger(), "skipping a task file that does not parse: %s", error)  # once per file and change
    memo = _ready_memo.get(cfg.root)
    if memo is not None:
        if _same(memo.active, active) and _same(memo.completed, completed):
            return list(memo.ready)
        quick = _status_changes_only(memo, active, completed)
        if quick is not None:
            memo.active, memo.ready = active, quick
            return list(quick)
    every = active + completed
    # Attribute getters mapped over the lists (C loops) where a comprehension would run bytecode
    # for each of 10,000 tasks.
    known = set(map(_ID, every))
    twice = task_graph.duplicate_ids(every) if len(known) < len(every) else {}
    warned = _warned.setdefault(cfg.root, set())
    for task_id, paths in twice.items():
        key = (task_id, tuple(map(str, paths)))
        if key not in warned:
            warned.add(key)
            swarm_logger().warning("skipping task %s: its id is used by %d files: %s (rename one or delete the stale copy)",
                        task_id, len(paths), ", ".join(map(str, paths)))
    statuses = list(map(_STATUS, active))
    done = set(map(_ID, completed))
    done.update(map(_ID, compress(active, map(operator.is_, statuses, repeat(taskmod.Status.COMPLETED)))))
    linked = any(map(_PARENT, every)) or any(map(_SUB_TASKS, every))  # a family to work out at all (most: none)
    judged = _Ready(active, completed, [], twice, done, task_graph.family(every).children if linked else {}, known)
    pending = compress(active, map(operator.is_, statuses, repeat(taskmod.Status.PENDING)))
    if linked or twice:
        found = [t for t in pending if _is_ready(t, judged)]
    else:  # _is_ready without a family nor a shared id: its dependencies completed (C loops; the sort orders)
        pending = list(pending)
        found = list(filterfalse(_DEPENDS_ON, pending))
        found += [t for t in filter(_DEPENDS_ON, pending) if done.issuperset(t.depends_on)]
    found.sort(key=_ORDER)
    judged.ready = found
    _ready_memo[cfg.root] = judged
    return list(found)
