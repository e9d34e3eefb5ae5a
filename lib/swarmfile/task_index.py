"""The persistent task index: what a listing needs of each task file, so a new process parses only what changed.

One file, ``.swarm/task-index.json``, holds for every task file the listing saw its stat key
(mtime, size, inode, ctime) and its summary: id, title, header fields, status, priority,
dependencies, parent, assignee, sub-tasks and files to modify. A listing that starts cold (the
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator

from .errors import SwarmError
from .fileio import atomic_write, read_text
from .tasks import Priority, Status, Task, parse_task, ready_order_key

__all__ = ["IndexedTask", "NOT_A_TASK", "RACY_NS", "TRUSTED", "index_file", "load", "save", "is_summary", "gc_paused"]

FORMAT = 3  # bumped when a record's layout changes: an index of another format is rebuilt
# A file changed less than this before it was read is not trusted by its stat key: it covers the
# coarsest timestamps in common use (FAT's 2 s; ext4 and tmpfs stamp with the kernel's tick).
RACY_NS = 2_000_000_000
TRUSTED = 1 << 62  # "read at" of an entry taken from the index: it was checked when it was written
NOT_A_TASK = 0  # the record of a Markdown file in a subfolder that is not a task (a run note, a document)


def index_file(runtime_dir: Path) -> Path:
    """Where the index of a workspace lives (its runtime folder, git-ignored)."""
    return Path(runtime_dir) / "task-index.json"


_FROM_FILE = frozenset({"fields", "field_lines", "sections", "checklist", "title_line"})


@dataclass(frozen=True, eq=False)
class IndexedTask(Task):
    """A task read from the index: what a listing needs, the rest read from its file on first use.

    ``fields``, ``field_lines``, ``title_line``, ``sections`` and ``checklist`` (and what derives
    from them: ``field()``, objective, success criteria) are parsed from the file when first asked
    for; a file gone or broken by then gives none. ``path`` is made when first asked for.
    """

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not in __dict__: the ones the index does not keep.
        if name == "path":
            where = self.__dict__["_where"]
            path = self.__dict__["path"] = where[0] / where[1]
            return path
        if name not in _FROM_FILE:
            raise AttributeError(name)
        try:
            body = parse_task(read_text(self.path), self.path)
            self.__dict__.update(fields=body.fields, field_lines=body.field_lines, sections=body.sections,
                                 checklist=body.checklist, title_line=body.title_line)
        except (OSError, SwarmError):  # gone, unreadable or no longer a task since the listing
            self.__dict__.update(fields=MappingProxyType({}), field_lines=MappingProxyType({}), sections=(),
                                 checklist=(), title_line=1)
        return self.__dict__[name]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (and on again after it, if it was on).

    A cold listing makes tens of thousands of small containers that hold no cycles; with the
    collector on, each full collection walks all of them again, which costs more than the listing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def is_summary(value: Any) -> bool:
    """Whether ``value`` came from the index (the rest of it is read from its file on first use)."""
    return type(value) is IndexedTask


def _record(task: Task) -> list:
    status = task.status.value if task.status else None
    priority = task.priority.value if task.priority else None
    # A text as written is kept only where it differs from its value (``done`` for completed; true
    # means the same, null none written): a smaller index is a faster cold start.
    return [task.task_id, task.title, status, True if task.status_text == status else task.status_text,
            priority, True if task.priority_text == priority else task.priority_text, task.created,
            list(ready_order_key(task)[:2]), list(task.depends_on), task.parent, task.assigned_to,
            list(task.sub_tasks), list(task.files_to_modify)]


_STATUS = {s.value: s for s in Status}
_PRIORITY = {p.value: p for p in Priority}


def _task(record: list, directory: Path, name: str) -> IndexedTask:
    (task_id, title, status, status_text, priority, priority_text, created, (rank, moment), depends_on, parent,
     assigned_to, sub_tasks, files) = record
    if not isinstance(task_id, str):
        raise TypeError("not a task record")
    task = object.__new__(IndexedTask)  # not __init__: a frozen dataclass sets its fields one by one
    task.__dict__.update(
        task_id=task_id, title=title, _where=(directory, name), status=_STATUS[status] if status else None,
        status_text=status if status_text is True else status_text, priority=_PRIORITY[priority] if priority else None,
        priority_text=priority if priority_text is True else priority_text, created=created,
        depends_on=tuple(depends_on), parent=parent, assigned_to=assigned_to, sub_tasks=tuple(sub_tasks),
        files_to_modify=tuple(files), _order=(rank, moment, task_id))
    return task


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
            found: dict[str, dict[str, tuple]] = {}
            for directory, files in document["dirs"].items():
                base = Path(directory)
                entries = found[directory] = {}
                for name, (mtime, size, ino, ctime, record) in files.items():
                    value = not_a_task if record == NOT_A_TASK else _task(record, base, name)
                    entries[name] = ((mtime, size, ino, ctime), value, TRUSTED)
            return found
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
        files = dirs[directory] = {}
        for name, (key, value, read_ns) in entries.items():
            if key[3] >= read_ns - RACY_NS:
                continue
            if value is not_a_task:
                files[name] = [*key, NOT_A_TASK]
            elif isinstance(value, Task):
                files[name] = [*key, _record(value)]
    text = json.dumps({"format": FORMAT, "dirs": dirs}, separators=(",", ":"), ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text + "\n", fsync=False, fsync_dir=False)
