"""agents: presets and custom commands run as real processes, markers and exit codes decide."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from swarmfile import agents
from swarmfile.agents import Outcome
from swarmfile.errors import ValidationError
from swarmfile.liveness import pid_alive

FAKE = Path(__file__).parent / "fake_agents" / "fake_cli.py"


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """A bin dir on PATH where every preset's CLI is the fake agent."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in agents.PRESETS:
        # A symlink named after the CLI: the fake reads its name from argv[0].
        (bin_dir / name).symlink_to(FAKE)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    return record


def _run(tmp_path, command, timeout=30, **env):
    task_file = tmp_path / "tasks" / "active" / "TASK-7.md"
    task_file.parent.mkdir(parents=True, exist_ok=True)
    task_file.write_text("# TASK-7: Something\n")
    # The test's own SWARM_* settings (CI sets SWARM_REQUIRE_REAL_CLIS) are not the agent's business.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    environ.update(env)
    return agents.run_agent(command, task_id="TASK-7", task_file=task_file, agent_id="executor-1",
                            root=tmp_path, log_path=tmp_path / "runs" / "TASK-7" / "1.log",
                            timeout=timeout, env=environ)


@pytest.mark.parametrize("preset", sorted(agents.PRESETS))
def test_each_preset_runs_its_cli_with_task_and_env(tmp_path, fake_path, preset):
    result = _run(tmp_path, agents.resolve_command(preset=preset))
    assert result.outcome is Outcome.DONE, result.output_tail
    assert result.exit_code == 0
    seen = json.loads(fake_path.read_text().splitlines()[-1])
    assert seen["cli"] == preset
    assert seen["prompt_names_task_file"]
    assert seen["env"] == {
        "SWARM_ROOT": str(tmp_path), "SWARM_AGENT_ID": "executor-1", "SWARM_TASK_ID": "TASK-7",
        "SWARM_TASK_FILE": str(tmp_path / "tasks" / "active" / "TASK-7.md"),
    }
    assert (tmp_path / "runs" / "TASK-7" / "1.log").read_text().startswith(f"{preset} working on TASK-7")


@pytest.mark.parametrize(
    "behaviour, outcome, reason",
    [
        ("done", Outcome.DONE, ""),
        ("silent", Outcome.DONE, ""),
        ("error", Outcome.FAILED, "tests do not pass"),
        ("exit3", Outcome.FAILED, "exit code 3"),
        ("wait", Outcome.WAITING, "waiting for the database"),
        ("help", Outcome.HELP, "which API version?"),
    ],
)
def test_markers_and_exit_code_decide(tmp_path, fake_path, behaviour, outcome, reason):
    result = _run(tmp_path, agents.resolve_command(preset="codex"), FAKE_BEHAVIOUR=behaviour)
    assert result.outcome is outcome
    assert result.reason == reason


def test_custom_command_keeps_paths_with_spaces_whole(tmp_path, fake_path):
    command = agents.resolve_command(command=f"{sys.executable} {FAKE} --task '{{task_file}}' {{task_id}}")
    task_dir = tmp_path / "dir with space"
    task_dir.mkdir()
    result = agents.run_agent(command, task_id="T-1", task_file=task_dir / "T 1.md", agent_id="a",
                              root=tmp_path, log_path=tmp_path / "log", timeout=30)
    assert result.ok
    seen = json.loads(fake_path.read_text().splitlines()[-1])
    assert seen["args"] == ["--task", str(task_dir / "T 1.md"), "T-1"]


def test_timeout_kills_the_whole_process_group(tmp_path, fake_path):
    pidfile = tmp_path / "pids"
    result = _run(tmp_path, agents.resolve_command(preset="gemini"), timeout=1,
                  FAKE_BEHAVIOUR="hang", FAKE_PIDFILE=str(pidfile))
    assert result.outcome is Outcome.TIMEOUT
    assert "timed out after 1s" in result.reason
    parent, child = (int(x) for x in pidfile.read_text().split())
    assert not pid_alive(parent)
    deadline = time.monotonic() + 10
    while pid_alive(child):  # a signal is delivered when the child is next scheduled
        assert time.monotonic() < deadline, "the agent's own children are killed with it"
        time.sleep(0.01)


def test_missing_cli_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ValidationError, match="is the agent CLI installed"):
        _run(tmp_path, agents.resolve_command(preset="claude"))


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "exactly one"), ({"preset": "x", "command": "y"}, "exactly one"),
     ({"preset": "nope"}, "unknown agent preset"), ({"command": "a 'b"}, "does not parse"),
     ({"command": "  "}, "empty")],
)
def test_bad_command_specs(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        agents.resolve_command(**kwargs)


def test_configured_presets_override_builtins():
    command = agents.resolve_command(preset="ollama", presets={"ollama": "ollama run qwen2.5-coder {prompt}"})
    assert command.template == ("ollama", "run", "qwen2.5-coder", "{prompt}")


def test_markers_only_count_at_line_start():
    text = "the prompt said print [DONE] TASK-1 when done\n  [WAIT] TASK-1 db down\n[DONE] TASK-1\n"
    assert [(m.kind, m.task_id, m.text) for m in agents.parse_markers(text)] == [
        ("WAIT", "TASK-1", "db down"), ("DONE", "TASK-1", "")]
