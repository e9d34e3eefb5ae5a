"""Links between tasks: parents and their sub-tasks, dependency cycles, ids used by two files.

A task's children are found three ways, whichever the files use: a child's ``**Parent Task:**``
or ``**Parent:**`` field; the parent's ``**Sub-Tasks:**`` field (written by a split); the first
column of the parent's ``## Sub-Tasks`` table (an epic's ``MASTER-TASK.md``), where RALF may
shorten an id to its number: ``20260203172001`` names the task whose id ends in
``-20260203172001`` when exactly one does.

Every function here works on a listing (``task_store.list_tasks``) and reads no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Sequence

from .tasks import Task

__all__ = ["Family", "family", "duplicate_ids", "find_cycles", "cycle_through"]


class Family:
    """Parent and child links of one listing, by task id (not a dataclass: see tasks.py, the ready query's start)."""

    def __init__(self) -> None:
        self.children: dict[str, list[str]] = {}  # parent id -> child ids, in file order
        self.parent: dict[str, str] = {}  # child id -> parent id
        self.unresolved: dict[str, list[str]] = {}  # parent id -> listed ids no task has

    def missing_parent(self, task: Task, known: Iterable[str]) -> Optional[str]:
        """The parent ``task`` names in its own field when no task has that id (deleted), else None."""
        return task.parent if task.parent and task.parent not in set(known) else None


def _resolver(ids: Sequence[str]):
    exact = set(ids)
    by_suffix: dict[str, list[str]] = {}  # built on the first short id only: most listings have none

    def resolve(token: str) -> Optional[str]:
        if token in exact:
            return token
        if not by_suffix:
            for task_id in ids:
                parts = task_id.split("-")
                for cut in range(1, len(parts)):
                    by_suffix.setdefault("-".join(parts[cut:]), []).append(task_id)
        found = by_suffix.get(token, [])
        return found[0] if len(found) == 1 else None

    return resolve


def family(listing: Sequence[Task]) -> Family:
    """The parent/child links of the tasks in ``listing`` (see the module docstring)."""
    result = Family()
    resolve = _resolver([t.task_id for t in listing])

    def link(parent: str, child: str) -> None:
        if parent == child:
            return
        siblings = result.children.setdefault(parent, [])
        if child not in siblings:
            siblings.append(child)
        result.parent.setdefault(child, parent)

    for task in listing:
        if task.parent:
            link(task.parent, task.task_id)
    for task in listing:
        for token in task.sub_tasks:
            child = resolve(token)
            if child is None:
                result.unresolved.setdefault(task.task_id, []).append(token)
            else:
                link(task.task_id, child)
    return result


def duplicate_ids(listing: Sequence[Task]) -> dict[str, list[Path]]:
    """Ids that two or more files use, each with the files (in listing order)."""
    seen: dict[str, list[Task]] = {}
    for task in listing:
        seen.setdefault(task.task_id, []).append(task)
    # Paths of the duplicates only: a task from the task index makes its path when first asked.
    return {task_id: [t.path for t in found] for task_id, found in seen.items() if len(found) > 1}


def find_cycles(listing: Sequence[Task]) -> list[list[str]]:
    """Every dependency cycle among ``listing`` as ids, each starting and ending at its smallest id.

    ``[A, B, A]``: A depends on B and B on A; ``[A, A]``: A depends on itself. Tasks in a cycle
    are never ready: each waits for the other to be completed first.
    """
    graph = {t.task_id: [d for d in t.depends_on] for t in listing}
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            deps = graph.get(node, [])
            if index < len(deps):
                stack.append((node, index + 1))
                nxt = deps[index]
                if state.get(nxt) == 1:
                    loop = path[path.index(nxt):]
                    low = loop.index(min(loop))
                    ordered = loop[low:] + loop[:low]
                    if tuple(ordered) not in seen:
                        seen.add(tuple(ordered))
                        cycles.append(ordered + [ordered[0]])
                elif nxt in graph and not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return sorted(cycles)


def cycle_through(task_id: str, depends_on: Sequence[str], listing: Sequence[Task]) -> Optional[list[str]]:
    """The cycle a task ``task_id`` depending on ``depends_on`` would close, or None.

    For refusing a new task: ``[NEW, A, B, NEW]`` when A depends (through B) on NEW.
    """
    graph = {t.task_id: list(t.depends_on) for t in listing if t.task_id != task_id}
    graph[task_id] = list(depends_on)
    stack: list[tuple[str, list[str]]] = [(dep, [task_id, dep]) for dep in reversed(list(depends_on))]
    visited: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == task_id:
            return path
        if node in visited:
            continue
        visited.add(node)
        stack.extend((nxt, path + [nxt]) for nxt in reversed(graph.get(node, [])))
    return None
