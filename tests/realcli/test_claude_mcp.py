"""The real Claude Code works a swarm task through the MCP server: claim, write the file, done, merged.

Claude Code runs headless (``-p``) in the loopback-only sandbox against the stub model, which
plays the tool calls a model would make; everything else (the CLI's MCP client, its permission
rules, the server, the lifecycle, the merge queue) is real.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agent_setup
import events
import merge_queue
import tasks
from realcli.sandbox import seed_home
from realcli.stub_model import Step, ToolUse

def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def workdir_from_claim(request) -> str:
    """The directory the claim reply told the model to work in (the last one in the conversation)."""
    found = re.findall(r"Working directory: (/\S+)", request.user_text)
    assert found, "the claim reply names a working directory"
    return found[-1]


@pytest.mark.parametrize("allowed_by", ["flag", "settings"])
def test_claude_claims_does_and_finishes_a_task_through_mcp(model, sandbox, claude_cli, tmp_path, allowed_by):
    """``allowed_by``: ``--allowedTools mcp__swarm`` (as a driver passes it), or the rule that
    ``swarm.py setup claude`` writes to .claude/settings.json (as an interactive user relies on)."""
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "Test")
    (root / "README.md").write_text("a project\n")
    git(root, "add", "README.md")
    git(root, "commit", "-qm", "base")
    tasks.new_task_file("T-1", "Write the greeting", root, objective="Create greeting.txt saying hello.",
                        files=["greeting.txt"])
    assert agent_setup.main(["claude", "--worktree", "--root", str(root)]) == 0
    config = root / ".mcp.json"
    git(root, "add", ".mcp.json", ".claude/settings.json", "CLAUDE.md")  # a project commits its setup
    git(root, "commit", "-qm", "swarm setup")

    model.play([  # Claude Code 2.1.3xx defers MCP tools: a model loads their schemas with ToolSearch first
        Step(tools=[ToolUse("ToolSearch", {"query": "select:mcp__swarm__claim,mcp__swarm__done"})]),
        Step(tools=[ToolUse("mcp__swarm__claim", {})]),
        Step(tools=[ToolUse("Write", lambda req: {"file_path": workdir_from_claim(req) + "/greeting.txt",
                                                  "content": "hello\n"})]),
        Step(tools=[ToolUse("mcp__swarm__done", {"summary": "wrote the greeting"})]),
        Step(text="The task is done."),
    ])
    allow = ["mcp__swarm", "Write"] if allowed_by == "flag" else ["Write"]
    if allowed_by == "settings":  # Claude Code applies a project's settings only once its folder is trusted
        seed_home(sandbox.home, trusted=[root])
    proc = sandbox.run(["claude", "-p", "work on the next task in the swarm", "--mcp-config", str(config),
                        "--strict-mcp-config", "--allowedTools", *allow], cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    turns = model.turns
    offered = json.dumps(turns[0].body)  # listed as deferred tools in a system message, or as tools
    assert "mcp__swarm__claim" in offered and "mcp__swarm__done" in offered
    assert "Work one task at a time: claim it" in offered, "the server's instructions reach the model"
    assert "You hold task T-1: Write the greeting" in turns[2].user_text, turns[2].user_text[-2000:]
    assert "T-1 is completed and merged branch swarm/T-1/claude-" in turns[4].user_text, turns[4].user_text[-2000:]

    assert git(root, "show", "main:greeting.txt") == "hello\n"
    done = events.read_events(types=["completed"], task_id="T-1", root=root)
    assert [(e["agent"], e["via"], e["merge"]) for e in done] == [("claude", "mcp", "merged")]
    assert [e.status for e in merge_queue.read_queue(root)] == ["merged"]
    assert tasks.find_task("T-1", root).path.parent.name == "completed"
    deadline = time.monotonic() + 15  # Claude Code signals its server at exit and does not wait for it
    while not events.read_events(types=["stopped"], agent="claude", root=root):
        assert time.monotonic() < deadline, "the server closed its session when Claude Code exited"
        time.sleep(0.05)
    released = events.read_events(types=["released"], root=root)
    assert released == [], "nothing was left to give back"

