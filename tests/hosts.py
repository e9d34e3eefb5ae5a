"""Several hosts in one test: clones of one bare remote sharing a Redis task board (issue 13).

``remote`` (a fixture: import it into the test module) is a bare repository whose ``main`` has one
commit; ``host`` clones it as one host's checkout with a swarm.yaml naming the shared redis-server
and the task board; ``start_loop`` runs a loop (planner, executor) as that host (its own
``SWARM_HOST``); ``run_until`` lets such loops run until a condition holds, then stops them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from gitenv import git, hermetic_git, seeded_remote
from swarmfile.liveness import stop_processes

__all__ = ["remote", "host", "start_loop", "run_until"]


@pytest.fixture
def remote(tmp_path, monkeypatch) -> Path:
    """A bare remote whose main holds a README and a .gitignore of the runtime's files."""
    hermetic_git(tmp_path, monkeypatch)
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    monkeypatch.delenv("SWARM_ROOT", raising=False)
    return seeded_remote(tmp_path, {"README.md": "# app\n",
                                    ".gitignore": ".swarm/\ntasks/\nevents.yaml\nheartbeat.yaml\nswarm.yaml\n"})


def host(tmp_path: Path, remote: Path, name: str, url: str) -> Path:
    """A host's checkout: a clone of ``remote`` on the task board of the Redis at ``url``."""
    root = tmp_path / name
    git(tmp_path, "clone", "-q", str(remote), str(root))
    git(root, "config", "user.name", f"Agent on {name}")
    git(root, "config", "user.email", f"{name}@example.com")
    (root / "tasks" / "active").mkdir(parents=True, exist_ok=True)
    (root / "tasks" / "completed").mkdir(exist_ok=True)
    (root / "events.yaml").write_text("events:\n")
    # No namespace: both clones derive the same one from their origin, as real clones do.
    (root / "swarm.yaml").write_text(f"backend: {url}\ntask_board: true\n"
                                     "worktrees:\n  remote: origin\n  base_branch: main\n"
                                     "timeouts:\n  heartbeat_seconds: 10\n")
    return root


def start_loop(root: Path, host_name: str, *args: str) -> subprocess.Popen:
    """``python *args`` in ``root`` as the host ``host_name``; stderr kept for run_until's report."""
    env = dict(os.environ, SWARM_ROOT=str(root), SWARM_HOST=host_name, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, *args], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def run_until(procs: list, done: Callable[[], bool], why: str, step: Callable[[], object] = lambda: None) -> None:
    """Let the loops run until ``done()``, failing with ``why`` after 180 s or when one dies; then stop them all.

    ``step`` runs before each look: a loop the test drives itself (a tmux bridge's round).
    """
    try:
        deadline = time.monotonic() + 180
        while True:
            step()
            if done():
                break
            assert time.monotonic() < deadline, why
            assert all(p.poll() is None for p in procs), [p.stderr.read().decode()[-2000:] for p in procs
                                                          if p.poll() is not None]
            time.sleep(0.1)  # the Markdown changes in another process: look again shortly
    finally:
        stop_processes(procs, grace=30)
        for proc in procs:
            proc.stderr.close()
