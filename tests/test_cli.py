"""Every command line: global options on either side, workspaces refused unless initialised,
numbers validated, --help everywhere, a closed pipe is not an error (issue 10, items 5-8, 21, 24)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LIB, RALF, snapshot

# The repository's layout of today (tasks in epic folders, no events.yaml); the shared copy when
# the tests' own is not there.
RALF_HEAD = next((p for p in (Path(__file__).parent / "fixtures" / "ralf-head",
                              Path("/work/shared/fixtures/ralf-head")) if p.is_dir()), None)


def _run(module: str, *args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "SWARM_ROOT"}
    return subprocess.run([sys.executable, str(LIB / f"{module}.py"), *map(str, args)], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def ralf_ws(tmp_path):
    """The RALF fixture as a workspace: its communication files at the root."""
    root = tmp_path / "ralf"
    shutil.copytree(RALF, root)
    for name in os.listdir(root / "communications"):
        shutil.copy(root / "communications" / name, root / name)
    return root


@pytest.fixture
def elsewhere(tmp_path):
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


# ---------------------------------------------------------------------------- item 5


def test_swarm_options_before_the_command_are_obeyed(tmp_path, elsewhere):
    root = tmp_path / "other"
    made = _run("swarm", "--root", root, "init", cwd=elsewhere)
    assert made.returncode == 0, made.stderr
    assert (root / "events.yaml").is_file() and os.listdir(elsewhere) == []
    new = _run("swarm", "--root", root, "new-task", "Write the changelog", cwd=elsewhere)
    assert new.returncode == 0, new.stderr
    assert Path(new.stdout.strip()).parent == root / "tasks" / "active" and os.listdir(elsewhere) == []
    status = _run("swarm", "--json", "--root", root, "status", cwd=elsewhere)
    assert json.loads(status.stdout)["root"] == str(root)
    doctor = _run("swarm", "--root", root, "doctor", cwd=elsewhere)
    assert doctor.returncode == 0 and "workspace is clean" in doctor.stdout, doctor.stderr


@pytest.mark.parametrize("module, command", [
    ("events", ["tail"]), ("chat", ["log"]), ("state_sync", ["show"]), ("reservations", ["list"]),
    ("worktrees", ["list"]), ("agent_discovery", ["register", "a1"]), ("swarm", ["status"]),
    ("work_items", ["list", "TASK-1769952151"]), ("agent_memory", ["show", "a1"]),
])
def test_global_options_work_on_either_side_of_the_command(ralf_ws, elsewhere, module, command):
    before = _run(module, "--root", ralf_ws, "--json", *command, cwd=elsewhere)
    after = _run(module, *command, "--root", ralf_ws, "--json", cwd=elsewhere)
    assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
    first, second = json.loads(before.stdout), json.loads(after.stdout)
    for doc in (first, second):  # what changes from one run to the next
        if isinstance(doc, dict):
            for key in ("last_seen", "now", "generated_at", "started_at", "pid"):
                doc.pop(key, None)
    assert first == second


def test_tmux_bridge_takes_root_before_the_action(tmp_path, elsewhere):
    # Before: the action's parser reset --root given before it; now both sides reach the same check.
    for args in (["--root", tmp_path / "nope", "panes"], ["panes", "--root", tmp_path / "nope"]):
        refused = _run("tmux_bridge", *args, cwd=elsewhere)
        assert refused.returncode == 2 and "workspace root does not exist" in refused.stderr


# ---------------------------------------------------------------------------- item 6


@pytest.mark.parametrize("module, args", [
    ("planner", ["--once"]),
    ("executor", ["--agent-id", "e1", "--command", "true", "--once"]),
    ("events", ["tail"]),
    ("events", ["append", "started", "--agent", "a1"]),
    ("agent_discovery", []),
    ("agent_discovery", ["register", "a1"]),
    ("swarm", ["status"]),
    ("swarm", ["new-task", "A task"]),
    ("doctor", []),
    ("dashboard", ["--once"]),
    ("state_sync", ["show"]),
    ("chat", ["log"]),
    ("reservations", ["list"]),
    ("task_distribution", ["--all"]),
])
def test_a_missing_or_uninitialised_root_is_refused_and_nothing_is_created(tmp_path, elsewhere, module, args):
    typo = tmp_path / "typo"
    missing = _run(module, "--root", typo, *args, cwd=elsewhere)
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    assert missing.stderr == f"error: {typo}: workspace root does not exist " \
                             "(create one with: python lib/swarm.py init --root DIR)\n"
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = _run(module, *args, cwd=elsewhere, env={"SWARM_ROOT": str(empty)})
    assert refused.returncode == 2 and "is not a Swarmfile workspace" in refused.stderr
    assert "swarm.py init" in refused.stderr and os.listdir(empty) == [] and os.listdir(elsewhere) == []


def test_a_ralf_tree_configured_by_swarm_yaml_is_a_workspace(tmp_path, elsewhere):
    assert RALF_HEAD is not None, "the ralf-head fixture is missing"
    root = tmp_path / "repo"
    shutil.copytree(RALF_HEAD, root / ".autonomous")
    before = snapshot(root / ".autonomous")
    refused = _run("swarm", "--root", root, "status", cwd=elsewhere)
    assert refused.returncode == 2 and "is not a Swarmfile workspace" in refused.stderr
    (root / "swarm.yaml").write_text("paths:\n  heartbeat: .autonomous/communications/heartbeat.yaml\n"
                                     "  events: .autonomous/communications/events.yaml\n"
                                     "  state: .autonomous/communications/agent-state.yaml\n"
                                     "  chat: .autonomous/communications/chat-log.yaml\n"
                                     "  tasks_active: .autonomous/tasks/active\n"
                                     "  tasks_completed: .autonomous/tasks/completed\n")
    for module, args in (("swarm", ["status"]), ("agent_discovery", ["--all"]), ("events", ["tail"])):
        shown = _run(module, "--root", root, *args, cwd=elsewhere)
        assert shown.returncode == 0, (module, shown.stderr)
    # ralf-head keeps no events.yaml: a copy without swarm.yaml but with its files at the root is one too
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(RALF_HEAD / "communications" / "heartbeat.yaml", bare / "heartbeat.yaml")
    assert _run("agent_discovery", "--root", bare, "--all", cwd=elsewhere).returncode == 0
    assert snapshot(root / ".autonomous") == before


def test_init_and_the_demo_still_create_workspaces(tmp_path, elsewhere):
    root = tmp_path / "fresh"
    assert _run("swarm", "init", "--root", root, cwd=elsewhere).returncode == 0
    assert _run("planner", "--root", root, "--once", cwd=elsewhere).returncode == 0
    assert _run("executor", "--root", root, "--agent-id", "e1", "--command", "true", "--once",
                cwd=elsewhere).returncode == 0


def test_a_root_that_is_a_file_says_so(tmp_path, elsewhere):
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    for module, args in (("swarm", ["status"]), ("events", ["tail"]), ("planner", ["--once"])):
        out = _run(module, "--root", afile, *args, cwd=elsewhere)
        assert out.returncode == 2 and out.stderr == (
            f"error: {afile}: workspace root is a file, not a directory "
            "(give --root the directory that holds heartbeat.yaml and events.yaml)\n")
        assert "free space" not in out.stderr


# ---------------------------------------------------------------------------- item 7


def test_a_task_file_outside_the_configured_workspace_is_refused(ralf_ws, tmp_path, elsewhere):
    outside = tmp_path / "loose"
    outside.mkdir()
    task = outside / "TASK-1769952151.md"
    shutil.copy(ralf_ws / "tasks" / "active" / "TASK-1769952151-implement-feature-f005.md", task)
    env = {"SWARM_ROOT": str(ralf_ws)}
    before = snapshot(ralf_ws)
    for module, args in (("work_items", ["claim", task, "0", "--agent", "e1"]),
                         ("task_distribution", [task, "--split"]),
                         ("duplicate_detector", ["--task", task])):
        out = _run(module, *args, cwd=elsewhere, env=env)
        assert out.returncode == 2, (module, out.stdout, out.stderr)
        assert out.stderr.startswith(f"error: {task}: task file is outside the workspace {ralf_ws}"), out.stderr
    assert sorted(os.listdir(outside)) == ["TASK-1769952151.md"]  # no events.yaml, .swarm or sub-tasks
    assert snapshot(ralf_ws) == before
    # Inside the configured workspace the same commands work (by path and by id).
    inside = ralf_ws / "tasks" / "active" / "TASK-1769952151-implement-feature-f005.md"
    assert _run("work_items", "list", inside, cwd=elsewhere, env=env).returncode == 0
    assert _run("work_items", "list", "TASK-1769952151", cwd=elsewhere, env=env).returncode == 0


# ---------------------------------------------------------------------------- item 8


@pytest.mark.parametrize("module, args, option", [
    ("executor", ["--agent-id", "e1", "--command", "true", "--ttl", "-1"], "--ttl"),
    ("executor", ["--agent-id", "e1", "--command", "true", "--poll", "0"], "--poll"),
    ("executor", ["--agent-id", "e1", "--command", "true", "--max-tasks", "0"], "--max-tasks"),
    ("planner", ["--interval", "-1"], "--interval"),
    ("planner", ["--ack-timeout", "nan"], "--ack-timeout"),
    ("task_distribution", ["--all", "--max-subtasks", "0"], "--max-subtasks"),
    ("agent_discovery", ["--timeout", "-5"], "--timeout"),
    ("reservations", ["reserve", "a1", "x.py", "--ttl", "0"], "--ttl"),
    ("events", ["tail", "-n", "-3"], "-n"),
    ("swarm", ["demo", "--executors", "0"], "--executors"),
])
def test_bad_numbers_are_refused(ralf_ws, elsewhere, module, args, option):
    before = snapshot(ralf_ws)
    out = _run(module, "--root", ralf_ws, *args, cwd=elsewhere)
    assert out.returncode == 2 and f"argument {option}" in out.stderr, out.stderr
    assert snapshot(ralf_ws) == before


@pytest.mark.parametrize("setting, value, message", [
    ("timeouts:\n  lease_seconds", "-1", "'timeouts.lease_seconds' must be a number of seconds > 0"),
    ("planner:\n  interval_seconds", "0", "'planner.interval_seconds' must be a number of seconds > 0"),
    ("distribution:\n  max_subtasks", "0", "'distribution.max_subtasks' must be a whole number >= 2"),
    ("executor:\n  max_attempts", "1.5", "'executor.max_attempts' must be a whole number >= 1"),
])
def test_bad_numbers_in_swarm_yaml_are_refused_with_file_and_line(ralf_ws, elsewhere, setting, value, message):
    config = ralf_ws / "swarm.yaml"
    config.write_text(f"# tuned\n{setting}: {value}\n")
    out = _run("swarm", "status", "--root", ralf_ws, cwd=elsewhere)
    assert out.returncode == 2 and out.stderr.startswith(f"error: {config}:3: {message}"), out.stderr


# ---------------------------------------------------------------------------- item 21

# The modules at the top of lib/ that loops import but that have no command line of their own;
# everything else of the runtime is inside lib/swarmfile/, which is not run by path.
_LIBRARIES = ["merge_queue"]  # claims.py has one: `ready`


@pytest.mark.parametrize("module", _LIBRARIES)
def test_a_module_without_a_command_line_says_so(module, elsewhere):
    for args in (["anything", "--at", "all"], ["--root", "x"], []):
        out = _run(module, *args, cwd=elsewhere)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.startswith(f"error: {module}.py has no command line of its own; ")
    helped = _run(module, "--help", cwd=elsewhere)  # asked for help: answered, the same sentence
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout.startswith(f"usage: {module}.py has no command line of its own; ")


@pytest.mark.parametrize("module", sorted(p.stem for p in LIB.glob("*.py")
                                          if p.stem not in _LIBRARIES and p.stem != "sim_agent"))
def test_every_command_line_has_help(module, elsewhere):
    out = _run(module, "--help", cwd=elsewhere)
    assert out.returncode == 0 and out.stdout.startswith("usage:"), out.stderr


# ---------------------------------------------------------------------------- item 24


def test_a_closed_pipe_is_not_an_error(ralf_ws, elsewhere):
    lines = "".join(f"- {{timestamp: '2026-02-01T10:00:{i % 60:02d}Z', type: progress, agent: e{i % 3}, "
                    f"task_id: TASK-{i}, note: '{'x' * 80}'}}\n" for i in range(3000))
    (ralf_ws / "events.yaml").write_text("events:\n" + lines)
    command = f"{sys.executable} {LIB / 'events.py'} --root {ralf_ws} tail -n 3000 | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=elsewhere, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "") and out.stdout.startswith("TIME")


# ---------------------------------------------------------------------------- item 20


def test_a_parse_warning_is_logged_once_per_file_and_change(ralf_ws, caplog):
    import claims

    bad = ralf_ws / "tasks" / "active" / "STOP_EXECUTION.md"
    bad.write_text("Stop everything until the operator says so.\n")  # no task id: does not parse
    with caplog.at_level("WARNING", logger="swarmfile"):
        for _ in range(5):  # five polls
            claims.ready_tasks(root=ralf_ws)
        assert [r.getMessage().count("STOP_EXECUTION.md") for r in caplog.records] == [1]
        bad.write_text("Stop everything, really.\n")  # changed: named again, once
        for _ in range(3):
            claims.ready_tasks(root=ralf_ws)
    assert len(caplog.records) == 2 and "STOP_EXECUTION.md" in caplog.records[1].getMessage()


def test_an_executor_prints_one_line_per_claim_and_per_finish(ralf_ws, elsewhere):
    done = _run("executor", "--root", ralf_ws, "--agent-id", "executor-7", "--command", "true", "--once",
                cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    claimed = [line for line in lines if " executor-7 claimed " in line]
    finished = [line for line in lines if " executor-7 finished " in line]
    assert len(claimed) == len(finished) == 2 and len(lines) == 4, lines
    assert all(line[:20].endswith("Z") and line[10] == " " for line in lines)  # UTC, said so by the Z
    assert "TASK-1769952151" in claimed[0] and finished[0].endswith("TASK-1769952151: completed")


# ---------------------------------------------------------------------------- item 22


def test_times_written_in_other_zones_are_shown_in_utc(ralf_ws, elsewhere):
    (ralf_ws / "events.yaml").write_text(
        "events:\n"
        "- {timestamp: '2026-02-03T23:43:34+07:00', type: started, agent: executor, task_id: T-1}\n"
        "- {timestamp: '2026-02-03T16:50:00Z', type: completed, agent: executor, task_id: T-1}\n")
    tail = _run("events", "tail", "--root", ralf_ws, cwd=elsewhere)
    assert tail.returncode == 0, tail.stderr
    assert [line[:20] for line in tail.stdout.splitlines()[1:]] == ["2026-02-03 16:43:34Z", "2026-02-03 16:50:00Z"]
    status = _run("swarm", "status", "--root", ralf_ws, cwd=elsewhere)
    assert "events (times in UTC)" in status.stdout and "2026-02-03 16:43:34Z" in status.stdout
    assert "23:43:34" not in status.stdout
