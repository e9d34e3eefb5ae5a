"""swarm.py: the operator CLI (init, new-task, status) and the demo, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import events

from swarmfile import task_store
LIB = Path(__file__).resolve().parent.parent / "lib"


def swarm(*args, root=None, cwd="/"):
    env = dict(os.environ)
    env.pop("SWARM_ROOT", None)
    command = [sys.executable, str(LIB / "swarm.py"), *args] + (["--root", str(root)] if root else [])
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_init_scaffolds_without_overwriting(tmp_path):
    root = tmp_path / "ws"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    out = swarm("init", root=root)
    assert out.returncode == 0, out.stderr
    for name in ("heartbeat.yaml", "events.yaml", "tasks/active", "tasks/completed", ".swarm"):
        assert (root / name).exists(), name
    assert ".swarm/" in (root / ".gitignore").read_text().splitlines()
    (root / "events.yaml").write_text("events:\n- {type: started, agent: a}\n")
    again = swarm("init", "--json", root=root)
    assert json.loads(again.stdout)["created"] == []
    assert (root / "events.yaml").read_text() == "events:\n- {type: started, agent: a}\n"


def test_new_task_writes_template_and_refuses_duplicates(workspace):
    out = swarm("new-task", "Add rate limiting to the API", "--priority", "high", "--criterion", "limit per key",
                "--file", "api/limits.py", "--id", "TASK-1", root=workspace)
    assert out.returncode == 0, out.stderr
    task = task_store.find_task("TASK-1", root=workspace)
    assert (task.title, task.priority.value, task.status.value) == ("Add rate limiting to the API", "high", "pending")
    assert [i.text for i in task.checklist] == ["limit per key"] and task.files_to_modify == ("api/limits.py",)
    assert events.read_events(types=["created"], root=workspace)[0]["task_id"] == "TASK-1"
    dup = swarm("new-task", "Add rate limiting to the API", root=workspace)
    assert dup.returncode == 2 and "similar to TASK-1" in dup.stderr and dup.stderr.count("\n") == 1
    forced = swarm("new-task", "Add rate limiting to the API", "--force", "--depends-on", "TASK-1", root=workspace)
    assert forced.returncode == 0
    new = task_store.load_task(forced.stdout.strip())
    assert new.task_id.startswith("TASK-") and new.depends_on == ("TASK-1",)


@pytest.mark.parametrize("bad", ["../../etc", "a/b"])
def test_new_task_bad_id_is_one_line(workspace, bad):
    out = swarm("new-task", "Something", "--id", bad, root=workspace)
    assert out.returncode == 2 and out.stderr.startswith("error: invalid task id")
    assert list((workspace / "tasks" / "active").iterdir()) == []


def test_status_shows_agents_tasks_leases_events(workspace):
    import agent_discovery
    import claims

    task_store.new_task_file("T-1", "First thing", root=workspace)
    task_store.new_task_file("T-2", "Second thing", root=workspace)
    agent_discovery.register_agent("executor-1", role="executor", root=workspace)
    claims.claim_task("T-1", "executor-1")
    events.append_event("started", "executor-1", "T-1", root=workspace)
    out = swarm("status", root=workspace)
    assert out.returncode == 0, out.stderr
    assert "executor-1" in out.stdout and "1 claimed, 1 pending" in out.stdout
    assert "leases: 1 held" in out.stdout and "started" in out.stdout
    doc = json.loads(swarm("status", "--json", root=workspace).stdout)
    assert doc["task_counts"] == {"claimed": 1, "pending": 1}
    assert doc["leases"][0]["agent_id"] == "executor-1" and doc["leases"][0]["expires_in_seconds"] > 0


def test_status_names_a_corrupt_heartbeat_file(workspace):
    (workspace / "heartbeat.yaml").write_text("heartbeats: [\n")
    out = swarm("status", root=workspace)
    assert out.returncode == 2 and out.stderr.startswith(f"error: {workspace / 'heartbeat.yaml'}:")


def test_demo_completes_every_task_exactly_once(tmp_path):
    root = tmp_path / "demo"
    out = swarm("demo", root=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every task completed exactly once" in out.stdout
    completed = events.read_events(types=["completed"], root=root)
    ids = [e["task_id"] for e in completed]
    assert len(ids) == len(set(ids)) == len(task_store.list_tasks(root=root, include_completed=True))
    assert {e["type"] for e in events.read_events(root=root)} >= {"split", "started", "completed", "failed", "merged"}
    executed = [e["task_id"] for e in completed if e["agent"].startswith("executor")]
    merged = [e["task_id"] for e in events.read_events(types=["merged"], root=root)]
    assert sorted(merged) == sorted(executed), "every executed task came back through the merge queue"
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "work"], capture_output=True, text=True).stdout.split()
    assert sorted(tracked) == sorted(f"work/{task_id}.txt" for task_id in executed)


def test_help_works_from_anywhere():
    for args in (["--help"], ["demo", "--help"], ["new-task", "--help"]):
        out = swarm(*args)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_forwarded_commands_work_through_swarm_py(workspace, tmp_path):
    """watch, doctor, up, status --panes and down, as an operator types them, on a private tmux."""
    import shlex
    import shutil

    sock = str(tmp_path / "t.sock")
    env = dict(os.environ, SWARM_TMUX_SOCKET=sock)
    env.pop("TMUX", None)

    def run(*args):
        return subprocess.run([sys.executable, str(LIB / "swarm.py"), *args, "--root", str(workspace)],
                              capture_output=True, text=True, cwd="/", env=env, timeout=60)

    task_store.new_task_file("T-1", "Visible in the frame", root=workspace)
    frame = run("watch", "--once")
    assert frame.returncode == 0 and "T-1" in frame.stdout
    assert run("doctor").returncode == 0
    fake = shlex.join([sys.executable, str(Path(__file__).parent / "fake_agents" / "interactive_agent.py")])
    try:
        assert run("up", "--agents", "1", "--command", fake, "--cluster", "ops").returncode == 0
        panes = run("status", "--panes", "--cluster", "ops", "--json")
        assert panes.returncode == 0, panes.stderr
        doc = json.loads(panes.stdout)
        assert [p["agent_id"] for p in doc["panes"]] == ["ops-agent-1"]
        assert run("down", "--cluster", "ops").returncode == 0
    finally:
        subprocess.run([shutil.which("tmux") or "tmux", "-S", sock, "kill-server"], capture_output=True)
