"""swarm.py setup claude|codex|gemini: the MCP entry, the permission rule, the instructions section."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from swarmfile import agent_setup
from conftest import snapshot

LIB = Path(__file__).resolve().parent.parent / "lib"

# What a person already wrote, per CLI: each file must come back exactly as it was after --remove.
PERSON = {
    "claude": {
        ".mcp.json": json.dumps({"mcpServers": {"docs": {"command": "docs-server"}}}, indent=2) + "\n",
        ".claude/settings.json": json.dumps({"permissions": {"allow": ["Bash(ls)"]}, "model": "opus"}, indent=2) + "\n",
        "CLAUDE.md": "# Project rules\n\nUse tabs.\n",
    },
    "codex": {
        ".codex/config.toml": 'model = "o5"\n\n[mcp_servers.docs]\ncommand = "docs-server"\n',
        "AGENTS.md": "# Agents\n\nRun the tests before committing.\n",
    },
    "gemini": {
        ".gemini/settings.json": json.dumps({"theme": "Dracula", "ui": {"hideTips": True}}, indent=2) + "\n",
        "GEMINI.md": "Be brief.\n",
    },
}


def setup(root, *args):
    return agent_setup.main([*args, "--root", str(root)])


@pytest.fixture
def tmp_path(tmp_path):
    """An initialised workspace (setup refuses any other directory), holding only its event log."""
    (tmp_path / "events.yaml").write_text("events:\n")
    return tmp_path


def write(root, files):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def server_of(root, cli):
    if cli == "codex":
        return tomllib.loads((root / ".codex/config.toml").read_text())["mcp_servers"]["swarm"]
    name = ".mcp.json" if cli == "claude" else ".gemini/settings.json"
    return json.loads((root / name).read_text())["mcpServers"]["swarm"]


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_setup_merges_with_what_a_person_wrote_is_idempotent_and_removes_cleanly(tmp_path, cli, capsys):
    write(tmp_path, PERSON[cli])
    before = snapshot(tmp_path)
    assert setup(tmp_path, cli) == 0
    shown = capsys.readouterr().out
    assert "+## Working in the swarm" in shown and f"{cli}: changed" in shown
    server = server_of(tmp_path, cli)
    assert server["args"][:5] == [str(LIB / "mcp_server.py"), "--agent-id", cli, "--root", str(tmp_path)]
    for rel, text in PERSON[cli].items():  # the person's words and keys are all still there
        now = (tmp_path / rel).read_text()
        if rel.endswith(".json"):
            kept = json.loads(text)
            merged = json.loads(now)
            assert all(merged[k] == v or k in ("mcpServers", "permissions") for k, v in kept.items())
        else:
            assert now.startswith(text)
    if cli == "claude":
        settings = json.loads((tmp_path / ".claude/settings.json").read_text())
        assert settings["permissions"]["allow"] == ["Bash(ls)", "mcp__swarm"]
        assert json.loads((tmp_path / ".mcp.json").read_text())["mcpServers"]["docs"] == {"command": "docs-server"}
    if cli == "gemini":
        assert server["trust"] is True
    written = snapshot(tmp_path)

    assert setup(tmp_path, cli) == 0  # again: nothing to do
    assert "already up to date" in capsys.readouterr().out
    assert snapshot(tmp_path) == written

    assert setup(tmp_path, cli, "--remove") == 0
    assert snapshot(tmp_path) == before, "removed to the byte: only the swarm's parts were ever ours"
    assert setup(tmp_path, cli, "--remove") == 0
    assert "already up to date" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_setup_in_an_empty_project_creates_its_files_and_remove_takes_them_away(tmp_path, cli):
    assert setup(tmp_path, cli, "--agent-id", "worker-7", "--worktree") == 0
    args = server_of(tmp_path, cli)["args"]
    assert args[1:3] == ["--agent-id", "worker-7"] and args[-1] == "--worktree"
    assert setup(tmp_path, cli, "--remove") == 0
    assert snapshot(tmp_path) == {"events.yaml": b"events:\n"}
    assert [p.name for p in tmp_path.iterdir()] == ["events.yaml"], "the directories setup made are gone too"


def test_dry_run_shows_the_diff_and_writes_nothing(tmp_path, capsys):
    write(tmp_path, PERSON["codex"])
    before = snapshot(tmp_path)
    assert setup(tmp_path, "codex", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "+[mcp_servers.swarm]" in out and "codex: would change .codex/config.toml, AGENTS.md" in out
    assert snapshot(tmp_path) == before


def test_the_marked_section_is_replaced_in_place(tmp_path):
    write(tmp_path, PERSON["codex"])
    assert setup(tmp_path, "codex") == 0
    config = tmp_path / ".codex/config.toml"
    config.write_text(config.read_text() + '\n[profiles.fast]\nmodel = "o5-mini"\n')  # a person adds below it
    assert setup(tmp_path, "codex", "--worktree") == 0
    text = config.read_text()
    assert text.startswith(PERSON["codex"][".codex/config.toml"]) and text.endswith('[profiles.fast]\nmodel = "o5-mini"\n')
    assert tomllib.loads(text)["mcp_servers"]["swarm"]["args"][-1] == "--worktree"
    assert tomllib.loads(text)["profiles"] == {"fast": {"model": "o5-mini"}}


BAD = [
    ("claude", ".mcp.json", '{"mcpServers": {\n  "docs": \n}\n', ".mcp.json:3: does not parse as JSON"),
    ("claude", ".mcp.json", '{"mcpServers": []}\n', "'mcpServers' must be a JSON object"),
    ("claude", ".claude/settings.json", '{"permissions": {"allow": "all"}}\n', "'permissions.allow' must be a JSON list"),
    ("gemini", ".gemini/settings.json", '["not", "an", "object"]\n', "must hold a JSON object, not list"),
    ("codex", ".codex/config.toml", 'model = "o5"\n[mcp_servers\n', "config.toml:2: does not parse as TOML"),
    ("codex", ".codex/config.toml", '[mcp_servers.swarm]\ncommand = "mine"\n',
     "[mcp_servers.swarm] is already defined outside the swarm section"),
    ("claude", "CLAUDE.md", f"# Rules\n{agent_setup._MD_BEGIN}\nhalf a section\n", "CLAUDE.md:2: the swarm section's marker lines"),
]


@pytest.mark.parametrize("cli, rel, text, expected", BAD)
def test_a_file_that_does_not_parse_is_refused_in_one_line_and_left_alone(tmp_path, capsys, cli, rel, text, expected):
    write(tmp_path, {rel: text})
    before = snapshot(tmp_path)
    assert setup(tmp_path, cli) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "it was not changed" in err
    assert snapshot(tmp_path) == before, "nothing of any CLI's files was written"


def test_a_root_that_does_not_exist_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        setup(tmp_path / "nowhere", "claude")
    assert refused.value.code == 2 and "workspace root does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_check_starts_the_configured_server_through_swarm_py(workspace):
    ok, message = agent_setup.check("gemini", root=workspace)
    assert not ok and "no 'swarm' MCP server is configured for gemini" in message
    assert setup(workspace, "gemini") == 0
    answered = subprocess.run([sys.executable, str(LIB / "swarm.py"), "setup", "gemini", "--check", "--root",
                               str(workspace)], capture_output=True, text=True, timeout=60)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert "the swarm server for gemini answers: 12 tools" in answered.stdout
    (workspace / "swarm.yaml").write_text("timeouts: [not, a, mapping]\n")
    ok, message = agent_setup.check("gemini", root=workspace)
    assert not ok and "starts but cannot work here" in message and "swarm.yaml" in message, message
