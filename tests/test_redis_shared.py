"""Reservations, chat and the merge queue on a real redis-server: two workspaces, SIGKILL, the merge lock.

The races that run on both backends are in test_reservations.py, test_chat.py and
test_worktrees.py; these are what only a shared server has: two "hosts" (workspaces) meeting
in one namespace, the server's clock, a server killed and restarted (AOF ``appendfsync always``),
and the merge lock's expiry, renewal and compare-and-delete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import chat
import merge_queue as mq
import reservations as res
import state_sync
from swarmfile import config, stores
from swarmfile.clock import parse_ts, utc_now
from swarmfile.errors import BackendUnavailable, LockTimeout, ReservationConflict, ValidationError
from swarmfile.redis_merge_queue import RedisLock
from conftest import backend_config
from procs import run_together

pytestmark = pytest.mark.timeout(120)

LIB = Path(__file__).resolve().parent.parent / "lib"


def _host(tmp_path: Path, name: str, url: str, extra: str = "") -> Path:
    """A workspace of its own, sharing the server and the namespace of every other host."""
    root = tmp_path / name
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir()
    (root / "events.yaml").write_text("events:\n")
    backend_config(root, url, "namespace: acme/app\n" + extra)
    return root


def _patiently(fn, *args, **kwargs):
    """``fn`` once the client reconnected after a restart (its first command finds the old connection dead)."""
    for _ in range(3):
        try:
            return fn(*args, **kwargs)
        except BackendUnavailable:
            continue
    return fn(*args, **kwargs)


def _server_now(server) -> datetime:
    seconds, micros = server.client().time()
    return datetime.fromtimestamp(int(seconds), timezone.utc).replace(microsecond=int(micros))


# ---------------------------------------------------------------------------- reservations


def test_two_hosts_share_one_reservation_table(tmp_path, redis_server):
    a, b = (_host(tmp_path, name, redis_server.url) for name in ("host-a", "host-b"))
    held = res.reserve("executor-1", ["lib/**"], root=a, task_id="T-1")
    with pytest.raises(ReservationConflict) as caught:
        res.reserve("executor-2", ["lib/a.py"], root=b)
    assert caught.value.holders == ["executor-1"] and "redis key swarm:{acme/app}:reservations" in str(caught.value)
    assert res.list_reservations(root=b) == [held] and res.find_holders("lib/x/y.py", root=b) == [held]
    assert not (a / ".swarm" / "reservations.yaml").exists() and not (b / ".swarm" / "reservations.yaml").exists()
    # the mirror is the reserving host's own agent-state.yaml
    assert state_sync.get_agent_state("executor-1", root=a)["context"]["files_locked"] == ["lib/**"]
    assert res.release_for_task("T-1", root=b) == [held]  # the task ended: any host may release
    assert res.reserve("executor-2", ["lib/a.py"], root=b).agent_id == "executor-2"


def test_expiry_is_set_and_judged_by_the_servers_clock(workspace, redis_server, monkeypatch):
    backend_config(workspace, redis_server.url)
    skewed = utc_now() - timedelta(hours=1)  # this "host" runs an hour behind
    monkeypatch.setattr("swarmfile.reservation_store.utc_now", lambda: skewed)
    monkeypatch.setattr("swarmfile.clock.utc_now", lambda: skewed)
    made = res.reserve("executor-1", ["docs"], ttl=60, root=workspace, track_process=False)
    server = _server_now(redis_server)
    assert abs((parse_ts(made.acquired_at) - server).total_seconds()) < 5
    assert parse_ts(made.expires_at) - parse_ts(made.acquired_at) == timedelta(seconds=60)
    with pytest.raises(ReservationConflict):  # an hour-behind clock did not make it expired an hour early
        res.reserve("executor-2", ["docs/a.md"], root=workspace, track_process=False)
    assert res.reap(root=workspace) == []
    assert [why for _, why in res.reap(server + timedelta(seconds=61), root=workspace)] == [f"expired at {made.expires_at}"]


def test_a_table_that_does_not_parse_stops_everyone_and_is_kept(workspace, redis_server):
    cfg = backend_config(workspace, redis_server.url)
    key = stores.reservations(cfg).key
    for bad in ("{not json", json.dumps({"a": 1}), json.dumps([{"id": "x"}])):
        redis_server.client().set(key, bad)
        for attempt in (lambda: res.list_reservations(root=workspace),
                        lambda: res.reserve("executor-1", ["a"], root=workspace)):
            with pytest.raises(ValidationError, match="reservations"):
                attempt()
        assert redis_server.client().get(key) == bad.encode()


def test_no_acknowledged_reservation_is_lost_when_redis_is_killed(workspace, redis_server):
    backend_config(workspace, redis_server.url)
    made = [res.reserve(f"executor-{n}", [f"src/{n}"], root=workspace, track_process=False) for n in range(5)]
    redis_server.kill()
    with pytest.raises(BackendUnavailable, match="cannot reach Redis"):
        res.reserve("executor-9", ["src/0"], root=workspace)
    redis_server.restart()
    assert _patiently(res.list_reservations, root=workspace) == made
    with pytest.raises(ReservationConflict):
        res.reserve("executor-9", ["src/0/x.py"], root=workspace)


def _retrying_writer(module: str, write: str, ack: str) -> str:
    """A script that makes at least argv[3] writes (``write``, an expression of ``n``; its value is
    ``done``), each retried with backoff while Redis is unreachable, and goes on writing until it has
    met the outage (on a loaded machine all argv[3] can be done before the kill lands); appends
    ``ack`` (an expression of ``done``) per acknowledged write to the file argv[2], and prints how
    many retries it made."""
    return f"""
import sys, time
sys.path.insert(0, sys.argv[1])
import {module}
from swarmfile.errors import BackendUnavailable
acked, retries, n, count = open(sys.argv[2], "a", buffering=1), 0, 0, int(sys.argv[3])
deadline = time.monotonic() + 60
while n < count or (not retries and time.monotonic() < deadline):
    pause = 0.02
    while True:
        try:
            done = {write}
            break
        except BackendUnavailable:
            retries += 1
            time.sleep(pause)  # the server is down or restarting: back off and write again
            pause = min(pause * 2, 0.5)
    acked.write({ack} + "\\n")
    n += 1
print(retries)
"""


RESERVER = _retrying_writer("reservations", 'reservations.reserve("executor-1", [f"src/{n}.py"], ttl=3600, '
                                            'track_process=False)', 'f"{done.id} {done.patterns[0]}"')


def _kill_midway(redis_server, script: str, workspace: Path, acked: Path, count: int) -> None:
    """Run ``script`` (it appends a line per acknowledged write to ``acked``) and SIGKILL + restart Redis under it."""
    acked.touch()
    with subprocess.Popen([sys.executable, "-c", script, str(LIB), str(acked), str(count)], cwd=workspace,
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "SWARM_ROOT": str(workspace)}) as proc:
        try:
            with open(acked) as seen:  # the writer is under way: kill the server under it
                lines = 0
                while lines < 20 and proc.poll() is None:
                    lines += seen.read().count("\n")
                    time.sleep(0.01)
            redis_server.kill()
            redis_server.restart()
            retries = int(proc.communicate(timeout=90)[0])
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0 and retries > 0, "the writer never met the outage"


def test_no_acknowledged_reservation_is_lost_when_redis_is_killed_mid_stream(workspace, redis_server, tmp_path):
    backend_config(workspace, redis_server.url)
    acked = tmp_path / "acked.log"
    _kill_midway(redis_server, RESERVER, workspace, acked, 100)
    confirmed = [tuple(line.split(" ", 1)) for line in acked.read_text().splitlines()]
    stored = {(r.id, r.patterns[0]) for r in _patiently(res.list_reservations, root=workspace)}
    assert len(confirmed) >= 100 and set(confirmed) <= stored, "an acknowledged reservation was lost"


# ---------------------------------------------------------------------------- chat


def test_two_hosts_share_one_chat_with_ids_from_the_server(tmp_path, redis_server):
    a, b = (_host(tmp_path, name, redis_server.url) for name in ("host-a", "host-b"))
    asked = chat.send("executor-1", "planner", "which API?", root=a, task_id="T-1")
    answered = chat.reply(asked.id, "planner", "the new one", root=b)
    assert (asked.id, answered.id) == (1, 2) and answered.to == "executor-1"
    assert chat.read_messages(root=a) == chat.read_messages(root=b) == [asked, answered]
    assert chat.thread(2, root=a) == [asked, answered]
    assert [m.id for m in chat.inbox("executor-1", root=a)] == [2]
    assert not (a / "chat-log.yaml").exists() and not (b / "chat-log.yaml").exists()


def test_a_message_that_does_not_parse_stops_readers_and_is_kept(workspace, redis_server):
    cfg = backend_config(workspace, redis_server.url)
    chat.send("executor-1", "planner", "fine", root=workspace)
    redis_server.client().zadd(stores.chat_log(cfg).key, {'{"id":2,"from":"@bad"}': 2})
    with pytest.raises(ValidationError, match=r"redis key swarm:\{ws\}:chat: message 2: .content. must be text"):
        chat.read_messages(root=workspace)
    assert redis_server.client().zcard(stores.chat_log(cfg).key) == 2


SENDER = _retrying_writer("chat", 'chat.send("executor-1", "planner", f"message {n}")', 'f"{done.id} {done.content}"')


def test_no_acknowledged_message_is_lost_when_redis_is_killed_mid_stream(workspace, redis_server, tmp_path):
    backend_config(workspace, redis_server.url, "events: {fsync: false}\n")
    acked = tmp_path / "acked.log"
    _kill_midway(redis_server, SENDER, workspace, acked, 200)
    confirmed = [line.split(" ", 1) for line in acked.read_text().splitlines()]
    stored = {m.id: m.content for m in _patiently(chat.read_messages, root=workspace)}
    assert len(confirmed) >= 200
    assert all(stored.get(int(n)) == content for n, content in confirmed), "an acknowledged message was lost"
    assert sorted(stored) == list(range(1, len(stored) + 1)), "ids are dense and unique"
    assert {f"message {n}" for n in range(200)} <= set(stored.values())


# ---------------------------------------------------------------------------- the merge lock


def _lock(cfg, ttl: float = 5.0) -> RedisLock:
    store = stores.merge_queue(cfg)
    return RedisLock(store, store.merge_lock.key, ttl)  # another holder of the merge queue's lock


def _hold_and_count(root: str, rounds: int) -> int:
    """Take the Redis lock ``rounds`` times; inside, claim an occupancy marker and bump a shared counter."""
    cfg = config.load_config(root=root)
    lock, marker, counter = _lock(cfg, ttl=2.0), Path(root) / "occupied", Path(root) / "counter"
    for _ in range(rounds):
        with lock.held(timeout=60):
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # raises if another holder is inside
            os.close(fd)
            counter.write_text(str(int(counter.read_text()) + 1))
            os.unlink(marker)
    return rounds


def test_the_redis_merge_lock_admits_one_holder_at_a_time(workspace, redis_server):
    backend_config(workspace, redis_server.url)
    (workspace / "counter").write_text("0")
    assert run_together(_hold_and_count, [(str(workspace), 15)] * 4) == [15] * 4
    assert (workspace / "counter").read_text() == "60"


def test_a_stale_holder_can_neither_renew_nor_release_anothers_lock(workspace, redis_server):
    cfg = backend_config(workspace, redis_server.url)
    first, second = _lock(cfg), _lock(cfg)
    old = first.acquire(timeout=1)
    with pytest.raises(LockTimeout, match="merge:lock"):
        second.acquire(timeout=0.05)
    redis_server.client().delete(first.key)  # as its expiry would, while the first holder was paused
    new = second.acquire(timeout=1)
    assert not first.renew(old) and not first.release(old)
    assert redis_server.client().get(first.key) == new.encode()
    assert second.release(new) and redis_server.client().get(first.key) is None


def test_the_lock_is_renewed_while_held(workspace, redis_server):
    cfg = backend_config(workspace, redis_server.url)
    lock, other = _lock(cfg, ttl=0.3), _lock(cfg, ttl=0.3)
    with lock.held(timeout=1) as token:
        threading.Event().wait(1.0)  # three lifetimes of the lock: only renewal keeps it
        assert redis_server.client().get(lock.key) == token.encode()
        with pytest.raises(LockTimeout):
            other.acquire(timeout=0.05)
    assert redis_server.client().get(lock.key) is None  # released at the end of the block


HOLDER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import merge_queue
with merge_queue.merge_lock():
    print("held", flush=True)
    sys.stdin.read()  # holds until killed
"""


def test_a_killed_holder_frees_the_merge_lock_at_expiry(workspace, redis_server):
    backend_config(workspace, redis_server.url, "worktrees: {merge_lock_ttl_seconds: 1, merge_lock_seconds: 0.2}\n")
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(LIB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env={**os.environ, "SWARM_ROOT": str(workspace)}) as proc:
        try:
            assert proc.stdout.readline() == "held\n"
            with pytest.raises(LockTimeout, match=f"held by .*:{proc.pid}"):
                with mq.merge_lock(root=workspace):
                    pass
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    killed = time.monotonic()
    backend_config(workspace, redis_server.url, "worktrees: {merge_lock_ttl_seconds: 1, merge_lock_seconds: 20}\n")
    with mq.merge_lock(root=workspace):
        waited = time.monotonic() - killed
    # At the kill the lock had at least two thirds of its second left (renewed every third): it waited that out.
    assert 0.3 < waited < 10, waited


# ---------------------------------------------------------------------------- the merge queue


def test_the_queue_survives_a_redis_kill(workspace, redis_server):
    cfg = backend_config(workspace, redis_server.url)
    store = stores.merge_queue(cfg)
    records = [{"id": f"e{n}", "op": "enqueue", "branch": f"b{n}", "task_id": f"T-{n}", "agent_id": "executor-1",
                "base": "main", "at": ""} for n in range(3)] + [{"id": "e0", "op": "done", "status": "merged"}]
    for record in records:
        store.append(record)
    redis_server.kill()
    redis_server.restart()
    assert _patiently(store.records) == records
    assert [(e.id, e.status) for e in mq.read_queue(root=workspace)] == [("e0", "merged"), ("e1", None), ("e2", None)]
    assert [e.id for e in mq.pending(root=workspace)] == ["e1", "e2"]


# ---------------------------------------------------------------------------- command lines


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SWARM_ROOT"}
    return subprocess.run([sys.executable, str(LIB / script), *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_command_lines_use_the_server(workspace, redis_server):
    backend_config(workspace, redis_server.url)
    root = ["--root", str(workspace)]
    made = _run("reservations.py", *root, "--json", "reserve", "executor-1", "lib/**", "--ttl", "60")
    assert made.returncode == 0, made.stderr
    clash = _run("reservations.py", *root, "reserve", "executor-2", "lib/a.py")
    assert clash.returncode == 1 and "overlaps 'lib/**' held exclusive by executor-1" in clash.stderr
    assert [r["agent_id"] for r in json.loads(_run("reservations.py", *root, "--json", "list").stdout)] == ["executor-1"]
    sent = _run("chat.py", *root, "--json", "send", "executor-1", "planner", "hello from the CLI")
    assert sent.returncode == 0 and json.loads(sent.stdout)["id"] == 1, sent.stderr
    assert [m.content for m in chat.read_messages(root=workspace)] == ["hello from the CLI"]
    assert not (workspace / ".swarm" / "reservations.yaml").exists() and not (workspace / "chat-log.yaml").exists()


def test_a_paused_holder_loses_the_lock_to_another_host_and_cannot_free_it(tmp_path, redis_server):
    settings = "worktrees: {merge_lock_ttl_seconds: 1, merge_lock_seconds: 20}\n"
    a, b = (_host(tmp_path, name, redis_server.url, settings) for name in ("host-a", "host-b"))
    key = stores.merge_queue(config.load_config(root=b)).merge_lock.key
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(LIB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "SWARM_ROOT": str(a)}) as proc:
        try:
            assert proc.stdout.readline() == "held\n"
            proc.send_signal(signal.SIGSTOP)  # paused past the lock's expiry: it cannot renew
            with mq.merge_lock(root=b) as mine:  # the other host (its own file lock) takes it once expired
                proc.send_signal(signal.SIGCONT)
                # Awake, its renewer finds the lock gone (the holder's block still waits on stdin) ...
                assert "expired while held" in proc.stderr.readline()
                proc.communicate(input="", timeout=30)  # ... then its block ends, releasing nothing of ours
                assert proc.returncode == 0
                assert redis_server.client().get(key) == mine.encode(), "the stale holder freed another's lock"
        finally:
            if proc.poll() is None:
                proc.kill()
    assert redis_server.client().get(key) is None
