"""claims: leases with fencing tokens, ready order, expiry, dead holders, real-process races."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

import claims
from swarmfile import tasks
from swarmfile import task_store
from swarmfile import ready_query
from claims import LeaseState
from swarmfile.clock import HOSTNAME, utc_now
from swarmfile.errors import AlreadyClaimed, LeaseLost, NotClaimable, NotFoundError
from conftest import BACKENDS
from leases import EMPTY_RECORD, corrupt_lease, lease_file
from procs import live_holder, run_elsewhere, run_together


def make_task(root, task_id, priority="medium", created="2026-01-01T00:00:00Z", **parts):
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, priority=priority, created=created, **parts)


def status_of(root, task_id):
    return task_store.find_task(task_id, root=root).status


def test_claim_mirrors_status_and_refuses_second_claimer(workspace):
    make_task(workspace, "T-1")
    lease = claims.claim_task("T-1", "executor-1")
    assert (lease.token, lease.agent_id, lease.pid, lease.host) == (1, "executor-1", os.getpid(), HOSTNAME)
    task = task_store.find_task("T-1", root=workspace)
    assert task.status is tasks.Status.CLAIMED
    assert task.field("Claimed By") == "executor-1"
    with pytest.raises(AlreadyClaimed) as info:
        claims.claim_task("T-1", "executor-2")
    assert info.value.holder == "executor-1"
    assert "held by executor-1" in str(info.value)


def test_token_grows_and_stale_token_changes_nothing(workspace):
    make_task(workspace, "T-1")
    first = claims.claim_task("T-1", "executor-1")
    claims.release(first)
    assert status_of(workspace, "T-1") is tasks.Status.PENDING
    second = claims.claim_task("T-1", "executor-2")
    assert second.token == first.token + 1
    stored = lease_file(workspace, "T-1")
    task_file = task_store.find_task("T-1", root=workspace).path
    before = (stored.read_bytes(), task_file.read_bytes())
    for action in (claims.renew, claims.release, claims.complete, claims.fail, claims.start):
        with pytest.raises(LeaseLost, match="token 1 is stale"):
            action(first)
    assert (stored.read_bytes(), task_file.read_bytes()) == before
    done = claims.complete(second, result="ok")
    assert done.state is LeaseState.COMPLETED and done.extra["result"] == "ok"
    assert status_of(workspace, "T-1") is tasks.Status.COMPLETED
    with pytest.raises(LeaseLost, match="already completed"):
        claims.complete(second)
    with pytest.raises(NotClaimable, match="not pending"):
        claims.claim_task("T-1", "executor-3")


def test_expired_lease_is_taken_over_and_old_holder_refused(workspace):
    make_task(workspace, "T-1")
    now = utc_now()
    old = claims.claim_task("T-1", "executor-1", ttl=60, now=now)
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-1", "executor-2", now=now + timedelta(seconds=59))
    later = now + timedelta(seconds=61)
    with pytest.raises(LeaseLost, match="expired"):
        claims.renew(old, now=later)
    new = claims.claim_task("T-1", "executor-2", now=later)
    assert new.token == 2
    with pytest.raises(LeaseLost):
        claims.complete(old, now=later)
    claims.complete(new, now=later)


def test_renew_extends_the_lease(workspace):
    make_task(workspace, "T-1")
    now = utc_now()
    lease = claims.claim_task("T-1", "executor-1", ttl=60, now=now)
    renewed = claims.renew(lease, ttl=60, now=now + timedelta(seconds=50))
    assert renewed.token == lease.token
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-1", "executor-2", now=now + timedelta(seconds=100))
    claims.complete(renewed, now=now + timedelta(seconds=100))


def test_dead_holder_frees_the_task_at_once(workspace):
    make_task(workspace, "T-1")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    claims.claim_task("T-1", "executor-1", ttl=3600, pid=child.pid, host=HOSTNAME)
    lease = claims.claim_task("T-1", "executor-2")
    assert lease.token == 2 and lease.agent_id == "executor-2"


def _power_cut(path, content: bytes) -> None:
    """The task file as the disk kept it: a mirror write that was never fsynced is lost."""
    tmp = path.with_name(".power-cut")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def test_mirrors_lost_to_a_power_cut_are_repaired_from_the_journal(workspace):
    """A held lease's mirror is not fsynced; a power cut that loses it also killed its holder."""
    make_task(workspace, "T-1")
    path = task_store.find_task("T-1", root=workspace).path
    pending = path.read_bytes()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims.claim_task("T-1", "executor-1", pid=dead.pid, host=HOSTNAME)
    _power_cut(path, pending)  # the claim's line is in the journal, its Status line is not
    lease = claims.claim_next("executor-2")
    assert (lease.task_id, lease.token) == ("T-1", 2) and status_of(workspace, "T-1") is tasks.Status.CLAIMED
    claimed = path.read_bytes()
    claims.start(lease)
    claims.renew(claims.get_lease("T-1"), ttl=-1)  # then it expires, as its holder died with the machine
    _power_cut(path, claimed)  # the start's Status line (in_progress) is lost
    [(reaped, _)] = claims.reap_expired()
    assert reaped.token == 2 and reaped.state is LeaseState.EXPIRED
    assert status_of(workspace, "T-1") is tasks.Status.PENDING
    assert claims.claim_next("executor-3").token == 3


def test_holder_on_another_host_binds_until_expiry(workspace):
    make_task(workspace, "T-1")
    claims.claim_task("T-1", "remote-1", ttl=3600, pid=1, host="elsewhere")
    with pytest.raises(AlreadyClaimed):
        claims.claim_task("T-1", "executor-2")


def test_claim_next_skips_a_task_another_agent_holds_without_reading_its_file(workspace, monkeypatch):
    """In a race of claimers each claim rewrites a task file; the others learn from the lease table
    that it is taken and do not parse it. Every other reader still gets the file as it is."""
    from swarmfile import task_cache

    for n in (1, 2, 3):
        make_task(workspace, f"T-{n}", created=f"2026-01-0{n}T00:00:00Z")
    make_task(workspace, "T-9", depends_on=["T-1"], created="2026-01-09T00:00:00Z")
    assert [t.task_id for t in claims.ready_tasks()] == ["T-1", "T-2", "T-3"]
    first = task_store.find_task("T-1", root=workspace).path
    run_elsewhere(f"claims.claim_task('T-1', 'executor-2', {live_holder()})")  # held by a live process
    parsed = []
    real = task_cache.parse_task
    monkeypatch.setattr(task_cache, "parse_task", lambda text, path: parsed.append(path) or real(text, path))

    assert claims.claim_next("executor-1").task_id == "T-2"
    assert first not in parsed
    held = task_store.load_task(first)  # what the file says, not the claim listing's stand-in
    assert held.field("Claimed By") == "executor-2" and held.status is tasks.Status.CLAIMED
    assert [t.task_id for t in claims.ready_tasks()] == ["T-3"]  # a listing that is not claim_next's reads it

    run_elsewhere("claims.complete(claims.get_lease('T-1'))")  # its lease ends: the next claim listing reads it
    parsed.clear()
    assert [claims.claim_next("executor-1").task_id for _ in range(2)] == ["T-3", "T-9"]
    assert first in parsed and status_of(workspace, "T-1") is tasks.Status.COMPLETED
    assert claims.claim_next("executor-1") is None


def test_ready_order_priority_then_fifo_then_dependencies(workspace):
    make_task(workspace, "LOW-1", priority="low", created="2026-01-01T00:00:00Z")
    make_task(workspace, "HIGH-NEW", priority="high", created="2026-01-03T00:00:00Z")
    make_task(workspace, "HIGH-OLD", priority="HIGH", created="2026-01-02T00:00:00Z")
    make_task(workspace, "CRIT-1", priority="critical", created="2026-01-05T00:00:00Z")
    make_task(workspace, "DEP-1", priority="critical", depends_on=["LOW-1"])
    make_task(workspace, "NUM-1", priority="7")
    assert [t.task_id for t in claims.ready_tasks()] == ["NUM-1", "CRIT-1", "HIGH-OLD", "HIGH-NEW", "LOW-1"]
    order = []
    while (lease := claims.claim_next("executor-1")) is not None:
        order.append(lease.task_id)
        claims.complete(lease)
    assert order == ["NUM-1", "CRIT-1", "HIGH-OLD", "HIGH-NEW", "LOW-1", "DEP-1"]


def test_the_ready_list_kept_up_to_date_is_the_one_computed_afresh(workspace):
    """ready_tasks updates its last list for the tasks whose status alone changed: after every
    step of a random mix of claims, ends and edits it equals the list computed from nothing."""
    rng = random.Random(14)
    for n in range(24):
        deps = [f"T-{rng.randrange(n):02d}"] if n and rng.random() < 0.3 else []
        make_task(workspace, f"T-{n:02d}", priority=rng.choice(["low", "medium", "high", "critical"]),
                  created=f"2026-01-01T00:00:{rng.randrange(60):02d}Z", depends_on=deps)
    held = []
    for step in range(60):
        roll = rng.random()
        if roll < 0.4 or not held:
            lease = claims.claim_next(f"executor-{step % 3}")
            if lease is not None:
                held.append(lease)
        elif roll < 0.6:
            claims.complete(held.pop(rng.randrange(len(held))))
        elif roll < 0.8:
            claims.release(held.pop(rng.randrange(len(held))))
        else:
            task = rng.choice(task_store.list_tasks(root=workspace))
            task_store.set_field(task.path, "Priority", rng.choice(["low", "critical", "7"]), root=workspace)
        kept = [t.task_id for t in claims.ready_tasks()]
        ready_query._ready_memo.clear()  # the memo lives with the query
        assert kept == [t.task_id for t in claims.ready_tasks()], f"step {step}"


def test_parent_with_subtasks_is_not_ready(workspace):
    make_task(workspace, "P-1", priority="high")
    make_task(workspace, "P-1-SUB1", fields={"Parent Task": "P-1"})
    assert [t.task_id for t in claims.ready_tasks()] == ["P-1-SUB1"]


def test_dependency_in_completed_dir_counts(workspace):
    make_task(workspace, "A-1")
    make_task(workspace, "B-1", depends_on=["A-1"])
    claims.complete(claims.claim_task("A-1", "e"))
    task_store.move_to_completed("A-1", root=workspace)
    assert [t.task_id for t in claims.ready_tasks()] == ["B-1"]


def test_fail_retries_with_backoff_then_blocks(workspace):
    make_task(workspace, "T-1")
    now = utc_now()
    lease = claims.claim_task("T-1", "e", now=now)
    failed = claims.fail(lease, "boom", max_attempts=2, retry_after=30, now=now)
    assert failed.attempts == 1 and failed.error == "boom"
    assert status_of(workspace, "T-1") is tasks.Status.PENDING
    with pytest.raises(NotClaimable, match="before its retry"):
        claims.claim_task("T-1", "e", now=now + timedelta(seconds=10))
    assert claims.claim_next("e", now=now + timedelta(seconds=10)) is None
    again = claims.claim_next("e", now=now + timedelta(seconds=31))
    assert again.task_id == "T-1" and again.attempts == 1 and again.token == 2
    claims.fail(again, "boom again", max_attempts=2, now=now + timedelta(seconds=31))
    assert status_of(workspace, "T-1") is tasks.Status.BLOCKED
    assert claims.claim_next("e", now=now + timedelta(hours=1)) is None


def test_reap_expired_requeues(workspace):
    make_task(workspace, "T-1")
    make_task(workspace, "T-2")
    now = utc_now()
    stale = claims.claim_task("T-1", "e1", ttl=10, now=now)
    claims.start(stale, now=now)
    claims.claim_task("T-2", "e2", ttl=1000, now=now)
    reaped = claims.reap_expired(now=now + timedelta(seconds=11))
    assert [(lease.task_id, lease.state) for lease, _ in reaped] == [("T-1", LeaseState.EXPIRED)]
    assert "expired" in reaped[0][1]
    assert status_of(workspace, "T-1") is tasks.Status.PENDING
    assert status_of(workspace, "T-2") is tasks.Status.CLAIMED
    assert claims.reap_expired(now=now + timedelta(seconds=11)) == []
    with pytest.raises(LeaseLost):
        claims.complete(stale, now=now + timedelta(seconds=11))


def test_revoke_unacknowledged_races_start_under_one_lock(workspace):
    make_task(workspace, "T-1")
    make_task(workspace, "T-2")
    assigned = claims.claim_task("T-1", "executor-1")
    claims.revoke_unacknowledged(assigned)
    assert status_of(workspace, "T-1") is tasks.Status.PENDING
    with pytest.raises(LeaseLost):
        claims.start(assigned)
    acked = claims.start(claims.claim_task("T-2", "executor-1"))
    assert status_of(workspace, "T-2") is tasks.Status.IN_PROGRESS
    with pytest.raises(LeaseLost, match="acknowledged"):
        claims.revoke_unacknowledged(acked)


def test_operator_edits_survive_status_mirroring(workspace):
    path = make_task(workspace, "T-1", criteria=["one", "two"])
    text = path.read_text().replace("- [ ] two", "- [x] two\n\nOperator note: keep this.")
    path.write_text(text)
    lease = claims.claim_task("T-1", "e")
    claims.complete(lease)
    after = path.read_text()
    assert "Operator note: keep this." in after and "- [x] two" in after
    assert "**Status:** completed" in after


def test_unknown_task_and_bad_ids(workspace):
    with pytest.raises(NotFoundError):
        claims.claim_task("NOPE-1", "e")
    with pytest.raises(Exception, match="invalid task id"):
        claims.claim_task("../../etc", "e")
    with pytest.raises(Exception, match="invalid agent id"):
        claims.claim_task("T-1", "a/b")


@pytest.mark.parametrize("kind", ["bad", EMPTY_RECORD])
def test_corrupt_lease_file_fails_closed(workspace, kind):
    make_task(workspace, "T-1")
    where, line = corrupt_lease(workspace, "T-1", kind)
    before = where.read_bytes()
    with pytest.raises(Exception, match=rf"{where.name}:{line}: "):
        claims.claim_task("T-1", "e")
    assert where.read_bytes() == before


# ---------------------------------------------------------------------------- real processes


def _claim_all(root, agent_id):
    os.environ["SWARM_ROOT"] = root
    # The leases name the test process as holder: a claimer that finishes and exits must not
    # leave dead-holder leases for the others to take over (that is reaping, tested below).
    from swarmfile.liveness import process_start_time

    holder = dict(pid=os.getppid(), host=HOSTNAME, proc_start=process_start_time(os.getppid()))
    got = []
    while (lease := claims.claim_next(agent_id, **holder)) is not None:
        got.append((lease.task_id, lease.token))
    return got


def _many_tasks(root, count):
    active = root / "tasks" / "active"
    for n in range(count):
        (active / f"T-{n:05d}.md").write_text(
            f"# T-{n:05d}: task {n}\n\n**Priority:** {['low', 'medium', 'high'][n % 3]}\n**Status:** pending\n"
            f"**Created:** 2026-01-01T00:00:{n % 60:02d}Z\n")


# 2,000 tasks by 8 processes: 27-29 s on 2 idle CPUs (files and Redis), over 2 minutes on a machine loaded 10x over.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_eight_processes_claim_each_task_exactly_once(workspace, backend):
    count = int(os.environ.get("SWARM_CLAIM_RACE_TASKS", "2000"))
    _many_tasks(workspace, count)
    results = run_together(_claim_all, [(str(workspace), f"executor-{i}") for i in range(8)], timeout=600)
    claimed = [task for got in results for task, _ in got]
    assert len(claimed) == count and len(set(claimed)) == count
    assert all(token == 1 for got in results for _, token in got)
    assert sum(1 for got in results if got) > 1, "the race had more than one winner overall"


WORKER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import claims; from swarmfile import fileio
from swarmfile.config import load_config
agent = sys.argv[2]
cfg = load_config()
record = cfg.root / "completions.log"
while True:
    claims.reap_expired()
    lease = claims.claim_next(agent, ttl=30)
    if lease is None:
        break
    claims.complete(lease)
    fileio.append_line(record, f"{lease.task_id} {lease.token} {agent}", lock_dir=cfg.lock_dir)
"""


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_kill_nine_claimers_every_task_completed_exactly_once(workspace, tmp_path, backend):
    count = 150
    _many_tasks(workspace, count)
    lib = os.path.join(os.path.dirname(__file__), "..", "lib")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    rng = random.Random(7)
    env = dict(os.environ, SWARM_ROOT=str(workspace))
    spawned = 0
    procs: list[subprocess.Popen] = []
    try:
        for round_ in range(30):
            procs = [p for p in procs if p.poll() is None]
            while len(procs) < 4:
                procs.append(subprocess.Popen([sys.executable, str(script), lib, f"w-{spawned}"], env=env))
                spawned += 1
            victim = rng.choice(procs)
            time.sleep(rng.uniform(0.01, 0.08))  # a random moment in the victim's work, by design
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        # The survivors and one last worker finish the queue, reaping what the dead held.
        procs.append(subprocess.Popen([sys.executable, str(script), lib, "finisher"], env=env))
        for proc in procs:
            assert proc.wait(timeout=300) in (0, -signal.SIGKILL)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for n in range(count):
        lease = claims.get_lease(f"T-{n:05d}")
        assert lease is not None and lease.state is LeaseState.COMPLETED, (n, lease)
        assert status_of(workspace, f"T-{n:05d}") is tasks.Status.COMPLETED
    recorded = [line.split()[0] for line in (workspace / "completions.log").read_text().splitlines()]
    assert len(recorded) == len(set(recorded)), "no task was completed twice"


SLEEPER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import claims
from swarmfile.errors import LeaseLost
lease = claims.claim_task("T-1", "sleepy", ttl=float(sys.argv[2]))
print("claimed", lease.token, flush=True)
sys.stdin.readline()          # the parent stops us here with SIGSTOP, then resumes us
try:
    claims.complete(lease)
    print("completed", flush=True)
except LeaseLost as exc:
    print("refused", exc, flush=True)
"""


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_sigstopped_holder_past_ttl_is_refused(workspace, tmp_path, backend):
    make_task(workspace, "T-1")
    lib = os.path.join(os.path.dirname(__file__), "..", "lib")
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    ttl = 1.0
    proc = subprocess.Popen([sys.executable, str(script), lib, str(ttl)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, SWARM_ROOT=str(workspace)))
    try:
        assert proc.stdout.readline().split() == ["claimed", "1"]
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while True:  # the lease binds until its TTL has passed; then exactly one takeover
            try:
                lease = claims.claim_task("T-1", "awake")
                break
            except AlreadyClaimed:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert lease.token == 2
        proc.send_signal(signal.SIGCONT)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        reply = proc.stdout.readline()
        assert reply.startswith("refused"), reply
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert claims.get_lease("T-1").agent_id == "awake"
    claims.complete(lease)


def test_split_parent_is_never_claimable_even_when_its_parts_are_done(workspace):
    # Regression: the demo ran a parent whose sub-tasks had all completed while the planner
    # completed it too: two completions of one task.
    make_task(workspace, "P-1", fields={"Sub-Tasks": "P-1-SUB1"})
    make_task(workspace, "P-1-SUB1", fields={"Parent Task": "P-1"})
    claims.complete(claims.claim_task("P-1-SUB1", "e"))
    assert claims.ready_tasks() == []
    with pytest.raises(NotClaimable, match="split into sub-tasks"):
        claims.claim_task("P-1", "e")


def test_claimed_task_is_not_split(workspace):
    import task_distribution

    path = make_task(workspace, "BIG", objective="Three independent parts, in parallel.",
                     criteria=["Part `lib/a.py`", "Part `lib/b.py`", "Part `lib/c.py`"])
    assert task_distribution.can_parallelize(path)
    lease = claims.claim_task("BIG", "e")
    assert task_distribution.distribute_task(path, ["e", "f"]) == []
    assert task_store.find_task("BIG", root=workspace).sub_tasks == ()
    claims.complete(lease)


def test_one_corrupt_lease_does_not_stop_reaping_the_rest(workspace):
    # Regression (found by doctor's tests): reap_expired stopped at the first corrupt lease file.
    make_task(workspace, "T-1")
    make_task(workspace, "T-2")
    now = utc_now()
    claims.claim_task("T-1", "e1", ttl=10, now=now)
    claims.claim_task("T-2", "e2", ttl=10, now=now)
    bad, line = corrupt_lease(workspace, "T-1")
    before = bad.read_bytes()
    reaped = claims.reap_expired(now=now + timedelta(seconds=11))
    assert [lease.task_id for lease, _ in reaped] == ["T-2"]
    assert bad.read_bytes().startswith(before)
    errors: list = []
    assert [l.task_id for l in claims.list_leases(errors=errors)] == ["T-2"]
    assert len(errors) == 1 and f"{bad.name}:{line}" in str(errors[0])
    with pytest.raises(Exception, match=f"{bad.name}:{line}"):
        claims.list_leases()


def test_a_corrupt_task_file_does_not_stop_claiming(workspace):
    # Regression (found writing the guide): one unparseable task file stopped every executor.
    make_task(workspace, "T-1")
    bad = workspace / "tasks" / "active" / "BROKEN.md"
    bad.write_bytes(b"no title line here\n")
    lease = claims.claim_next("e")
    assert lease is not None and lease.task_id == "T-1"
    assert bad.read_bytes() == b"no title line here\n"


def test_unblocking_by_hand_gives_a_fresh_set_of_attempts(workspace):
    make_task(workspace, "T-1")
    lease = claims.claim_task("T-1", "e")
    claims.fail(lease, "boom", max_attempts=1)
    assert status_of(workspace, "T-1") is tasks.Status.BLOCKED
    task_store.set_field(task_store.find_task("T-1", root=workspace).path, "Status", "pending")
    again = claims.claim_task("T-1", "e")
    assert again.attempts == 0
    failed = claims.fail(again, "boom", max_attempts=2)
    assert status_of(workspace, "T-1") is tasks.Status.PENDING and failed.attempts == 1


def _edit_in_place(path, old: str, new: str) -> None:
    """An editor saving in place: the same inode and size, and the mtime put back to the nanosecond."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text()
    assert text.count(old) == 1
    with open(path, "r+") as handle:
        handle.write(text.replace(old, new))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("edit, old, new, then", [
    ("status", "**Status:** pending", "**Status:** blocked", None),
    ("priority", "**Priority:** high", "**Priority:**  low", "T-1"),
    ("dependencies", "**Depends On:** T-9", "**Depends On:** T-2", None),
])
def test_a_hand_edit_in_place_is_honored_by_the_very_next_claim_next(workspace, edit, old, new, then):
    # Regression: claim_next took the task the cached ready list named, checking only its status,
    # so a priority or a dependency changed in place (no rename, same size) counted only after the
    # next full scan. The file is read under the task's lock in any case: it is judged by that.
    make_task(workspace, "T-9", priority="high")
    claims.complete(claims.claim_task("T-9", "e"))
    task_store.move_to_completed("T-9", root=workspace)
    first = make_task(workspace, "T-1", priority="high", depends_on=["T-9"])
    make_task(workspace, "T-2", priority="medium")
    assert [t.task_id for t in claims.ready_tasks()] == ["T-1", "T-2"]  # listed, cached and judged
    text = first.read_text()
    _edit_in_place(first, old, new)
    assert claims.claim_next("e").task_id == "T-2"
    assert first.read_text() == text.replace(old, new)  # judged by its file, and never written
    lease = claims.claim_next("e")
    assert (lease.task_id if lease else None) == then


def test_hand_edited_tasks_never_make_claim_next_give_up(workspace, monkeypatch):
    # Each task found edited makes the ready list again; past that bound such a task is skipped,
    # never "nothing is ready" while another task is.
    from swarmfile import claims as module

    monkeypatch.setattr(module, "_RELISTS", 1)
    first = make_task(workspace, "T-1", priority="high")
    make_task(workspace, "T-2", priority="medium")
    assert [t.task_id for t in claims.ready_tasks()] == ["T-1", "T-2"]
    _edit_in_place(first, "**Status:** pending", "**Status:** blocked")
    assert claims.claim_next("e").task_id == "T-2"
    assert claims.claim_next("e") is None and [t.task_id for t in claims.ready_tasks()] == []


@pytest.mark.parametrize("salt", range(8))
def test_a_claimer_that_lost_a_race_takes_a_task_further_on_of_the_same_priority(workspace, monkeypatch, salt):
    """Losers of a race spread over the next tasks rather than all trying the same next one, and
    never pass over a task of a higher priority for it."""
    from leases import table

    make_task(workspace, "H-1", priority="high", created="2026-01-01T00:00:00Z")
    make_task(workspace, "H-2", priority="high", created="2026-01-01T00:00:01Z")
    for i in range(8):
        make_task(workspace, f"L-{i}", priority="low", created=f"2026-01-01T00:00:0{i}Z")
    monkeypatch.setattr(claims, "_PID_SALT", salt)
    with table(workspace).lock("H-1"):  # another claimer is taking H-1 right now
        lease = claims.claim_next("executor-1", root=workspace)
    assert lease.task_id == "H-2"


@pytest.mark.parametrize("salt", [0, 3, 7])
def test_losers_of_a_race_spread_over_the_next_tasks(workspace, monkeypatch, salt):
    from leases import table

    for i in range(12):
        make_task(workspace, f"T-{i:02d}", priority="high", created=f"2026-01-01T00:00:{i:02d}Z")
    monkeypatch.setattr(claims, "_PID_SALT", salt)
    with table(workspace).lock("T-00"):
        lease = claims.claim_next("executor-1", root=workspace)
    assert lease.task_id == f"T-{1 + salt % 8:02d}"


@pytest.mark.parametrize("salt", [0, 3, 7])
def test_a_claimer_that_lost_a_race_lately_starts_its_next_claim_at_its_own_pick(workspace, monkeypatch, salt):
    """For a second after a lost race, claim_next starts at the process's pick among the first tasks (claimers
    that all start at the first lose to each other again), never passing over a higher priority for it."""
    from leases import table

    make_task(workspace, "H-1", priority="high", created="2026-01-01T00:00:00Z")
    medium = [f"T-{i:02d}" for i in range(12)]
    for i, task_id in enumerate(medium):
        make_task(workspace, task_id, priority="medium", created=f"2026-01-01T00:00:{i:02d}Z")
    monkeypatch.setattr(claims, "_PID_SALT", salt)
    monkeypatch.setattr(claims, "_contended_until", 0.0)
    with table(workspace).lock("H-1"):  # another claimer is taking H-1 right now: this one loses it
        medium.remove(claims.claim_next("executor-1", root=workspace).task_id)
    assert claims.claim_next("executor-1", root=workspace).task_id == "H-1"  # still first: the higher priority
    pick = claims.claim_next("executor-1", root=workspace).task_id
    assert pick == medium[salt % 8]  # the process's own pick among the first eight, not the first
    medium.remove(pick)
    monkeypatch.setattr(claims, "_contended_until", 0.0)  # a second later: the first again
    assert claims.claim_next("executor-1", root=workspace).task_id == medium[0]
