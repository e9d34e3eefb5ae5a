"""executor --worktree: each task in its own git worktree, merged back through the queue; reservations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import events
import reservations
from swarmfile import tasks
from swarmfile import task_store
import worktrees

LIB = Path(__file__).resolve().parent.parent / "lib"
SIM = LIB / "sim_agent.py"


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def repo(workspace):
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "config", "user.email", "t@example.com")
    git(workspace, "config", "user.name", "Test")
    (workspace / "shared.txt").write_text("base\n")
    git(workspace, "add", "shared.txt")
    git(workspace, "commit", "-qm", "base")
    return workspace


def executor(root, *args, env=None):
    full_env = dict(os.environ, SWARM_ROOT=str(root), **(env or {}))
    return subprocess.Popen([sys.executable, str(LIB / "executor.py"), *args], env=full_env, cwd=root)


def test_three_tasks_merge_back_in_sequence(workspace):
    repo(workspace)
    for n in (1, 2, 3):
        task_store.new_task_file(f"T-{n}", f"Task {n}", root=workspace, created=f"2026-01-01T00:00:0{n}Z")
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{sys.executable} {SIM} {{task_file}}",
                    "--once", "--worktree")
    assert proc.wait(timeout=120) == 0
    tracked = git(workspace, "ls-files").split()
    assert {"work/T-1.txt", "work/T-2.txt", "work/T-3.txt"} <= set(tracked)
    assert not any(name.startswith(".swarm") for name in tracked), "nothing of the runtime is committed"
    merged = events.read_events(types=["merged"], root=workspace)
    assert [e["task_id"] for e in merged] == ["T-1", "T-2", "T-3"]
    done = events.read_events(types=["completed"], root=workspace)
    assert [e["merge"] for e in done] == ["merged"] * 3
    assert done[0]["files_modified"] == ["work/T-1.txt"]
    assert worktrees.list_worktrees(root=workspace) == [], "merged worktrees are cleaned up"


BARRIER_AGENT = (
    "sh -c 'while [ $(ls \"$SWARM_ROOT\"/.swarm/worktrees/*.yaml 2>/dev/null | wc -l) -lt 2 ]; do sleep 0.02; done; "
    "echo {task_id} > shared.txt; echo [DONE] {task_id}'"
)


def test_same_lines_give_one_merge_and_one_conflict(workspace):
    repo(workspace)
    task_store.new_task_file("T-1", "Change shared", root=workspace)
    task_store.new_task_file("T-2", "Change shared too", root=workspace)
    procs = [executor(workspace, "--agent-id", f"e{n}", "--command", BARRIER_AGENT, "--max-tasks", "1", "--worktree")
             for n in (1, 2)]
    try:
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    merged = events.read_events(types=["merged"], root=workspace)
    conflicts = events.read_events(types=["merge_conflict"], root=workspace)
    assert len(merged) == 1 and len(conflicts) == 1
    loser = conflicts[0]["task_id"]
    assert conflicts[0]["files"] == ["shared.txt"]
    task = task_store.find_task(loser, root=workspace)
    assert task.status is tasks.Status.NEEDS_ATTENTION and "shared.txt" in task.field("Merge Conflict")
    assert (workspace / "shared.txt").read_text() == f"{merged[0]['task_id']}\n", "base holds only the clean merge"
    assert f"swarm/{loser}/" in git(workspace, "branch", "--list", "swarm/*"), "the conflicting branch is kept"


def test_executor_skips_a_task_whose_files_another_agent_holds(workspace):
    task_store.new_task_file("T-1", "Edit the parser", root=workspace, priority="high", files=["app/parser.py"])
    task_store.new_task_file("T-2", "Edit the docs", root=workspace, priority="low", files=["docs/index.md"])
    held = reservations.reserve("other-agent", ["app/*.py"], root=workspace)
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{sys.executable} {SIM} {{task_file}}", "--once")
    assert proc.wait(timeout=60) == 0
    assert task_store.find_task("T-2", root=workspace).status is tasks.Status.COMPLETED
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING
    skipped = events.read_events(types=["skipped"], root=workspace)
    assert skipped and skipped[0]["task_id"] == "T-1" and skipped[0]["holder"] == "other-agent"
    assert reservations.list_reservations(root=workspace) == [held], "the executor released its own reservations"
    reservations.release(held, root=workspace)
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{sys.executable} {SIM} {{task_file}}", "--once")
    assert proc.wait(timeout=60) == 0
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.COMPLETED
