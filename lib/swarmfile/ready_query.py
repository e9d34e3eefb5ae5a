"""The ready query: the pending tasks an agent may claim now, in the order claims take them.

Kept apart from the lease code (claims.py re-exports ``ready_tasks``) so that answering it needs
only the task model and its files: ``python lib/claims.py ready`` starts without the lease
table, the stores or the liveness probes. It lists through the task index (task_store.list_indexed),
so a cold query in a new process parses only the task files that changed since the index was written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

from . import task_graph
from . import task_index
from . import task_store
from . import tasks as taskmod
from .config import Config, load_config
from .errors import warn_once

__all__ = ["ready_tasks"]

PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("swarmfile")


# The last ready list per workspace, with the listings it came from: a listing made of the very
# same (cached, unchanged) task objects gives the same ready list, so it is not recomputed.
_ready_memo: dict[Path, tuple[list, list, list]] = {}
_warned: dict[Path, set] = {}  # per workspace: the duplicate-id warnings already given (once per change)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


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
    """
    with task_index.gc_paused():  # at 10,000 tasks the collector's full passes cost more than the query
        return _ready(load_config(root=root))


def _ready(cfg: Config) -> list[taskmod.Task]:
    unreadable: list = []
    active, completed = task_store.list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=unreadable)
    for error in unreadable:  # one bad file must not stop the whole swarm; doctor names it too
        warn_once(log, "skipping a task file that does not parse: %s", error)  # once per file and change
    memo = _ready_memo.get(cfg.root)
    if memo is not None and _same(memo[0], active) and _same(memo[1], completed):
        return list(memo[2])
    every = active + completed
    twice = task_graph.duplicate_ids(every)
    warned = _warned.setdefault(cfg.root, set())
    for task_id, paths in twice.items():
        key = (task_id, tuple(map(str, paths)))
        if key not in warned:
            warned.add(key)
            log.warning("skipping task %s: its id is used by %d files: %s (rename one or delete the stale copy)",
                        task_id, len(paths), ", ".join(map(str, paths)))
    done = {t.task_id for t in completed} | {t.task_id for t in active if t.status is taskmod.Status.COMPLETED}
    links = task_graph.family(every)
    known = {t.task_id for t in every}
    ready = [
        t for t in active
        if t.status is taskmod.Status.PENDING
        and not t.sub_tasks
        and t.task_id not in links.children
        and t.task_id not in twice
        and not (t.parent and t.parent not in known and t.task_id.startswith(f"{t.parent}-SUB"))
        and done.issuperset(t.depends_on)
    ]
    ready.sort(key=taskmod.ready_order_key)
    _ready_memo[cfg.root] = (active, completed, ready)
    return list(ready)
