"""The task files on disk: listing, lookup, locked edits, new and completed tasks.

Tasks are listed at any depth under the task folders (RALF's epic folders); in a subfolder a
Markdown file is a task only when ``looks_like_task`` says so, so run notes and documents beside
the tasks are never parsed as tasks, reported or written.

Built on the task Markdown model in tasks.py (parsing, ``TaskDocument``, ``render_task``) and on
the stat-keyed cache of parsed files in task_cache.py (whose public names it re-exports); every
public name here is also importable from tasks. Edits (``set_field``, ``set_fields``,
``set_checklist_item``, ``edit_task``) take the task's lock, re-read the file, change only the
lines they own and write atomically. A file that does not parse raises ParseError
(InvalidIdError for a bad id) and is never written.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Union

from .cli import require_workspace
from .config import ID_PATTERN, Config, load_config, validate_id
from .errors import NotFoundError, ValidationError
from .fileio import atomic_write, locked, read_text
from .task_document import KEEP, TaskDocument, render_task
from .task_index import is_summary, path_text
from .tasks import ChecklistItem, PathLike, Status, Task
from .task_cache import (clear_cache, forget_cached, list_indexed, load_task, looks_like_task, remember, scan_tree,
                         unchanged_since_listing)

__all__ = [
    "load_task", "list_tasks", "find_task", "task_config", "unchanged_since_listing", "clear_cache",
    "edit_task", "set_field", "set_fields", "set_checklist_item", "new_task_file", "move_to_completed",
    "task_files", "is_finished", "looks_like_task", "list_indexed", "indexed_listing", "forget_cached", "task_file_lock",
]


def list_tasks(*, root: Optional[PathLike] = None, directory: Optional[PathLike] = None,
               include_completed: bool = False, errors: Optional[list] = None, fast: bool = False) -> list[Task]:
    """Tasks of the workspace at ``root`` (active, then completed), or of one ``directory``.

    Subfolders are listed too, at any depth; there a Markdown file is a task only when
    ``tasks.looks_like_task`` says so (run notes and documents are left out, never an error).
    Unchanged files are not re-parsed. A file that does not parse raises its ParseError,
    unless ``errors`` is a list: then the error is appended there and the file skipped.
    ``fast`` skips the per-file stat where it can: an edit saved in place (not by rename)
    may then show up to a second late (see task_cache.py).
    """
    if directory is not None:
        return scan_tree(Path(directory), errors, fast)
    cfg = load_config(root=root)
    found = scan_tree(cfg.tasks_active, errors, fast)
    if include_completed:
        found += scan_tree(cfg.tasks_completed, errors, fast)
    return found


def indexed_listing(cfg: Config, errors: Optional[list] = None) -> list[Task]:
    """Active then completed tasks, as ``list_tasks(include_completed=True)`` lists them, through the task
    index (``list_indexed``): in a new process only the files changed since it was written are parsed.
    Each file is still checked by its stat key, so an edit shows at once (in a long-lived process, an
    edit saved in place may show up to a second late where inotify is not to be had: task_cache.py)."""
    active, completed = list_indexed(cfg, (cfg.tasks_active, cfg.tasks_completed), errors=errors)
    return active + completed


def task_files(directory: PathLike) -> list[Path]:
    """The task files under ``directory``, as ``list_tasks`` sees them, those that do not parse included.

    Directly in it: every ``*.md`` but README.md and names starting with ``.`` or ``_`` (the
    flat layout: a file there that does not parse is a broken task). In its subfolders, at any
    depth (not those starting with ``.`` or ``_``): the files ``tasks.looks_like_task`` accepts.
    """
    errors: list = []
    found = [t.path for t in scan_tree(Path(directory), errors)]
    found += [Path(e.path) for e in errors if getattr(e, "path", None)]
    return sorted(set(found))


def is_finished(task: Task, cfg: Config) -> bool:
    """Completed by its folder or its Status line: a file in the completed folder is finished work
    whatever its Status line says (RALF left many there saying ``pending``)."""
    if task.status is Status.COMPLETED:
        return True
    if not is_summary(task) and task.path is None:
        return False
    # The text of the path, not Path.relative_to (as lexical, and status asks it of 10,000 tasks);
    # path_text makes no Path of a task from the index.
    return path_text(task).startswith(_folder_prefix(cfg.tasks_completed))


@lru_cache(maxsize=64)
def _folder_prefix(folder: Path) -> str:
    """The text every path inside ``folder`` starts with: the folder and a separator."""
    return os.path.join(folder, "")


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.relative_to(directory)
    except ValueError:
        return False
    return True


def find_task(task_id: str, *, root: Optional[PathLike] = None) -> Task:
    """The task with this id, active or completed; ValidationError if two files claim it."""
    validate_id(task_id, "task id")
    errors: list = []
    # A command given a task id, an agent given its task: in a new process, parse only what changed.
    cfg = load_config(root=root)
    matches = [t for t in indexed_listing(cfg, errors) if t.task_id == task_id]
    if len(matches) > 1:
        raise ValidationError(f"task id {task_id} is used by two files: {matches[0].path} and {matches[1].path}",
                              path=matches[1].path, line=matches[1].title_line, task_id=task_id,
                              hint="rename one of the tasks or delete the stale copy")
    if not matches:
        hint = f"{len(errors)} task file(s) did not parse, e.g. {errors[0]}" if errors else None
        raise NotFoundError(f"no task {task_id} in {cfg.tasks_active} or {cfg.tasks_completed}",
                            task_id=task_id, hint=hint)
    return matches[0]


def task_config(path: PathLike, *, root: Optional[PathLike] = None) -> Config:
    """The workspace config that owns task file ``path`` (its lock dir is where edits lock).

    Without ``root``: $SWARM_ROOT/current workspace if its task dirs hold the file, else the
    nearest ancestor with swarm.yaml or the default tasks/active|completed layout, else the
    file's own directory. Processes must agree on it: pass ``root`` when in doubt.
    """
    if root is not None:
        return load_config(root=root)
    parent = Path(os.path.abspath(path)).parent

    def holds(candidate: Config) -> bool:  # at any depth: epic folders hold tasks too
        return _inside(parent, candidate.tasks_active) or _inside(parent, candidate.tasks_completed)

    cfg = load_config(root=None)
    if holds(cfg):
        return cfg
    for ancestor in list(parent.parents)[:12]:
        if (ancestor / "swarm.yaml").is_file():
            candidate = load_config(root=ancestor)
            if holds(candidate):
                return candidate
        elif _inside(parent, ancestor / "tasks" / "active") or _inside(parent, ancestor / "tasks" / "completed"):
            return load_config(root=ancestor)
    return load_config(root=parent)


def task_file_lock(path: PathLike, cfg: Config, timeout: Optional[float] = None) -> locked:
    """The lock every runtime writer of a task file holds around its read-modify-write (edits,
    claims' mirrors, splits, moves to completed/). A byte of the lock folder's shared lock file, not
    a sidecar per task file (locks.py: ``many``)."""
    return locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout if timeout is None else timeout, many=True)


@contextmanager
def edit_task(path: PathLike, *, root: Optional[PathLike] = None, durable: bool = True) -> Iterator[TaskDocument]:
    """Hold the task's lock, yield its freshly re-read document, write it back if it changed.

    Nothing is written when the block raises. The lock is not re-entrant: do not call
    ``set_field`` on the same file inside the block, edit the yielded document instead.
    ``durable=False`` skips the fsyncs (claims: the lease journal is the truth, and a mirror
    update lost to a power cut is repaired from it); other processes see the write at once.
    """
    target = path if isinstance(path, Path) else Path(path)  # a claim's path is one already: not made again
    cfg = task_config(target, root=root)
    with task_file_lock(target, cfg):
        try:
            text = read_text(target)
        except FileNotFoundError:
            raise NotFoundError("task file does not exist", path=target) from None
        document = TaskDocument(text, target)
        yield document
        after = document.render()
        if after != text:
            try:
                before: Optional[int] = os.stat(target.parent).st_mtime_ns
            except OSError:
                before = None
            payload = after.encode("utf-8")
            atomic_write(target, payload, fsync=durable)
            remember(target, document, before, payload)


def set_fields(path: PathLike, values: Mapping[str, Any], *, root: Optional[PathLike] = None,
               durable: bool = True) -> Task:
    """Set several header fields in one locked re-read and write; returns the task after it."""
    with edit_task(path, root=root, durable=durable) as document:
        for name, value in values.items():
            document.set_field(name, value)
    return document.task


def set_field(path: PathLike, name: str, value: Any, *, root: Optional[PathLike] = None) -> Task:
    """Set one header field (``**Name:** value``), touching no other line of the file."""
    return set_fields(path, {name: value}, root=root)


def set_checklist_item(path: PathLike, selector: Union[int, str], checked: Optional[bool] = None,
                       agent: Any = KEEP, *, root: Optional[PathLike] = None) -> ChecklistItem:
    """Edit one checklist line (see ``TaskDocument.set_checklist_item``); returns the item after."""
    with edit_task(path, root=root) as document:
        item = document.set_checklist_item(selector, checked=checked, agent=agent)
    return item


# ---------------------------------------------------------------------------- new tasks


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50].strip("-")


def new_task_file(task_id: str, title: str, *, root: Optional[PathLike] = None,
                  directory: Optional[PathLike] = None, filename: Optional[str] = None,
                  **parts: Any) -> Path:
    """Write a new task (see ``render_task``) to tasks/active/``<ID>-<slug>.md``; returns its path.

    Refuses (ValidationError) when the file exists or another task already has this id.
    """
    cfg = load_config(root=root)
    target_dir = Path(directory) if directory is not None else cfg.tasks_active
    text = render_task(task_id, title, **parts)
    name = filename or (f"{task_id}-{_slug(title)}.md" if _slug(title) else f"{task_id}.md")
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".md"):
        raise ValidationError(f"invalid task file name {name!r}")
    target = target_dir / name
    target_dir.mkdir(parents=True, exist_ok=True)
    with locked(target_dir, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        if target.exists():
            raise ValidationError("task file already exists", path=target, task_id=task_id)
        # Files that do not parse cannot be checked here; find_task names them once fixed.
        folders = list(dict.fromkeys([target_dir, cfg.tasks_active, cfg.tasks_completed]))
        taken = [t for listing in list_indexed(cfg, folders, errors=[]) for t in listing if t.task_id == task_id]
        if taken:
            raise ValidationError(f"task id {task_id} is already used", path=taken[0].path, task_id=task_id,
                                  hint="pick another id")
        atomic_write(target, text)
    return target


def move_to_completed(task_id: str, *, root: Optional[PathLike] = None,
                      status: Optional[Any] = Status.COMPLETED) -> Path:
    """Set the task's Status (unless ``status`` is None) and move it to tasks/completed/.

    Returns the new path; a task already in completed/ is left there. Refuses to overwrite.
    """
    cfg = load_config(root=root)
    task = find_task(task_id, root=cfg.root)
    source = task.path
    if source is None or _inside(source, cfg.tasks_completed):
        return source
    # An epic's task moves to the same folder under completed/: names stay unique, the epic together.
    target = cfg.tasks_completed / (source.relative_to(cfg.tasks_active) if _inside(source, cfg.tasks_active)
                                    else source.name)
    with task_file_lock(source, cfg):
        document = TaskDocument(read_text(source), source)  # re-read under the lock
        if document.task.task_id != task_id:
            raise NotFoundError(f"{source.name} no longer holds task {task_id}", path=source, task_id=task_id)
        if status is not None:
            document.set_field("Status", status)
        if target.exists():
            raise ValidationError("a completed task file with this name already exists", path=target,
                                  task_id=task_id, hint="rename or remove one of them")
        # Written in full before the source goes: a crash in between leaves two copies, which
        # find_task reports by name, never zero.
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, document.render())
        os.unlink(source)
    return target



def task_workspace(task: str, *, root: Any = None) -> Path:
    """The workspace a command about ``task`` (a task file or a task id) works in.

    A configured root (``--root`` or ``$SWARM_ROOT``) wins, and a task file outside its task
    folders is refused: working on it would put leases and sub-tasks in the wrong place. With
    no root configured, the workspace is the one that holds the file. Either must be initialised.
    """
    path = Path(os.path.expanduser(task))
    if not path.exists():
        if ID_PATTERN.fullmatch(task) and not task.endswith(".md"):
            return require_workspace(root=root)  # an id: looked up in the workspace's task folders
        raise NotFoundError("task file does not exist", path=path.absolute(), hint="give a task file or a task id")
    path = Path(os.path.realpath(path))
    if root is not None or os.environ.get("SWARM_ROOT"):
        cfg = load_config(root=require_workspace(root=root))
        folders = [Path(os.path.realpath(folder)) for folder in (cfg.tasks_active, cfg.tasks_completed)]
        if not any(path.is_relative_to(folder) for folder in folders):
            raise ValidationError(f"task file is outside the workspace {cfg.root}", path=path,
                                  hint=f"move it under {cfg.tasks_active}, or give --root of the workspace "
                                  "that holds it")
        return cfg.root
    return require_workspace(root=task_config(path).root)
