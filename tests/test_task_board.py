"""The task board on Redis: publishing, the ready query and claims on the server, the Markdown mirror."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import claims
from conftest import backend_config, snapshot
from procs import run_together
from swarmfile import board_sync, events, ready_query, task_store, tasks
from swarmfile.clock import HOSTNAME
from swarmfile.errors import AlreadyClaimed, BackendUnavailable, LeaseLost, NotClaimable, NotFoundError, ValidationError
from swarmfile.lease_store import LeaseState
from swarmfile.stores import task_board

LIB = Path(__file__).resolve().parent.parent / "lib"


@pytest.fixture
def board_ws(workspace, redis_server):
    backend_config(workspace, redis_server.url, "task_board: true\nnamespace: board-test\n")
    return workspace


def make(root, task_id, priority="medium", second=0, **parts):
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, priority=priority,
                                    created=f"2026-01-01T00:00:{second:02d}Z", **parts)


def ids(found):
    return [t.task_id for t in found]


def status_of(root, task_id):
    return task_store.find_task(task_id, root=root).status


def test_nothing_is_claimed_before_the_planner_publishes(board_ws):
    make(board_ws, "T-1")
    assert claims.ready_tasks(root=board_ws) == []
    assert claims.claim_next("a", root=board_ws) is None
    with pytest.raises(NotFoundError):
        claims.claim_task("T-1", "a", root=board_ws)


def test_board_ready_order_is_the_markdown_ready_order(board_ws):
    make(board_ws, "T-low", "low", 0)
    make(board_ws, "T-hi-late", "high", 5)
    make(board_ws, "T-hi-early", "high", 1)
    make(board_ws, "T-num", "7", 9)
    make(board_ws, "T-dep", "critical", 2, depends_on=["T-low"])
    make(board_ws, "T-parent", "critical", 3)
    make(board_ws, "T-parent-SUB1", "low", 4, fields={"Parent Task": "T-parent"})
    markdown = ids(ready_query._ready(board_sync.load_config(root=board_ws)))
    board_sync.Sync.of(root=board_ws).publish()
    on_board = ids(claims.ready_tasks(root=board_ws))
    assert on_board == markdown == ["T-num", "T-hi-early", "T-hi-late", "T-low", "T-parent-SUB1"]
    taken = [claims.claim_next("a", root=board_ws).task_id for _ in range(5)]
    assert taken == on_board and claims.claim_next("a", root=board_ws) is None


def test_claims_follow_leases_at_once_and_write_no_markdown(board_ws):
    make(board_ws, "T-1", "high")
    make(board_ws, "T-2", depends_on=["T-1"])
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    before = snapshot(board_ws / "tasks")
    lease = claims.claim_next("a", root=board_ws)
    assert (lease.task_id, lease.token, lease.mirror["Status"]) == ("T-1", 1, "claimed")
    assert claims.get_lease("T-1", root=board_ws) == lease  # the very record redis_lease reads
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-1", "b", root=board_ws)
    assert claims.claim_next("b", root=board_ws) is None  # T-2 waits for T-1
    released = claims.release(lease, root=board_ws)
    again = claims.claim_next("b", root=board_ws)  # requeued by the release, no planner round needed
    assert (again.task_id, again.token) == ("T-1", 2)
    claims.complete(claims.start(again, root=board_ws), root=board_ws)
    assert claims.claim_next("c", root=board_ws).task_id == "T-2"  # its dependency's lease completed
    assert released.state is LeaseState.RELEASED
    assert snapshot(board_ws / "tasks") == before  # the planner's mirror writes the Markdown, not claims


def test_a_failed_task_waits_for_its_retry_time_by_the_servers_clock(board_ws):
    make(board_ws, "T-1", "high")
    make(board_ws, "T-2", "low")
    board_sync.Sync.of(root=board_ws).publish()
    claims.fail(claims.claim_next("a", root=board_ws), "boom", max_attempts=3, retry_after=30, root=board_ws)
    with pytest.raises(NotClaimable):
        claims.claim_task("T-1", "a", root=board_ws)
    assert ids(claims.ready_tasks(root=board_ws)) == ["T-2"]
    lease = claims.claim_next("a", root=board_ws)
    assert lease.task_id == "T-2"
    claims.fail(lease, "boom", max_attempts=3, retry_after=0, root=board_ws)
    again = claims.claim_next("a", root=board_ws)
    assert (again.task_id, again.token, again.attempts) == ("T-2", 2, 1)


def test_mirror_writes_every_status_change_and_moves_the_completed(board_ws):
    make(board_ws, "T-1")
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    lease = claims.claim_next("exec-1", root=board_ws)
    sync.mirror()
    assert status_of(board_ws, "T-1") is tasks.Status.CLAIMED
    assert task_store.find_task("T-1", root=board_ws).field("Claimed By") == "exec-1"
    sync.publish()
    lease = claims.start(lease, root=board_ws)
    sync.mirror()
    assert status_of(board_ws, "T-1") is tasks.Status.IN_PROGRESS
    sync.publish()
    done = claims.complete(lease, root=board_ws)
    events.append_event("completed", "exec-1", "T-1", root=board_ws, token=done.token)
    assert sync.mirror() == [("T-1", "completed")]
    moved = task_store.find_task("T-1", root=board_ws)
    assert moved.status is tasks.Status.COMPLETED and moved.path.parent.name == "completed"
    sync.publish()
    assert claims.ready_tasks(root=board_ws) == [] and sync.mirror() == []


def test_a_persons_edit_after_the_mirror_wins_and_unblocking_gives_fresh_attempts(board_ws):
    make(board_ws, "T-1")
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    lease = claims.claim_next("a", root=board_ws)
    claims.fail(lease, "boom", max_attempts=1, root=board_ws)
    sync.mirror()
    sync.publish()
    assert status_of(board_ws, "T-1") is tasks.Status.BLOCKED and claims.claim_next("a", root=board_ws) is None
    path = task_store.find_task("T-1", root=board_ws).path
    task_store.set_field(path, "Status", "pending", root=board_ws)  # a person unblocks it
    assert claims.claim_next("a", root=board_ws) is None  # not published yet
    sync.mirror()
    sync.publish()
    assert status_of(board_ws, "T-1") is tasks.Status.PENDING  # the mirror did not undo the edit
    again = claims.claim_next("a", root=board_ws)
    assert (again.task_id, again.token, again.attempts) == ("T-1", 2, 0)


def test_a_new_planner_mirrors_only_what_the_board_has_not_shown_and_keeps_a_persons_edit(board_ws):
    make(board_ws, "T-1")
    make(board_ws, "T-2")
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    lease = claims.claim_task("T-1", "a", root=board_ws)
    claims.fail(lease, "boom", max_attempts=1, root=board_ws)
    sync.mirror()
    sync.publish()
    assert status_of(board_ws, "T-1") is tasks.Status.BLOCKED
    path = task_store.find_task("T-1", root=board_ws).path
    task_store.set_field(path, "Status", "pending", root=board_ws)  # unblocked while the planner was down
    held = claims.claim_task("T-2", "b", root=board_ws)  # a change the Markdown does not show yet
    fresh = board_sync.Sync.of(root=board_ws)  # a new planner: what the board showed comes from the board
    assert fresh.board.published()["T-1"][1] == board_sync.stamp(claims.get_lease("T-1", root=board_ws))
    assert fresh.mirror() == [("T-2", "claimed")]
    assert status_of(board_ws, "T-1") is tasks.Status.PENDING  # the person's edit stands
    fresh.publish()
    again = claims.claim_next("c", root=board_ws)
    assert (again.task_id, again.attempts) == ("T-1", 0) and held.task_id == "T-2"


def test_changed_files_are_published_again_and_deleted_ones_withdrawn(board_ws):
    make(board_ws, "T-1", "low")
    make(board_ws, "T-2", "medium")
    sync = board_sync.Sync.of(root=board_ws)
    assert sync.publish() == (2, 0)
    assert sync.publish() == (0, 0)  # nothing changed: nothing sent
    path = task_store.find_task("T-1", root=board_ws).path
    task_store.set_field(path, "Priority", "critical", root=board_ws)
    task_store.find_task("T-2", root=board_ws).path.unlink()
    assert sync.publish() == (1, 1)
    assert ids(claims.ready_tasks(root=board_ws)) == ["T-1"]
    assert "critical" in task_board(board_sync.load_config(root=board_ws)).entry("T-1").text
    # A new planner compares by digest: it sends nothing that is already there.
    assert board_sync.Sync.of(root=board_ws).publish() == (0, 0)


def test_an_executor_gets_the_task_text_as_a_copy_under_the_runtime_folder(board_ws, tmp_path):
    written = make(board_ws, "T-1", files=["app/x.py"])
    board_sync.Sync.of(root=board_ws).publish()
    host_b = tmp_path / "host-b"
    (host_b / "tasks/active").mkdir(parents=True)
    shutil.copy(board_ws / "swarm.yaml", host_b / "swarm.yaml")
    task = board_sync.local_task("T-1", root=host_b)
    assert task.path == host_b / ".swarm/tasks/T-1.md" and task.files_to_modify == ("app/x.py",)
    assert task.path.read_text() == written.read_text()
    assert list((host_b / "tasks/active").iterdir()) == []
    with pytest.raises(NotFoundError):
        board_sync.local_task("T-9", root=host_b)


def test_task_board_needs_a_redis_backend(workspace):
    backend_config(workspace, "files", "task_board: true\n")
    with pytest.raises(ValidationError, match="needs a Redis backend"):
        claims.claim_next("a", root=workspace)


def _claim_all(root, agent_id):
    os.environ["SWARM_ROOT"] = root
    from swarmfile.liveness import process_start_time

    holder = dict(pid=os.getppid(), host=HOSTNAME, proc_start=process_start_time(os.getppid()))
    got = []
    while (lease := claims.claim_next(agent_id, **holder)) is not None:
        got.append((lease.task_id, lease.token))
    return got


@pytest.mark.timeout(300)
def test_eight_processes_claim_each_published_task_exactly_once(board_ws):
    count = 400
    active = board_ws / "tasks" / "active"
    for n in range(count):
        (active / f"T-{n:05d}.md").write_text(
            f"# T-{n:05d}: task {n}\n\n**Priority:** {['low', 'medium', 'high'][n % 3]}\n**Status:** pending\n"
            f"**Created:** 2026-01-01T00:00:{n % 60:02d}Z\n")
    board_sync.Sync.of(root=board_ws).publish()
    results = run_together(_claim_all, [(str(board_ws), f"executor-{i}") for i in range(8)], timeout=300)
    claimed = [task for got in results for task, _ in got]
    assert len(claimed) == count and len(set(claimed)) == count
    assert all(token == 1 for got in results for _, token in got)
    assert sum(1 for got in results if got) > 1, "the race had more than one winner overall"


# ---------------------------------------------------------------------------- faults

def _claim_when_free(root, agent, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    while (lease := claims.claim_next(agent, root=root)) is None:
        assert time.monotonic() < deadline, "the lease never became free"
        time.sleep(0.05)  # expiry is the server's clock passing a moment: look again shortly
    return lease


def test_a_lease_expired_by_the_servers_clock_is_taken_over_and_its_holder_refused(board_ws):
    make(board_ws, "T-1")
    board_sync.Sync.of(root=board_ws).publish()
    # A holder on another host: only the TTL (by the server's clock) can free its task.
    first = claims.claim_next("far", ttl=1.0, root=board_ws, pid=4242, host="elsewhere", proc_start=1)
    assert claims.claim_next("near", root=board_ws) is None
    second = _claim_when_free(board_ws, "near")
    assert (second.task_id, second.token, second.agent_id) == ("T-1", 2, "near")
    with pytest.raises(LeaseLost):
        claims.complete(first, root=board_ws)
    claims.complete(second, root=board_ws)


def test_a_dead_holder_on_this_host_is_reaped_and_its_task_claimed_again(board_ws):
    make(board_ws, "T-1")
    board_sync.Sync.of(root=board_ws).publish()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lease = claims.claim_next("dead", root=board_ws, pid=gone.pid, host=HOSTNAME, proc_start=1)
    assert claims.claim_next("alive", root=board_ws) is None  # the script cannot see pids: the reaper can
    [(reaped, reason)] = claims.reap_expired(root=board_ws)
    assert (reaped.task_id, reaped.state, reaped.token) == ("T-1", LeaseState.EXPIRED, lease.token)
    again = claims.claim_next("alive", root=board_ws)  # requeued by the reaper
    assert (again.task_id, again.token) == ("T-1", 2)


def test_redis_killed_and_restarted_keeps_the_board_and_every_acknowledged_claim(board_ws, redis_server):
    for n in range(20):
        make(board_ws, f"T-{n:02d}", second=n)
    board_sync.Sync.of(root=board_ws).publish()
    taken = [claims.claim_next("a", root=board_ws) for _ in range(10)]
    redis_server.kill()  # SIGKILL: only what appendfsync always already wrote survives
    with pytest.raises(BackendUnavailable):
        claims.claim_next("a", root=board_ws)
    redis_server.restart()
    assert [claims.get_lease(lease.task_id, root=board_ws) for lease in taken] == taken
    rest = []
    while (lease := claims.claim_next("b", root=board_ws)) is not None:
        rest.append(lease.task_id)
    assert sorted(rest) == [f"T-{n:02d}" for n in range(10, 20)]  # none of the acknowledged ten twice


def test_claims_ready_cli_lists_the_board(board_ws):
    make(board_ws, "T-1", "high")
    make(board_ws, "T-2", "low")
    board_sync.Sync.of(root=board_ws).publish()
    claims.claim_next("a", root=board_ws)
    out = subprocess.run([sys.executable, str(LIB / "claims.py"), "ready", "--json", "--root", str(board_ws)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [t["task_id"] for t in json.loads(out.stdout)["ready"]] == ["T-2"]


# ---------------------------------------------------------------------------- the planner on a board

def test_a_task_whose_lease_lock_is_held_is_not_claimed_until_it_is_let_go(board_ws):
    make(board_ws, "T-1")
    board_sync.Sync.of(root=board_ws).publish()
    with claims.lease_lock("T-1", root=board_ws):  # what the planner holds while it splits a task
        assert claims.claim_next("a", root=board_ws) is None
    assert claims.claim_next("a", root=board_ws).task_id == "T-1"


def test_planner_rounds_publish_dispatch_split_and_mirror_on_the_board(board_ws):
    from planner import Planner
    from swarmfile import agent_discovery

    make(board_ws, "T-1", "high")
    task_store.new_task_file("BIG", "Build three reports", root=board_ws, priority="low",
                             created="2026-01-01T00:00:09Z",
                             objective="Build three independent reports; each can be done separately and in parallel.",
                             criteria=["Sales report in `reports/sales.py`", "Stock report in `reports/stock.py`",
                                       "Staff report in `reports/staff.py`"],
                             files=["reports/sales.py", "reports/stock.py", "reports/staff.py"])
    for agent in ("executor-1", "executor-2"):
        agent_discovery.register_agent(agent, role="executor", root=board_ws)
    planner = Planner(root=str(board_ws))
    decisions = planner.round()
    split = [d for d in decisions if d.kind == "split"]
    assigned = {d.task_id: d.detail["to"] for d in decisions if d.kind == "assigned"}
    assert split and split[0].task_id == "BIG" and len(split[0].detail["sub_tasks"]) == 3
    assert assigned["T-1"] == "executor-1" and set(assigned) - {"T-1"} <= set(split[0].detail["sub_tasks"])
    assert "BIG" not in ids(claims.ready_tasks(root=board_ws))  # split: it completes when its parts do
    lease, _ = claims.assignment_for("executor-1", root=board_ws)
    assert lease.task_id == "T-1" and lease.pid == os.getpid()
    assert status_of(board_ws, "T-1") is tasks.Status.PENDING  # the mirror comes next round
    claims.start(lease, root=board_ws)
    planner.round()
    assert status_of(board_ws, "T-1") is tasks.Status.IN_PROGRESS


def test_a_changed_created_line_moves_the_task_in_the_queue_without_a_stale_copy(board_ws):
    make(board_ws, "T-1", second=1)
    make(board_ws, "T-2", second=2)
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    task_store.set_field(task_store.find_task("T-2", root=board_ws).path, "Created", "2025-01-01T00:00:00Z",
                         root=board_ws)
    sync.publish()
    assert ids(claims.ready_tasks(root=board_ws)) == ["T-2", "T-1"]
    assert [claims.claim_next("a", root=board_ws).task_id for _ in range(2)] == ["T-2", "T-1"]
    assert claims.claim_next("a", root=board_ws) is None
    board = task_board(board_sync.load_config(root=board_ws))
    assert board.client.zcard(board._key("board:queue")) == 0


@pytest.mark.parametrize("end, shown, claimable", [
    (lambda lease, root: claims.release(lease, root=root), tasks.Status.PENDING, True),
    (lambda lease, root: claims.release(lease, status="needs_attention", reason="merge conflict", root=root),
     tasks.Status.NEEDS_ATTENTION, False),
    (lambda lease, root: claims.fail(lease, "boom", max_attempts=3, root=root), tasks.Status.PENDING, True),
    (lambda lease, root: claims.fail(lease, "boom", max_attempts=1, root=root), tasks.Status.BLOCKED, False),
    (lambda lease, root: claims.revoke_unacknowledged(lease, root=root), tasks.Status.PENDING, True),
], ids=["released", "needs_attention", "failed-retry", "blocked", "revoked"])
def test_every_end_of_a_lease_is_mirrored_and_claimable_only_when_pending(board_ws, end, shown, claimable):
    make(board_ws, "T-1")
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    end(claims.claim_next("a", root=board_ws), board_ws)
    sync.mirror()
    sync.publish()
    assert status_of(board_ws, "T-1") is shown
    assert task_store.find_task("T-1", root=board_ws).field("Claimed By") == "none"
    assert (claims.claim_next("b", root=board_ws) is not None) is claimable


WORKER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import claims; from swarmfile import fileio
from swarmfile.config import load_config
agent = sys.argv[2]
cfg = load_config()
while True:
    claims.reap_expired()
    lease = claims.claim_next(agent, ttl=30)
    if lease is None:
        break
    claims.complete(lease)
    fileio.append_line(cfg.root / "completions.log", f"{lease.task_id} {lease.token} {agent}", lock_dir=cfg.lock_dir)
"""


@pytest.mark.timeout(300)
def test_kill_nine_claimers_on_the_board_every_task_completed_exactly_once(board_ws, tmp_path):
    import random
    import signal

    count = 120
    for n in range(count):
        make(board_ws, f"T-{n:03d}", second=n % 60)
    sync = board_sync.Sync.of(root=board_ws)
    sync.publish()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    rng = random.Random(7)
    env = dict(os.environ, SWARM_ROOT=str(board_ws))
    procs: list[subprocess.Popen] = []
    spawned = 0
    try:
        for _ in range(20):
            procs = [p for p in procs if p.poll() is None]
            while len(procs) < 4:
                procs.append(subprocess.Popen([sys.executable, str(script), str(LIB), f"w-{spawned}"], env=env))
                spawned += 1
            victim = rng.choice(procs)
            time.sleep(rng.uniform(0.01, 0.08))  # a random moment in the victim's work, by design
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        # The survivors and one last worker finish the board, reaping what the dead held.
        procs.append(subprocess.Popen([sys.executable, str(script), str(LIB), "finisher"], env=env))
        for proc in procs:
            assert proc.wait(timeout=240) in (0, -signal.SIGKILL)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    leases = claims.list_leases(root=board_ws)
    assert len(leases) == count and all(lease.state is LeaseState.COMPLETED for lease in leases)
    recorded = [line.split()[0] for line in (board_ws / "completions.log").read_text().splitlines()]
    assert len(recorded) == len(set(recorded)), "no task was completed twice"
    sync.mirror()  # the planner's part: every task's Markdown shows it completed, in tasks/completed/
    done = task_store.list_tasks(root=board_ws, include_completed=True)
    assert len(done) == count and all(t.status is tasks.Status.COMPLETED and t.path.parent.name == "completed"
                                      for t in done)
    # The workers never logged their completions and are dead: the mirror logs each once, for them.
    logged = events.read_events(types=["completed"], root=board_ws)
    assert sorted(e["task_id"] for e in logged) == sorted(t.task_id for t in done)
    assert all(e["recovered"] is True and e["agent"] == "swarm-planner" for e in logged)
    assert sync.mirror() == [] and len(events.read_events(types=["completed"], root=board_ws)) == count


def test_a_board_lost_with_its_server_data_is_published_again_whole(board_ws, redis_server):
    make(board_ws, "T-1")
    make(board_ws, "T-2")
    sync = board_sync.Sync.of(root=board_ws)
    assert sync.publish() == (2, 0)
    client = redis_server.client()
    try:
        client.flushall()  # a new, empty server (or a person's FLUSHALL)
    finally:
        client.close()
    assert claims.claim_next("a", root=board_ws) is None
    assert sync.publish() == (2, 0)
    assert sorted(claims.claim_next("a", root=board_ws).task_id for _ in range(2)) == ["T-1", "T-2"]
