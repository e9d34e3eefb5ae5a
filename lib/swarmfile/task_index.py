"""The persistent task index: what a listing needs of each task file, so a new process parses only what changed.

One file, ``.swarm/task-index.json``, holds for every task file the listing saw its stat key
(mtime, size, inode, ctime) and its summary: id, title, status, priority, created, dependencies,
parent, assignee, sub-tasks and files to modify (the rest is read from the file when asked for). A listing that starts cold (the
first in a process: every CLI call, every new agent) takes a file's summary from the index only
when the file's stat key is the one recorded; any other file is parsed as before. So an operator's
edit is seen at once: saving a file changes its ctime (and usually its size or inode).

It is a cache, never the truth. A missing, truncated, corrupt or foreign index is ignored and
rebuilt by the next listing; it is replaced atomically, so concurrent writers never leave a torn
one (the last writer wins, and every version is checked file by file anyway).

Racily clean files (git's term): a file changed within the same timestamp tick as it was read can
change again, in place and to the same size, without its stat key changing. Such an entry is
never written to the index (see ``RACY_NS``); the next cold listing parses that file again.
"""

from __future__ import annotations

import gc
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Optional

from .errors import SwarmError
from .fileio import atomic_write, read_text
from .tasks import Priority, Status, Task, parse_task, ready_order_key

__all__ = ["IndexedTask", "RACY_NS", "TRUSTED", "index_file", "load", "save", "is_summary", "gc_paused", "path_text"]

FORMAT = 4  # bumped when a record's layout changes: an index of another format is rebuilt
# A file changed less than this before it was read is not trusted by its stat key: it covers the
# coarsest timestamps in common use (FAT's 2 s; ext4 and tmpfs stamp with the kernel's tick).
RACY_NS = 2_000_000_000
TRUSTED = 1 << 62  # "read at" of an entry taken from the index: it was checked when it was written


def index_file(runtime_dir: Path) -> Path:
    """Where the index of a workspace lives (its runtime folder, git-ignored)."""
    return Path(runtime_dir) / "task-index.json"


class _Lazy:
    """A field of an IndexedTask made when first asked for, then kept in the task's ``__dict__``.

    A non-data descriptor: the instance's ``__dict__`` is looked at before it, so it runs once per
    task. (A ``__getattr__`` on the class would do the same, but makes every attribute of every task
    slower to read: CPython then neither caches the lookup nor specialises it.)
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, task: Optional["IndexedTask"], owner: Optional[type] = None) -> Any:
        if task is None:
            return self
        state = task.__dict__
        if self.name == "path":
            base, _, file_name = state["_where"]
            state["path"] = base / file_name
        else:
            try:
                body = parse_task(read_text(task.path), task.path)
                state.update(fields=body.fields, field_lines=body.field_lines, sections=body.sections,
                             checklist=body.checklist, title_line=body.title_line)
            except (OSError, SwarmError):  # gone, unreadable or no longer a task since the listing
                state.update(fields=MappingProxyType({}), field_lines=MappingProxyType({}), sections=(),
                             checklist=(), title_line=1)
        return state[self.name]


@dataclass(frozen=True, eq=False)
class IndexedTask(Task):
    """A task read from the index: what a listing needs, the rest read from its file on first use.

    ``fields``, ``field_lines``, ``title_line``, ``sections`` and ``checklist`` (and what derives
    from them: ``field()``, objective, success criteria) are parsed from the file when first asked
    for; a file gone or broken by then gives none. ``path`` is made when first asked for.
    """

    path, fields, field_lines, sections, checklist, title_line = (_Lazy() for _ in range(6))


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and on again after it, if it was on).

    A cold listing makes tens of thousands of small containers that hold no cycles; with the
    collector on, each full collection walks all of them again, which costs more than the listing.
    After a block that made that many, they are moved to the collector's permanent generation
    (``gc.freeze``): turned on again, it would otherwise walk them all at the very next allocation,
    and again at each full collection. Refcounting still frees them; only cyclic garbage present
    at that moment is never collected (a cold listing happens once in a process).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_count()[0] > _FREEZE_AFTER:
                gc.freeze()
            gc.enable()


_FREEZE_AFTER = 20_000  # new containers in a gc_paused block above which they are frozen (a cold listing)


def path_text(task: Task) -> str:
    """``str(task.path)``, without making the Path of a task from the index (10,000 of them cost more
    than the query that found them)."""
    where = task.__dict__.get("_where") if "path" not in task.__dict__ else None
    if where is None:
        return str(task.path)
    folder, name = where[1], where[2]  # a folder as os.fspath gives it (no trailing "/" but the root's), a file name
    return folder + name if folder.endswith(os.sep) else folder + os.sep + name  # os.path.join, without its checks


def is_summary(value: Any) -> bool:
    """Whether ``value`` came from the index (the rest of it is read from its file on first use)."""
    return type(value) is IndexedTask


# The index keeps each directory as columns, one list per field with an item per file: a JSON
# decoder makes a few long lists much faster than one small list per file. A file that is not
# a task has id null; an empty id list (dependencies, sub-tasks, files) is null.
_COLUMNS = ("name", "mtime", "size", "ino", "ctime", "id", "title", "status", "status_text", "priority",
            "priority_text", "created", "rank", "moment", "depends_on", "parent", "assigned_to", "sub_tasks",
            "files")


def _row(name: str, key: tuple, task: Optional[Task]) -> tuple:
    if task is None:
        return (name, *key) + (None,) * (len(_COLUMNS) - 5)
    status = task.status.value if task.status else None
    priority = task.priority.value if task.priority else None
    rank, moment, _ = ready_order_key(task)
    # A text as written is kept only where it differs from its value (``done`` for completed; true
    # means the same, null none written): a smaller index is a faster cold start.
    return (name, *key, task.task_id, task.title, status, True if task.status_text == status else task.status_text,
            priority, True if task.priority_text == priority else task.priority_text, task.created, rank, moment,
            list(task.depends_on) or None, task.parent, task.assigned_to, list(task.sub_tasks) or None,
            list(task.files_to_modify) or None)


_STATUS = {s.value: s for s in Status}
_PRIORITY = {p.value: p for p in Priority}


def _entries(columns: dict, directory: str, not_a_task: Any) -> dict[str, tuple]:
    if not isinstance(columns, dict) or len({len(columns[c]) for c in _COLUMNS}) != 1:
        raise ValueError("columns of different lengths")
    entries = {}
    base = Path(directory)
    new, set_dict = object.__new__, object.__setattr__
    keys = zip(columns["mtime"], columns["size"], columns["ino"], columns["ctime"])
    for key, name, task_id, title, status, status_text, priority, priority_text, created, rank, moment, \
            depends_on, parent, assigned_to, sub_tasks, files in zip(keys, columns["name"],
                                                                     *(columns[c] for c in _COLUMNS[5:])):
        if task_id is None:
            entries[name] = (key, not_a_task, TRUSTED)
            continue
        if type(task_id) is not str:
            raise TypeError("not a task id")
        task = new(IndexedTask)  # not __init__: a frozen dataclass sets its fields one by one
        set_dict(task, "__dict__", {
            "task_id": task_id, "title": title, "_where": (base, directory, name), "status": _STATUS[status] if status else None,
            "status_text": status if status_text is True else status_text,
            "priority": _PRIORITY[priority] if priority else None,
            "priority_text": priority if priority_text is True else priority_text, "created": created,
            "depends_on": tuple(depends_on) if depends_on else (), "parent": parent, "assigned_to": assigned_to,
            "sub_tasks": tuple(sub_tasks) if sub_tasks else (), "files_to_modify": tuple(files) if files else (),
            "_order": (rank, moment, task_id)})
        entries[name] = (key, task, TRUSTED)
    return entries


def load(path: Path, not_a_task: Any) -> dict[str, dict[str, tuple]]:
    """The index at ``path`` as task_store's cache entries: {directory: {file name: (key, value, TRUSTED)}}.

    ``not_a_task`` is the value given to a file that is not a task.
    Empty when the file is missing, unreadable, corrupt or of another format: never an error.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {}
    try:
        with gc_paused():
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                return {}
            return {directory: _entries(columns, directory, not_a_task)
                    for directory, columns in document["dirs"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):  # corrupt or truncated: rebuilt by the next save
        return {}


def save(path: Path, directories: dict[str, dict[str, tuple]], not_a_task: Any) -> None:
    """Write the index of ``directories`` ({directory: {file name: (key, value, read_ns)}}) to ``path``.

    Left out: files that did not parse (parsed again, to report them), and racily clean files,
    changed less than ``RACY_NS`` before they were read. Atomic, not fsynced: a cache lost in a
    crash is rebuilt.
    """
    dirs: dict[str, dict[str, list]] = {}
    for directory, entries in directories.items():
        # In file-name order, the listing's: the tasks a cold listing makes lie in memory in the
        # order it then reads them (at 10,000 tasks, scattered ones cost a cache miss each).
        rows = [_row(name, key, None if value is not_a_task else value)
                for name, (key, value, read_ns) in sorted(entries.items())
                if key[3] < read_ns - RACY_NS and (value is not_a_task or isinstance(value, Task))]
        dirs[directory] = {column: list(values) for column, values in zip(_COLUMNS, zip(*rows))} if rows else \
            {column: [] for column in _COLUMNS}
    text = json.dumps({"format": FORMAT, "dirs": dirs}, separators=(",", ":"), ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text + "\n", fsync=False, fsync_dir=False)
