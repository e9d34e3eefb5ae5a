"""The real Codex CLI under executor.py --agent codex, against the Responses API stub, in the sandbox.

Codex 0.17x offers the model one freeform tool, ``exec`` (JavaScript that calls nested tools
such as ``tools.exec_command`` and ``tools.apply_patch``): the stub's tool calls are that.
"""

from __future__ import annotations

import json

from swarmfile import task_store
from realcli.helpers import OBJECTIVE, kinds, make_repo, run_executor, task_events
from realcli.stub_model import Fail, Step, ToolUse


def shell(cmd: str) -> ToolUse:
    return ToolUse("exec", f"const r = await tools.exec_command({{cmd: {json.dumps(cmd)}}}); text(r.output);")


def patch(body: str) -> ToolUse:
    source = "*** Begin Patch\n" + body + "*** End Patch\n"
    return ToolUse("exec", f"const r = await tools.apply_patch({json.dumps(source)}); text(JSON.stringify(r));")


def test_worktree_run_reads_edits_merges_and_completes_once(model, sandbox, codex_cli, workspace):
    task_file = make_repo(workspace)
    model.play([
        Step(tools=[shell("cat notes.txt")]),
        Step(text="Editing the notes.", tools=[patch("*** Update File: notes.txt\n@@\n-base\n+changed\n")]),
        Step(text="[DONE] TASK-1"),
    ])
    proc, _ = run_executor(sandbox, workspace, "codex", "--worktree")
    assert proc.returncode == 0, proc.stderr
    first = model.turns[0]
    assert "/.swarm/worktrees/" in first.workdir, "the CLI ran in the worktree"
    assert OBJECTIVE in first.user_text and str(task_file) not in first.user_text
    assert "base" in model.turns[1].user_text, "the command's output came back"
    assert (workspace / "notes.txt").read_text() == "changed\n"
    assert kinds(workspace) == ["started", "merged", "completed"]
    assert task_events(workspace)[-1]["files_modified"] == ["notes.txt"]
    assert task_store.find_task("TASK-1", root=workspace).path.parent.name == "completed"


def test_in_place_run_counts_a_marker_from_an_earlier_turn(model, sandbox, codex_cli, workspace):
    make_repo(workspace)
    model.play([
        Step(text="[DONE] TASK-1", tools=[patch("*** Add File: hello.txt\n+hello\n")]),
        Step(text="Written."),
    ])
    proc, _ = run_executor(sandbox, workspace, "codex")
    assert proc.returncode == 0, proc.stderr
    assert model.turns[0].workdir == str(workspace)
    assert (workspace / "hello.txt").read_text() == "hello\n"
    assert kinds(workspace) == ["started", "completed"]
    assert task_events(workspace)[-1]["files_modified"] == ["hello.txt"]


def test_an_api_error_fails_the_task_within_seconds_with_the_cli_text(model, sandbox, codex_cli, workspace):
    make_repo(workspace)
    model.play([Fail(401)])
    proc, took = run_executor(sandbox, workspace, "codex")
    assert proc.returncode == 0, proc.stderr
    assert took < 30, f"an API error must fail fast, took {took:.1f}s"
    assert kinds(workspace) == ["started", "failed", "blocked"]
    failed = task_events(workspace)[1]
    assert "401 Unauthorized: invalid x-api-key" in failed["error"]


def test_a_refused_patch_and_no_done_is_not_done(model, sandbox, codex_cli, workspace):
    make_repo(workspace)
    outside = workspace.parent / "outside.txt"  # workspace-write: nothing outside the working directory
    model.play([Step(tools=[patch(f"*** Add File: {outside}\n+x\n")]), Step(text="It did not work.")])
    proc, _ = run_executor(sandbox, workspace, "codex")
    assert proc.returncode == 0, proc.stderr
    assert not outside.exists()
    assert kinds(workspace) == ["started", "failed", "blocked"]
    error = task_events(workspace)[1]["error"]
    assert "refused and no [DONE]" in error and "writing outside of the project" in error, error
