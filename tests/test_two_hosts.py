"""Two hosts in one test (issue 13): two clones of one bare remote, one Redis, a planner and executors.

Host A is the operator checkout: its tasks/active holds the Markdown, its planner publishes it to
the task board and mirrors every lease back. Host B is a clone with no task files at all. Each has
its own ``SWARM_HOST``; executors on both are real ``python lib/executor.py`` processes running a
fake agent that writes a file and commits it in the task's worktree, and finished branches merge
into the remote's base through remote_merge (``worktrees: {remote: origin}``). Both hosts append
to one event stream; host A's events.yaml is its mirror (event_mirror), written by A's planner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gitenv import git
from hosts import host, remote, run_until, start_loop  # noqa: F401 (remote: a fixture)
from swarmfile import config, event_mirror, events, task_store, tasks
from swarmfile.lease_store import LeaseState
from swarmfile.stores import event_log, lease_table

LIB = Path(__file__).resolve().parent.parent / "lib"
COUNT = 8

AGENT = r"""
import pathlib, subprocess, sys
task_id, task_file = sys.argv[1], pathlib.Path(sys.argv[2])
title = task_file.read_text().splitlines()[0]
out = pathlib.Path("work") / f"{task_id}.txt"
out.parent.mkdir(exist_ok=True)
out.write_text(title + "\n")
subprocess.run(["git", "add", str(out)], check=True)
subprocess.run(["git", "commit", "-qm", f"{task_id}: done"], check=True)
print(f"[DONE] {task_id}")
"""


def _all_completed(root: Path) -> bool:
    found = task_store.list_tasks(root=root, include_completed=True, errors=[])
    return len(found) == COUNT and all(t.status is tasks.Status.COMPLETED and t.path.parent.name == "completed"
                                       for t in found)


@pytest.mark.timeout(240)
def test_two_hosts_complete_every_task_once_and_merge_every_branch_into_the_remote(tmp_path, remote, redis_server):
    a = host(tmp_path, remote, "host-a", redis_server.url)
    b = host(tmp_path, remote, "host-b", redis_server.url)
    for n in range(COUNT):
        task_store.new_task_file(f"T-{n}", f"Task number {n}", root=a, priority=["high", "medium"][n % 2],
                                 created=f"2026-01-01T00:00:{n:02d}Z", objective=f"Write work/T-{n}.txt")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    command = f"{sys.executable} {agent} {{task_id}} {{task_file}}"
    executor = [str(LIB / "executor.py"), "--command", command, "--worktree", "--poll", "0.2", "--ttl", "30",
                "--backoff", "0.2"]
    procs = [start_loop(a, "host-a", str(LIB / "planner.py"), "--agent-id", "planner", "--interval", "0.3",
                    "--ack-timeout", "10")]
    procs += [start_loop(a, "host-a", *executor, "--agent-id", "exec-a1")]
    procs += [start_loop(b, "host-b", *executor, "--agent-id", f"exec-b{n}") for n in (1, 2)]
    # host A's Markdown is the end of the line: mirrored by its planner
    run_until(procs, lambda: _all_completed(a), "the tasks did not all complete in time")
    assert [p.returncode for p in procs] == [0] * len(procs)
    ids = [f"T-{n}" for n in range(COUNT)]

    # Every task completed exactly once: one completed lease with the token that ran it, one completion event.
    config._cache.clear()
    table = lease_table(config.load_config(root=a))
    leases = {task_id: table.read(task_id) for task_id in ids}
    assert all(lease.state is LeaseState.COMPLETED for lease in leases.values()), leases
    # One event log for both hosts (a stream), and host A's events.yaml its faithful mirror.
    completed = events.read_events(types=["completed"], root=a)
    assert events.read_events(root=b) == events.read_events(root=a)
    assert Counter(e["task_id"] for e in completed) == Counter(ids)
    assert {e["task_id"]: e["token"] for e in completed} == {t: lease.token for t, lease in leases.items()}
    by_host = Counter("a" if e["agent"].startswith("exec-a") else "b" for e in completed)
    assert by_host["a"] >= 1 and by_host["b"] >= 1, f"both hosts should have run tasks: {by_host}"

    # Every branch merged into the remote's base, none left behind.
    tree = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert sorted(p for p in tree if p.startswith("work/")) == sorted(f"work/{t}.txt" for t in ids)
    assert len(git(remote, "log", "--merges", "--format=%H", "main").split()) == COUNT
    assert git(remote, "branch", "--list", "swarm/*") == ""
    assert git(remote, "show", "main:work/T-3.txt") == "# T-3: Task number 3"

    cfg_a = config.load_config(root=a)
    event_mirror.mirror_once(cfg_a)  # what the planner's next round would copy
    stream = event_log(cfg_a).entries_after(None, 1_000_000)
    mirrored = events.read_events(root=a, events_file=a / "events.yaml")
    assert [e["stream_id"] for e in mirrored] == [sid for sid, _ in stream]  # in order, no gap, once each
    assert [{k: v for k, v in e.items() if k != "stream_id"} for e in mirrored] == [e for _, e in stream]
    assert Counter(e["task_id"] for e in mirrored if e["type"] == "completed") == Counter(ids)
    assert {e["agent"] for e in mirrored if e["type"] == "started"} >= {"exec-a1"} | {e["agent"] for e in completed
                                                                                  if e["agent"].startswith("exec-b")}

    # Host B never had a task file in tasks/: it ran the published text from its runtime folder.
    assert list((b / "tasks").rglob("*.md")) == []
    ran_on_b = {e["task_id"] for e in completed if e["agent"].startswith("exec-b")}
    assert {p.stem for p in (b / ".swarm" / "tasks").glob("*.md")} >= ran_on_b


@pytest.mark.timeout(300)
def test_the_demo_on_two_hosts_starts_its_own_redis_and_completes_every_task_once(tmp_path):
    from redis_server import require_redis

    require_redis()
    env = dict(os.environ, TMPDIR=str(tmp_path))  # its temp folder (and the redis-server's) inside the test's
    env.pop("SWARM_ROOT", None)
    # A generous --timeout: on a machine loaded many times over the nine tasks took 91 s (18 s when idle).
    proc = subprocess.run([sys.executable, str(LIB / "swarm.py"), "demo", "--backend", "redis", "--json",
                           "--timeout", "200"], capture_output=True, text=True, env=env, timeout=260)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    facts = json.loads(proc.stdout)
    assert facts["ok"] and facts["tasks"] == 9 and facts["problems"] == [] and facts["crashed"] == []
    assert facts["merged"] == 8  # every executed task's branch, through the shared remote
    assert sum(facts["completed_on"].values()) == 8
    assert not Path(facts["workspace"]).exists(), "a successful demo leaves nothing behind"


def test_the_demo_refuses_a_backend_that_is_not_redis(tmp_path):
    proc = subprocess.run([sys.executable, str(LIB / "swarm.py"), "demo", "--backend", "postgres://x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "neither 'redis' nor a Redis URL" in proc.stderr


CLASHING_AGENT = r"""
import pathlib, subprocess, sys, time
task_id, task_file, meeting = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
(meeting / f"started-{task_id}").write_text("")
deadline = time.monotonic() + 60
while len(list(meeting.glob("started-*"))) < 2:  # both tasks cut from the same base: their merges clash
    assert time.monotonic() < deadline
    time.sleep(0.05)
out = pathlib.Path("work") / "shared.txt"
out.parent.mkdir(exist_ok=True)
out.write_text(f"written by {task_id}\n")
subprocess.run(["git", "add", str(out)], check=True)
subprocess.run(["git", "commit", "-qm", f"{task_id}: shared.txt"], check=True)
print(f"[DONE] {task_id}")
"""


@pytest.mark.timeout(240)
def test_a_merge_conflict_on_another_host_is_mirrored_into_the_operators_markdown_only(tmp_path, remote,
                                                                                        redis_server):
    # Tasks committed in the repository (as RALF keeps them): host B's clone has its own copies.
    seed = tmp_path / "seed"
    (seed / ".gitignore").write_text(".swarm/\nevents.yaml\nheartbeat.yaml\nswarm.yaml\n")
    for n, priority in ((1, "high"), (2, "low")):
        task_store.new_task_file(f"T-{n}", f"Write the shared file, take {n}", root=seed, priority=priority,
                                 created=f"2026-01-01T00:00:0{n}Z", directory=seed / "tasks" / "active")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "tasks")
    git(seed, "push", "-q", str(remote), "main")
    a = host(tmp_path, remote, "host-a", redis_server.url)
    b = host(tmp_path, remote, "host-b", redis_server.url)
    b_tasks = {p: p.read_bytes() for p in (b / "tasks").rglob("*.md")}
    assert len(b_tasks) == 2
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    agent = tmp_path / "agent.py"
    agent.write_text(CLASHING_AGENT)
    command = f"{sys.executable} {agent} {{task_id}} {{task_file}} {meeting}"
    executor = [str(LIB / "executor.py"), "--command", command, "--worktree", "--poll", "0.2", "--ttl", "30"]
    procs = [start_loop(a, "host-a", str(LIB / "planner.py"), "--agent-id", "planner", "--interval", "0.3")]
    procs += [start_loop(b, "host-b", *executor, "--agent-id", f"exec-b{n}") for n in (1, 2)]

    def settled() -> bool:
        found = {t.task_id: t.status for t in task_store.list_tasks(root=a, include_completed=True, errors=[])}
        return sorted(found.values()) == sorted([tasks.Status.COMPLETED, tasks.Status.NEEDS_ATTENTION])

    run_until(procs, settled, "the tasks did not settle in time")
    conflicts = events.read_events(types=["merge_conflict"], root=a)
    [loser] = {e["task_id"] for e in conflicts}
    winner = ({"T-1", "T-2"} - {loser}).pop()
    assert git(remote, "show", "main:work/shared.txt") == f"written by {winner}"  # the base as the winner left it
    assert task_store.find_task(loser, root=a).status is tasks.Status.NEEDS_ATTENTION
    assert {p: p.read_bytes() for p in (b / "tasks").rglob("*.md")} == b_tasks, "host B's task files untouched"
