"""The lease-table contract: every implementation of lease_store.LeaseTable passes these same tests.

A new backend is added to BACKENDS (with what it needs to start) and is proven by this file;
claims' rules on top of the table are tested once more per backend in test_claims.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmfile import config
from swarmfile.errors import LockTimeout, SwarmError
from swarmfile.lease_journal import JournalLeaseTable
from swarmfile.lease_store import Assignment, FileLeaseTable, Lease, LeaseState, LeaseTable
from swarmfile.stores import lease_table
from leases import corrupt_lease
from conftest import backend_config
from procs import run_together

# Each implementation by its swarm.yaml backend name ("redis": a private redis-server's URL);
# "lease-files" is lease_store's FileLeaseTable, no longer a backend (the journal migrates its
# files) but still the reader of those files.
BACKENDS = ["files", "lease-files", "redis"]


def _make(name: str, root: Path) -> LeaseTable:
    """The table ``backend: name`` gives (``name`` is the setting: a Redis URL for redis)."""
    if name == "lease-files":
        config._cache.clear()
        return FileLeaseTable(config.load_config(root=root))
    return lease_table(backend_config(root, name))


@pytest.fixture(params=BACKENDS)
def table(request, workspace) -> LeaseTable:
    setting = request.param
    if setting == "redis":
        setting = request.getfixturevalue("redis_server").url
    made = _make(setting, workspace)
    made.backend_name = request.param
    made.setting = setting  # what a child process passes to _make for the same table
    return made


def lease(task_id="T-1", token=1, **more) -> Lease:
    # Expired long ago: a table that judges take-overs by its own clock (Redis) lets the next
    # token in, as the lease rules would; these tests are about storage, not about expiry.
    return Lease(task_id=task_id, agent_id=more.pop("agent_id", "executor-1"), token=token,
                 acquired_at="2020-11-30T10:00:00Z", expires_at="2020-11-30T10:05:00Z", **more)


def test_a_task_never_claimed_has_no_lease(table):
    assert table.read("T-1") is None
    assert table.list() == []


def test_write_then_read_gives_the_same_lease_unknown_keys_kept(table):
    stored = lease(pid=42, host="box", mirror={"Status": "claimed"}, extra={"from_a_newer_version": [1, 2]})
    with table.lock("T-1"):
        table.write(stored)
    assert table.read("T-1") == stored
    ended = Lease(**{**stored.__dict__, "state": LeaseState.COMPLETED, "ended_at": "2026-11-30T10:01:00Z"})
    with table.lock("T-1"):
        table.write(ended)
    assert table.read("T-1").state is LeaseState.COMPLETED


def test_list_is_ordered_by_task_id(table):
    for task_id in ("T-3", "T-1", "T-2"):
        with table.lock(task_id):
            table.write(lease(task_id))
    assert [x.task_id for x in table.list()] == ["T-1", "T-2", "T-3"]


def test_a_record_that_cannot_be_read_is_an_error_never_unclaimed(table, workspace):
    with table.lock("T-1"):
        table.write(lease("T-1"))
    with table.lock("T-2"):
        table.write(lease("T-2"))
    _corrupt(table, workspace, "T-2")
    with pytest.raises(SwarmError):
        table.read("T-2")
    with pytest.raises(SwarmError):
        table.list()
    errors: list = []
    assert [x.task_id for x in table.list(errors=errors)] == ["T-1"]
    assert [e.task_id for e in errors] == ["T-2"]


def _corrupt(table: LeaseTable, workspace: Path, task_id: str) -> None:
    """Store a record of ``task_id`` that cannot be read, as a crash, a bad disk or a person would."""
    if table.backend_name == "redis":  # the hash of the task's lease, with a record that is no lease
        table.client.hset(table.where(task_id), "rec", '{"task_id": "%s", "token": "three"}' % task_id)
    else:
        corrupt_lease(workspace, task_id, made=table)


def _hold_until(name: str, root: str, held, release) -> None:
    table = _make(name, Path(root))
    with table.lock("T-1"):
        held.set()
        release.wait(timeout=60)


def test_the_lock_excludes_other_processes_and_a_zero_timeout_does_not_wait(table, workspace):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_until, args=(table.setting, str(workspace), held, release))
    holder.start()
    try:
        assert held.wait(timeout=60), "the holder never took the lock"
        with pytest.raises(LockTimeout):
            with table.lock("T-1", timeout=0):
                pass
        with table.lock("T-2", timeout=0):  # another task's lease is not held
            pass
    finally:
        release.set()
        holder.join(timeout=60)
        if holder.is_alive():
            holder.kill()
    with table.lock("T-1", timeout=0):
        pass


def _bump(name: str, root: str, rounds: int) -> int:
    """Read-modify-write the token of T-1 under its lock ``rounds`` times."""
    table = _make(name, Path(root))
    for _ in range(rounds):
        with table.lock("T-1", timeout=60):
            current = table.read("T-1")
            table.write(lease("T-1", token=current.token + 1))
    return rounds


def test_eight_processes_under_the_lock_lose_no_update(table, workspace):
    with table.lock("T-1"):
        table.write(lease("T-1", token=0))
    done = run_together(_bump, [(table.setting, str(workspace), 25)] * 8, timeout=300)
    assert sum(done) == 200
    assert table.read("T-1").token == 200


def test_assignments_are_kept_per_agent_and_cleared_only_with_their_token(table):
    assert table.assignment("executor-1") is None
    table.assign(lease("T-1", token=3), "2026-11-30T10:00:00Z")
    table.assign(lease("T-2", token=1, agent_id="executor-2"), "")
    got = table.assignment("executor-1")
    assert got == Assignment("executor-1", lease("T-1", token=3), "2026-11-30T10:00:00Z")
    assert [a.agent_id for a in table.assignments()] == ["executor-1", "executor-2"]
    assert table.clear_assignment("executor-1", token=2) is False  # a newer assignment is not taken back
    assert table.clear_assignment("executor-1", token=3) is True
    assert table.clear_assignment("executor-1") is False
    assert [a.agent_id for a in table.assignments()] == ["executor-2"]


def test_an_unknown_backend_is_refused_naming_swarm_yaml(workspace):
    (workspace / "swarm.yaml").write_text("backend: carrier-pigeon\n")
    config._cache.clear()
    with pytest.raises(SwarmError) as info:
        lease_table(config.load_config(root=workspace))
    assert "carrier-pigeon" in str(info.value) and "swarm.yaml" in str(info.value)


def test_files_is_the_journal_and_journal_is_its_other_name(workspace):
    assert isinstance(_make("files", workspace), JournalLeaseTable)
    assert _make("journal", workspace) is _make("files", workspace)  # one index per workspace and process
    (workspace / "swarm.yaml").unlink()
    config._cache.clear()
    assert isinstance(lease_table(config.load_config(root=workspace)), JournalLeaseTable)
