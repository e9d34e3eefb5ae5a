"""The persistent task index: what a listing needs of each task file, so a new process parses only what changed.

One file, ``.swarm/task-index.marshal``, holds for every task folder the listing saw its names (in
the order the directory lists them) and subfolders and, for every file that may be a task, its stat
key (mtime, size, inode, ctime) and its summary: id, title, status, priority, created, dependencies,
parent, assignee, claimer, sub-tasks, files to modify, how many checklist items are checked and the
objective (the rest is read from the file when asked for). A
listing that starts cold (the first in a process: every CLI call, every new agent) takes a file's
summary from the index only when the file's stat key is the one recorded; any other file is parsed as
before. So an operator's edit is seen at once: saving a file changes its ctime (and usually its size
or inode). When a folder's names are the recorded ones, the check is one stat per file and a few C
loops over the whole folder (``Folder``), and its tasks are made from the index's columns in C loops
(``IndexedTask``); when its names changed (a file added, deleted or renamed) the listing goes file by
file (``Folder.entries``) and the index is written again. Whether the names changed is told by the
folder's own stat key when it is the recorded one (adding, removing or renaming an entry sets the
folder's change time; recorded only when settled, as a file's), else by listing the folder.

It is a cache, never the truth. A missing, truncated, corrupt or foreign index is ignored and
rebuilt by the next listing: its first line names the format, the interpreter (``marshal``'s format
is the interpreter's) and a checksum of the rest, which is read only when all three match. It is
replaced atomically, so concurrent writers never leave a torn one (the last writer wins, and every
version is checked file by file anyway). An index of an earlier format (``task-index.json``) is
never read, and is deleted when the new one is written.

Racily clean files (git's term): a file changed within the same timestamp tick as it was read can
change again, in place and to the same size, without its stat key changing. Such an entry is
never written to the index (see ``RACY_NS``); the next cold listing parses that file again.
"""

from __future__ import annotations

import gc
import marshal
import os
import stat
import struct
import sys
import time
import zlib
from contextlib import contextmanager
from functools import partial
from itertools import compress, repeat, starmap
from operator import attrgetter, is_, itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import SwarmError
from .textfile import read_text
from .tasks import Priority, Status, Task, parse_task, ready_order_key

__all__ = ["IndexedTask", "Folder", "RACY_NS", "TRUSTED", "index_file", "load", "save", "encode", "decode",
           "is_summary", "restated", "gc_paused", "path_text", "path_columns", "columns"]

FORMAT = 8  # bumped when the layout changes: an index of another format is rebuilt
# A file changed less than this before it was read is not trusted by its stat key: it covers the
# coarsest timestamps in common use (FAT's 2 s; ext4 and tmpfs stamp with the kernel's tick).
RACY_NS = 2_000_000_000
# The same for a folder's own stat key (``Folder.names``), kept apart: files added in a burst land
# in one clock tick and leave the folder's key as the first left it (common), where a file edited
# twice in one tick to the same size is rare; tests that trust files at once must not trust folders.
FOLDER_RACY_NS = 2_000_000_000
TRUSTED = 1 << 62  # "read at" of an entry taken from the index: it was checked when it was written
_MAGIC = b"swarmfile-task-index"
_TAG = (sys.implementation.cache_tag or sys.implementation.name).encode()  # marshal's format is the interpreter's
_OLD_NAMES = ("task-index.json",)  # earlier formats, deleted when the index is written


def index_file(runtime_dir: Path) -> Path:
    """Where the index of a workspace lives (its runtime folder, git-ignored)."""
    return (runtime_dir if isinstance(runtime_dir, Path) else Path(runtime_dir)) / "task-index.marshal"


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
            state["path"] = Path(task[_AT["_folder"]], task[_AT["_name"]])
        else:
            try:
                body = parse_task(read_text(task.path), task.path)
                state.update(fields=body.fields, field_lines=body.field_lines, sections=body.sections,
                             checklist=body.checklist, title_line=body.title_line)
            except (OSError, SwarmError):  # gone, unreadable or no longer a task since the listing
                state.update(fields=MappingProxyType({}), field_lines=MappingProxyType({}), sections=(),
                             checklist=(), title_line=1)
        return state[self.name]


# What an IndexedTask holds, in order; "_order" is tasks.ready_order_key's (rank, moment, id).
_FIELDS = ("task_id", "title", "status", "status_text", "priority", "priority_text", "created", "depends_on",
           "parent", "assigned_to", "sub_tasks", "files_to_modify", "_order", "_folder", "_name", "checklist_counts",
           "objective", "claimed_by")
_AT = {name: n for n, name in enumerate(_FIELDS)}


class IndexedTask(tuple, Task):  # type: ignore[misc]
    """A task read from the index: what a listing needs, the rest read from its file on first use.

    ``fields``, ``field_lines``, ``title_line``, ``sections`` and ``checklist`` (and what derives
    from them: ``field()``, success criteria) are parsed from the file when first asked for; a file
    gone or broken by then gives none. ``path`` is made when first asked for. The objective, the
    Claimed By field and the checklist's counts are in the summary (status, the dashboard and the
    duplicate check read them of every task).

    A tuple of its summary (``_FIELDS``, each read by a C getter): a cold listing makes 10,000 of
    them from the index's columns in C loops (map, zip), where making each one's attribute dict
    cost more than the rest of the query. Like every Task it compares by identity, never by value,
    and has no order.
    """

    # object's, not tuple's: two tasks are equal only when they are one (ready_query._same relies on it)
    __eq__, __ne__, __hash__ = object.__eq__, object.__ne__, object.__hash__
    __lt__, __le__, __gt__, __ge__ = object.__lt__, object.__le__, object.__gt__, object.__ge__

    path, fields, field_lines, sections, checklist, title_line = (_Lazy() for _ in range(6))

    def __repr__(self) -> str:
        return f"IndexedTask(task_id={self.task_id!r}, path={path_text(self)!r}, status={self.status!r})"


for _n, _name in enumerate(_FIELDS):
    setattr(IndexedTask, _name, property(itemgetter(_n)))
_new = partial(tuple.__new__, IndexedTask)  # IndexedTask from a tuple of _FIELDS, callable from map()
_FOLDER, _FILE_NAME = itemgetter(_AT["_folder"]), itemgetter(_AT["_name"])


def is_summary(value: Any) -> bool:
    """Whether ``value`` came from the index (the rest of it is read from its file on first use)."""
    return type(value) is IndexedTask


def restated(task: Task, status: Status) -> Task:
    """A copy of ``task``, whatever its class, with ``status`` (and its text): a listing's stand-in
    for a task whose changed file it does not read."""
    if type(task) is IndexedTask:
        copy = _new((*task[:2], status, status.value, *task[4:]))
        copy.__dict__.update(task.__dict__)
        return copy
    copy = object.__new__(type(task))
    object.__setattr__(copy, "__dict__", {**task.__dict__, "status": status, "status_text": status.value})
    return copy


def path_text(task: Task) -> str:
    """``str(task.path)``, without making the Path of a task from the index (10,000 of them cost more
    than the query that found them)."""
    if type(task) is not IndexedTask:
        return str(task.path)
    folder, name = task[13], task[14]  # a folder as os.fspath gives it (no trailing "/" but the root's), a file name
    return folder + name if folder.endswith(os.sep) else folder + os.sep + name  # os.path.join, without its checks


def columns(found: list, names: Sequence[str]) -> list[list]:
    """``[list(map(attrgetter(name), found)) for name in names]``: the summary fields ``names`` (task_id,
    title, status ... files_to_modify) of the tasks ``found``, of any class, a list per field; in one
    transposition (C) when they all came from the index."""
    if set(map(type, found)) != {IndexedTask}:
        return [list(map(attrgetter(name), found)) for name in names]
    fields = list(zip(*found)) or [()] * len(_FIELDS)
    return [list(fields[_AT[name]]) for name in names]


def path_columns(found: list) -> tuple[list[str], list[str]]:
    """Each task's ``path_text`` in two parts, a prefix and the rest, in C loops when they all came from
    the index (its folder with the separator, one object per folder, and its file name; else "" and the path)."""
    if set(map(type, found)) != {IndexedTask}:
        return [""] * len(found), list(map(path_text, found))
    prefixes = _Prefixes()
    return list(map(prefixes.__getitem__, map(_FOLDER, found))), list(map(_FILE_NAME, found))


class _Prefixes(dict):
    """A folder -> its text with the separator a file name follows (the root's has it already)."""

    def __missing__(self, folder: str) -> str:
        text = self[folder] = folder if folder.endswith(os.sep) else folder + os.sep
        return text


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


# ---------------------------------------------------------------------------- one folder's record

# A folder's record: its names (every one, in the order the directory lists them, joined by NULs),
# its subfolders, and one column per field with an item per file that may be a task (by its name:
# task_cache decides which), in file-name order; "at" is each such file's place among the names.
# A file not indexed (racily clean, did not parse, not a regular file, a claim's stand-in) has the
# stat key _UNKNOWN, which no file has: it is read again. One that is not a task has id None.
_COLUMNS = ("id", "title", "status", "status_text", "priority", "priority_text", "created", "rank", "moment",
            "depends_on", "parent", "assigned_to", "sub_tasks", "files", "checklist_counts", "objective",
            "claimed_by")
_UNKNOWN = (-1, -1, 0, -1)  # no file has a size of -1
_STAT_KEY = attrgetter("st_mtime_ns", "st_size", "st_ino", "st_ctime_ns")  # as task_cache keys its entries
_INODE_OF_KEY = itemgetter(2)
# A stat key packed (mtime, size, inode, ctime): comparing the bytes of a whole folder's keys is one
# C compare, and packing them costs less than unpacking as many tuples from the index.
_KEY = struct.Struct("=qqQq")
_KEY_SIZE = _KEY.size
_STATUS = {s.value: s for s in Status}
_PRIORITY = {p.value: p for p in Priority}
_NONE = type(None)


class Folder:
    """One folder as the index recorded it, to be checked against the folder as it is now.

    Its names (``order``: every name in the folder, in the order the directory lists them, joined
    by NULs, which no file name holds) and, for the files that may be tasks (in file-name order,
    ``at``: each one's place among the names), the stat keys and columns of the summaries.
    ``folder_key``: the folder's own stat key when it listed exactly these names, settled; else None.
    """

    __slots__ = ("path", "order", "folders", "at", "keys", "columns", "not_a_task", "all_tasks", "folder_key")

    def __init__(self, path: str, record: dict, not_a_task: Any) -> None:
        self.path = path
        self.order: str = record["order"]
        self.folders: list[str] = record["folders"]
        self.at: list[int] = record["at"]
        self.keys: bytes = record["keys"]
        self.folder_key: Optional[tuple] = record["folder_key"]
        self.columns = columns = {column: record[column] for column in _COLUMNS}
        self.not_a_task = not_a_task
        count = len(self.at)
        if len(self.keys) != count * _KEY_SIZE or any(len(values) != count for values in columns.values()):
            raise ValueError("columns of different lengths")
        ids = set(map(type, columns["id"]))
        self.all_tasks = _NONE not in ids  # no file recorded as no task, or not indexed
        if not (type(self.order) is str and set(map(type, self.folders)) <= {str} and set(map(type, self.at)) <= {int}
                and (not self.at or 0 <= min(self.at) <= max(self.at) < self.order.count("\0") + 1)
                and ids <= {str, _NONE} and set(columns["status"]) <= {*_STATUS, None}
                and set(columns["priority"]) <= {*_PRIORITY, None}
                and all(set(map(type, columns[c])) <= {tuple} for c in ("depends_on", "sub_tasks", "files"))
                and set(map(type, columns["checklist_counts"])) <= {tuple, _NONE}
                and set(map(type, columns["objective"])) <= {str, _NONE}
                and set(map(type, columns["claimed_by"])) <= {str, _NONE}
                and (self.folder_key is None or (type(self.folder_key) is tuple and len(self.folder_key) == 4
                                                 and set(map(type, self.folder_key)) == {int}))):
            raise TypeError("not an index record")

    def names(self, directory: str) -> Optional[list[str]]:
        """The names in ``directory`` now, if they are the recorded ones in the recorded order; else None.

        When the folder's own stat key is the recorded one (``folder_key``), the recorded names,
        without listing the folder: adding, removing or renaming an entry sets the folder's change
        time. Else ``os.listdir``. Errors of either are raised.
        """
        if self.folder_key is not None and _STAT_KEY(os.stat(directory)) == self.folder_key:
            return self.order.split("\0") if self.order else []
        names = os.listdir(directory)
        return names if "\0".join(names) == self.order else None

    def stat(self, directory: str, names: list[str]) -> tuple[list[str], list[tuple], dict[str, int], list[str]]:
        """The folder whose ``names`` matched: its files that may be tasks (in file-name order), their
        stat keys (one stat each, following symlinks as a listing does), every name -> its inode (in
        the folder's order), and which other names are folders. Errors of ``stat`` are raised (a file
        gone since the listing, a dangling symlink).

        Stats relative to the folder, of names from ``os.listdir``, not ``scandir``: at 10,000 files,
        keeping a DirEntry and its stat for each cost a third as much again as the stats themselves.
        """
        files = self._files(names)
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            keys = list(map(_STAT_KEY, map(partial(os.stat, dir_fd=fd), files)))
            inodes: dict = dict.fromkeys(names)
            inodes.update(zip(files, map(_INODE_OF_KEY, keys)))
            folders = []
            if len(files) < len(names):
                for name in names:
                    if inodes[name] is None:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        inodes[name] = st.st_ino
                        if stat.S_ISDIR(st.st_mode):
                            folders.append(name)
        finally:
            os.close(fd)
        return files, keys, inodes, folders

    def _files(self, names: list[str]) -> list[str]:
        return list(map(names.__getitem__, self.at))

    def changed(self, keys: list[tuple]) -> list[int]:
        """The places among ``files`` whose stat key now (``keys``) is not the recorded one."""
        try:
            now = b"".join(starmap(_KEY.pack, keys))
        except struct.error:  # a number out of range: every file counts as changed
            return list(range(len(keys)))
        return [] if now == self.keys else _differing(now, self.keys, _KEY_SIZE)

    def key(self, n: int) -> tuple:
        """The recorded stat key of file ``n``."""
        return _KEY.unpack_from(self.keys, n * _KEY_SIZE)

    def values(self, files: list[str]) -> list:
        """Per file: its IndexedTask, ``not_a_task``, or None when the record holds nothing of it."""
        c = self.columns
        ids = c["id"]
        made: list = list(map(_new, zip(
            ids, c["title"], map(_STATUS.get, c["status"]), c["status_text"], map(_PRIORITY.get, c["priority"]),
            c["priority_text"], c["created"], c["depends_on"], c["parent"], c["assigned_to"], c["sub_tasks"],
            c["files"], zip(c["rank"], c["moment"], ids), repeat(self.path), files, c["checklist_counts"],
            c["objective"], c["claimed_by"])))
        for n in compress(range(len(ids)), map(is_, ids, repeat(None))):
            made[n] = None if self.key(n) == _UNKNOWN else self.not_a_task
        return made

    def entries(self) -> dict[str, tuple]:
        """The record as task_cache's entries ({file name: (stat key, value, TRUSTED)}), for a listing
        that checks it file by file."""
        files = self._files(self.order.split("\0"))
        keys = _KEY.iter_unpack(self.keys)
        return {name: (key, value, TRUSTED) for name, key, value in zip(files, keys, self.values(files))
                if value is not None}

    def indexed(self) -> set[str]:
        """The names of the files whose entry a listing may take from the record (their stat key permitting)."""
        files = self._files(self.order.split("\0"))
        return {name for n, name in enumerate(files) if self.key(n) != _UNKNOWN}


def _differing(a: Any, b: Any, width: int) -> list[int]:
    """The places where two sequences of one length (bytes, arrays) differ, in items of ``width``
    (C compares of 256 items at a time: after a few claims, a few places among 10,000)."""
    found: list[int] = []
    step = 256 * width
    for start in range(0, len(a), step):
        if a[start:start + step] != b[start:start + step]:
            found += [n for n in range(start // width, min(len(a), start + step) // width)
                      if a[n * width:(n + 1) * width] != b[n * width:(n + 1) * width]]
    return found


def _record(entries: dict, order: list, folders: list, not_a_task: Any, candidate: Callable[[str], bool],
            folder_key: Optional[tuple]) -> dict:
    place = {name: n for n, name in enumerate(order)}
    names = sorted(filter(candidate, order))
    keys: list[bytes] = []
    rows: list = []
    same: dict = {}  # equal texts as one object, which marshal writes once (most tasks name the same few files)
    for name in names:
        key, value, read_ns = entries.get(name, (_UNKNOWN, None, 0))
        try:
            if not (key[3] < read_ns - RACY_NS and (value is not_a_task or isinstance(value, Task))):
                raise ValueError("racily clean, did not parse, a stand-in, or not read")
            keys.append(_KEY.pack(*key))
        except (ValueError, struct.error):
            keys.append(_KEY.pack(*_UNKNOWN))
            value = None
        rows.append(_row(value if isinstance(value, Task) else None, same))
    record = dict(zip(_COLUMNS, map(list, zip(*rows)))) if rows else {column: [] for column in _COLUMNS}
    record.update(order="\0".join(order), folders=list(folders), at=[place[name] for name in names],
                  keys=b"".join(keys), folder_key=folder_key)
    return record


def _folder_key(directory: str, order: list) -> Optional[tuple]:
    """The stat key of ``directory`` if it lists the names ``order`` and was last changed more than
    ``FOLDER_RACY_NS`` ago (checked now, as the index is written); else None.

    Taken before the listing and checked again after it: a change between the two, or within the
    clock tick of the key (which a later change in the same tick would keep), is never recorded.
    """
    try:
        now = time.time_ns()
        key = _STAT_KEY(os.stat(directory))
        names = os.listdir(directory)
        if _STAT_KEY(os.stat(directory)) != key:
            return None
    except OSError:
        return None
    settled = max(key[0], key[3]) < now - FOLDER_RACY_NS  # mtime and ctime
    return key if settled and len(names) == len(order) and set(names) == set(order) else None


def _row(task: Optional[Task], same: dict) -> tuple:
    if task is None:
        return (None,) * 9 + ((), None, None, (), (), None, None, None)
    status = task.status.value if task.status else None
    priority = task.priority.value if task.priority else None
    rank, moment, _ = ready_order_key(task)
    # A text the same as its value is stored as that very object: marshal writes it once.
    return (task.task_id, task.title, status, status if task.status_text == status else task.status_text,
            priority, priority if task.priority_text == priority else task.priority_text,
            same.setdefault(task.created, task.created), same.setdefault(rank, rank), same.setdefault(moment, moment),
            _same(same, tuple(same.setdefault(d, d) for d in task.depends_on)), task.parent, task.assigned_to,
            _same(same, tuple(task.sub_tasks)), _same(same, tuple(same.setdefault(f, f) for f in task.files_to_modify)),
            _same(same, tuple(task.checklist_counts)), same.setdefault(task.objective, task.objective),
            same.setdefault(task.claimed_by, task.claimed_by))


def _same(same: dict, value: tuple) -> tuple:
    """``value``, or an equal tuple already written: one object, written once (read as one)."""
    return same.setdefault(value, value)


# ---------------------------------------------------------------------------- the file


def encode(document: dict) -> bytes:
    """The file of an index ``document`` ({"dirs": {folder: record}}): a first line naming the format,
    the interpreter and a checksum of the rest, then the document in ``marshal``."""
    payload = marshal.dumps(document)
    return b"%s %d %s %08x %d\n" % (_MAGIC, FORMAT, _TAG, zlib.crc32(payload), len(payload)) + payload


def decode(data: bytes) -> Optional[dict]:
    """The document of an index file, or None when it is of another format or interpreter, or damaged."""
    head = data[:data.find(b"\n", 0, 200) + 1]  # the first line (empty when there is none)
    payload = memoryview(data)[len(head):]  # not a copy: 2 MB at 10,000 tasks
    try:
        magic, form, tag, crc, size = head[:-1].split(b" ")
        if (magic != _MAGIC or form != b"%d" % FORMAT or tag != _TAG or int(size) != len(payload)
                or int(crc, 16) != zlib.crc32(payload)):
            return None
        document = marshal.loads(payload)
    except (ValueError, TypeError, EOFError, MemoryError, OverflowError):
        return None
    return document if isinstance(document, dict) else None


def load(path: Path, not_a_task: Any) -> dict[str, Folder]:
    """The index at ``path``: {folder: its record}. ``not_a_task`` is the value of a file that is not a task.

    Empty when the file is missing, unreadable, corrupt or of another format: never an error.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {}
    with gc_paused():
        document = decode(data)
        try:
            return {folder: Folder(folder, record, not_a_task) for folder, record in document["dirs"].items()}
        except (ValueError, TypeError, KeyError, AttributeError):  # a document of other shapes: rebuilt by the next save
            return {}


def save(path: Path, folders: dict[str, tuple[dict, dict, list]], not_a_task: Any,
         candidate: Callable[[str], bool]) -> None:
    """Write the index of ``folders`` to ``path``.

    ``folders``: {folder: (its entries {file name: (stat key, value, read_ns)}, every name in it
    in the order the directory lists them, its subfolders)}; ``candidate``: whether a name is one a
    listing reads as a possible task. Left out: files that did not parse (parsed again, to report them),
    and racily clean files, changed less than ``RACY_NS`` before they were read. A folder's own stat
    key is recorded when it lists these very names now and is settled (``_folder_key``: one listing of
    each folder here). Atomic, not fsynced: a cache lost in a crash is rebuilt.
    """
    from .fileio import atomic_write  # here: most cold listings write no index, and fileio imports yaml and the locks

    document = {"dirs": {folder: _record(entries, order, subfolders, not_a_task, candidate, _folder_key(folder, order))
                         for folder, (entries, order, subfolders) in folders.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, encode(document), fsync=False, fsync_dir=False)
    for old in _OLD_NAMES:
        if old != path.name:
            (path.parent / old).unlink(missing_ok=True)
