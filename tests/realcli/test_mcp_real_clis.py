"""Real agent CLIs work a swarm task through the MCP server: claim, write the file, done, merged.

Each CLI runs headless in the loopback-only sandbox against the stub model, which plays the
tool calls a model would make; the workspace is configured by ``swarm.py setup`` as a person
would do it. Everything else (the CLI's MCP client and permission rules, the server, the
lifecycle, the merge queue) is real.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

import agent_discovery
from swarmfile import agent_setup
import claims
import events
import merge_queue
from swarmfile import task_store
from swarmfile.liveness import pid_alive
from realcli.sandbox import seed_home
from realcli.stub_model import Step, ToolUse

PROMPT = "work on the next task in the swarm"


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True).stdout


def project(tmp_path, cli):
    """A git repository with one task, set up for ``cli`` (each task in a worktree), setup committed."""
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    (root / "tasks" / "completed").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "Test")
    (root / "README.md").write_text("a project\n")
    git(root, "add", "README.md")
    git(root, "commit", "-qm", "base")
    task_store.new_task_file("T-1", "Write the greeting", root=root, objective="Create greeting.txt saying hello.",
                        files=["greeting.txt"])
    (root / "events.yaml").write_text("events:\n")  # an initialised workspace (not committed: runtime state)
    assert agent_setup.main([cli, "--worktree", "--root", str(root)]) == 0
    git(root, "add", "-A", ".")
    git(root, "reset", "-q", "tasks", "events.yaml")
    git(root, "commit", "-qm", "swarm setup")  # a project commits its setup
    return root


def workdir_from_claim(request) -> str:
    """The directory the last claim reply in the conversation told the model to work in."""
    found = re.findall(r'Working directory: (/[^\s\\"]+)', json.dumps(request.body))
    assert found, "the claim reply names a working directory"
    return found[-1]


def assert_finished_through_mcp(root, agent, graceful=True):
    assert git(root, "show", "main:greeting.txt") == "hello\n"
    done = events.read_events(types=["completed"], task_id="T-1", root=root)
    assert [(e["agent"], e["via"], e["merge"]) for e in done] == [(agent, "mcp", "merged")]
    assert [e.status for e in merge_queue.read_queue(root=root)] == ["merged"]
    assert task_store.find_task("T-1", root=root).path.parent.name == "completed"
    server = agent_discovery.get_agent_info(agent, root=root)
    deadline = time.monotonic() + 15  # a CLI signals its server at exit and does not wait for it
    while not events.read_events(types=["stopped"], agent=agent, root=root):
        if not graceful and not pid_alive(server.pid):
            break
        assert time.monotonic() < deadline, "the server closed its session when the CLI exited"
        time.sleep(0.05)
    assert events.read_events(types=["released"], root=root) == [], "nothing was left to give back"
    assert claims.list_leases(root=root, held_only=True) == []


@pytest.mark.parametrize("allowed_by", ["flag", "settings"])
def test_claude_claims_does_and_finishes_a_task_through_mcp(model, sandbox, claude_cli, tmp_path, allowed_by):
    """``allowed_by``: ``--allowedTools mcp__swarm`` (as a driver passes it), or the rule that
    ``swarm.py setup claude`` writes to .claude/settings.json (as an interactive user relies on)."""
    root = project(tmp_path, "claude")
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
    proc = sandbox.run(["claude", "-p", PROMPT, "--mcp-config", str(root / ".mcp.json"), "--strict-mcp-config",
                        "--allowedTools", *allow], cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    turns = model.turns
    offered = json.dumps(turns[0].body)  # listed as deferred tools in a system message, or as tools
    assert "mcp__swarm__claim" in offered and "mcp__swarm__done" in offered
    assert "Work one task at a time: claim it" in offered, "the server's instructions reach the model"
    assert "Working in the swarm" in offered, "the CLAUDE.md section setup wrote reaches the model"
    assert "You hold task T-1: Write the greeting" in turns[2].user_text, turns[2].user_text[-2000:]
    assert "T-1 is completed and merged branch swarm/T-1/claude-" in turns[4].user_text, turns[4].user_text[-2000:]
    assert_finished_through_mcp(root, "claude")


def test_gemini_claims_does_and_finishes_a_task_through_mcp(model, sandbox, gemini_cli, tmp_path):
    root = project(tmp_path, "gemini")
    # Measured with Gemini CLI 0.61: --skip-trust is not enough, a project's MCP servers start only
    # in a folder trusted in ~/.gemini/trustedFolders.json (what the trust dialog writes).
    (sandbox.home / ".gemini" / "trustedFolders.json").write_text(json.dumps({str(root): "TRUST_FOLDER"}))
    model.play([
        Step(tools=[ToolUse("mcp_swarm_claim", {})]),
        Step(tools=[ToolUse("write_file", lambda req: {"file_path": workdir_from_claim(req) + "/greeting.txt",
                                                       "content": "hello\n"})]),
        Step(tools=[ToolUse("mcp_swarm_done", {"summary": "wrote the greeting"})]),
        Step(text="The task is done."),
    ])
    proc = sandbox.run(["gemini", "--approval-mode", "auto_edit", "-p", PROMPT], cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    offered = json.dumps(model.turns[0].body)
    assert "mcp_swarm_claim" in offered and "Working in the swarm" in offered
    assert "T-1 is completed and merged" in json.dumps(model.turns[3].body)
    assert_finished_through_mcp(root, "gemini")


def codex_exec(code) -> ToolUse:
    """One call of Codex's freeform ``exec`` tool: JavaScript in which every tool, MCP ones too, is ``tools.<name>``."""
    return ToolUse("exec", code)


def test_codex_claims_does_and_finishes_a_task_through_mcp(model, sandbox, codex_cli, tmp_path):
    root = project(tmp_path, "codex")
    config = sandbox.home / ".codex" / "config.toml"  # Codex reads a project's .codex/config.toml once it is trusted
    config.write_text(config.read_text().replace(
        "[model_providers.stub]", f'[projects."{root}"]\ntrust_level = "trusted"\n[model_providers.stub]'))
    # Codex 0.171 starts its first turn before its MCP servers are connected; a model sees the
    # swarm's tools from the next turn on, so the script's first step waits for the server.
    wait = "until grep -q '^  codex:' heartbeat.yaml 2>/dev/null; do sleep 0.1; done; sleep 1; echo ready"
    write = lambda req: "printf 'hello\\n' > " + workdir_from_claim(req) + "/greeting.txt"  # noqa: E731
    model.play([
        Step(tools=[codex_exec(f"const r = await tools.exec_command({{cmd: {json.dumps(wait)}}}); text(r.output);")]),
        Step(tools=[codex_exec("const r = await tools.mcp__swarm__claim({}); text(JSON.stringify(r));")]),
        Step(tools=[codex_exec(lambda req: f"const r = await tools.exec_command({{cmd: {json.dumps(write(req))}}}); "
                                           "text(r.output);")]),
        Step(tools=[codex_exec("const r = await tools.mcp__swarm__done({summary: 'wrote the greeting'}); "
                               "text(JSON.stringify(r));")]),
        Step(text="The task is done."),
    ])
    proc = sandbox.run(["codex", "exec", "--json", "--sandbox", "workspace-write", "--skip-git-repo-check", PROMPT],
                       cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [json.loads(line)["item"] for line in proc.stdout.splitlines()
             if '"item.completed"' in line and '"mcp_tool_call"' in line]
    assert [(c["server"], c["tool"], c["status"]) for c in calls] == [("swarm", "claim", "completed"),
                                                                       ("swarm", "done", "completed")]
    assert "Working in the swarm" in json.dumps(model.turns[0].body), "the AGENTS.md section reaches the model"
    # Measured: Codex sends the server SIGTERM at exit and kills it soon after, so under load
    # its close may not finish; then its pid is dead and the usual rules free what it held.
    assert_finished_through_mcp(root, "codex", graceful=False)
