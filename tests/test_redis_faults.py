"""Faults of a real redis-server under real claimers and executors: SIGKILL, SIGSTOP, a skewed clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import claims
import events
from swarmfile import config, task_store
from swarmfile.clock import parse_ts, utc_now
from swarmfile.errors import AlreadyClaimed, LeaseLost
from swarmfile.lease_store import LeaseState
from swarmfile.liveness import pid_alive
from swarmfile.stores import lease_table

LIB = Path(__file__).resolve().parent.parent / "lib"
FAKE = Path(__file__).parent / "fake_agents" / "fake_cli.py"


@pytest.fixture
def redis_ws(workspace, redis_server):
    (workspace / "swarm.yaml").write_text(f"backend: {redis_server.url}\n")
    config._cache.clear()
    return workspace


def _tasks(root: Path, count: int) -> None:
    for n in range(count):
        task_store.new_task_file(f"T-{n:03d}", f"Task {n}", root=root, priority="medium",
                                 created=f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z")


# A claimer that keeps working through Redis outages: every acknowledged step is recorded only
# once Redis acknowledged it; a step whose reply was lost is settled by reading the lease back.
WORKER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import claims
from swarmfile import fileio
from swarmfile.config import load_config
from swarmfile.errors import BackendUnavailable, LeaseLost, LockTimeout, SwarmError
from swarmfile.lease_store import LeaseState
agent, cfg = sys.argv[2], load_config()
log = lambda name, text: fileio.append_line(cfg.root / name, text, lock_dir=cfg.lock_dir)
pause = 0.05
def patiently(fn, *args, **kw):
    global pause
    while True:
        try:
            result = fn(*args, **kw)
            pause = 0.05
            return result
        except (BackendUnavailable, LockTimeout):
            time.sleep(pause)   # backoff: the server is down or restarting
            pause = min(pause * 2, 1.0)
while True:
    patiently(claims.reap_expired)
    lease = patiently(claims.claim_next, agent, ttl=4)
    if lease is None:
        if all(l.state is LeaseState.COMPLETED for l in patiently(claims.list_leases)) and \
                len(patiently(claims.list_leases)) == int(sys.argv[3]):
            break
        time.sleep(0.2)  # a lost-reply claim binds until it expires: look again
        continue
    log("started.log", f"{lease.task_id} {lease.token} {agent}")
    try:
        done = patiently(claims.complete, lease)
    except LeaseLost:
        stored = patiently(claims.get_lease, lease.task_id)
        if not (stored.state is LeaseState.COMPLETED and stored.token == lease.token):
            log("lost.log", f"{lease.task_id} {lease.token} {agent}")
            continue  # it expired while Redis was down and went to someone else
        done = stored  # our completion was applied; only its reply was lost
    log("completed.log", f"{done.task_id} {done.token} {agent}")
"""


def test_redis_killed_and_restarted_loses_no_acknowledged_claim_completion_or_token(redis_ws, redis_server, tmp_path):
    count = 60
    _tasks(redis_ws, count)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, SWARM_ROOT=str(redis_ws))
    procs = [subprocess.Popen([sys.executable, str(script), str(LIB), f"w-{n}", str(count)], env=env)
             for n in range(4)]
    completed = redis_ws / "completed.log"
    try:
        for round_ in range(3):  # SIGKILL the server while work is in flight, each time a bit further on
            deadline = time.monotonic() + 120
            while not completed.exists() or len(completed.read_text().splitlines()) < (round_ + 1) * 10:
                assert time.monotonic() < deadline, "no progress"
                assert all(p.poll() is None for p in procs), "a worker died"
                time.sleep(0.02)  # progress is a file other processes append to: look again shortly
            acknowledged = [line.split() for line in completed.read_text().splitlines()]
            redis_server.kill()
            redis_server.restart()
            for task_id, token, agent in acknowledged:  # everything acknowledged before the kill survived
                lease = claims.get_lease(task_id)
                assert lease.state is LeaseState.COMPLETED and lease.token == int(token), (task_id, lease)
        for proc in procs:
            assert proc.wait(timeout=300) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    done = [line.split() for line in completed.read_text().splitlines()]
    assert sorted(task for task, _, _ in done) == [f"T-{n:03d}" for n in range(count)]  # each exactly once
    started = [line.split() for line in (redis_ws / "started.log").read_text().splitlines()]
    lost = (redis_ws / "lost.log").read_text().splitlines() if (redis_ws / "lost.log").exists() else []
    assert len(started) == count + len(lost)  # a task runs twice only if its first lease expired unrenewed
    for task_id, token, _ in done:
        lease = claims.get_lease(task_id)
        assert lease.state is LeaseState.COMPLETED and lease.token == int(token)
        tokens = [int(t) for task, t, _ in started if task == task_id]
        assert tokens == sorted(set(tokens)) and tokens[-1] == int(token)  # tokens only ever grew
    assert not [r for r in redis_server.log if "Bad file format" in r]


def test_redis_unreachable_past_the_ttl_stops_the_agent_in_time_and_the_loop_resumes(redis_ws, redis_server, tmp_path):
    ttl = 6.0
    _tasks(redis_ws, 1)
    pidfile = tmp_path / "agent.pids"
    proc = subprocess.Popen([sys.executable, str(LIB / "executor.py"), "--agent-id", "executor-1", "--ttl", str(ttl),
                             "--poll", "0.2", "--command", f"{FAKE} {{task_id}}"],
                            env=dict(os.environ, SWARM_ROOT=str(redis_ws), FAKE_BEHAVIOUR="hang",
                                     FAKE_PIDFILE=str(pidfile)), cwd=redis_ws)
    try:
        started = _event(redis_ws, "started")
        assert started["token"] == 1
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
            assert time.monotonic() < deadline
            time.sleep(0.02)  # the fake agent writes its pid file right after it starts
        agent_pid = int(pidfile.read_text().split()[0])
        first = claims.get_lease("T-000")
        redis_server.pause()
        paused_at = time.monotonic()
        while pid_alive(agent_pid):  # the event log is on Redis too: the agent's death is the sign
            assert time.monotonic() < paused_at + 60, "the agent was not stopped"
            time.sleep(0.05)
        stopped_at = utc_now()
        while time.monotonic() < paused_at + ttl + 2:  # unreachable for longer than a TTL
            time.sleep(0.1)
        redis_server.resume()
        # The executor logs the lease_lost it could not log during the outage, with when it happened
        # (maybe after the one of its first renewal once Redis is back, which finds the lease expired).
        lost = next((e for e in events.follow(root=redis_ws, types=["lease_lost"], backlog=1000, timeout=60)
                     if "could not renew" in e["reason"]), None)
        assert lost is not None, "no lease_lost saying the lease could not be renewed"
        # The lease the holder gave up: it expired after the agent had stopped, by the server's clock.
        given_up = claims.get_lease("T-000")
        assert given_up.token == first.token and stopped_at < parse_ts(given_up.expires_at)
        assert parse_ts(lost["happened_at"]) < parse_ts(given_up.expires_at)
        # The loop resumes: the executor reclaims the expired task under a new token ...
        again = _event(redis_ws, "started", after=started)
        assert again["token"] == 2
        # ... and a late "done" under the old token is refused.
        with pytest.raises(LeaseLost):
            claims.complete(first)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _event(root: Path, kind: str, timeout: float = 60, after: dict | None = None) -> dict:
    seen_after = after is None
    for event in events.follow(root=root, types=[kind], backlog=1000, timeout=timeout):
        if seen_after:
            return event
        seen_after = event == after
    raise AssertionError(f"no {kind} event within {timeout}s")


# A host whose clock is an hour off: it patches swarmfile.clock before claims is used.
SKEWED = r"""
import sys
from datetime import timedelta
sys.path.insert(0, sys.argv[1])
from swarmfile import clock
real = clock.utc_now
clock.utc_now = lambda: real() + timedelta(hours=float(sys.argv[2]))
import os, claims
from swarmfile.errors import AlreadyClaimed, LeaseLost
from swarmfile.liveness import process_start_time
holder = dict(pid=os.getppid(), host=clock.HOSTNAME, proc_start=process_start_time(os.getppid()))  # outlives us
try:
    lease = claims.claim_task("T-000", "skewed", ttl=30, **holder)
    print("claimed", lease.token, lease.expires_at, flush=True)
except AlreadyClaimed as exc:
    print("refused", exc, flush=True)
"""


@pytest.mark.parametrize("hours", [1, -1])
def test_a_holder_whose_clock_is_an_hour_off_cannot_take_or_keep_a_task(redis_ws, tmp_path, hours):
    _tasks(redis_ws, 1)
    script = tmp_path / "skewed.py"
    script.write_text(SKEWED)
    env = dict(os.environ, SWARM_ROOT=str(redis_ws))
    held = claims.claim_task("T-000", "honest", ttl=30)
    out = subprocess.run([sys.executable, str(script), str(LIB), str(hours)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("refused"), out.stdout + out.stderr  # an hour ahead sees nothing expired
    claims.complete(held)
    task_store.set_fields(task_store.find_task("T-000", root=redis_ws).path, {"Status": "pending"}, root=redis_ws)
    out = subprocess.run([sys.executable, str(script), str(LIB), str(hours)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("claimed 2"), out.stdout + out.stderr
    # The lease it got runs by the server's clock, not by its own: it ends 30 s from the server's now.
    lease = claims.get_lease("T-000")
    left = (parse_ts(lease.expires_at) - lease_table(config.load_config(root=redis_ws)).now()).total_seconds()
    assert 20 < left <= 30
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-000", "honest")  # and it binds the others for exactly that long


def test_an_mcp_agent_whose_lease_cannot_be_renewed_is_told_before_it_expires(redis_ws, redis_server):
    from swarmfile.agent_session import AgentSession

    _tasks(redis_ws, 1)
    session = AgentSession("mcp-1", root=str(redis_ws), ttl=3.0)
    session.open()
    try:
        session.claim("T-000")
        held = claims.get_lease("T-000")
        redis_server.pause()
        paused_at = time.monotonic()
        try:
            while time.monotonic() < paused_at + 3.0 + 1:  # unreachable for longer than the TTL
                time.sleep(0.1)
        finally:
            redis_server.resume()
        # The event log is on Redis too: the lease_lost is logged once it answers, with when it happened.
        lost = _event(redis_ws, "lease_lost", timeout=60)
        assert "could not be renewed in time" in lost["reason"]
        given_up = claims.get_lease("T-000")
        assert given_up.token == held.token and parse_ts(lost["happened_at"]) < parse_ts(given_up.expires_at)
        with pytest.raises(LeaseLost) as info:  # its late done is refused, and changes nothing
            session.done("finished anyway")
        assert "could not be renewed" in str(info.value)
        assert claims.get_lease("T-000").state is LeaseState.HELD
    finally:
        session.close("test over", wait=10)
