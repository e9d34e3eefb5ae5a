"""The real Gemini CLI under executor.py --agent gemini --worktree, against the Gemini API stub."""

from __future__ import annotations

from swarmfile import task_store
from realcli.helpers import OBJECTIVE, kinds, make_repo, run_executor, task_events
from realcli.stub_model import Fail, Step, ToolUse


def test_worktree_run_reads_edits_merges_and_completes_once(model, sandbox, gemini_cli, workspace):
    task_file = make_repo(workspace)
    model.play([
        Step(tools=[ToolUse("read_file", lambda r: {"file_path": f"{r.workdir}/notes.txt"})]),
        Step(text="[DONE] TASK-1", tools=[ToolUse("write_file", lambda r: {
            "file_path": f"{r.workdir}/notes.txt", "content": "changed\n"})]),
        Step(text="Done."),
    ])
    proc, _ = run_executor(sandbox, workspace, "gemini", "--worktree")
    assert proc.returncode == 0, proc.stderr
    first = model.turns[0]
    assert OBJECTIVE in first.user_text and str(task_file) not in first.user_text
    assert "/.swarm/worktrees/" in first.workdir, "the CLI ran in the worktree"
    assert "base" in model.turns[1].user_text, "read_file's result came back"
    assert (workspace / "notes.txt").read_text() == "changed\n"
    assert kinds(workspace) == ["started", "merged", "completed"]
    assert task_events(workspace)[-1]["files_modified"] == ["notes.txt"]
    assert task_store.find_task("TASK-1", root=workspace).path.parent.name == "completed"



def test_an_api_error_fails_the_task_with_the_cli_text(model, sandbox, gemini_cli, workspace):
    make_repo(workspace)
    model.play([Fail(529)])
    proc, took = run_executor(sandbox, workspace, "gemini")
    assert proc.returncode == 0, proc.stderr
    assert took < 40, f"an API error must fail fast (general.maxAttempts: 1), took {took:.1f}s"
    assert kinds(workspace) == ["started", "failed", "blocked"]
    error = task_events(workspace)[1]["error"]
    assert "529" in error and "Overloaded" in error, error
