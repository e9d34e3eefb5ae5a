"""Reach a task's stored lease whichever lease table the workspace uses: where it is, and a bad record.

Tests that corrupt or inspect a lease go through here (and ``LeaseTable.where``), never through a
path they spell out, so the same case runs on the journal (the default) and on a YAML file per lease.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from swarmfile import config
from swarmfile.lease_store import LeaseTable
from swarmfile.stores import lease_table

__all__ = ["table", "lease_file", "corrupt_lease", "edit_lease", "BAD_RECORD", "EMPTY_RECORD"]

# What a crash, a bad disk or a person can leave as a task's record.
BAD_RECORD = "bad"  # a record that does not parse
EMPTY_RECORD = "empty"  # a record with nothing in it: must never read as "never claimed"


def table(root: Path, made: Optional[LeaseTable] = None) -> LeaseTable:
    return made if made is not None else lease_table(config.load_config(root=root))


def lease_file(root: Path, task_id: str, made: Optional[LeaseTable] = None) -> Path:
    """The file that holds ``task_id``'s lease (the journal of every lease, or its own YAML file)."""
    return Path(table(root, made).where(task_id))


def corrupt_lease(root: Path, task_id: str, kind: str = BAD_RECORD, made: Optional[LeaseTable] = None) -> tuple[Path, int]:
    """Store an unreadable record of ``task_id``; returns (the file, the line number of the bad record)."""
    where = lease_file(root, task_id, made)
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.suffix == ".yaml":  # a file per lease: the whole file is the record
        where.write_text("" if kind == EMPTY_RECORD else f"task_id: {task_id}\nagent_id: executor-1\ntoken: [1,\n")
        return where, 1 if kind == EMPTY_RECORD else 3
    before = where.read_bytes() if where.exists() else b""
    record = '{"task_id": "%s"}' % task_id if kind == EMPTY_RECORD else '{"task_id": "%s", "token": [1,' % task_id
    with open(where, "ab") as journal:  # appended, as a writer would: the file is not replaced
        journal.write((b"\n" if before and not before.endswith(b"\n") else b"") + record.encode() + b"\n")
    return where, before.count(b"\n") + (2 if before and not before.endswith(b"\n") else 1)


def edit_lease(root: Path, task_id: str, **changes) -> None:
    """Change fields of ``task_id``'s stored lease, under its lock, as a person fixing it by hand would."""
    made = table(root)
    with made.lock(task_id):
        made.write(replace(made.read(task_id), **changes))
