"""The real Claude Code under executor.py --agent claude, against the stub model, in the sandbox."""

from __future__ import annotations

import pytest

from swarmfile import task_store
from realcli.helpers import OBJECTIVE, git, kinds, make_repo, run_executor, run_log, task_events
from realcli.stub_model import Fail, Hang, Step, ToolUse


def workdir_file(name: str):
    """A tool input naming ``name`` in the working directory the CLI told the model about."""
    return lambda request: {"file_path": f"{request.workdir}/{name}"}


def test_worktree_run_reads_edits_merges_and_completes_once(model, sandbox, claude_cli, workspace):
    task_file = make_repo(workspace)
    model.play([
        Step(tools=[ToolUse("Read", workdir_file("notes.txt"))]),
        Step(text="Editing the notes.", tools=[ToolUse("Edit", lambda r: {
            "file_path": f"{r.workdir}/notes.txt", "old_string": "base", "new_string": "changed"})]),
        Step(text="[DONE] TASK-1"),
    ])
    proc, _ = run_executor(sandbox, workspace, "claude", "--worktree")
    assert proc.returncode == 0, proc.stderr
    first = model.turns[0]
    assert first.workdir != str(workspace) and "/.swarm/worktrees/" in first.workdir, "the CLI ran in the worktree"
    assert OBJECTIVE in first.user_text, "the task's text is in the prompt"
    assert str(task_file) not in first.user_text, "no path outside the worktree is handed to the agent"
    assert "base" in model.turns[1].user_text, "the Read tool result came back"
    assert (workspace / "notes.txt").read_text() == "changed\n", "the branch was merged into the root checkout"
    assert kinds(workspace) == ["started", "merged", "completed"]
    done = task_events(workspace)[-1]
    assert done["merge"] == "merged" and done["files_modified"] == ["notes.txt"]
    assert task_store.find_task("TASK-1", root=workspace).path.parent.name == "completed"
    assert '"type":"result"' in run_log(workspace), "the raw stream-json is kept in the run log"


def test_in_place_run_counts_a_marker_from_an_earlier_turn(model, sandbox, claude_cli, workspace):
    task_file = make_repo(workspace)
    model.play([
        Step(tools=[ToolUse("Read", {"file_path": str(task_file)})]),
        Step(text="[DONE] TASK-1", tools=[ToolUse("Write", lambda r: {
            "file_path": f"{r.workdir}/hello.txt", "content": "hello\n"})]),
        Step(text="The file is written; nothing else to do."),
    ])
    proc, _ = run_executor(sandbox, workspace, "claude")
    assert proc.returncode == 0, proc.stderr
    assert model.turns[0].workdir == str(workspace)
    assert OBJECTIVE in model.turns[1].user_text, "the agent read its task file"
    assert (workspace / "hello.txt").read_text() == "hello\n"
    assert kinds(workspace) == ["started", "completed"]
    assert task_events(workspace)[-1]["files_modified"] == ["hello.txt"]
    log = run_log(workspace)
    summary = log[log.index("--- swarm: what the agent said"):]
    assert summary.splitlines()[1:] == ["[DONE] TASK-1", "The file is written; nothing else to do."], \
        "the log ends with what the agent said, readable"


@pytest.mark.parametrize("status, says", [(400, "stub: the request was refused as invalid"),
                                          (401, "Invalid API key"), (529, "Overloaded")])
def test_an_api_error_fails_the_task_within_seconds_with_the_cli_text(model, sandbox, claude_cli, workspace,
                                                                      status, says):
    make_repo(workspace)
    model.play([Fail(status)])
    proc, took = run_executor(sandbox, workspace, "claude")
    assert proc.returncode == 0, proc.stderr
    assert took < 30, f"an API error must fail fast, took {took:.1f}s"
    assert kinds(workspace) == ["started", "failed", "blocked"]
    failed = task_events(workspace)[1]
    assert says in failed["error"] and str(status) in failed["error"]
    assert failed["exit_code"] == 1
    assert says in failed["output_tail"], "the event's tail is what the CLI said, not raw JSON"


def test_refused_tools_and_no_done_is_not_done(model, sandbox, claude_cli, workspace):
    make_repo(workspace)
    outside = workspace.parent / "outside.txt"  # acceptEdits allows edits only in the working directory
    model.play([
        Step(tools=[ToolUse("Write", {"file_path": str(outside), "content": "x"})]),
        Step(text="I could not write the file."),
    ])
    proc, _ = run_executor(sandbox, workspace, "claude")
    assert proc.returncode == 0, proc.stderr
    assert not outside.exists()
    assert kinds(workspace) == ["started", "failed", "blocked"]
    failed = task_events(workspace)[1]
    assert "refused" in failed["error"] and "outside.txt" in failed["error"]
    assert "--- swarm: refused tool calls ---" in run_log(workspace)
    assert task_store.find_task("TASK-1", root=workspace).path.parent.name == "active"
    assert git(workspace, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_help_marker_from_an_earlier_turn_is_not_lost(model, sandbox, claude_cli, workspace):
    make_repo(workspace)
    model.play([
        Step(text="[HELP] TASK-1 which notes file do you mean?",
             tools=[ToolUse("Read", workdir_file("notes.txt"))]),
        Step(text="I will wait for an answer."),  # -p text mode would print only this line
    ])
    proc, _ = run_executor(sandbox, workspace, "claude")
    assert proc.returncode == 0, proc.stderr
    assert kinds(workspace) == ["started", "help"]
    assert task_events(workspace)[-1]["message"] == "which notes file do you mean?"


def test_a_model_that_never_answers_fails_the_task_at_the_run_timeout(model, sandbox, claude_cli, workspace):
    make_repo(workspace)
    model.play([Hang()])
    proc, took = run_executor(sandbox, workspace, "claude", "--timeout", "3")
    assert proc.returncode == 0, proc.stderr
    assert kinds(workspace) == ["started", "failed", "blocked"]
    assert task_events(workspace)[1]["error"] == "timed out after 3s"
    assert took < 20
