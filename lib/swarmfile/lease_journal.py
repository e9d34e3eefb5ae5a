"""The file backend's lease table: one append-only journal, one fsync per lease change.

``backend: files`` (the default) and ``backend: journal`` (its name before it was the default)
both select it (``stores.BACKENDS``).

Layout, under ``.swarm/leases/`` (runtime only; a person can read and grep it):

    snapshot.jsonl       line 1 {"generation": G, "leases": N}, then N lease records
    journal-G.jsonl      every lease change since that snapshot, one JSON record a line

A lease change (claim, renew, start, end) appends the task's whole new record to the
journal of the current generation and fsyncs it: one write, one fsync, under the journal's
lock (which only orders appends and compaction; the lease rules take the task's own lock,
``lock(task_id)``, around their read-modify-write). The last record of a task wins.

Each process keeps an index (task id -> lease) and brings it up to date before every read by
reading only the bytes added to the journal since it last looked, through a descriptor it keeps
(and appends through, where it may write): an ``fstat`` of it and a ``stat`` of the journal's name
when nothing changed. A compaction deletes the journal the descriptor reads (its link count drops
to 0), and a person may move it aside and put a copy back (the name holds another file): then the
process reads again from the snapshot and the file the name holds. A record is decoded when its task is
first asked about, not when it is read: each process reads every claim of every other, and asks
about few of them.

Compaction, when the journal has grown past ``_COMPACT_BYTES`` and holds mostly superseded
records: under the journal lock, write ``snapshot.jsonl`` of generation G+1 atomically (temp,
fsync, rename, directory fsync), then delete ``journal-G.jsonl``. A crash before the rename
leaves generation G whole; after it, G+1 is whole and the old journal is garbage, removed at
the next compaction. A torn last journal line (a crash mid-append) is never read, and is cut
off before the next append. A complete line that does not parse fails closed: reads raise,
naming the journal and line, and nothing is rewritten.

An index notices a journal replaced or rewritten by hand (a person deleting a bad line, as
the error asks): its inode, its size and the last bytes read are checked at every look, and
a change makes it read the snapshot and journal again from the start.

Leases kept by earlier versions, a YAML file per task in ``.swarm/claims/``, are read into
generation 1 the first time the journal is used (under the journal lock: of processes racing
the first use one migrates, the others wait and read its result), and that folder is renamed
``claims.migrated``. The snapshot is written before the rename, so a crash between the two
leaves a snapshot that says it was migrated, and the next use only renames. Lease files that
turn up beside a journal already in use are refused (see ``_migrate``).

The task file's ``**Status:**`` line mirrors the lease (claims writes it after the journal):
a held lease's mirror is not fsynced, an ended one's is (see ``claims._commit``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Optional

from .clock import format_ts, parse_ts
from .config import ID_PATTERN, Config
from .errors import ParseError, SwarmError, ValidationError
from .fileio import append_line_unlocked, atomic_write, locked, sync_appended
from .lease_store import FileLeaseTable, Lease, LeaseState
from .liveness import dead_reason

__all__ = ["JournalLeaseTable"]

# held_view trusts a holder's liveness probed this recently: a few agents hold every lease, and each
# claim asks about many. (The view only skips work: a holder's death is seen this much later by it.)
_ALIVE_SECONDS = 1.0
# A journal longer than this (and holding three times more records than live leases) is compacted.
_COMPACT_BYTES = 4 * 1024 * 1024
# The task id in a record that does not parse as JSON (see _take).
_TASK_ID = re.compile(rb'"task_id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"')


def _encode(lease: Lease) -> str:
    return json.dumps(lease.to_dict(), separators=(",", ":"), ensure_ascii=False, sort_keys=False)


# The states of an ended lease (_Index.held: not held, whatever else the record says).
_ENDED = frozenset(state.value for state in LeaseState if state is not LeaseState.HELD)

# A record as _encode writes it starts with its task id: read without decoding the record.
_RECORD_START = b'{"task_id":"'


class _Index:
    """One process's view of the table: the snapshot it loaded and how far into the journal it read."""

    def __init__(self) -> None:
        self.snapshot_key: Optional[tuple[int, int, int]] = None
        self.generation = 0
        self.journal_ino: Optional[int] = None  # the journal file read so far (a hand edit replaces it)
        self.fd: Optional[int] = None  # kept open on that file, for the next look (and append: ``writable``)
        self.writable = False
        self.seen: Optional[tuple[int, int]] = None  # its (size, mtime) at the last look
        self.offset = 0  # bytes of the journal read so far (whole lines only)
        self.tail = b""  # the journal's bytes just before ``offset``
        self.lines = 0  # lines of the journal read so far, for error messages
        self.records = 0  # records read since the snapshot (compaction looks at it)
        # task id -> its last record: a Lease, or (its bytes, file, line) until first asked about
        self.leases: dict[str, Any] = {}
        self.broken: dict[Optional[str], SwarmError] = {}  # task id (None: unknown) -> why its record is unreadable
        self.holds: dict[str, tuple] = {}  # task id -> (its undecoded record, what held() made of it)

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def lease(self, task_id: str) -> Optional[Lease]:
        """The task's last record, decoded now if it was not yet; a record that does not decode is
        moved to ``broken`` (and None returned)."""
        entry = self.leases.get(task_id)
        if entry is None or type(entry) is Lease:
            return entry
        del self.leases[task_id]
        _decode(self, *entry, supersede=False)
        return self.leases.get(task_id)

    def held(self, task_id: str) -> Optional[tuple]:
        """(expires_at, holder) when the task's last record is a held lease, else None. An undecoded
        record is read as JSON for those fields alone, no Lease made: each claimer asks this of every
        other claimer's claim. A record that is not plainly whole is decoded (``lease``) to decide."""
        entry = self.leases.get(task_id)
        if entry is not None and type(entry) is not Lease:
            known = self.holds.get(task_id)
            if known is not None and known[0] is entry:
                return known[1]
            found = self.holds[task_id] = (entry, self._held_undecoded(task_id, entry))
            return found[1]
        return self._held_of(entry)

    def _held_undecoded(self, task_id: str, entry: tuple) -> Optional[tuple]:
        try:
            data = json.loads(entry[0])
        except ValueError:
            data = None
        if type(data) is dict:
            state, expires = data.get("state", "held"), data.get("expires_at")
            if state != "held":
                return None if type(state) is str and state in _ENDED else self._held_of(self.lease(task_id))
            if (type(expires) is str and type(data.get("agent_id")) is str
                    and type(data.get("acquired_at")) is str and type(data.get("token")) is int
                    and _readable(expires)):
                return expires, (data.get("pid"), data.get("host"), data.get("proc_start"))
        return self._held_of(self.lease(task_id))

    @staticmethod
    def _held_of(lease: Optional[Lease]) -> Optional[tuple]:
        if lease is None or lease.state is not LeaseState.HELD:
            return None
        return lease.expires_at, (lease.pid, lease.host, lease.proc_start)

    def decode_all(self) -> None:
        for task_id in [k for k, v in self.leases.items() if type(v) is not Lease]:
            self.lease(task_id)


class JournalLeaseTable(FileLeaseTable):
    """Leases in an append-only journal with snapshots; assignments as FileLeaseTable keeps them."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.dir = cfg.runtime_dir / "leases"
        self.snapshot = self.dir / "snapshot.jsonl"
        self._snapshot_name = str(self.snapshot)
        self._lock_prefix = os.path.join(str(self.dir), "tasks", "")  # + task id: the lease lock's target
        self._journal_target = str(self.dir / "journal")
        self._journals: dict[int, Path] = {}
        self._index = _Index()
        self._alive: dict[tuple, tuple[bool, float]] = {}  # lease holder -> (lives, when probed): held_view's
        self._mutex = threading.Lock()  # an executor's beat thread renews while its main thread claims
        self._migrated = False

    # ------------------------------------------------------------------ naming

    def _journal(self, generation: int) -> Path:
        found = self._journals.get(generation)
        if found is None:
            found = self._journals[generation] = self.dir / f"journal-{generation}.jsonl"
        return found

    def where(self, task_id: str) -> str:
        try:
            self._migrate()
            with self._mutex:
                return str(self._journal(self._catch_up().generation))
        except SwarmError:  # for a message: the generation last seen will do
            return str(self._journal(self._index.generation))

    def lock(self, task_id: str, timeout: Optional[float] = None) -> ContextManager[Any]:
        # A byte of the shared lock file, not a sidecar per task: a task is claimed once, and a new
        # sidecar per claim cost more than the claim's journal line (locks.py: ``many``).
        return locked(self._lock_prefix + task_id, lock_dir=self.cfg.lock_dir,
                      timeout=self.cfg.lock_timeout if timeout is None else timeout, many=True)

    def _journal_lock(self) -> ContextManager[Any]:
        return locked(self._journal_target, lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout)

    # ------------------------------------------------------------------ reading

    def _snapshot_key(self) -> Optional[tuple[int, int, int]]:
        try:
            st = os.stat(self._snapshot_name)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _catch_up(self) -> _Index:
        """Bring the index up to date: reload after a compaction, then read the journal's new lines."""
        index = self._index
        if index.fd is not None:  # the journal last read, through the descriptor kept of it
            st = os.fstat(index.fd)
            # Not compacted away (its last link gone), not replaced (the name holds another file: a
            # person moved it aside and put a copy back): the snapshot is the one loaded.
            if st.st_nlink and _holds(self._journal(index.generation), st.st_ino):
                seen = (st.st_size, st.st_mtime_ns)
                if seen == index.seen:
                    return index
                back = len(index.tail)
                if st.st_size >= index.offset and (not back or os.pread(index.fd, back, index.offset - back) == index.tail):
                    new = os.pread(index.fd, st.st_size - index.offset, index.offset) if st.st_size > index.offset else b""
                    self._apply(index, new)
                    index.seen = seen
                    return index
            index.close()  # compacted, replaced or rewritten: the slow look below decides
        for _ in range(10):  # a compaction between the stat and the journal read: look again
            key = self._snapshot_key()
            if key != index.snapshot_key:
                index = self._replace_index(self._load_snapshot(key))
            try:
                fd, writable = _open_kept(self._journal(index.generation))
            except FileNotFoundError:
                if self._snapshot_key() != index.snapshot_key:
                    continue  # compacted meanwhile
                if index.offset or index.journal_ino is not None:  # deleted by hand: forget what it said
                    index = self._replace_index(self._load_snapshot(index.snapshot_key))
                return index  # nothing appended to this generation yet
            try:
                st = os.fstat(fd)
                back = len(index.tail)
                if (index.journal_ino not in (None, st.st_ino) or st.st_size < index.offset
                        or (back and os.pread(fd, back, index.offset - back) != index.tail)):
                    # Replaced or rewritten by hand (a person deleted a bad line): what was read is void.
                    index = self._replace_index(self._load_snapshot(index.snapshot_key))
                index.journal_ino = st.st_ino
                new = os.pread(fd, st.st_size - index.offset, index.offset) if st.st_size > index.offset else b""
            except BaseException:
                os.close(fd)
                raise
            index.close()
            index.fd, index.writable, index.seen = fd, writable, (st.st_size, st.st_mtime_ns)
            _kept_open(self)
            self._apply(index, new)
            return index
        raise SwarmError("the lease journal changes faster than it can be read", path=self.dir,
                         hint="is a process compacting it in a loop? see `doctor.py`")

    def _replace_index(self, index: _Index) -> _Index:
        self._index.close()
        self._index = index
        return index

    def _load_snapshot(self, key: Optional[tuple[int, int, int]]) -> _Index:
        index = _Index()
        index.snapshot_key = key
        if key is None:
            return index
        try:
            data = self.snapshot.read_bytes()
        except FileNotFoundError:
            index.snapshot_key = None
            return index
        lines = data.split(b"\n")
        try:
            header = json.loads(lines[0])
            index.generation = int(header["generation"])
        except (ValueError, KeyError, TypeError):
            raise ParseError("the lease snapshot's first line is not a header", path=self.snapshot, line=1,
                             hint="restore it from a backup; it was not changed") from None
        for number, raw in enumerate(lines[1:], start=2):
            if raw.strip():
                self._take(index, raw, self.snapshot, number)
        return index

    def _apply(self, index: _Index, new: bytes) -> None:
        end = new.rfind(b"\n") + 1  # a last line without its newline is being written, or torn: not yet
        journal = self._journal(index.generation)
        for raw in new[:end].split(b"\n")[:-1]:
            index.lines += 1
            index.records += 1
            if raw.strip():
                self._take(index, raw, journal, index.lines)
        index.offset += end
        if end:
            index.tail = new[max(0, end - 32):end]  # the last bytes read: a rewrite in place changes them

    @staticmethod
    def _take(index: _Index, raw: bytes, path: Path, line: int) -> None:
        if raw.startswith(_RECORD_START):  # the task id is legible: decode the record when it is asked for
            end = raw.find(b'"', len(_RECORD_START))
            task_id = raw[len(_RECORD_START):end].decode("ascii", "replace") if end > 0 else ""
            if ID_PATTERN.fullmatch(task_id):
                index.broken.pop(task_id, None)  # a later record of the task supersedes a broken one
                index.leases[task_id] = (raw, path, line)
                return
        _decode(index, raw, path, line)


    def read(self, task_id: str) -> Optional[Lease]:
        self._migrate()
        with self._mutex:
            index = self._catch_up()
            lease = index.lease(task_id)
            broken = index.broken.get(task_id) or index.broken.get(None)
            if broken is not None:
                raise broken
            return lease

    def held_view(self, now: datetime) -> Optional[Callable[[str], bool]]:
        self._migrate()
        with self._mutex:
            index = self._catch_up()
        if index.broken:
            return None  # a record nobody can read: let every check read the table (and meet the error)
        stamp, mutex = format_ts(now), self._mutex
        alive, since = self._alive, time.monotonic() - _ALIVE_SECONDS

        def leased(task_id: str) -> bool:
            # The index as it was: a record that does not decode reads as not leased, and the claim
            # of that task reads the table (and meets the error).
            with mutex:
                found = index.held(task_id)
            if found is None:
                return False
            expires, holder = found
            # Stamps in format_ts's one format compare as the times they name; any other is parsed.
            if not (expires > stamp if len(expires) == len(stamp) and expires[-1] == "Z" else now < parse_ts(expires)):
                return False
            known = alive.get(holder)
            if known is None or known[1] < since:  # a holder dead on this host frees its leases (free_reason)
                known = alive[holder] = (dead_reason(*holder) is None, time.monotonic())
            return known[0]

        return leased

    def list(self, *, errors: Optional[list] = None) -> list[Lease]:
        self._migrate()
        with self._mutex:
            index = self._catch_up()
            index.decode_all()
            if index.broken:
                if errors is None:
                    raise next(iter(index.broken.values()))
                errors.extend(index.broken.values())
            return [index.leases[k] for k in sorted(index.leases) if k not in index.broken]

    # ------------------------------------------------------------------ writing

    def write(self, lease: Lease) -> None:
        """Append the lease's record under the journal lock, then fsync it after letting go.

        The fsync comes after the lock so that writers waiting for it append meanwhile, and
        the fsyncs of several writers share one flush of the disk (a group commit): under
        the lock they would queue one flush each. A record is read by other processes before
        it is durable; that is safe because whatever they make durable on the strength of it
        is a later record of this journal, and an fsync makes every earlier line durable too.
        Returns once the record is durable; if the fsync fails the record is taken back (while
        no record follows it) and OSError raised.
        """
        line = _encode(lease).encode("utf-8") + b"\n"
        self._migrate()
        with self._journal_lock():
            with self._mutex:
                index = self._catch_up()  # under the journal lock: the generation cannot change now
                index.lease(lease.task_id)  # decoded: a record of it nobody can read is found now
                broken = index.broken.get(None) or index.broken.get(lease.task_id)
                if broken is not None:
                    raise broken  # fail closed: never write past a record nobody can read
                journal = self._journal(index.generation)
                if index.offset == 0 and not journal.exists():
                    atomic_write(journal, "")  # created durably: a crash must not lose the file's name
                fd: Optional[int] = None
                if index.writable and index.seen is not None and index.seen[0] == index.offset:
                    # Appended through the descriptor kept for reading (the file just looked at, under
                    # the lock, ending with a whole line): no open, no torn-tail check. The fsync gets a
                    # copy: another thread may close the kept one once the lock is let go.
                    start = append_line_unlocked(journal, line.decode("utf-8"), fsync=False, fd=index.fd,
                                                 whole_at=index.offset).offset
                    fd = os.dup(index.fd)
                else:
                    start = append_line_unlocked(journal, line.decode("utf-8"), fsync=False).offset
                self._apply(index, line)
                if index.offset > _COMPACT_BYTES and index.records > 3 * max(1, len(index.leases)):
                    if fd is not None:
                        os.close(fd)
                    self._compact(index)  # its snapshot is fsynced: the record is durable there
                    return
        self._sync(journal, start, start + len(line), fd)

    def _sync(self, journal: Path, start: int, end: int, fd: Optional[int] = None) -> None:
        """fsync the journal holding a record at bytes start..end; take the record back if that fails.
        ``fd``: a descriptor of it open for writing, which this closes (else the journal is opened)."""
        if fd is None:
            try:
                fd = os.open(journal, os.O_WRONLY)  # for the ftruncate that takes a record back
            except FileNotFoundError:
                return  # compacted meanwhile: the snapshot, fsynced before the journal went, holds the record

        @contextmanager
        def relock() -> Iterator[None]:
            with self._journal_lock(), self._mutex:
                yield
                self._replace_index(self._load_snapshot(self._snapshot_key()))  # without the record taken back

        try:
            sync_appended(fd, start, end, relock=relock)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = os.fspath(journal)
            raise

    def _compact(self, index: _Index) -> None:
        """Write generation G+1's snapshot, then drop journal G (see the module docstring)."""
        index.decode_all()
        if index.broken:
            return  # never fold a record we cannot read into a snapshot: a person decides first
        old = index.generation
        header = json.dumps({"generation": old + 1, "leases": len(index.leases)})
        body = "".join(_encode(index.leases[k]) + "\n" for k in sorted(index.leases))
        atomic_write(self.snapshot, header + "\n" + body)
        for name in os.listdir(self.dir):  # this journal, and any a crash left behind
            if name.startswith("journal-") and name.endswith(".jsonl"):
                try:
                    if int(name[len("journal-"):-len(".jsonl")]) <= old:
                        os.unlink(self.dir / name)
                except (ValueError, FileNotFoundError):
                    pass
        fresh = _Index()
        fresh.snapshot_key, fresh.generation, fresh.leases = self._snapshot_key(), old + 1, dict(index.leases)
        self._replace_index(fresh)

    def compact(self) -> None:
        """Compact now, whatever the journal's size (doctor --fix, tests)."""
        self._migrate()
        with self._journal_lock():
            with self._mutex:
                self._compact(self._catch_up())

    # ------------------------------------------------------------------ migration

    def _migrate(self) -> None:
        """Read leases kept a file per task by earlier versions into generation 1, once.

        Only into a journal never used: lease files that turn up beside a journal in use (a
        process of an older version still running, a backup put back) are two truths, and the
        table refuses to guess which is right (fails closed, naming both) until a person decides.
        """
        if self._migrated:
            return
        old_dir = self.claims_dir
        if old_dir.is_dir():
            with self._journal_lock():
                if old_dir.is_dir():
                    self._migrate_locked(old_dir)
        self._migrated = True

    def _migrate_locked(self, old_dir: Path) -> None:
        journals = [n for n in _names(self.dir) if n.startswith("journal-")]
        header: dict = {}
        if self.snapshot.exists():
            try:
                header = json.loads(self.snapshot.read_bytes().split(b"\n", 1)[0])
            except ValueError:
                header = {}
        if not self.snapshot.exists() and not journals:
            old = FileLeaseTable(self.cfg).list()  # one that does not parse stops this: fail closed
            self.dir.mkdir(parents=True, exist_ok=True)
            header = {"generation": 1, "leases": len(old), "migrated_from": str(old_dir)}
            atomic_write(self.snapshot, json.dumps(header) + "\n" + "".join(_encode(x) + "\n" for x in old))
        elif not (isinstance(header, dict) and header.get("migrated_from") and header.get("generation") == 1
                  and not journals):  # not our own migration, cut short between its two steps
            raise ValidationError(
                "lease files turned up beside the lease journal in use: two records of who holds what",
                path=old_dir, hint=f"stop every Swarmfile process of an older version; the journal in {self.dir} "
                "is the truth: move that folder away (keep it if a lease in it is newer)")
        target = old_dir.with_name("claims.migrated")
        if target.exists():
            raise ValidationError("cannot move the old lease files aside: the name is taken", path=target,
                                  hint="move that folder away; the leases are in .swarm/leases/ now")
        os.rename(old_dir, target)


# Tables whose index keeps its journal open, least recently opened first: a process that works in many
# workspaces (a test run, an MCP server) keeps at most _KEPT_OPEN descriptors, not one per workspace.
_KEPT_OPEN = 8
_kept: "OrderedDict[int, JournalLeaseTable]" = OrderedDict()
_kept_mutex = threading.Lock()


def _kept_open(table: JournalLeaseTable) -> None:
    """Record that ``table`` keeps its journal open (its mutex held); close the oldest others' beyond the bound."""
    with _kept_mutex:
        _kept.pop(id(table), None)
        _kept[id(table)] = table
        over = [_kept.popitem(last=False)[1] for _ in range(max(0, len(_kept) - _KEPT_OPEN))]
    for other in over:
        if other._mutex.acquire(blocking=False):  # in use by another thread: it stays open this time
            try:
                other._index.close()  # its next look opens the journal again
            finally:
                other._mutex.release()


def _decode(index: _Index, raw: bytes, path: Path, line: int, supersede: bool = True) -> None:
    """Decode one record into ``index.leases``, or put why it cannot be into ``index.broken``.

    ``supersede``: the record is the last one read (not one kept undecoded, which a broken record
    read after it may follow), so it ends its task's broken state."""
    task_id: Optional[str] = None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        # Whose record it was, if that much is legible: only that task's claim is then unknown.
        named = set(_TASK_ID.findall(raw))
        task_id = named.pop().decode("ascii") if len(named) == 1 else None
        index.broken[task_id] = ParseError(
            f"does not parse: {exc}", path=path, line=line, task_id=task_id,
            hint="restore the journal from a backup or delete that line (the task's claim is unknown until then)")
        return
    try:
        if not isinstance(data, dict):
            raise ValueError("not a record")
        task_id = data.get("task_id") if isinstance(data.get("task_id"), str) else None
        lease = Lease.from_dict(data, path)
    except (ValueError, SwarmError) as exc:
        reason = exc.reason if isinstance(exc, SwarmError) else f"not a lease record ({exc})"
        index.broken[task_id] = ParseError(
            reason, path=path, line=line, task_id=task_id,
            hint="restore the journal from a backup or delete that line (the task's claim is unknown until then)")
        return
    if supersede:
        index.broken.pop(lease.task_id, None)  # a later whole record of the task supersedes a broken one
    index.leases[lease.task_id] = lease


def _holds(path: Path, inode: Optional[int]) -> bool:
    """Whether ``path`` names the file of inode ``inode`` (one stat: a write checks this, a read need not)."""
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def _open_kept(path: Path) -> tuple[int, bool]:
    """The journal opened to be kept (and whether it may be appended through): for appending and
    reading where this process may write it, else for reading. A symlink is only read through."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)), True
    except (PermissionError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP):
            raise
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False


def _readable(stamp: str) -> bool:
    try:
        parse_ts(stamp)
        return True
    except ValueError:
        return False


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
