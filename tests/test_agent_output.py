"""agent_output: markers, errors and refusals read from each CLI's output format (lines as the
pinned CLIs print them, trimmed to the fields read), and how they decide a run's outcome."""

from __future__ import annotations

import json

import pytest

from swarmfile import agent_output
from swarmfile import agents
from swarmfile.errors import ValidationError
from swarmfile.agents import Outcome


def jsonl(*events) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def assistant(*blocks, **extra):
    return {"type": "assistant", "message": {"role": "assistant", "content": list(blocks)}, **extra}


def text(value):
    return {"type": "text", "text": value}


CLAUDE_DONE_EARLY = jsonl(
    {"type": "system", "subtype": "init", "cwd": "/w"},
    assistant(text("[DONE] TASK-1")),
    assistant({"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "/w/a", "content": "x"}}),
    assistant(text("All written.")),
    {"type": "result", "subtype": "success", "is_error": False, "result": "All written.", "permission_denials": []},
)
CLAUDE_401 = jsonl(
    assistant(text("Invalid API key · Fix external API key"), is_api_error_message=True),
    {"type": "result", "is_error": True, "result": "Invalid API key · Fix external API key",
     "api_error_status": 401, "permission_denials": []},
)
CLAUDE_REFUSED = jsonl(
    assistant({"type": "tool_use", "id": "t1", "name": "Write", "input": {}}),
    {"type": "system", "subtype": "permission_denied", "tool_name": "Write", "tool_use_id": "t1",
     "message": "Claude requested permissions to write to /x, but you haven't granted it yet."},
    assistant(text("I could not write.")),
    {"type": "result", "is_error": False, "result": "I could not write.",
     "permission_denials": [{"tool_name": "Write", "tool_use_id": "t1"}]},
)
CODEX_OK = jsonl(
    {"type": "thread.started", "thread_id": "x"},
    {"type": "item.completed", "item": {"type": "agent_message", "text": "[DONE] TASK-1"}},
    {"type": "item.completed", "item": {"type": "command_execution", "status": "completed"}},
    {"type": "turn.completed", "usage": {}},
)
CODEX_401 = "WARNING: proceeding\n" + jsonl(
    {"type": "error", "message": "Reconnecting... 1/1 (unexpected status 401 Unauthorized: invalid x-api-key)"},
    {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: invalid x-api-key"}},
)
CODEX_PATCH_REJECTED = jsonl({"type": "item.completed", "item": {"type": "agent_message", "text": "hm"}}) + (
    "2026-11-30T02:51:19Z ERROR codex_core::tools::router: error=patch rejected: writing outside of the "
    "project; rejected by user approval settings\n")


GEMINI_REFUSED = jsonl(
    {"type": "init", "model": "auto"},
    {"type": "message", "role": "user", "content": "do it"},
    {"type": "message", "role": "assistant", "content": "[ACK] TASK-1", "delta": True},
    {"type": "message", "role": "assistant", "content": " on it", "delta": True},
    {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t1", "parameters": {"command": "x"}},
    {"type": "tool_result", "tool_id": "t1", "status": "error",
     "error": {"type": "tool_not_registered", "message": 'Tool "run_shell_command" not found.'}},
    {"type": "message", "role": "assistant", "content": "[DONE] TASK-1", "delta": True},
    {"type": "result", "status": "success"},
)
GEMINI_529 = jsonl(
    {"type": "result", "status": "error",
     "error": {"type": "unknown", "message": '[API Error: {"error":{"code":529,"message":"Overloaded"}}]'}},
)


@pytest.mark.parametrize("kind, raw, said, error, refused", [
    ("claude-stream-json", CLAUDE_DONE_EARLY, "[DONE] TASK-1\nAll written.", None, []),
    ("claude-stream-json", CLAUDE_401, "", "API error 401: Invalid API key · Fix external API key", []),
    ("claude-stream-json", CLAUDE_REFUSED, "I could not write.", None,
     ["Claude requested permissions to write to /x, but you haven't granted it yet."]),
    ("codex-json", CODEX_OK, "[DONE] TASK-1", None, []),
    ("codex-json", CODEX_401, "WARNING: proceeding", "unexpected status 401 Unauthorized: invalid x-api-key", []),
    ("codex-json", CODEX_PATCH_REJECTED, "hm", None,
     ["patch rejected: writing outside of the project; rejected by user approval settings"]),
    ("text", "[DONE] TASK-1\n", "[DONE] TASK-1\n", None, []),
    ("gemini-stream-json", GEMINI_REFUSED, "[ACK] TASK-1 on it\n[DONE] TASK-1", None,
     ['Tool "run_shell_command" not found.']),
    ("gemini-stream-json", GEMINI_529, "", '[API Error: {"error":{"code":529,"message":"Overloaded"}}]', []),
])
def test_each_reader_finds_what_was_said_the_error_and_refusals(kind, raw, said, error, refused):
    got = agent_output.read_output(kind, raw)
    assert (got.text, got.error, got.refused) == (said, error, refused)


@pytest.mark.parametrize("kind, raw, exit_code, outcome, reason", [
    ("claude-stream-json", CLAUDE_DONE_EARLY, 0, Outcome.DONE, ""),
    ("claude-stream-json", CLAUDE_401, 1, Outcome.FAILED, "API error 401: Invalid API key · Fix external API key"),
    ("claude-stream-json", CLAUDE_401, 0, Outcome.FAILED, "API error 401: Invalid API key · Fix external API key"),
    ("claude-stream-json", CLAUDE_REFUSED, 0, Outcome.FAILED,
     "1 tool call(s) refused and no [DONE]: Claude requested permissions to write to /x, but you haven't granted "
     "it yet. (see the preset's permission mode)"),
    ("claude-stream-json", CLAUDE_REFUSED.replace("I could not write.", "[DONE] TASK-1"), 0, Outcome.DONE, ""),
    ("codex-json", CODEX_401, 1, Outcome.FAILED, "unexpected status 401 Unauthorized: invalid x-api-key"),
    ("codex-json", CODEX_PATCH_REJECTED, 0, Outcome.FAILED,
     "1 tool call(s) refused and no [DONE]: patch rejected: writing outside of the project; rejected by user "
     "approval settings (see the preset's permission mode)"),
])
def test_errors_and_refusals_decide_the_outcome(kind, raw, exit_code, outcome, reason):
    said = agent_output.read_output(kind, raw)
    assert agents._decide(exit_code, agents.parse_markers(said.text), said) == (outcome, reason)


def test_a_marker_inside_a_json_string_is_not_a_marker_of_the_raw_log():
    raw = jsonl(assistant(text("I will print [DONE] TASK-1 when done")))
    assert agents.parse_markers(agent_output.read_output("claude-stream-json", raw).text) == []


def test_presets_name_known_readers_and_swarm_yaml_may_too():
    assert all(p.output in agent_output.READERS for p in agents.PRESETS.values())
    command = agents.resolve_command(preset="mine", presets={
        "mine": {"command": "claude -p {prompt} --output-format stream-json --verbose",
                 "output": "claude-stream-json", "env": {"CLAUDE_CODE_MAX_RETRIES": 2}}})
    assert command.output == "claude-stream-json" and command.env == (("CLAUDE_CODE_MAX_RETRIES", "2"),)
    assert agents.resolve_command(command="claude -p {prompt}").output == "text"
    with pytest.raises(ValidationError, match="malformed"):
        agents.resolve_command(preset="bad", presets={"bad": {"command": "x", "output": "xml"}})


def test_the_prompt_carries_the_task_and_names_no_path_outside_the_workdir(tmp_path):
    task = tmp_path / "root" / "tasks" / "active" / "T-1.md"
    inside = agents.build_prompt("T-1", str(task), "e1", "# T-1: Do it\nObjective here", str(tmp_path / "root"))
    outside = agents.build_prompt("T-1", str(task), "e1", "# T-1: Do it\nObjective here", str(tmp_path / "wt"))
    assert str(task) in inside and "Objective here" in inside
    assert str(task) not in outside and "Objective here" in outside and "T-1.md" in outside
