"""state_sync: merge semantics, fail-closed loading, conflicts, summaries, reaping, races, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from swarmfile import config
from swarmfile import fileio
import state_sync as ss
from swarmfile.errors import (InvalidIdError, LockTimeout, ParseError, StateLockError, StateSyncError,
                    ValidationError)
from procs import run_together

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "state_sync.py"
T0 = datetime(2026, 2, 1, 12, 0, 0, tzinfo=timezone.utc)
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def state(workspace):
    return workspace / "agent-state.yaml"


def _seed(root, **agents):
    """Write each agent's state (kwargs: agent id -> state) through the API."""
    for agent_id, value in agents.items():
        ss.sync_agent_state(agent_id, value, root=root, now=T0)


# ---------------------------------------------------------------------------- children


def _bump(root, agent_id, count):
    for i in range(count):
        ss.sync_agent_state(agent_id, {"counter": i}, timeout=30, root=root)


def _bump_key(root, agent_id, key, count):
    for i in range(count):
        ss.sync_agent_state(agent_id, {key: i, "context": {key: i}}, timeout=30, root=root)


def _hold_lock(path, lock_dir, ready, release):
    with fileio.locked(path, lock_dir=lock_dir, timeout=10):
        ready.set()
        release.wait(30)


# ---------------------------------------------------------------------------- writes


def test_sync_merges_keys_and_context_one_level_deep(workspace, state):
    later = T0 + timedelta(seconds=90)
    ss.sync_agent_state("executor-1", {"a": 1, "b": 2, "context": {
        "status": "working", "task_id": "TASK-1", "message": "m", "mood": "calm"}},
        root=workspace, now=T0)
    assert ss.sync_agent_state("executor-1", {"b": 3, "context": {"progress": 50}},
                               root=workspace, now=later) is True
    entry = ss.get_agent_state("executor-1", root=workspace)
    assert entry["a"] == 1 and entry["b"] == 3
    ctx = entry["context"]
    assert (ctx["status"], ctx["task_id"], ctx["message"], ctx["progress"], ctx["mood"]) == (
        "working", "TASK-1", "m", 50, "calm")
    assert ctx["last_update"] == config.format_ts(later) and TS.fullmatch(ctx["last_update"])
    meta = fileio.load_yaml_file(state)["metadata"]
    assert meta == {"last_updated": config.format_ts(later), "updated_by": "executor-1"}
    assert f"last_update: '{ctx['last_update']}'" in state.read_text()  # quoted, stays a string


def test_update_context_and_files_locked_are_normalised(workspace):
    ss.update_context("executor-1", status=ss.AgentStatus.BLOCKED, current_file="./lib/x.py",
                      progress="3/5", root=workspace)
    ss.set_files_locked("executor-1", ["./lib/x.py", "lib//x.py", "lib/*.py", "docs/"],
                        root=workspace)
    ctx = ss.get_agent_state("executor-1", root=workspace)["context"]
    assert ctx["status"] == "blocked" and ctx["current_file"] == "lib/x.py"
    assert ctx["progress"] == "3/5"
    assert ctx["files_locked"] == ["lib/x.py", "lib/*.py", "docs"]
    parsed = ss.AgentContext.from_dict(ctx)
    assert parsed.status is ss.AgentStatus.BLOCKED and parsed.to_dict() == ctx


def test_unknown_keys_everywhere_survive_a_rewrite(workspace, state):
    state.write_text(
        "agents:\n"
        "  other:\n"
        "    custom: [1, 2]\n"
        "    context: {status: done, mood: calm, files_locked: [a.py]}\n"
        "  executor-1:\n"
        "    keep: yes\n"
        "    context: {message: hi, colour: blue}\n"
        "metadata: {timeout_seconds: 5, last_updated: '2026-01-01T00:00:00Z', updated_by: x}\n"
        "extra_top: {k: v}\n")
    before = fileio.load_yaml_file(state)
    ss.update_context("executor-1", status="working", root=workspace)
    after = fileio.load_yaml_file(state)
    assert after["agents"]["other"] == before["agents"]["other"]
    assert after["extra_top"] == {"k": "v"} and after["metadata"]["timeout_seconds"] == 5
    entry = after["agents"]["executor-1"]
    assert entry["keep"] is True
    assert entry["context"]["colour"] == "blue" and entry["context"]["message"] == "hi"


def test_ralf_fixture_loads_and_survives_a_write(ralf):
    state = ralf / "agent-state.yaml"
    assert ss.get_all_states(root=ralf) == {}
    ss.update_context("executor-1", status="working", task_id="TASK-1769952151", root=ralf, now=T0)
    data = fileio.load_yaml_file(state)
    assert list(data) == ["agents", "metadata"]
    assert data["metadata"] == {"last_updated": config.format_ts(T0), "updated_by": "executor-1"}
    assert data["agents"]["executor-1"]["context"]["task_id"] == "TASK-1769952151"


def test_missing_file_reads_empty_and_is_not_created(workspace, state):
    assert ss.get_all_states(root=workspace) == {}
    assert ss.get_agent_state("executor-1", root=workspace) is None
    assert not state.exists()


def test_clear_and_reset(workspace, state):
    _seed(workspace, a={"x": 1}, b={"y": 2})
    assert ss.clear_agent_state("a", root=workspace) is True
    before = state.read_bytes()
    assert ss.clear_agent_state("a", root=workspace) is False
    assert state.read_bytes() == before  # nothing to clear: no rewrite
    assert list(ss.get_all_states(root=workspace)) == ["b"]
    state.write_text(state.read_text() + "extra_top: 1\n")
    assert ss.reset_all_states(root=workspace, now=T0) == ["b"]
    data = fileio.load_yaml_file(state)
    assert data == {"agents": {}, "metadata": {"last_updated": config.format_ts(T0),
                                               "updated_by": "system"}, "extra_top": 1}


@pytest.mark.parametrize("update", [
    {"context": {"status": "sleeping"}},
    {"context": {"progress": 101}},
    {"context": {"progress": -1}},
    {"context": {"progress": True}},
    {"context": {"progress": float("nan")}},
    {"context": {"progress": " "}},
    {"context": {"files_locked": "a.py"}},
    {"context": {"files_locked": [""]}},
    {"context": {"files_locked": [None]}},
    {"context": {"current_file": ""}},
    {"context": {"message": 5}},
    {"context": {"task_id": "../t"}},
    {"context": "working"},
    {1: "x"},
    {"obj": object()},
    "not a mapping",
])
def test_bad_values_are_refused_and_file_unchanged(workspace, state, update):
    _seed(workspace, a={"x": 1})
    before = state.read_bytes()
    with pytest.raises((ValidationError, InvalidIdError)) as info:
        ss.sync_agent_state("a", update, root=workspace)
    assert isinstance(info.value, ValueError)
    assert state.read_bytes() == before


def test_bad_status_is_a_validation_error(workspace):
    with pytest.raises(ValidationError, match="working, blocked, done, waiting"):
        ss.update_context("a", status="sleeping", root=workspace)


BAD_IDS = ["../../etc", "a/b", "a\x00b", "", ".hidden", "x" * 129, None]
ID_OPS = {
    "sync": lambda bad, root: ss.sync_agent_state(bad, {"x": 1}, root=root),
    "get": lambda bad, root: ss.get_agent_state(bad, root=root),
    "clear": lambda bad, root: ss.clear_agent_state(bad, root=root),
    "context": lambda bad, root: ss.update_context(bad, status="done", root=root),
    "files": lambda bad, root: ss.set_files_locked(bad, ["a.py"], root=root),
    "exclude": lambda bad, root: ss.find_file_conflicts("a.py", bad or "..", root=root),
    "summary": lambda bad, root: ss.get_task_summary(bad, root=root),
}


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("op", ID_OPS)
def test_invalid_ids_are_refused_and_file_unchanged(workspace, state, op, bad):
    _seed(workspace, a={"x": 1})
    before = state.read_bytes()
    with pytest.raises(InvalidIdError):
        ID_OPS[op](bad, workspace)
    assert state.read_bytes() == before
    assert sorted(os.listdir(workspace)) == sorted(
        [".swarm", "agent-state.yaml", "events.yaml", "heartbeat.yaml", "tasks"])


# ---------------------------------------------------------------------------- fail closed

CORRUPT = {  # name: (content, line the error must name, or None)
    "truncated": (b"agents:\n  a:\n    context: {status: working, files_locked: [a.py\n", 4),
    "agents_list": (b"metadata: {}\nagents:\n- a\n- b\n", 2),
    "binary": (b"agents: {}\n\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", 2),
    "python_tag": (b"agents: !!python/object:os.system {}\n", 1),
    "empty": (b"", 1),
    "blank": (b"\n   \n", 1),
    "top_list": (b"- agents\n- metadata\n", 1),
    "entry_not_mapping": (b"agents:\n  ok: {}\n  a: [1, 2]\nmetadata: {}\n", 3),
    "status_in_file": (b"agents:\n  a:\n    context:\n      status: sleeping\n", 2),
    "id_in_file": (b"agents:\n  ../../etc:\n    context: {}\n", 2),
    "metadata_list": (b"agents: {}\nmetadata: [1]\n", 2),
}
OPS = {
    "sync": lambda root: ss.sync_agent_state("a", {"x": 1}, root=root),
    "clear": lambda root: ss.clear_agent_state("a", root=root),
    "reset": lambda root: ss.reset_all_states(root=root),
    "cleanup": lambda root: ss.cleanup_stale(0, root=root),
    "files": lambda root: ss.set_files_locked("a", ["x.py"], root=root),
    "read": lambda root: ss.get_all_states(root=root),
    "conflicts": lambda root: ss.find_file_conflicts("x.py", root=root),
    "summary": lambda root: ss.get_task_summary("TASK-1", root=root),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_file_is_refused_and_never_rewritten(workspace, state, name, op):
    content, line = CORRUPT[name]
    state.write_bytes(content)
    with pytest.raises(StateSyncError) as info:
        OPS[op](workspace)
    error = info.value
    assert isinstance(error, (ParseError, ValidationError))
    assert error.path == str(state) and error.line == line
    assert str(error).startswith(f"{state}:{line}: ")
    assert state.read_bytes() == content


def test_lock_held_by_another_process_times_out_naming_file_and_holder(workspace, state):
    _seed(workspace, a={"x": 1})
    before = state.read_bytes()
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    lock_dir = config.load_config(root=workspace).lock_dir
    holder = ctx.Process(target=_hold_lock, args=(str(state), str(lock_dir), ready, release))
    holder.start()
    try:
        assert ready.wait(30), "the holder never took the lock"
        with pytest.raises(StateLockError) as info:
            ss.sync_agent_state("a", {"x": 2}, timeout=0.2, root=workspace)
        assert isinstance(info.value, LockTimeout) and isinstance(info.value, TimeoutError)
        assert str(state) in str(info.value)
        assert info.value.holder.startswith(f"pid {holder.pid} ")
        assert f"held by pid {holder.pid}" in str(info.value)
        assert state.read_bytes() == before
    finally:
        release.set()
        holder.join(10)
        if holder.is_alive():
            holder.kill()
            holder.join()
    assert ss.sync_agent_state("a", {"x": 2}, timeout=5, root=workspace)


# ---------------------------------------------------------------------------- races


def test_eight_processes_on_eight_agents_lose_no_update(workspace):
    agents = [f"executor-{i}" for i in range(8)]
    for agent_id in agents:
        ss.sync_agent_state(agent_id, {"owner": agent_id, "counter": -1,
                                       "context": {"message": f"hi {agent_id}"}}, root=workspace)
    run_together(_bump, [(str(workspace), agent_id, 50) for agent_id in agents])
    states = ss.get_all_states(root=workspace)
    assert sorted(states) == agents
    for agent_id in agents:
        assert states[agent_id]["counter"] == 49
        assert states[agent_id]["owner"] == agent_id
        assert states[agent_id]["context"]["message"] == f"hi {agent_id}"


def test_eight_processes_on_different_keys_of_one_agent_lose_no_key(workspace):
    ss.sync_agent_state("shared", {"base": True, "context": {"status": "working"}}, root=workspace)
    keys = [f"k{i}" for i in range(8)]
    run_together(_bump_key, [(str(workspace), "shared", key, 20) for key in keys])
    entry = ss.get_agent_state("shared", root=workspace)
    assert entry["base"] is True and entry["context"]["status"] == "working"
    assert {key: entry[key] for key in keys} == dict.fromkeys(keys, 19)
    assert {key: entry["context"][key] for key in keys} == dict.fromkeys(keys, 19)


# ---------------------------------------------------------------------------- reads


def test_find_file_conflicts(workspace):
    _seed(workspace,
          a={"context": {"files_locked": ["lib/a.py"], "status": "working", "task_id": "T1"}},
          b={"context": {"files_locked": ["./lib/b/*.py"]}},
          c={"context": {"files_locked": ["docs/x.md"]}},
          d={"context": {"files_locked": ["lib/a.py", "lib/a.py"], "status": "done"}})
    found = ss.find_file_conflicts("./lib/a.py", root=workspace)
    assert [c["agent_id"] for c in found] == ["a", "d"]
    assert found[0] == {"agent_id": "a", "locked": "lib/a.py", "status": "working",
                        "task_id": "T1", "current_file": None}
    assert [c["agent_id"] for c in ss.find_file_conflicts("lib/a.py", "a", root=workspace)] == ["d"]
    assert [c["agent_id"] for c in ss.find_file_conflicts("lib/b/c.py", root=workspace)] == ["b"]
    assert [c["agent_id"] for c in ss.find_file_conflicts("docs/*", root=workspace)] == ["c"]
    assert ss.find_file_conflicts("lib/b/c.txt", root=workspace) == []
    assert ss.find_file_conflicts("README.md", root=workspace) == []


def test_task_summary_counts_by_status(workspace):
    _seed(workspace,
          a={"context": {"task_id": "T1", "status": "working"}},
          b={"context": {"task_id": "T1", "status": "working"}},
          c={"context": {"task_id": "T1", "status": "done"}},
          d={"context": {"task_id": "T2", "status": "waiting"}},
          e={"context": {"task_id": "T1"}},
          f={"x": 1})
    assert ss.get_task_summary("T1", root=workspace) == {
        "task_id": "T1", "agents": ["a", "b", "c", "e"],
        "by_status": {"working": 2, "done": 1, "unknown": 1}, "total": 4}
    assert ss.get_task_summary("T9", root=workspace)["total"] == 0


def test_cleanup_stale_removes_only_old_entries(workspace, state):
    ss.sync_agent_state("old", {"x": 1}, root=workspace, now=T0)
    ss.sync_agent_state("fresh", {"x": 1}, root=workspace, now=T0 + timedelta(seconds=500))
    text = state.read_text().replace("agents:\n", "agents:\n  unstamped: {x: 1}\n", 1)
    state.write_text(text)
    before = state.read_bytes()
    assert ss.cleanup_stale(300, now=T0 + timedelta(seconds=250), root=workspace) == []
    assert state.read_bytes() == before  # nothing stale: no rewrite
    naive_now = (T0 + timedelta(seconds=600)).replace(tzinfo=None)
    assert ss.cleanup_stale(300, now=naive_now, root=workspace) == ["old"]
    assert sorted(ss.get_all_states(root=workspace)) == ["fresh", "unstamped"]


def test_cleanup_default_timeout_comes_from_swarm_yaml(workspace):
    (workspace / "swarm.yaml").write_text("state: {stale_seconds: 10}\n")
    ss.sync_agent_state("a", {"x": 1}, root=workspace, now=T0)
    assert ss.cleanup_stale(now=T0 + timedelta(seconds=9), root=workspace) == []
    assert ss.cleanup_stale(now=T0 + timedelta(seconds=11), root=workspace) == ["a"]


# ---------------------------------------------------------------------------- CLI


def _cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "SWARM_ROOT"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def elsewhere(tmp_path):
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


def test_cli_help_works_from_any_directory(elsewhere):
    done = _cli("--help", cwd=elsewhere)
    assert done.returncode == 0 and "conflicts" in done.stdout and not done.stderr


def test_cli_set_show_conflicts_summary(workspace, state, elsewhere):
    done = _cli("--root", workspace, "set", "executor-1", "--status", "working", "--task", "T1",
                "--progress", "40", "--file", "./lib/a.py", "--lock", "lib/a.py", "lib/b/*.py",
                "--message", "hello", "--field", "counter=3", "--field", "context.note=hi there",
                cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "executor-1" in done.stdout and "40%" in done.stdout
    entry = ss.get_agent_state("executor-1", root=workspace)
    assert entry["counter"] == 3
    ctx = entry["context"]
    assert (ctx["status"], ctx["task_id"], ctx["progress"], ctx["current_file"], ctx["note"]) == (
        "working", "T1", 40, "lib/a.py", "hi there")
    assert ctx["files_locked"] == ["lib/a.py", "lib/b/*.py"] and ctx["message"] == "hello"

    assert _cli("--root", workspace, "set", "executor-2", "--progress", "3/5", "--task", "T1",
                "--status", "done", cwd=elsewhere).returncode == 0
    shown = _cli("--root", workspace, "show", cwd=elsewhere)
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["AGENT", "STATUS", "TASK", "PROGRESS", "FILE", "LOCKED", "UPDATED"]
    assert lines[2].split()[:4] == ["executor-2", "done", "T1", "3/5"]
    shown = _cli("show", "executor-1", "--json", "--root", workspace, cwd=elsewhere)
    assert json.loads(shown.stdout) == {"executor-1": entry}
    missing = _cli("--root", workspace, "show", "nobody", cwd=elsewhere)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")

    hit = _cli("--root", workspace, "--json", "conflicts", "./lib/b/x.py", cwd=elsewhere)
    assert hit.returncode == 1
    assert [c["agent_id"] for c in json.loads(hit.stdout)["conflicts"]] == ["executor-1"]
    miss = _cli("--root", workspace, "conflicts", "lib/b/x.py", "--exclude", "executor-1",
                cwd=elsewhere)
    assert miss.returncode == 0 and "no conflicts" in miss.stdout

    summary = _cli("--root", workspace, "--json", "summary", "T1", cwd=elsewhere)
    assert json.loads(summary.stdout) == {"task_id": "T1", "agents": ["executor-1", "executor-2"],
                                          "by_status": {"working": 1, "done": 1}, "total": 2}


def test_cli_clear_reset_cleanup(workspace, state, elsewhere):
    ss.sync_agent_state("old", {"x": 1}, root=workspace, now=T0)
    _seed(workspace, a={"x": 1})
    ss.sync_agent_state("b", {"x": 1}, root=workspace)
    done = _cli("--root", workspace, "--json", "cleanup", "--timeout", "3600", cwd=elsewhere)
    assert done.returncode == 0 and json.loads(done.stdout) == {"removed": ["old", "a"]}
    done = _cli("--root", workspace, "clear", "b", cwd=elsewhere)
    assert done.returncode == 0 and "removed 1" in done.stdout
    ss.sync_agent_state("c", {"x": 1}, root=workspace)
    before = state.read_bytes()
    refused = _cli("--root", workspace, "reset", cwd=elsewhere)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert state.read_bytes() == before
    done = _cli("--root", workspace, "reset", "--yes", cwd=elsewhere)
    assert done.returncode == 0 and ss.get_all_states(root=workspace) == {}


def test_cli_relative_state_file_is_relative_to_the_working_directory(workspace, elsewhere):
    done = _cli("--root", workspace, "--state-file", "mine.yaml", "set", "a", "--status", "done",
                cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert ss.get_agent_state("a", state_file=elsewhere / "mine.yaml", root=workspace)
    assert not (workspace / "agent-state.yaml").exists()


@pytest.mark.parametrize("name", ["truncated", "agents_list", "binary", "python_tag", "empty"])
def test_cli_corrupt_file_is_a_one_line_error_and_unchanged(workspace, state, elsewhere, name):
    content, line = CORRUPT[name]
    state.write_bytes(content)
    done = _cli("--root", workspace, "set", "a", "--status", "done", cwd=elsewhere)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {state}:{line}: ") and done.stderr.count("\n") == 1
    assert state.read_bytes() == content


def test_cli_invalid_agent_id_is_refused(workspace, state, elsewhere):
    _seed(workspace, a={"x": 1})
    before = state.read_bytes()
    done = _cli("--root", workspace, "set", "../../etc", "--status", "done", cwd=elsewhere)
    assert done.returncode == 2 and "invalid agent id" in done.stderr
    assert state.read_bytes() == before
