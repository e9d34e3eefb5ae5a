"""The task files on disk: a stat-keyed cache, listing, lookup, locked edits, new and completed tasks.

Tasks are listed at any depth under the task folders (RALF's epic folders); in a subfolder a
Markdown file is a task only when ``looks_like_task`` says so, so run notes and documents beside
the tasks are never parsed as tasks, reported or written.

Built on the task Markdown model in tasks.py (parsing, ``TaskDocument``, ``render_task``); every
public name here is also importable from tasks. Unchanged files are never re-parsed: each parsed
task is cached under its file's stat. Edits (``set_field``, ``set_fields``, ``set_checklist_item``,
``edit_task``) take the task's lock, re-read the file, change only the lines they own and write
atomically. A file that does not parse raises ParseError (InvalidIdError for a bad id) and is
never written.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

from .cli import require_workspace
from .config import ID_PATTERN, Config, load_config, validate_id
from .errors import InvalidIdError, NotFoundError, ParseError, SwarmError, ValidationError, warn_once
from .fileio import atomic_write, locked, read_text
from .tasks import KEEP, ChecklistItem, PathLike, Status, Task, TaskDocument, parse_task, render_task
from . import task_index

__all__ = [
    "load_task", "list_tasks", "find_task", "task_config", "unchanged_since_listing", "clear_cache",
    "edit_task", "set_field", "set_fields", "set_checklist_item", "new_task_file", "move_to_completed",
    "task_files", "is_finished", "looks_like_task", "list_indexed", "forget_cached",
]

log = logging.getLogger("swarmfile")

# ---------------------------------------------------------------------------- tasks and documents

_CONTENT_FIELD = re.compile(r"\*\*(status|task[ _-]?id)(?::\*\*|\*\*:)", re.I)


def looks_like_task(text: str) -> bool:
    """The rule for a Markdown file in a subfolder of the task folders: is it a task or a document?

    A task starts with a level-1 heading and has, before its first ``##`` heading, either a
    ``**Task ID:**`` field, or a ``**Status:**`` field under a ``# <ID>: <title>`` heading (ID
    without spaces). Run notes (``# THOUGHTS: TASK-1`` with ``## Status: done``) and plain
    documents (``# Architecture``) are not tasks, and the runtime never writes to them.
    """
    titled: Optional[bool] = None  # None until the heading: then whether it reads "# <ID>: ..."
    for line in text.split("\n", 400)[:400]:
        stripped = line.lstrip("\ufeff").strip()
        if titled is None:
            if not stripped:
                continue
            if not stripped.startswith("# "):
                return False
            head, colon, _ = stripped[2:].partition(":")
            titled = bool(colon) and bool(head.strip()) and not re.search(r"\s", head.strip().strip("*`"))
        elif stripped.startswith("##"):
            return False
        else:
            found = _CONTENT_FIELD.match(stripped)
            if found and (titled or found.group(1).lower() != "status"):
                return True
    return False


# ---------------------------------------------------------------------------- the cache

_file_cache: dict[str, tuple[tuple[int, int, int, int], Any, int]] = {}  # load_task outside a listing
_SKIPPED = frozenset({"README.md", "readme.md", "Readme.md"})
_subdirs: dict[str, list[str]] = {}  # directory -> its subdirectories at the last scandir


class _NotATask:
    """The cached verdict on a Markdown file in a subfolder that is not a task (tasks.looks_like_task)."""


_NOT_A_TASK = _NotATask()


class _Listing:
    """One directory as its last scan left it."""

    __slots__ = ("entries", "values", "positions", "broken", "inodes")

    def __init__(self, entries: dict, inodes: Optional[dict]) -> None:
        self.entries = entries  # file name -> (stat stamp, Task or its ParseError, time.time_ns() before the read)
        self.inodes = inodes  # every name of the last scandir -> its inode (None: not recorded)
        names = sorted(name for name, entry in entries.items() if entry[1] is not _NOT_A_TASK)
        self.values = [entries[name][1] for name in names]  # what a listing returns, by file name
        self.positions = {name: n for n, name in enumerate(names)}
        self.broken = sum(1 for value in self.values if not isinstance(value, Task))

    def replace(self, name: str, entry: tuple) -> bool:
        """Put a changed file's entry in place; False when the listing must be rebuilt instead."""
        at = self.positions.get(name)
        if at is None or entry[1] is _NOT_A_TASK:
            return False
        self.broken += (not isinstance(entry[1], Task)) - (not isinstance(self.values[at], Task))
        self.entries[name] = entry
        self.values[at] = entry[1]
        return True


_dir_cache: dict[str, _Listing] = {}


def clear_cache() -> None:
    """Forget every parsed task (tests; the cache is already keyed by each file's stat)."""
    _dir_cache.clear()
    _dir_seen.clear()
    _file_cache.clear()
    _subdirs.clear()
    _index_state.clear()


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _text(path: Path) -> str:
    try:
        return read_text(path)
    except FileNotFoundError:
        raise NotFoundError("task file does not exist", path=path) from None
    except IsADirectoryError:
        raise ParseError("is a directory, not a task file", path=path) from None


def _read_task(path: Path) -> Task:
    return parse_task(_text(path), path)


def _read_nested(path: Path) -> Any:
    """A file in a subfolder: its Task, or _NOT_A_TASK for run notes and documents."""
    text = _text(path)
    return parse_task(text, path) if looks_like_task(text) else _NOT_A_TASK


def load_task(path: PathLike, *, use_cache: bool = True) -> Task:
    """Parse the task file at ``path`` (cached by its stat unless ``use_cache`` is False)."""
    target = Path(path)
    if not use_cache:
        return _read_task(target)
    try:
        st = target.stat()
    except FileNotFoundError:
        raise NotFoundError("task file does not exist", path=target) from None
    stamp = _stat_key(st)
    listing = _dir_cache.get(os.fspath(target.parent))
    hit = listing.entries.get(target.name) if listing is not None else None
    if hit is not None and hit[0] == stamp and type(hit[1]) is Task:  # not an index summary: the whole task
        return hit[1]
    if len(_file_cache) > 4096:  # a bound, not an LRU: cheap and rarely hit
        _file_cache.clear()
    return _cached(_file_cache, target, os.fspath(target), stamp)


def _cached(entries: dict, path: Path, name: str, key: tuple, nested: bool = False) -> Any:
    global _parses
    hit = entries.get(name)
    if hit is None or hit[0] != key:
        # Stat before reading: if the file changes in between, the next stat differs and re-parses.
        read_at = time.time_ns()  # the task index trusts a stat key only if the file was older than this
        _parses += 1
        try:
            value: Any = _read_nested(path) if nested else _read_task(path)
        except (ParseError, InvalidIdError) as exc:
            value = exc
        entries[name] = hit = (key, value, read_at)
    if isinstance(hit[1], SwarmError):
        raise hit[1].with_traceback(None)
    return hit[1]


# How a fast listing (the ready query's) stays cheap at 10,000 task files. The runtime writes every file by rename, so
# a file it changed has a new inode, and the directory's mtime moves:
# - directory mtime unchanged since the last look: nothing was renamed in; reuse the listing;
# - changed: one scandir (no stat) finds the entries whose name or inode changed; only those are read;
# - a file this process rewrote itself is recorded as written (``_remember``), with the folder's new mtime;
# - at least every _FULL_SCAN_SECONDS a full scan stats every file, which also catches an
#   operator's editor saving a file in place (same inode, no directory change).
# So a fast listing may show an in-place edit, or a rename in the clock tick of our own write, up to
# that late; every other listing stats each file. (Claims re-read a task under its lock before
# acting and compare it with the listing's, so lateness costs no correctness.)
_FULL_SCAN_SECONDS = 1.0
_parses = 0  # task files parsed, or found gone, by listings: when it moves, a task index is out of date
_INDEX_SAVE_SECONDS = 10.0  # a long-lived process rewrites its task index at most this often
# Files changed since the index was written before a listing writes it again: parsing a few costs
# a cold listing less than rewriting the whole index (3 MB at 10,000 tasks) in every new process.
_INDEX_STALE_FILES = 16
# task index file -> [its entries, to seed cold directories (None once used), _parses at the last save,
#                     when, whether it was read whole]
_index_state: dict[str, list] = {}
# directory -> (trusted mtime_ns, last full scan, mtime_ns at the last scan)
_dir_seen: dict[str, tuple[Optional[int], float, Optional[int]]] = {}


def _scan_tree(directory: Path, errors: Optional[list], fast: bool = False, nested: bool = False,
               seed: Optional[dict] = None) -> list[Task]:
    """The tasks of ``directory`` and of its subfolders at any depth (see ``task_files``)."""
    found = _scan(directory, errors, fast, nested, seed)
    for name in _subdirs.get(os.fspath(directory), ()):
        found += _scan_tree(directory / name, errors, fast, nested=True, seed=seed)
    return found


def _scan(directory: Path, errors: Optional[list], fast: bool = False, nested: bool = False,
          seed: Optional[dict] = None) -> list[Task]:
    global _parses
    key = os.fspath(directory)
    known = _dir_cache.get(key)
    try:
        dir_mtime = os.stat(key).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        _drop(key)
        return []
    now = time.monotonic()
    trusted, last_full, _ = _dir_seen.get(key, (None, -_FULL_SCAN_SECONDS, None))
    recent = fast and known is not None and now - last_full < _FULL_SCAN_SECONDS
    if recent and trusted == dir_mtime:
        return _collect(known, errors)
    # Trust an mtime only once it is older than the clock tick that stamps it: two renames
    # within one tick leave the same mtime, and the second would go unseen.
    settled = dir_mtime if time.time_ns() - dir_mtime > 50_000_000 else None
    _dir_seen[key] = (settled, last_full if recent else now, dir_mtime)
    try:
        if recent and known.inodes is not None:
            updated = _renamed_only(directory, key, known, nested)
            if updated is not None:
                return _collect(updated, errors)
        listing = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        _drop(key)
        return []
    old = dict(known.entries) if known is not None else {}
    if seed and known is None:  # cold: start from the task index's entries, each checked below
        old = dict(seed.get(key, ()))
    fresh: dict = {}
    inodes: dict = {}
    folders: list[str] = []
    changed = False
    with listing:
        for entry in listing:
            name = entry.name
            inodes[name] = entry.inode()
            if name[0] in "._":
                continue
            if not name.endswith(".md") or name in _SKIPPED:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(name)
                except OSError:
                    pass
                continue
            hit = old.get(name)
            if recent and hit is not None and hit[0][2] == inodes[name]:
                fresh[name] = hit  # same inode since the last full scan: not replaced
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            if hit is not None and not fast and task_index.is_summary(hit[1]):
                del old[name]  # an index summary serves fast listings only: this caller gets the parsed file
                hit = None
            if hit is None or hit[0] != stamp:
                if not entry.is_file():
                    continue
                changed = True
                try:
                    _cached(old, directory / name, name, stamp, nested)
                except (ParseError, InvalidIdError):
                    pass
                except NotFoundError:
                    continue  # moved or deleted between the directory read and the file read
                hit = old[name]
            fresh[name] = hit
    _subdirs[key] = sorted(folders)
    if len(fresh) != len(old):
        _parses += 1  # files gone: the task index changes too
    if changed or len(fresh) != len(old) or known is None:
        known = _dir_cache[key] = _Listing(fresh, inodes)  # files that disappeared drop out of the cache
    else:
        known.inodes = inodes
    return _collect(known, errors)


def _renamed_only(directory: Path, key: str, known: _Listing, nested: bool) -> Optional[_Listing]:
    """``known`` brought up to date from one scandir, reading only the files whose name or inode changed.

    None (nothing changed) when a folder or another non-task name came, went or was replaced:
    the caller scans in full.
    """
    global _parses
    with os.scandir(directory) as listing:
        inodes = {entry.name: entry.inode() for entry in listing}
    names = {name for name, _ in inodes.items() ^ known.inodes.items() if name[0] not in "._"}
    if any(not name.endswith(".md") or name in _SKIPPED for name in names):
        return None
    rebuild = False
    entries = known.entries
    for name in names:
        hit = entries.get(name)
        try:
            st = os.stat(os.path.join(key, name)) if name in inodes else None
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if entries.pop(name, None) is not None:
                _parses += 1  # a file gone: the task index changes too
                rebuild = True
            continue
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        if hit is not None and hit[0] == stamp:
            continue
        scratch: dict = {}
        try:
            _cached(scratch, directory / name, name, stamp, nested)
        except (ParseError, InvalidIdError):
            pass
        except NotFoundError:
            if entries.pop(name, None) is not None:
                rebuild = True
            continue
        if hit is None or hit[1] is _NOT_A_TASK or not known.replace(name, scratch[name]):
            entries[name] = scratch[name]
            rebuild = True
    known.inodes = inodes
    if rebuild:
        known = _dir_cache[key] = _Listing(entries, inodes)
    return known


def _drop(key: str) -> None:
    _dir_cache.pop(key, None)
    _dir_seen.pop(key, None)
    _subdirs.pop(key, None)


def _collect(known: _Listing, errors: Optional[list]) -> list[Task]:
    if not known.broken:
        return list(known.values)
    found = []
    for value in known.values:
        if isinstance(value, Task):
            found.append(value)
        elif errors is None:
            raise value.with_traceback(None)  # the cached instance: do not grow its traceback
        else:
            errors.append(value)
    return found


def unchanged_since_listing(task: Task) -> bool:
    """Whether ``task``'s file is still the one the listing parsed (same inode, size, mtime).

    One stat: lets a claimer skip a task another process has just rewritten (claimed) without
    reading its lease.
    """
    if task.path is None:
        return False
    known = _dir_cache.get(os.fspath(task.path.parent))
    entry = known.entries.get(task.path.name) if known is not None else None
    try:
        st = os.stat(task.path)
    except FileNotFoundError:
        return False
    return entry is not None and entry[1] is task and entry[0][:3] == (st.st_mtime_ns, st.st_size, st.st_ino)


def forget_cached(path: PathLike) -> None:
    """Drop one file from the listing cache: the next listing reads it again (a claim found it edited)."""
    _forget(Path(path))


def list_tasks(*, root: Optional[PathLike] = None, directory: Optional[PathLike] = None,
               include_completed: bool = False, errors: Optional[list] = None, fast: bool = False) -> list[Task]:
    """Tasks of the workspace at ``root`` (active, then completed), or of one ``directory``.

    Subfolders are listed too, at any depth; there a Markdown file is a task only when
    ``tasks.looks_like_task`` says so (run notes and documents are left out, never an error).
    Unchanged files are not re-parsed. A file that does not parse raises its ParseError,
    unless ``errors`` is a list: then the error is appended there and the file skipped.
    ``fast`` skips the per-file stat where it can: an edit saved in place (not by rename)
    may then show up to a second late (see ``_scan``).
    """
    if directory is not None:
        return _scan_tree(Path(directory), errors, fast)
    cfg = load_config(root=root)
    found = _scan_tree(cfg.tasks_active, errors, fast)
    if include_completed:
        found += _scan_tree(cfg.tasks_completed, errors, fast)
    return found


def list_indexed(cfg: Config, directories: Sequence[PathLike], *,
                 errors: Optional[list] = None) -> list[list[Task]]:
    """Fast listings (``list_tasks(directory=d, fast=True)``) of ``directories``, cold ones from the task index.

    The first call in a process reads the workspace's task index (task_index.py), so only files
    whose stat key changed since it was written are parsed. It is written again when it was
    missing or damaged, or when ``_INDEX_STALE_FILES`` files were parsed since; at most every
    ``_INDEX_SAVE_SECONDS`` by one process. Tasks taken from the index read the rest of their
    file (header fields, sections, checklist) on first use.
    """
    path = task_index.index_file(cfg.runtime_dir)
    state = _index_state.get(os.fspath(path))
    if state is None:
        seed = task_index.load(path, _NOT_A_TASK)
        state = _index_state[os.fspath(path)] = [seed, _parses, -_INDEX_SAVE_SECONDS, bool(seed)]
    seed, state[0] = state[0], None  # after this listing every directory is warm in memory
    with task_index.gc_paused():
        found = [_scan_tree(Path(d), errors, fast=True, seed=seed) for d in directories]
    now = time.monotonic()
    stale = _parses - state[1]
    if stale and now - state[2] >= _INDEX_SAVE_SECONDS and (stale >= _INDEX_STALE_FILES or not state[3]):
        tops = [os.fspath(d) for d in directories]
        state[1:] = [_parses, now, True]
        scanned = {key: known.entries for key, known in _dir_cache.items()
                   if any(key == top or key.startswith(top + os.sep) for top in tops)}
        try:
            task_index.save(path, scanned, _NOT_A_TASK)
        except OSError as exc:  # a cache: a full disk or a read-only runtime folder costs speed, not work
            warn_once(log, "cannot write the task index %s: %s", path, exc, about=path)
    return found


def task_files(directory: PathLike) -> list[Path]:
    """The task files under ``directory``, as ``list_tasks`` sees them, those that do not parse included.

    Directly in it: every ``*.md`` but README.md and names starting with ``.`` or ``_`` (the
    flat layout: a file there that does not parse is a broken task). In its subfolders, at any
    depth (not those starting with ``.`` or ``_``): the files ``tasks.looks_like_task`` accepts.
    """
    errors: list = []
    found = [t.path for t in _scan_tree(Path(directory), errors)]
    found += [Path(e.path) for e in errors if getattr(e, "path", None)]
    return sorted(set(found))


def is_finished(task: Task, cfg: Config) -> bool:
    """Completed by its folder or its Status line: a file in the completed folder is finished work
    whatever its Status line says (RALF left many there saying ``pending``)."""
    if task.status is Status.COMPLETED:
        return True
    return task.path is not None and _inside(task.path, cfg.tasks_completed)


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
    matches = [t for t in list_tasks(root=root, include_completed=True, errors=errors) if t.task_id == task_id]
    if len(matches) > 1:
        raise ValidationError(f"task id {task_id} is used by two files: {matches[0].path} and {matches[1].path}",
                              path=matches[1].path, line=matches[1].title_line, task_id=task_id,
                              hint="rename one of the tasks or delete the stale copy")
    if not matches:
        cfg = load_config(root=root)
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


@contextmanager
def edit_task(path: PathLike, *, root: Optional[PathLike] = None, durable: bool = True) -> Iterator[TaskDocument]:
    """Hold the task's lock, yield its freshly re-read document, write it back if it changed.

    Nothing is written when the block raises. The lock is not re-entrant: do not call
    ``set_field`` on the same file inside the block, edit the yielded document instead.
    ``durable=False`` skips the fsyncs (claims: the lease journal is the truth, and a mirror
    update lost to a power cut is repaired from it); other processes see the write at once.
    """
    target = Path(path)
    cfg = task_config(target, root=root)
    with locked(target, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        try:
            text = read_text(target)
        except FileNotFoundError:
            raise NotFoundError("task file does not exist", path=target) from None
        document = TaskDocument(text, target)
        yield document
        if document.changed:
            try:
                before: Optional[int] = os.stat(target.parent).st_mtime_ns
            except OSError:
                before = None
            atomic_write(target, document.render(), fsync=durable)
            _remember(target, document, before)


def _forget(path: Path) -> None:
    """Drop a file this process just replaced from the fast listing's cache.

    Its new inode may be a freed one the file system handed out again (the file's own, two
    writes ago), and the fast listing takes a known inode for an unchanged file.
    """
    known = _dir_cache.get(os.fspath(path.parent))
    if known is not None:
        known.entries.pop(path.name, None)
        if known.inodes is not None:
            known.inodes.pop(path.name, None)  # so the next scandir reads it whatever its inode


def _remember(path: Path, document: TaskDocument, before: Optional[int]) -> None:
    """Record a file this process just replaced, as written, in the fast listing's cache.

    So our own writes (every claim's Status line) cost no parse and no scandir in the next
    listing. ``before`` is the folder's mtime just before the write: if the last scan saw that
    very mtime, the folder's new mtime is trusted as ours. A rename by another process in the
    same clock tick then goes unseen until the next change or the next full scan
    (``_FULL_SCAN_SECONDS``); claims lose nothing by that (see the comment above ``_scan``).
    """
    key = os.fspath(path.parent)
    known = _dir_cache.get(key)
    if known is None:
        return
    read_at = time.time_ns()
    text = document.render()
    try:
        st = os.stat(path)
        after = os.stat(key).st_mtime_ns
        task = document.task
    except (OSError, SwarmError):
        st = None
    if st is None or not looks_like_task(text) or not known.replace(path.name, (_stat_key(st), task, read_at)):
        _forget(path)
        return
    if known.inodes is not None:
        known.inodes[path.name] = st.st_ino
    seen = _dir_seen.get(key)
    if seen is not None and before is not None and seen[2] == before:
        _dir_seen[key] = (after, seen[1], after)


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
        taken = [t for d in {target_dir, cfg.tasks_active, cfg.tasks_completed}
                 for t in list_tasks(directory=d, errors=[]) if t.task_id == task_id]
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
    with locked(source, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
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
