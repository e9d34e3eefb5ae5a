"""redis_lease: the lease rules the Redis server enforces itself, whatever a host believes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest

import claims
from swarmfile import config, task_store
from swarmfile.clock import HOSTNAME, utc_now
from swarmfile.errors import AlreadyClaimed, BackendUnavailable, LeaseLost, LockTimeout
from swarmfile.lease_store import LeaseState
from swarmfile.redis_lease import RedisLeaseTable
from swarmfile.stores import lease_table


@pytest.fixture
def table(workspace, redis_server) -> RedisLeaseTable:
    (workspace / "swarm.yaml").write_text(f"backend: {redis_server.url}\n")
    config._cache.clear()
    made = lease_table(config.load_config(root=workspace))
    assert isinstance(made, RedisLeaseTable)
    return made


def _task(root, task_id="T-1"):
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, priority="medium",
                                    created="2026-01-01T00:00:00Z")


def test_now_is_the_servers_clock(table):
    server = table.now()
    seconds, _ = table.client.time()
    assert abs(server.timestamp() - int(seconds)) < 2
    assert server.tzinfo is not None


def test_a_holder_whose_clock_runs_ahead_cannot_take_a_live_lease(table, workspace):
    _task(workspace)
    held = claims.claim_task("T-1", "e1", ttl=60)
    with pytest.raises(AlreadyClaimed) as info:  # this host believes an hour has passed; the server does not
        claims.claim_task("T-1", "e2", now=utc_now() + timedelta(hours=1))
    assert "server's clock" in str(info.value)
    assert claims.get_lease("T-1") == held


def test_a_holder_whose_clock_runs_behind_cannot_renew_an_expired_lease(table, workspace):
    _task(workspace)
    lease = claims.claim_task("T-1", "e1", ttl=0.2)
    deadline = table.now() + timedelta(seconds=0.2)
    while table.now() <= deadline:  # wait for the server's clock, not ours
        pass
    with pytest.raises(LeaseLost) as info:  # this host believes it is an hour earlier
        claims.renew(lease, ttl=60, now=utc_now() - timedelta(hours=1))
    assert "expired" in str(info.value) and "server's clock" in str(info.value)


def test_the_token_never_goes_back_even_when_the_lease_key_is_deleted(table, workspace):
    _task(workspace)
    first = claims.claim_task("T-1", "e1", ttl=60)
    table.client.delete(table.where("T-1"))  # a person's FLUSH of one key: the record is gone, the counter is not
    with table.lock("T-1"):
        with pytest.raises(LeaseLost) as info:
            table.write(replace(first, token=0))
    assert "stale" in str(info.value)
    with table.lock("T-1"):
        table.write(first)  # the current token is still accepted
    assert table.read("T-1") == first


def test_a_write_without_the_lock_or_after_losing_it_is_refused(table, workspace):
    _task(workspace)
    lease = claims.claim_task("T-1", "e1", ttl=60)
    with pytest.raises(LeaseLost):
        table.write(replace(lease, state=LeaseState.COMPLETED))
    with table.lock("T-1"):
        # The lock expired while this process was paused, and another process took it.
        table.client.set(table._key("lock", "T-1"), "elsewhere|1|1|other")
        with pytest.raises(BackendUnavailable) as info:  # void, not lost: the caller retries
            table.write(replace(lease, state=LeaseState.COMPLETED))
        assert "lock expired" in str(info.value)
    table.client.delete(table._key("lock", "T-1"))
    assert table.read("T-1") == lease


def test_a_dead_holder_on_this_host_frees_the_task_at_once_one_elsewhere_does_not(table, workspace):
    _task(workspace, "T-1")
    _task(workspace, "T-2")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    claims.claim_task("T-1", "gone", ttl=600, pid=pid, host=HOSTNAME, proc_start=1)
    claims.claim_task("T-2", "away", ttl=600, pid=pid, host="another-host", proc_start=1)
    assert claims.claim_task("T-1", "e2").token == 2  # the server checked the proof came from the holder's host
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-2", "e2")


def test_a_dead_owners_lock_is_broken_on_its_host_a_live_ones_is_not(table):
    key = table._key("lock", "T-1")
    table.client.set(key, f"{HOSTNAME}|999999|1|x", px=60_000)  # no such process
    with table.lock("T-1", timeout=0):
        pass
    table.client.set(key, f"other-host|999999|1|x", px=60_000)  # cannot be checked from here: wait
    with pytest.raises(LockTimeout):
        with table.lock("T-1", timeout=0.1):
            pass
