"""The stat-keyed cache of parsed task files, and the listings built on it.

Unchanged files are never re-parsed: each parsed task is cached under its file's stat key
(mtime, size, inode, ctime). A fast listing (the ready query's, ``list_indexed``) avoids even the
stats where it safely can (see the comment above ``_scan``), and a cold one starts from the task
index (task_index.py). task_store.py builds the file operations (lookup, locked edits, new and
completed tasks) on this module and re-exports its public names.
"""

from __future__ import annotations

import operator
import os
import re
import stat
import time
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .config import Config
from .errors import InvalidIdError, NotFoundError, ParseError, SwarmError, swarm_logger, warn_once
from .textfile import read_text
from .tasks import PathLike, Status, Task, parse_task
from . import dir_watch, task_index

if TYPE_CHECKING:
    from .task_document import TaskDocument

__all__ = [
    "looks_like_task", "clear_cache", "load_task", "scan_tree", "unchanged_since_listing", "forget_cached",
    "remember", "list_indexed",
]


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


_VALUE, _READ_AT = itemgetter(1), itemgetter(2)
_STAT_KEY = attrgetter("st_mtime_ns", "st_size", "st_ino", "st_ctime_ns")  # _stat_key as one C call


class _Listing:
    """One directory as its last scan left it."""

    __slots__ = ("entries", "values", "positions", "broken", "inodes", "held")

    def __init__(self, entries: dict, inodes: Optional[dict], tasks: Optional[tuple[list, list]] = None) -> None:
        # file name -> (stat stamp, Task or its ParseError, time.time_ns() before the read; 0: a _held stand-in)
        self.entries = entries
        self.inodes = inodes  # every name of the last scandir -> its inode (None: not recorded)
        if tasks is not None:  # (names, values) of every entry, in file-name order, each a Task read from its file
            names, values = tasks
            self.broken = self.held = 0
        else:  # C loops (map, zip, compress): a cold listing builds one of 10,000 files.
            names = sorted(entries)
            values = list(map(_VALUE, map(entries.__getitem__, names)))
            if any(map(operator.is_, values, repeat(_NOT_A_TASK))):
                keep = list(map(operator.is_not, values, repeat(_NOT_A_TASK)))
                names, values = list(compress(names, keep)), list(compress(values, keep))
            self.broken = len(values) - sum(map(isinstance, values, repeat(Task)))
            self.held = sum(map(operator.not_, map(_READ_AT, entries.values())))  # stand-ins, not read from their files
        self.values = values  # what a listing returns, by file name
        self.positions = dict(zip(names, range(len(names))))

    def replace(self, name: str, entry: tuple) -> bool:
        """Put a changed file's entry in place; False when the listing must be rebuilt instead."""
        at = self.positions.get(name)
        if at is None or entry[1] is _NOT_A_TASK:
            return False
        self.broken += (not isinstance(entry[1], Task)) - (not isinstance(self.values[at], Task))
        self.held += (not entry[2]) - (not self.entries[name][2])
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
    if hit is not None and hit[0] == stamp and type(hit[1]) is Task and hit[2]:  # not a summary or a stand-in
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
# - a file this process rewrote itself is recorded as written (``remember``), with the folder's new mtime;
# - at least every _FULL_SCAN_SECONDS a full scan stats every file, which also catches an
#   operator's editor saving a file in place (same inode, no directory change).
# So a fast listing may show an in-place edit, or a rename in the clock tick of our own write, up to
# that late; every other listing stats each file. (Claims re-read a task under its lock before
# acting and compare it with the listing's, so lateness costs no correctness.)
# - A process that makes a second fast listing of a folder watches it (dir_watch: inotify, on Linux):
#   from then on the kernel names the files that changed, written in place or replaced, and only
#   those are read; no scandir, and a full scan only every _WATCHED_FULL_SCAN_SECONDS (for what the
#   kernel does not report: writes through a memory map, a network file system's other hosts).
_FULL_SCAN_SECONDS = 1.0
_WATCHED_FULL_SCAN_SECONDS = 10.0
_recheck: dict[str, set] = {}  # watched folder -> names to read again at its next listing (_forget)
_parses = 0  # task files parsed, or found gone, by listings: when it moves, a task index is out of date
_outdated = 0  # folders found unlike their record in a task index (names changed): written again at once
_INDEX_SAVE_SECONDS = 10.0  # a long-lived process rewrites its task index at most this often
# Files changed since the index was written before a listing writes it again: parsing a few costs
# a cold listing less than rewriting the whole index (2 MB at 10,000 tasks) in every new process.
_INDEX_STALE_FILES = 16
# task index file -> [its entries, to seed cold directories (None once used), _parses at the last save,
#                     when, whether it was read whole, _outdated at the last save]
_index_state: dict[str, list] = {}
# directory -> (trusted mtime_ns, last full scan, mtime_ns at the last scan)
_dir_seen: dict[str, tuple[Optional[int], float, Optional[int]]] = {}


def scan_tree(directory: Path, errors: Optional[list], fast: bool = False, nested: bool = False,
              seed: Optional[dict] = None, defer: Optional[Callable[[str], bool]] = None) -> list[Task]:
    """The tasks of ``directory`` and of its subfolders at any depth (see ``task_store.task_files``).

    ``defer`` (fast listings only): see ``list_indexed``.
    """
    found = _scan(directory, errors, fast, nested, seed, defer)
    for name in _subdirs.get(os.fspath(directory), ()):
        found += scan_tree(directory / name, errors, fast, nested=True, seed=seed, defer=defer)
    return found


def _held(hit: Optional[tuple], stamp: tuple, defer: Optional[Callable[[str], bool]]) -> Optional[tuple]:
    """The entry of a changed file whose cached task ``defer`` names, without reading the file: a
    stand-in, the cached task as claimed (see ``list_indexed``); None when the file must be read."""
    if defer is None or hit is None or not isinstance(hit[1], Task) or not defer(hit[1].task_id):
        return None
    stand_in = task_index.restated(hit[1], Status.CLAIMED)  # a copy, whatever the class (an index summary reads lazily)
    return (stamp, stand_in, 0)  # read at 0: never trusted as the file's content (load_task, the index)


def _drop_held(key: str, known: _Listing) -> None:
    """Forget the stand-ins of a listing, so this listing reads their files (it was not given ``defer``)."""
    names = [name for name, entry in known.entries.items() if not entry[2]]
    for name in names:
        del known.entries[name]
        if known.inodes is not None:
            known.inodes.pop(name, None)
    known.held = 0
    seen = _dir_seen.get(key)
    if seen is not None:
        _dir_seen[key] = (None, seen[1], None)
    if dir_watch.watched(key):
        _recheck.setdefault(key, set()).update(names)


def _scan(directory: Path, errors: Optional[list], fast: bool = False, nested: bool = False,
          seed: Optional[dict] = None, defer: Optional[Callable[[str], bool]] = None) -> list[Task]:
    global _parses
    key = os.fspath(directory)
    known = _dir_cache.get(key)
    if known is not None and known.held and (defer is None or not fast):
        _drop_held(key, known)
    now = time.monotonic()
    trusted, last_full, _ = _dir_seen.get(key, (None, -_FULL_SCAN_SECONDS, None))
    watching = fast and known is not None and dir_watch.watched(key)
    if watching:
        names = dir_watch.changes(key)
        if names is not None and now - last_full < _WATCHED_FULL_SCAN_SECONDS:
            names |= _recheck.pop(key, set())
            return _collect(_apply_changes(directory, key, known, names, nested, defer), errors) if names \
                else _collect(known, errors)
    try:
        dir_mtime = os.stat(key).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        _drop(key)
        return []
    # Watched, but what changed is not known (or it is time for the full scan): stat every file.
    recent = fast and known is not None and not watching and now - last_full < _FULL_SCAN_SECONDS
    if fast and known is not None and not watching and dir_watch.watch(key):
        recent = False  # changes are reported from now on: this scan reads everything before
    _recheck.pop(key, None)
    if recent and trusted == dir_mtime:
        return _collect(known, errors)
    # Trust an mtime only once it is older than the clock tick that stamps it: two renames
    # within one tick leave the same mtime, and the second would go unseen.
    settled = dir_mtime if time.time_ns() - dir_mtime > 50_000_000 else None
    _dir_seen[key] = (settled, last_full if recent else now, dir_mtime)
    try:
        if recent and known.inodes is not None:
            updated = _renamed_only(directory, key, known, nested, defer)
            if updated is not None:
                return _collect(updated, errors)
        if seed and known is None and key in seed:  # cold, and the task index has this folder
            indexed = _from_index(directory, key, seed[key], errors, nested, defer)
            if indexed is not None:
                return indexed
        listing = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        _drop(key)
        return []
    old = dict(known.entries) if known is not None else {}
    if seed and known is None and key in seed:  # cold: start from the task index's entries, each checked below
        old = seed[key].entries()
    fresh: dict = {}
    inodes: dict = {}
    folders: list[str] = []
    changed = False
    # One entry at a time (not the whole folder's stats in lists): each DirEntry and its stat are
    # freed before the next, so the memory they use stays in the CPU cache.
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
                stamp = _STAT_KEY(entry.stat())
            except FileNotFoundError:
                continue
            if hit is not None and not fast and task_index.is_summary(hit[1]):
                del old[name]  # an index summary serves fast listings only: this caller gets the parsed file
                hit = None
            if hit is None or hit[0] != stamp:
                held = _held(hit, stamp, defer) if hit is not None else None
                if held is not None:
                    fresh[name] = held
                    changed = True
                    continue
                if not entry.is_file():
                    continue
                changed = True
                if not _read_entry(old, directory, name, stamp, nested):
                    continue
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


def _from_index(directory: Path, key: str, folder: task_index.Folder, errors: Optional[list], nested: bool,
                defer: Optional[Callable[[str], bool]]) -> Optional[list[Task]]:
    """The cold listing of ``directory`` from its record in the task index, checked in a few C loops
    over the whole folder (``Folder.names``, ``Folder.stat``); the files whose stat key changed are
    read again, as ``_scan`` reads them. None when the folder's names or subfolders changed (or a
    stat failed): the caller scans file by file.
    """
    global _parses, _outdated
    if os.stat not in os.supports_dir_fd:  # no stat relative to a folder on this system: file by file
        return None
    names = folder.names(key)  # a folder gone: raised, and _scan drops it
    try:
        files, stamps, inodes, others = folder.stat(key, names) if names is not None else ((),) * 4
    except OSError:  # a file gone since the listing, or a dangling symlink: _scan's loop says which
        return None
    subfolders = sorted(name for name in others if name[0] not in "._")
    if names is None or subfolders != folder.folders:
        _outdated += 1  # files came, went or were renamed: the index is written again, whatever the count
        return None
    values = folder.values(files)
    entries = dict(zip(files, zip(stamps, values, repeat(task_index.TRUSTED))))
    changed = folder.changed(stamps)
    if not changed and folder.all_tasks:  # every file a task, as recorded
        known = _dir_cache[key] = _Listing(entries, inodes, (files, values))
        _subdirs[key] = subfolders
        return _collect(known, errors)
    for n in changed:  # as _scan's loop does for a file whose stat key changed
        name, stamp, value = files[n], stamps[n], values[n]
        held = _held((folder.key(n), value, task_index.TRUSTED), stamp, defer) if value is not None else None
        if held is not None:
            entries[name] = held
            continue
        del entries[name]
        if not os.path.isfile(os.path.join(key, name)):
            _parses += value is not None  # in the index, now no file: the index changes too
            continue
        _read_entry(entries, directory, name, stamp, nested)
    _subdirs[key] = subfolders
    known = _dir_cache[key] = _Listing(entries, inodes)
    return _collect(known, errors)


def _candidate(name: str) -> bool:
    """Whether ``_scan`` reads a file of this name as a possible task (the rule of its loop)."""
    return name[0] not in "._" and name.endswith(".md") and name not in _SKIPPED


def _renamed_only(directory: Path, key: str, known: _Listing, nested: bool,
                  defer: Optional[Callable[[str], bool]] = None) -> Optional[_Listing]:
    """``known`` brought up to date from one scandir, reading only the files whose name or inode changed.

    None (nothing changed) when a folder or another non-task name came, went or was replaced:
    the caller scans in full.
    """
    with os.scandir(directory) as listing:
        inodes = {entry.name: entry.inode() for entry in listing}
    names = {name for name, _ in inodes.items() ^ known.inodes.items() if name[0] not in "._"}
    if any(not name.endswith(".md") or name in _SKIPPED for name in names):
        return None
    known.inodes = inodes
    return _apply_changes(directory, key, known, {name for name in names if name in inodes},
                          nested, defer, gone={name for name in names if name not in inodes})


def _apply_changes(directory: Path, key: str, known: _Listing, names: set, nested: bool,
                   defer: Optional[Callable[[str], bool]], gone: frozenset = frozenset()) -> _Listing:
    """``known`` with the files ``names`` read again where their stat key changed (and ``gone`` removed):
    those a scandir found replaced, or the kernel reported changed (dir_watch)."""
    global _parses
    rebuild = False
    entries, inodes = known.entries, known.inodes
    for name in names | gone:
        if name[0] in "._" or not name.endswith(".md") or name in _SKIPPED:
            continue  # temporary files, and what is not a task file (a folder's change rescans in full)
        hit = entries.get(name)
        try:
            st = os.stat(os.path.join(key, name)) if name not in gone else None
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if inodes is not None:
            if st is None:
                inodes.pop(name, None)
            else:
                inodes[name] = st.st_ino
        if st is None or not stat.S_ISREG(st.st_mode):
            if entries.pop(name, None) is not None:
                _parses += 1  # a file gone: the task index changes too
                rebuild = True
            continue
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        if hit is not None and hit[0] == stamp:
            continue
        scratch: dict = {}
        held = _held(hit, stamp, defer)
        if held is not None:
            scratch[name] = held
        elif not _read_entry(scratch, directory, name, stamp, nested):
            if entries.pop(name, None) is not None:
                rebuild = True
            continue
        if hit is None or hit[1] is _NOT_A_TASK or not known.replace(name, scratch[name]):
            entries[name] = scratch[name]
            rebuild = True
    if rebuild:
        known = _dir_cache[key] = _Listing(entries, inodes)
    return known


def _read_entry(entries: dict, directory: Path, name: str, stamp: tuple, nested: bool) -> bool:
    """Read the file ``name`` into ``entries`` (one that does not parse is kept as its error);
    False when it is gone (moved or deleted between the directory's read and the file's)."""
    try:
        _cached(entries, directory / name, name, stamp, nested)
    except (ParseError, InvalidIdError):
        pass
    except NotFoundError:
        return False
    return True


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


def _read_bytes(path: PathLike, size: int) -> bytes:
    """Up to ``size + 1`` bytes of ``path``: enough to tell whether it holds exactly ``size`` bytes we know."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, size + 1)
    finally:
        os.close(fd)


def forget_cached(path: PathLike) -> None:
    """Drop one file from the listing cache: the next listing reads it again (a claim found it edited)."""
    _forget(Path(path))


def list_indexed(cfg: Config, directories: Sequence[PathLike], *, errors: Optional[list] = None,
                 defer: Optional[Callable[[str], bool]] = None) -> list[list[Task]]:
    """Fast listings (``list_tasks(directory=d, fast=True)``) of ``directories``, cold ones from the task index.

    The first call in a process reads the workspace's task index (task_index.py), so only files
    whose stat key changed since it was written are parsed. It is written again when it was
    missing or damaged, or when ``_INDEX_STALE_FILES`` files were parsed since; at most every
    ``_INDEX_SAVE_SECONDS`` by one process. Tasks taken from the index read the rest of their
    file (header fields, sections, checklist) on first use.

    ``defer`` (claim_next passes "is this task leased"): a file that changed since it was read, of
    a task ``defer`` names, is not read: the listing shows a stand-in, the task as read before with
    status claimed (not ready). In a race of claimers every claim rewrites a task file, and each
    other claimer would otherwise parse it only to learn that it is taken. The file is read when it
    changes again (its lease ended: completed, released or requeued) and by the next listing made
    without ``defer``; a stand-in is never given by ``load_task`` nor written to the task index.
    """
    path = task_index.index_file(cfg.runtime_dir)
    state = _index_state.get(os.fspath(path))
    if state is None:
        seed = task_index.load(path, _NOT_A_TASK)
        state = _index_state[os.fspath(path)] = [seed, _parses, -_INDEX_SAVE_SECONDS, bool(seed), _outdated]
    seed, state[0] = state[0], None  # after this listing every directory is warm in memory
    with task_index.gc_paused():
        found = [scan_tree(d if isinstance(d, Path) else Path(d), errors, fast=True, seed=seed, defer=defer)
                 for d in directories]
    now = time.monotonic()
    stale = _parses - state[1]
    # A folder whose names changed is checked file by file until its record is written again.
    outdated = _outdated != state[4]
    if (stale or outdated) and now - state[2] >= _INDEX_SAVE_SECONDS and (outdated or stale >= _INDEX_STALE_FILES
                                                                      or not state[3]):
        tops = [os.fspath(d) for d in directories]
        state[1:] = [_parses, now, True, _outdated]
        scanned = {key: (known.entries, list(known.inodes or ()), _subdirs.get(key, [])) for key, known in _dir_cache.items()
                   if any(key == top or key.startswith(top + os.sep) for top in tops)}
        try:
            task_index.save(path, scanned, _NOT_A_TASK, _candidate)
        except OSError as exc:  # a cache: a full disk or a read-only runtime folder costs speed, not work
            warn_once(swarm_logger(), "cannot write the task index %s: %s", path, exc, about=path)
    return found


def _forget(path: Path) -> None:
    """Drop a file from the fast listing's cache: the next listing reads it, whatever its stat says.

    (A file this process replaced may have a freed inode handed out again, the file's own two
    writes ago, and the fast listing takes a known inode for an unchanged file.)
    """
    key = os.fspath(path.parent)
    known = _dir_cache.get(key)
    if known is not None:
        entry = known.entries.pop(path.name, None)
        if entry is not None and not entry[2]:
            known.held -= 1
        if known.inodes is not None:
            known.inodes.pop(path.name, None)  # so the next scandir reads it whatever its inode
    seen = _dir_seen.get(key)
    if seen is not None:
        _dir_seen[key] = (None, seen[1], None)  # and the next listing does scan the folder
    if dir_watch.watched(key):
        _recheck.setdefault(key, set()).add(path.name)  # a watched one reads the file again


def remember(path: Path, document: TaskDocument, before: Optional[int], written: bytes) -> None:
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
    try:
        st = os.stat(path)
        after = os.stat(key).st_mtime_ns
        # Stat, then read (as _cached does): a hand edit after our write shows in the bytes now, or in
        # the stat key later. The key alone, taken after the write, could be that of an edit.
        if _read_bytes(path, len(written)) != written:
            st = None
        task = document.task
    except (OSError, SwarmError):
        st = None
    # No looks_like_task: replace() takes only a file listed as a task, and a TaskDocument's edits
    # change values and add lines, never remove the heading or a field that made it one.
    if st is None or not known.replace(path.name, (_stat_key(st), task, read_at)):
        _forget(path)
        return
    if known.inodes is not None:
        known.inodes[path.name] = st.st_ino
    seen = _dir_seen.get(key)
    if seen is not None and before is not None and seen[2] == before:
        _dir_seen[key] = (after, seen[1], after)
