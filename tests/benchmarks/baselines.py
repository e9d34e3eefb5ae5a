"""The baselines Swarmfile is measured against, each the simplest durable way to do the same job.

* a SQLite WAL queue (``synchronous=FULL``): claim by ``UPDATE ... RETURNING`` in ``BEGIN IMMEDIATE``;
* a maildir queue: claim by ``os.rename`` from ``new/`` to ``cur/<worker>/`` (one winner per file),
  both directories fsynced after a won rename;
* a bare journal claim: one shared lock, one appended line, one fsync shared by concurrent claimers,
  and optionally the task file's Status line rewritten by temp file and rename (the floors under
  Swarmfile's file claims);
* a raw append loop: ``fcntl.flock`` + ``os.write`` + ``os.fsync`` per line;
* a raw tail: read backwards to the last ``n`` lines, one libyaml parse;
* a bare libyaml parse (``yaml.load`` with ``CSafeLoader``) of the heartbeat file, and a raw
  durable read-modify-write of it (flock, parse, dump, temp file, fsync, rename, dir fsync).

Benchmark code, not ``lib/``: it may import yaml and fcntl directly.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

__all__ = [
    "sqlite_setup", "sqlite_connect", "sqlite_claim", "sqlite_ready", "sqlite_claim_worker",
    "maildir_setup", "maildir_claim", "maildir_claim_worker", "bare_journal_setup", "bare_journal_claim_worker",
    "raw_append_worker", "raw_tail", "bare_parse", "raw_heartbeat",
]

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# ---------------------------------------------------------------------------- SQLite WAL queue

CLAIM_SQL = ("UPDATE tasks SET owner=? WHERE id=(SELECT id FROM tasks WHERE owner IS NULL "
             "ORDER BY priority DESC, id LIMIT 1) RETURNING id")
# The same question Swarmfile's ready query answers: pending, unowned, every dependency completed.
READY_SQL = ("SELECT t.id, t.priority, t.created FROM tasks t WHERE t.owner IS NULL AND t.status = 'pending' "
             "AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks p ON p.id = d.depends_on "
             "WHERE d.task_id = t.id AND p.status != 'completed') "
             "ORDER BY t.priority DESC, t.created, t.id")


def sqlite_connect(db: str) -> sqlite3.Connection:
    """A connection as a durable queue would open it: WAL, synchronous=FULL, a busy timeout."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=120)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=120000")
    return conn


def sqlite_setup(db: str, specs: Sequence[dict]) -> None:
    """A task table holding ``specs`` (task_id, rank, created, depends_on), with a ready index."""
    conn = sqlite_connect(db)
    try:
        conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, priority INTEGER NOT NULL, created TEXT NOT NULL, "
                     "status TEXT NOT NULL DEFAULT 'pending', owner TEXT)")
        conn.execute("CREATE INDEX tasks_ready ON tasks (owner, priority DESC, id)")
        conn.execute("CREATE TABLE deps (task_id TEXT NOT NULL, depends_on TEXT NOT NULL, "
                     "PRIMARY KEY (task_id, depends_on))")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO tasks (id, priority, created) VALUES (?, ?, ?)",
                         [(s["task_id"], s["rank"], s["created"]) for s in specs])
        conn.executemany("INSERT INTO deps VALUES (?, ?)",
                         [(s["task_id"], dep) for s in specs for dep in s["depends_on"]])
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def sqlite_claim(conn: sqlite3.Connection, owner: str) -> Optional[str]:
    """Claim the first unowned task for ``owner``; None when there is none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(CLAIM_SQL, (owner,)).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return rows[0][0] if rows else None


def sqlite_ready(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(READY_SQL).fetchall()


def sqlite_claim_worker(barrier: Any, index: int, db: str) -> dict:
    """Gang job: claim until the queue is empty; returns ids, per-claim latencies, start and end."""
    conn = sqlite_connect(db)
    owner = f"w{index}"
    try:
        barrier.wait()
        got, lat = [], []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            task_id = sqlite_claim(conn, owner)
            if task_id is None:
                break
            lat.append(time.perf_counter() - t0)
            got.append(task_id)
        return {"start": start, "end": time.perf_counter(), "ids": got, "lat": lat}
    finally:
        conn.close()


# ---------------------------------------------------------------------------- maildir queue


def maildir_name(spec: dict) -> str:
    """A file name that sorts in claim order: priority, then age, then id."""
    return f"{9 - spec['rank']}_{spec['created']}_{spec['task_id']}"


def maildir_setup(root: str, specs: Sequence[dict], body: bytes = b"") -> None:
    new = Path(root) / "new"
    new.mkdir(parents=True)
    (Path(root) / "cur").mkdir()
    for spec in specs:
        (new / maildir_name(spec)).write_bytes(body)


def maildir_claim(new: str, mine: str, new_fd: int, mine_fd: int) -> Optional[str]:
    """Claim the first file of ``new`` in name order by renaming it into ``mine``; None when empty.

    A rename that finds the file gone lost to another worker: try the next name.
    """
    for name in sorted(os.listdir(new)):
        try:
            os.rename(os.path.join(new, name), os.path.join(mine, name))
        except FileNotFoundError:
            continue
        # Durable: the new entry and the removal both reach the disk before the claim counts.
        os.fsync(mine_fd)
        os.fsync(new_fd)
        return name
    return None


def maildir_claim_worker(barrier: Any, index: int, root: str) -> dict:
    """Gang job: claim until ``new/`` is empty."""
    new = os.path.join(root, "new")
    mine = os.path.join(root, "cur", f"w{index}")
    os.mkdir(mine)
    new_fd = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
    mine_fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)
    try:
        barrier.wait()
        got, lat = [], []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            name = maildir_claim(new, mine, new_fd, mine_fd)
            if name is None:
                break
            lat.append(time.perf_counter() - t0)
            got.append(name.split("_", 2)[2])
        return {"start": start, "end": time.perf_counter(), "ids": got, "lat": lat}
    finally:
        os.close(new_fd)
        os.close(mine_fd)


# ---------------------------------------------------------------------------- bare journal claims


def bare_journal_setup(root: str, specs: Sequence[dict]) -> None:
    """The claim order for ``bare_journal_claim_worker`` in ``root`` (a workspace with the task files)."""
    order = sorted(specs, key=lambda s: (-s["rank"], s["created"], s["task_id"]))
    Path(root, "claim-order.txt").write_text("".join(s["task_id"] + "\n" for s in order))


def bare_journal_claim_worker(barrier: Any, index: int, root: str, mirror: bool) -> dict:
    """Gang job: the least a durable journal claim can do, in plain Python. Under one shared lock,
    read the journal's new lines (who took what) and append one line; fsync after the lock, so
    concurrent claimers share flushes. With ``mirror``, then rewrite the task file's Status line
    as a claim does: read it, temp file, rename (no fsync: the journal is the truth). No parsing,
    no lease records, no per-task locks: the floor under Swarmfile's file claims."""
    order = Path(root, "claim-order.txt").read_text().split()
    active = os.path.join(root, "tasks", "active")
    journal = os.path.join(root, "bare-journal.txt")
    lock = os.open(os.path.join(root, "bare-journal.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    writer = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    reader = os.open(journal, os.O_RDONLY)
    taken: set = set()
    seen = 0
    got, lat = [], []
    try:
        barrier.wait()
        start = time.perf_counter()
        for task_id in order:
            if task_id in taken:
                continue
            t0 = time.perf_counter()
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                new = os.pread(reader, 1 << 20, seen)
                seen += len(new)
                taken.update(line.split(" ", 1)[0] for line in new.decode().splitlines())
                if task_id in taken:
                    continue
                line = f"{task_id} executor-{index} 1\n".encode()
                os.write(writer, line)
                seen += len(line)
                taken.add(task_id)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            os.fsync(writer)
            if mirror:
                path = os.path.join(active, f"{task_id}.md")
                with open(path, encoding="utf-8") as handle:
                    text = handle.read().replace("**Status:** pending", "**Status:** claimed", 1)
                temp = os.path.join(active, f".{task_id}.md.tmp-{os.getpid()}")
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, text.encode("utf-8"))
                finally:
                    os.close(fd)
                os.rename(temp, path)
            lat.append(time.perf_counter() - t0)
            got.append(task_id)
        return {"start": start, "end": time.perf_counter(), "ids": got, "lat": lat}
    finally:
        for fd in (lock, writer, reader):
            os.close(fd)


# ---------------------------------------------------------------------------- append and tail


def raw_line(agent: str, seq: int) -> bytes:
    """One event line of the same shape and size as append_event writes."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
    return (f"- {{timestamp: '{stamp}', type: progress, agent: {agent}, task_id: TASK-{seq % 100:06d}, "
            f"step: {seq}}}\n").encode()


def raw_append_worker(barrier: Any, index: int, path: str, count: int) -> dict:
    """Gang job: ``count`` appends of one line each, flock + write + fsync + unlock."""
    agent = f"w{index}"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        barrier.wait()
        start = time.perf_counter()
        for seq in range(count):
            line = raw_line(agent, seq)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return {"start": start, "end": time.perf_counter(), "count": count}
    finally:
        os.close(fd)


def raw_tail(path: str, n: int) -> list:
    """The last ``n`` entries of a one-line-per-event log: read backwards, one libyaml parse."""
    with open(path, "rb") as handle:
        pos = handle.seek(0, os.SEEK_END)
        data, block = b"", 16384
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
            block *= 2
    lines = data.splitlines(keepends=True)[-n:]
    return yaml.load(b"".join(lines).decode("utf-8"), Loader=_LOADER)


# ---------------------------------------------------------------------------- heartbeat file


def bare_parse(path: str) -> Any:
    """Read and parse the file with libyaml, nothing else."""
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")
    return yaml.load(text, Loader=_LOADER)


def raw_heartbeat(path: str, lock_path: str, agent_id: str, now: str) -> None:
    """A minimal durable heartbeat: flock a sidecar, parse, change one entry, dump, atomic replace."""
    with open(lock_path, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        data = bare_parse(path)
        entry = data["heartbeats"][agent_id]
        entry["last_seen"] = now
        entry["status"] = "running"
        entry["current_action"] = "executing"
        data["metadata"]["last_updated"] = now
        text = yaml.dump(data, Dumper=_DUMPER, default_flow_style=False, sort_keys=False, allow_unicode=True,
                         width=100)
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f".hb.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
