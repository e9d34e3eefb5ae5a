"""executor: the loop as a real process running fake agent CLIs on real task files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agent_discovery
import claims
import events
from swarmfile import tasks
from swarmfile import task_store
from claims import LeaseState
from swarmfile.clock import HOSTNAME
from swarmfile.liveness import pid_alive
from leases import edit_lease

LIB = Path(__file__).resolve().parent.parent / "lib"
FAKE = Path(__file__).parent / "fake_agents" / "fake_cli.py"
SIM = LIB / "sim_agent.py"


def make_tasks(root, count, **parts):
    return [task_store.new_task_file(f"T-{n}", f"Task number {n}", root=root, created=f"2026-01-01T00:00:{n:02d}Z", **parts)
            for n in range(1, count + 1)]


def executor(root, *args, env=None, **popen):
    full_env = dict(os.environ, SWARM_ROOT=str(root), **(env or {}))
    return subprocess.Popen([sys.executable, str(LIB / "executor.py"), *args], env=full_env, cwd=root, **popen)


def types_for(root, task_id):
    return [e["type"] for e in events.read_events(task_id=task_id, root=root)]


def wait_for_event(root, kind, timeout=30):
    for event in events.follow(root=root, types=[kind], backlog=1000, timeout=timeout):
        return event
    raise AssertionError(f"no {kind} event within {timeout}s")


def executor_with_hanging_agent(root, pidfile):
    """An executor whose agent hangs; returned once the agent has started and written its pids."""
    proc = executor(root, "--agent-id", "executor-1", "--command", f"{FAKE} {{task_id}}",
                    env={"FAKE_BEHAVIOUR": "hang", "FAKE_PIDFILE": str(pidfile)})
    try:
        wait_for_event(root, "started")
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
            assert time.monotonic() < deadline
            time.sleep(0.02)  # the fake agent writes its pid file right after it starts
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def test_once_runs_every_task_and_records_it(workspace):
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    make_tasks(workspace, 3)
    proc = executor(workspace, "--agent-id", "executor-1", "--command", f"{sys.executable} {SIM} {{task_file}}", "--once")
    assert proc.wait(timeout=60) == 0
    for n in (1, 2, 3):
        task = task_store.find_task(f"T-{n}", root=workspace)
        assert task.status is tasks.Status.COMPLETED
        assert task.path.parent == workspace / "tasks" / "completed"
        assert claims.get_lease(f"T-{n}").state is LeaseState.COMPLETED
        assert types_for(workspace, f"T-{n}") == ["started", "completed"]
        done = events.read_events(task_id=f"T-{n}", types=["completed"], root=workspace)[0]
        assert done["exit_code"] == 0 and done["duration_seconds"] > 0
        assert done["files_modified"] == [f"work/T-{n}.txt"]
        log = workspace / ".swarm" / "runs" / f"T-{n}" / "1.log"
        assert f"[DONE] T-{n}" in log.read_text()
    info = agent_discovery.get_agent_info("executor-1", root=workspace)
    assert info.status == "stopped" and info.role == "executor"
    kinds = [e["type"] for e in events.read_events(agent="executor-1", root=workspace)]
    assert kinds[0] == "registered" and kinds[-1] == "stopped"


def test_failures_retry_with_backoff_then_block(workspace):
    make_tasks(workspace, 1)
    proc = executor(workspace, "--agent-id", "executor-1", "--command", f"{FAKE} {{task_id}}", "--once",
                    "--max-attempts", "3", "--backoff", "0.05", "--poll", "0.05", env={"FAKE_BEHAVIOUR": "exit3"})
    # --once exits when nothing is ready; a task backing off is not ready, so loop until blocked.
    deadline = time.monotonic() + 60
    while proc.wait(timeout=60) == 0 and task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING:
        assert time.monotonic() < deadline
        time.sleep(0.1)  # the retry is due after a real backoff interval, by design
        proc = executor(workspace, "--agent-id", "executor-1", "--command", f"{FAKE} {{task_id}}", "--once",
                        "--max-attempts", "3", "--backoff", "0.05", env={"FAKE_BEHAVIOUR": "exit3"})
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.BLOCKED
    failed = events.read_events(task_id="T-1", types=["failed"], root=workspace)
    assert [e["attempt"] for e in failed] == [1, 2, 3]
    assert [e.get("retry_in_seconds") for e in failed] == [0.05, 0.1, None]
    assert failed[-1]["blocked"] is True and failed[0]["error"] == "exit code 3"
    assert types_for(workspace, "T-1")[-1] == "blocked"
    assert sorted(os.listdir(workspace / ".swarm" / "runs" / "T-1")) == ["1.log", "2.log", "3.log"]


def test_max_tasks_stops_after_n(workspace):
    make_tasks(workspace, 3)
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{FAKE} {{task_id}}", "--max-tasks", "2")
    assert proc.wait(timeout=60) == 0
    statuses = sorted(task_store.find_task(f"T-{n}", root=workspace).status.value for n in (1, 2, 3))
    assert statuses == ["completed", "completed", "pending"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_releases(workspace, tmp_path, signum):
    make_tasks(workspace, 1)
    pidfile = tmp_path / "agent.pid"
    proc = executor_with_hanging_agent(workspace, pidfile)
    try:
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    agent_pid, child_pid = (int(x) for x in pidfile.read_text().split())
    assert not pid_alive(agent_pid) and not pid_alive(child_pid)
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING
    assert claims.get_lease("T-1").state is LeaseState.RELEASED
    assert agent_discovery.get_agent_info("executor-1", root=workspace).status == "stopped"
    assert types_for(workspace, "T-1") == ["started", "released"]


def test_wait_marker_releases_for_later(workspace):
    make_tasks(workspace, 1)
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{FAKE} {{task_id}}", "--once",
                    env={"FAKE_BEHAVIOUR": "wait"})
    assert proc.wait(timeout=60) == 0
    assert types_for(workspace, "T-1") == ["started", "waiting"]
    lease = claims.get_lease("T-1")
    assert lease.state is LeaseState.RELEASED and lease.not_before is not None
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING


def test_planner_assignment_is_acknowledged_first(workspace):
    make_tasks(workspace, 2)
    lease = claims.claim_task("T-2", "e1", pid=None)
    claims.assign(lease)
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{FAKE} {{task_id}}", "--max-tasks", "1")
    assert proc.wait(timeout=60) == 0
    assert types_for(workspace, "T-2") == ["acknowledged", "started", "completed"]
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING
    assert claims.assignment_for("e1") is None


def test_three_executors_share_the_work_exactly_once(workspace):
    make_tasks(workspace, 24)
    procs = [executor(workspace, "--agent-id", f"executor-{i}", "--command", f"{FAKE} {{task_id}}", "--once")
             for i in range(3)]
    try:
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    completed = events.read_events(types=["completed"], root=workspace)
    assert sorted(e["task_id"] for e in completed) == sorted(f"T-{n}" for n in range(1, 25))
    assert len({e["agent"] for e in completed}) >= 2


def test_cli_errors_are_one_line(workspace):
    out = subprocess.run([sys.executable, str(LIB / "executor.py"), "--agent-id", "../x", "--agent", "claude"],
                         capture_output=True, text=True, cwd="/", env=dict(os.environ, SWARM_ROOT=str(workspace)))
    assert out.returncode == 2 and out.stderr.startswith("error: invalid agent id") and out.stderr.count("\n") == 1
    out = subprocess.run([sys.executable, str(LIB / "executor.py"), "--agent-id", "e1", "--agent", "nope"],
                         capture_output=True, text=True, cwd="/", env=dict(os.environ, SWARM_ROOT=str(workspace)))
    assert out.returncode == 2 and "unknown agent preset 'nope'" in out.stderr


def test_agent_dies_with_a_killed_executor(workspace, tmp_path):
    # Regression (found writing the guide): after kill -9 of an executor its agent ran on.
    make_tasks(workspace, 1)
    pidfile = tmp_path / "agent.pid"
    proc = executor_with_hanging_agent(workspace, pidfile)
    try:
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    agent_pid = int(pidfile.read_text().split()[0])
    deadline = time.monotonic() + 10
    while pid_alive(agent_pid):  # the kernel signals it when its parent dies
        assert time.monotonic() < deadline, "the agent outlived its executor"
        time.sleep(0.02)


def test_executor_without_planner_requeues_a_dead_executors_task(workspace):
    make_tasks(workspace, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims.start(claims.claim_task("T-1", "executor-9", pid=dead.pid, host=HOSTNAME))
    proc = executor(workspace, "--agent-id", "e1", "--command", f"{FAKE} {{task_id}}", "--once")
    assert proc.wait(timeout=60) == 0
    assert types_for(workspace, "T-1") == ["requeued", "started", "completed"]
    assert claims.get_lease("T-1").token == 2


def test_every_run_keeps_its_own_log(workspace):
    make_tasks(workspace, 1)
    for behaviour in ("wait", "done"):
        proc = executor(workspace, "--agent-id", "e1", "--command", f"{FAKE} {{task_id}}", "--once",
                        env={"FAKE_BEHAVIOUR": behaviour})
        assert proc.wait(timeout=60) == 0
        if behaviour == "wait":  # let the retry be due at once
            edit_lease(workspace, "T-1", not_before=None)
    assert sorted(os.listdir(workspace / ".swarm" / "runs" / "T-1")) == ["1.log", "2.log"]
    assert "[WAIT]" in (workspace / ".swarm" / "runs" / "T-1" / "1.log").read_text()
