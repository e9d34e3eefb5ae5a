"""A Swarmfile workspace in a real git repository, and the executor run inside the sandbox."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import events

from swarmfile import task_store
LIB = Path(__file__).resolve().parents[2] / "lib"
OBJECTIVE = "Replace the word base in notes.txt with the word changed."


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def make_repo(root: Path, task_id: str = "TASK-1") -> Path:
    """``root`` as a git repository with notes.txt committed and one ready task; the task file's path."""
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "Test")
    (root / ".gitignore").write_text(".swarm/\n")
    (root / "notes.txt").write_text("base\n")
    git(root, "add", ".gitignore", "notes.txt")
    git(root, "commit", "-qm", "base")
    return task_store.new_task_file(task_id, "Change the notes", root=root, objective=OBJECTIVE, files=["notes.txt"])


def run_executor(sandbox, root: Path, agent: str, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """``executor.py --agent AGENT --once`` in the sandbox; its result and how long it took."""
    argv = [sys.executable, str(LIB / "executor.py"), "--agent-id", "executor-1", "--agent", agent, "--once",
            "--max-attempts", "1", *args]
    started = time.monotonic()
    proc = sandbox.run(argv, cwd=root, env=sandbox.env(SWARM_ROOT=str(root)), timeout=timeout)
    return proc, time.monotonic() - started


def task_events(root: Path, task_id: str = "TASK-1") -> list[dict]:
    return [e for e in events.read_events(root=root) if e.get("task_id") == task_id]


def kinds(root: Path, task_id: str = "TASK-1") -> list[str]:
    return [e["type"] for e in task_events(root, task_id)]


def run_log(root: Path, task_id: str = "TASK-1", attempt: int = 1) -> str:
    return (root / ".swarm" / "runs" / task_id / f"{attempt}.log").read_text()
