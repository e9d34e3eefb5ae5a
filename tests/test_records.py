"""Every stored record reads a mapping and writes it back key for key, unknown keys kept (records.Record)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmfile.agent_discovery import AgentInfo
from swarmfile.chat import Message
from swarmfile.lease_store import Lease
from swarmfile.merge_queue import QueueEntry
from swarmfile.records import Record
from swarmfile.reservations import Reservation
from swarmfile.state_sync import AgentContext
from swarmfile.worktrees import Worktree

STAMP = "2026-11-30T06:00:00.000Z"  # as the files hold it (reservations normalise to this)

# One stored mapping per record, in the order the file has it, with a key this version does not know.
STORED = {
    Lease: {"task_id": "T-1", "agent_id": "a1", "token": 3, "acquired_at": STAMP, "expires_at": STAMP,
            "pid": 12, "host": "h", "proc_start": 99, "state": "held", "acknowledged_at": None,
            "attempts": 0, "not_before": None, "ended_at": None, "error": None, "mirror": None,
            "from_the_future": [1, 2]},
    AgentInfo: {"agent_id": "a1", "last_seen": STAMP, "status": "working", "current_action": "x",
                "current_task": "T-1", "role": "executor", "pid": 5, "host": "h", "started_at": STAMP,
                "proc_start": "77", "model": "opus"},
    Message: {"id": 4, "timestamp": STAMP, "from": "a1", "to": "all", "type": "question",
              "task_id": "T-1", "content": "why?", "reply_to": 2, "mood": "curious"},
    Reservation: {"id": "r1", "agent_id": "a1", "patterns": ["src/**"], "acquired_at": STAMP,
                  "expires_at": STAMP, "exclusive": True, "task_id": None, "pid": None, "host": None,
                  "proc_start": None, "note": "kept"},
    AgentContext: {"current_file": "a.py", "status": "working", "progress": 50, "message": "m",
                   "files_locked": ["a.py"], "task_id": "T-1", "last_update": STAMP, "editor": "vim"},
}


@pytest.mark.parametrize("kind", list(STORED), ids=lambda k: k.__name__)
def test_a_record_writes_back_what_it_read_in_the_same_order(kind):
    stored = STORED[kind]
    record = kind.from_dict(dict(stored))
    assert isinstance(record, Record)
    assert list(record.to_dict().items()) == list(stored.items())


def test_optional_fields_left_out_where_the_format_leaves_them_out(tmp_path):
    entry = QueueEntry(id="q1", branch="b", task_id="T-1", agent_id="a1", base="main", at=STAMP,
                       status="done", extra={"op_note": 1})
    assert entry.to_dict() == {"id": "q1", "branch": "b", "task_id": "T-1", "agent_id": "a1", "base": "main",
                               "at": STAMP, "op_note": 1}  # no worktree (None), no status (not its own)
    stored = {"path": str(tmp_path / "wt"), "branch": "b", "task_id": "T-1", "agent_id": "a1", "base": "main",
              "created_at": STAMP, "lease_token": 2, "later": True}
    worktree = Worktree.from_dict(dict(stored), root=tmp_path)
    assert worktree.path == Path(stored["path"]) and worktree.root == tmp_path
    assert list(worktree.to_dict().items()) == list(stored.items())  # no base_commit, no root


def test_a_written_mapping_shares_no_list_with_its_record():
    context = AgentContext.from_dict({"files_locked": ["a.py"]})
    context.to_dict()["files_locked"].append("b.py")
    assert context.files_locked == ["a.py"]
