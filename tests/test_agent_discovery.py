"""agent_discovery: the heartbeat registry, liveness with real processes, corrupt files, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import agent_discovery as ad
from swarmfile import fileio
from swarmfile import liveness
from agent_discovery import AgentInfo
from swarmfile.clock import HOSTNAME, format_ts, parse_ts, utc_now
from swarmfile.errors import InvalidIdError, ParseError, ValidationError
from procs import run_together

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "agent_discovery.py"
ON_LINUX = os.path.exists(f"/proc/{os.getpid()}/stat")


def _load(path: Path) -> dict:
    return fileio.load_yaml_file(path)


def _write_beats(path: Path, beats: dict) -> None:
    path.write_text(fileio.dump_yaml({"heartbeats": beats, "metadata": {"timeout_seconds": 120}}))


# ---------------------------------------------------------------------------- writers


def test_register_creates_missing_file_and_records_this_process(tmp_path):
    hb = tmp_path / "sub" / "heartbeat.yaml"
    info = ad.register_agent("planner", role="planner", heartbeat_file=hb)
    data = _load(hb)
    entry = data["heartbeats"]["planner"]
    assert entry["pid"] == os.getpid() and entry["host"] == HOSTNAME
    assert entry["role"] == "planner" and entry["status"] == "running"
    assert entry["current_task"] is None and entry["started_at"] == entry["last_seen"]
    if ON_LINUX:
        assert entry["proc_start"] == liveness.process_start_time(os.getpid())
    assert data["metadata"]["updated_by"] == "planner"
    assert data["metadata"]["last_updated"] == entry["last_seen"]
    assert data["metadata"]["timeout_seconds"] == 120
    assert info.agent_id == "planner" and info.is_active()
    # The lock sidecar lives next to the file, not in the test's working directory.
    assert (tmp_path / "sub" / ".swarm" / "locks").is_dir()


def test_register_uses_workspace_config_paths(workspace):
    ad.register_agent("executor-1", role="executor")
    assert "executor-1" in _load(workspace / "heartbeat.yaml")["heartbeats"]
    assert [a.agent_id for a in ad.discover_agents()] == ["executor-1"]
    assert ad.get_agent_info("executor-1", root=workspace).role == "executor"


def test_file_and_root_spellings_share_one_lock_dir(tmp_path):
    root = tmp_path / "ralf"
    comms = root / ".autonomous" / "communications"
    comms.mkdir(parents=True)
    (root / "swarm.yaml").write_text("paths:\n  heartbeat: .autonomous/communications/heartbeat.yaml\n")
    by_root = ad._locate(root, None)
    by_file = ad._locate(None, comms / "heartbeat.yaml")
    assert by_root[0] == by_file[0] and by_root[1].lock_dir == by_file[1].lock_dir == root / ".swarm" / "locks"
    other = tmp_path / "loose" / "heartbeat.yaml"
    assert ad._locate(None, other)[1].lock_dir == tmp_path / "loose" / ".swarm" / "locks"
    ad.register_agent("a1", root=root)
    ad.heartbeat("a1", heartbeat_file=comms / "heartbeat.yaml", beats=2)
    assert _load(comms / "heartbeat.yaml")["heartbeats"]["a1"]["beats"] == 2
    assert not (comms / ".swarm").exists()


def test_heartbeat_updates_and_keeps_unknown_fields(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    _write_beats(hb, {"exec": {"last_seen": "2026-01-01T00:00:00Z", "status": "stopped",
                               "current_task": "TASK-1", "loop_number": 7, "custom": {"a": [1, 2]}}})
    info = ad.heartbeat("exec", current_action="testing", heartbeat_file=hb, beats=1)
    entry = _load(hb)["heartbeats"]["exec"]
    assert entry["status"] == "running"  # beating again revives a stopped agent
    assert entry["current_action"] == "testing" and entry["current_task"] == "TASK-1"  # task kept
    assert entry["loop_number"] == 7 and entry["custom"] == {"a": [1, 2]} and entry["beats"] == 1
    assert parse_ts(entry["last_seen"]) > parse_ts("2026-06-01T00:00:00Z")
    assert info.extra["loop_number"] == 7
    ad.heartbeat("exec", status=ad.AgentStatus.WAITING, current_task=None, heartbeat_file=hb)
    entry = _load(hb)["heartbeats"]["exec"]
    assert entry["status"] == "waiting" and entry["current_task"] is None
    assert entry["current_action"] == "testing"


def test_register_fields_override_process_identity(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    ad.register_agent("remote", heartbeat_file=hb, pid=4242, host="elsewhere", loop_number=3)
    entry = _load(hb)["heartbeats"]["remote"]
    assert (entry["pid"], entry["host"], entry["loop_number"]) == (4242, "elsewhere", 3)
    assert "proc_start" not in entry  # another host's start time cannot be read here
    ad.register_agent("nopid", heartbeat_file=hb, pid=None)
    assert _load(hb)["heartbeats"]["nopid"]["pid"] is None


def test_reregister_keeps_role_and_extras_but_resets_task(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    ad.register_agent("a1", role="executor", heartbeat_file=hb, loop_number=1)
    ad.heartbeat("a1", current_task="TASK-9", heartbeat_file=hb)
    ad.register_agent("a1", heartbeat_file=hb)
    entry = _load(hb)["heartbeats"]["a1"]
    assert entry["role"] == "executor" and entry["loop_number"] == 1 and entry["current_task"] is None


def test_deregister_marks_stopped_or_removes(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    ad.register_agent("a1", heartbeat_file=hb)
    ad.register_agent("a2", heartbeat_file=hb)
    info = ad.deregister_agent("a1", heartbeat_file=hb)
    assert info.status == "stopped"
    assert ad.get_agent_info("a1", heartbeat_file=hb).inactive_reason() == "deregistered (status stopped)"
    assert [a.agent_id for a in ad.discover_agents(hb)] == ["a2"]
    ad.deregister_agent("a2", heartbeat_file=hb, remove=True)
    assert list(_load(hb)["heartbeats"]) == ["a1"]
    before = hb.read_bytes()
    assert ad.deregister_agent("ghost", heartbeat_file=hb) is None
    assert hb.read_bytes() == before  # nothing to do: no rewrite
    assert ad.deregister_agent("a1", heartbeat_file=tmp_path / "none.yaml") is None
    assert not (tmp_path / "none.yaml").exists()


def test_header_comment_survives_rewrite(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    hb.write_text("# Agent registry of this repository.\nheartbeats: {}\nmetadata:\n  timeout_seconds: 120\n")
    ad.register_agent("a1", heartbeat_file=hb)
    assert hb.read_text().startswith("# Agent registry of this repository.\nheartbeats:\n")


@pytest.mark.parametrize("fields", [{"pid": -3}, {"pid": "12"}, {"pid": True}, {"bad-name": 1},
                                    {"x" * 65: 1}, {"blob": object()},
                                    {"nested": {"deep": [object()]}}])
def test_bad_fields_are_refused_before_writing(tmp_path, fields):
    hb = tmp_path / "heartbeat.yaml"
    ad.register_agent("a1", heartbeat_file=hb)
    before = hb.read_bytes()
    with pytest.raises(ValidationError):
        ad.register_agent("a2", heartbeat_file=hb, **fields)
    assert hb.read_bytes() == before


# ---------------------------------------------------------------------------- the RALF fixture

FIXTURE_NOW = datetime(2026, 2, 1, 13, 37, 30, tzinfo=timezone.utc)


def test_ralf_fixture_reads_as_it_is(ralf):
    hb = ralf / "heartbeat.yaml"
    agents = {a.agent_id: a for a in ad.read_agents(hb)}
    assert list(agents) == ["planner", "executor"]
    assert agents["planner"].extra == {"loop_number": 12, "run_number": 60}
    assert agents["planner"].current_action == "planning"
    assert agents["planner"].inactive_reason(FIXTURE_NOW) is None
    assert agents["executor"].inactive_reason(FIXTURE_NOW) == "not seen for 7m30s"
    assert [a.agent_id for a in ad.discover_agents(hb, now=FIXTURE_NOW)] == ["planner"]
    assert ad.count_active_agents(hb, timeout_seconds=600, now=FIXTURE_NOW) == 2
    assert ad.can_coordinate(2, hb, timeout_seconds=600, now=FIXTURE_NOW)
    assert not ad.can_coordinate(2, hb, now=FIXTURE_NOW)


def test_ralf_fixture_survives_register_and_heartbeat(ralf):
    hb = ralf / "heartbeat.yaml"
    original = _load(hb)
    ad.register_agent("executor-2", role="executor", heartbeat_file=hb)
    ad.heartbeat("planner", current_action="reviewing", heartbeat_file=hb, loop_number=13)
    after = _load(hb)
    assert after["heartbeats"]["executor"] == original["heartbeats"]["executor"]
    planner = dict(after["heartbeats"]["planner"])
    assert planner.pop("last_seen") != original["heartbeats"]["planner"]["last_seen"]
    assert planner.pop("current_action") == "reviewing" and planner.pop("loop_number") == 13
    for key in ("pid", "host", "proc_start"):
        planner.pop(key, None)
    expected = dict(original["heartbeats"]["planner"])
    for key in ("last_seen", "current_action", "loop_number"):
        expected.pop(key)
    assert planner == expected  # status, run_number: untouched
    assert list(after["heartbeats"]) == ["planner", "executor", "executor-2"]
    meta, old_meta = after["metadata"], original["metadata"]
    assert meta["notes"] == old_meta["notes"] and "\n\n" in meta["notes"]
    assert meta["timeout_seconds"] == 120 and meta["updated_by"] == "planner"
    assert meta["last_updated"] != old_meta["last_updated"]
    assert set(after) == set(original)


# ---------------------------------------------------------------------------- timestamps and liveness

NOW = datetime(2026, 2, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("stamp", ["'2026-02-01T11:59:30Z'", "'2026-02-01T18:59:30+07:00'",
                                   "'2026-02-01T18:59:30+0700'", "'2026-02-01T11:59:30'",
                                   "2026-02-01T11:59:30Z", "2026-02-01 11:59:30"])
def test_timestamp_forms(tmp_path, stamp):
    hb = tmp_path / "heartbeat.yaml"
    hb.write_text(f"heartbeats:\n  a1:\n    last_seen: {stamp}\n    status: running\n")
    (agent,) = ad.read_agents(hb)
    assert agent.seconds_since_seen(NOW) == 30
    assert agent.is_active(NOW, timeout_seconds=31)
    assert agent.inactive_reason(NOW, timeout_seconds=29) == "not seen for 30s"
    before = _load(hb)
    ad.register_agent("other", heartbeat_file=hb)  # a rewrite keeps the entry's value, whatever its form
    assert _load(hb)["heartbeats"]["a1"] == before["heartbeats"]["a1"]


def test_unparseable_last_seen_is_inactive_without_breaking_the_listing(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    _write_beats(hb, {"bad": {"last_seen": "yesterday-ish"}, "none": {"status": "running"},
                      "huge": {"last_seen": 10**30}, "good": {"last_seen": format_ts(NOW)}})
    reasons = {a.agent_id: a.inactive_reason(NOW) for a in ad.read_agents(hb)}
    assert reasons == {"bad": "last_seen 'yesterday-ish' cannot be parsed",
                       "none": "never seen (no last_seen)", "huge": f"last_seen '{10**30}' cannot be parsed",
                       "good": None}
    assert [a.agent_id for a in ad.discover_agents(hb, now=NOW)] == ["good"]


def test_killed_child_process_is_inactive_at_once(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as child:
        try:
            ad.register_agent("child", heartbeat_file=hb, pid=child.pid)
            assert ad.get_agent_info("child", heartbeat_file=hb).is_active()
        finally:
            child.kill()
            child.wait()
    info = ad.get_agent_info("child", heartbeat_file=hb)
    assert info.inactive_reason() == f"process {child.pid} is dead"  # last_seen is still fresh
    assert ad.discover_agents(hb) == []


@pytest.mark.skipif(not ON_LINUX, reason="process start times come from /proc")
def test_reused_pid_is_inactive(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    real = liveness.process_start_time(os.getpid())
    ad.register_agent("old", heartbeat_file=hb, proc_start=real - 1)  # our pid, another start
    ad.register_agent("same", heartbeat_file=hb)
    reasons = {a.agent_id: a.inactive_reason() for a in ad.read_agents(hb)}
    assert reasons == {"old": f"pid {os.getpid()} was reused by another process", "same": None}


def test_other_host_and_no_pid_are_judged_by_last_seen(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fresh = format_ts()
    _write_beats(hb, {"remote": {"last_seen": fresh, "pid": dead.pid, "host": "other-box", "proc_start": 1},
                      "nopid": {"last_seen": fresh, "host": HOSTNAME},
                      "local": {"last_seen": fresh, "pid": dead.pid, "host": HOSTNAME}})
    assert [a.agent_id for a in ad.discover_agents(hb)] == ["remote", "nopid"]
    later = utc_now() + timedelta(seconds=200)
    assert ad.get_agent_info("remote", heartbeat_file=hb).inactive_reason(later).startswith("not seen for 3m")


def test_each_pid_is_probed_once_per_discovery(tmp_path, monkeypatch):
    hb = tmp_path / "heartbeat.yaml"
    fresh = format_ts()
    beats = {f"a{i}": {"last_seen": fresh, "pid": os.getpid(), "host": HOSTNAME} for i in range(1000)}
    beats.update({f"r{i}": {"last_seen": fresh, "pid": 1, "host": "other"} for i in range(1000)})
    _write_beats(hb, beats)
    calls = []
    real = ad.dead_reason
    monkeypatch.setattr(ad, "dead_reason", lambda *args: calls.append(args) or real(*args))
    assert ad.count_active_agents(hb) == 2000
    assert len(calls) == 1  # same pid and start time: one probe; other hosts: none


def test_agent_info_round_trip_keeps_extra():
    info = AgentInfo.from_dict({"agent_id": "a1", "last_seen": "2026-02-01T00:00:00Z", "pid": 5,
                                "loop_number": 3, "nested": {"x": 1}})
    assert info.extra == {"loop_number": 3, "nested": {"x": 1}}
    assert AgentInfo.from_dict(info.to_dict()) == info
    assert AgentInfo.from_dict({"status": "idle"}, "b2").agent_id == "b2"
    with pytest.raises(ValidationError):
        AgentInfo.from_dict(["not", "a", "mapping"], "a1")


# ---------------------------------------------------------------------------- bad input

CORRUPT = {
    "truncated": b"heartbeats:\n  planner: {last_seen: '2026-02-01T13:37:14Z', status: run",
    "top_list": b"- planner\n- executor\n",
    "heartbeats_list": b"heartbeats:\n- planner\n- executor\n",
    "entry_scalar": b"heartbeats:\n  planner:\n    status: running\n  executor: 5\n",
    "no_heartbeats": b"metadata:\n  timeout_seconds: 120\n",
    "empty": b"",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage",
    "python_tag": b"heartbeats: !!python/object/apply:os.system ['echo pwned']\n",
    "metadata_list": b"heartbeats: {}\nmetadata: [1, 2]\n",
}
CORRUPT_LINE = {"heartbeats_list": 1, "entry_scalar": 4, "metadata_list": 2}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_file_raises_and_stays_byte_for_byte(tmp_path, name):
    hb = tmp_path / "heartbeat.yaml"
    hb.write_bytes(CORRUPT[name])
    with pytest.raises((ParseError, ValidationError)) as info:
        ad.discover_agents(hb)
    assert info.value.path == str(hb)
    if name in CORRUPT_LINE:
        assert info.value.line == CORRUPT_LINE[name]
    for write in (lambda: ad.register_agent("a1", heartbeat_file=hb),
                  lambda: ad.heartbeat("a1", heartbeat_file=hb),
                  lambda: ad.deregister_agent("a1", heartbeat_file=hb)):
        with pytest.raises((ParseError, ValidationError)):
            write()
    assert hb.read_bytes() == CORRUPT[name]


BAD_IDS = ["../../etc", "a/b", "a\x00b", "", ".hidden", "-x", "x" * 129, "a b", None]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_refused_and_nothing_is_written(tmp_path, bad):
    hb = tmp_path / "heartbeat.yaml"
    for call in (lambda: ad.register_agent(bad, heartbeat_file=hb),
                 lambda: ad.heartbeat(bad, heartbeat_file=hb),
                 lambda: ad.deregister_agent(bad, heartbeat_file=hb),
                 lambda: ad.get_agent_info(bad, heartbeat_file=hb)):
        with pytest.raises(InvalidIdError):
            call()
    assert os.listdir(tmp_path) == []  # no file, no lock directory


def test_invalid_id_in_file_is_listed_as_inactive(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    _write_beats(hb, {"../../etc": {"last_seen": format_ts()}, "ok": {"last_seen": format_ts()}})
    reasons = {a.agent_id: a.inactive_reason() for a in ad.read_agents(hb)}
    assert reasons == {"../../etc": "invalid agent id '../../etc'", "ok": None}


# ---------------------------------------------------------------------------- many processes


def _beat_many(heartbeat_file: str, agent_id: str, rounds: int) -> int:
    ad.register_agent(agent_id, role="executor", heartbeat_file=heartbeat_file, beats=0)
    for count in range(1, rounds + 1):
        ad.heartbeat(agent_id, current_action="working", heartbeat_file=heartbeat_file, beats=count)
    return rounds


def test_eight_processes_lose_no_update(tmp_path):
    hb = tmp_path / "heartbeat.yaml"
    hb.write_text("heartbeats:\n  keeper: {last_seen: '2026-02-01T00:00:00Z', note: stays}\n")
    rounds = 15
    run_together(_beat_many, [(str(hb), f"executor-{n}", rounds) for n in range(8)])
    beats = _load(hb)["heartbeats"]
    assert beats.pop("keeper") == {"last_seen": "2026-02-01T00:00:00Z", "note": "stays"}
    assert sorted(beats) == [f"executor-{n}" for n in range(8)]
    assert {entry["beats"] for entry in beats.values()} == {rounds}
    assert {entry["role"] for entry in beats.values()} == {"executor"}


# ---------------------------------------------------------------------------- command line


def _cli(*args: str, cwd: Path, check: int | None = 0) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SWARM_ROOT"}
    result = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=30)
    if check is not None:
        assert result.returncode == check, (result.stdout, result.stderr)
    return result


@pytest.fixture
def elsewhere(tmp_path):
    """A working directory that is not the workspace, to prove the CLI does not need one."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


@pytest.fixture
def populated(tmp_path):
    """A workspace with two live agents (this test process) and one that went quiet."""
    root = tmp_path / "ws"
    root.mkdir()
    hb = root / "heartbeat.yaml"
    ad.register_agent("planner", role="planner", heartbeat_file=hb)
    ad.register_agent("executor-1", role="executor", heartbeat_file=hb)
    ad.heartbeat("executor-1", current_task="TASK-7", heartbeat_file=hb)
    ad.register_agent("executor-2", role="executor", heartbeat_file=hb, pid=None,
                      last_seen=format_ts(utc_now() - timedelta(minutes=10)))
    return root


def test_cli_table_lists_active_agents(populated, elsewhere):
    out = _cli("--root", str(populated), cwd=elsewhere).stdout
    assert "planner" in out and "TASK-7" in out and "executor-2" not in out
    assert "2 active agents, 1 inactive" in out and "coordination: possible" in out
    assert not (elsewhere / ".swarm").exists()


def test_cli_all_shows_why(populated, elsewhere):
    out = _cli("--root", str(populated), "--all", cwd=elsewhere).stdout
    line = next(row for row in out.splitlines() if row.startswith("executor-2"))
    assert "not seen for 10m" in line


def test_cli_json(populated, elsewhere):
    doc = json.loads(_cli("--heartbeat-file", str(populated / "heartbeat.yaml"), "--json", "--all",
                          cwd=elsewhere).stdout)
    assert (doc["active"], doc["inactive"], doc["can_coordinate"], doc["ok"]) == (2, 1, True, True)
    by_id = {agent["agent_id"]: agent for agent in doc["agents"]}
    assert by_id["executor-1"]["current_task"] == "TASK-7" and by_id["executor-1"]["active"]
    assert by_id["executor-2"]["inactive_reason"].startswith("not seen for 10m")
    assert len(json.loads(_cli("--root", str(populated), "--json", cwd=elsewhere).stdout)["agents"]) == 2


def test_cli_require(populated, elsewhere):
    _cli("--root", str(populated), "--require", "2", cwd=elsewhere)
    result = _cli("--root", str(populated), "--require", "3", cwd=elsewhere, check=1)
    assert "3 required" in result.stderr
    assert json.loads(_cli("--root", str(populated), "--require", "3", "--json", cwd=elsewhere,
                           check=1).stdout)["ok"] is False


def test_cli_missing_file_means_no_agents(tmp_path, elsewhere):
    out = _cli("--heartbeat-file", str(tmp_path / "missing.yaml"), cwd=elsewhere).stdout
    assert "no agents registered" in out and "0 active agents" in out
    assert not (tmp_path / "missing.yaml").exists()
    # A root without the registry (nor events.yaml, swarm.yaml) is not a workspace: refused, not "no agents".
    refused = _cli("--root", str(tmp_path), "--json", cwd=elsewhere, check=2)
    assert "is not a Swarmfile workspace" in refused.stderr and "swarm.py init" in refused.stderr
    (tmp_path / "events.yaml").write_text("events:\n")
    assert json.loads(_cli("--root", str(tmp_path), "--json", cwd=elsewhere).stdout)["exists"] is False


@pytest.mark.parametrize("name", ["truncated", "entry_scalar", "binary"])
def test_cli_corrupt_file_exits_2(tmp_path, elsewhere, name):
    hb = tmp_path / "heartbeat.yaml"
    hb.write_bytes(CORRUPT[name])
    for args in ([], ["register", "a1"], ["beat", "a1"]):
        result = _cli("--heartbeat-file", str(hb), *args, cwd=elsewhere, check=2)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: {hb}:")
        assert line.split(":")[2].isdigit()  # FILE:LINE
    assert hb.read_bytes() == CORRUPT[name]


def test_cli_register_beat_deregister(tmp_path, elsewhere):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "events.yaml").write_text("events:\n")  # a workspace, without its registry yet
    hb = root / "heartbeat.yaml"
    _cli("register", "loop-1", "--root", str(root), "--role", "executor", "--field", "loop_number=4",
         cwd=elsewhere)
    entry = _load(hb)["heartbeats"]["loop-1"]
    # Default pid: the caller of the command (here this test process), not the short-lived CLI.
    assert (entry["pid"], entry["role"], entry["loop_number"]) == (os.getpid(), "executor", 4)
    _cli("--root", str(root), "beat", "loop-1", "--task", "TASK-3", "--status", "busy",
         "--field", "ratio=0.5", "--field", "note=hello world", cwd=elsewhere)
    entry = _load(hb)["heartbeats"]["loop-1"]
    assert (entry["current_task"], entry["status"], entry["ratio"], entry["note"]) == ("TASK-3", "busy", 0.5,
                                                                                      "hello world")
    assert entry["pid"] == os.getpid()  # beat keeps the registered pid
    # Fields that are also named arguments are routed to them, not passed twice.
    _cli("--root", str(root), "beat", "loop-1", "--status", "idle", "--field", "status=x",
         "--field", "current_task=TASK-4", "--field", "role=reviewer", cwd=elsewhere)
    entry = _load(hb)["heartbeats"]["loop-1"]
    assert (entry["status"], entry["current_task"], entry["role"]) == ("idle", "TASK-4", "reviewer")
    _cli("register", "loop-1", "--root", str(root), "--field", "role=lead", cwd=elsewhere)
    assert _load(hb)["heartbeats"]["loop-1"]["role"] == "lead"
    assert "agent_id" in _cli("register", "x1", "--root", str(root), "--field", "agent_id=y",
                              cwd=elsewhere, check=2).stderr
    doc = json.loads(_cli("deregister", "loop-1", "--heartbeat-file", str(hb), "--json", cwd=elsewhere).stdout)
    assert doc["status"] == "stopped"
    assert "nothing to do" in _cli("deregister", "ghost", "--root", str(root), cwd=elsewhere).stdout
    _cli("register", "p2", "--root", str(root), "--pid", "none", cwd=elsewhere)
    assert _load(hb)["heartbeats"]["p2"]["pid"] is None


@pytest.mark.parametrize("bad", ["../../etc", "a/b"])
def test_cli_invalid_id_exits_2_and_writes_nothing(tmp_path, elsewhere, bad):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "events.yaml").write_text("events:\n")
    result = _cli("register", bad, "--root", str(root), cwd=elsewhere, check=2)
    assert result.stderr.startswith("error: invalid agent id")
    assert os.listdir(root) == ["events.yaml"]


def test_cli_help_from_any_directory(elsewhere):
    assert "register" in _cli("--help", cwd=elsewhere).stdout
    assert "--role" in _cli("register", "--help", cwd=elsewhere).stdout


def test_cli_beat_refuses_an_agent_that_never_registered(ralf, elsewhere):
    """issue 10, item 10: a typo in ``beat`` must not create an agent."""
    hb = ralf / "heartbeat.yaml"
    before = hb.read_bytes()
    refused = _cli("--root", str(ralf), "beat", "nosuch", cwd=elsewhere, check=2)
    assert refused.stderr == (f"error: {hb}: agent nosuch is not registered "
                              "(register it first: python lib/agent_discovery.py register nosuch)\n")
    assert hb.read_bytes() == before
    _cli("--root", str(ralf), "register", "nosuch", cwd=elsewhere)
    assert "heartbeat of nosuch" in _cli("--root", str(ralf), "beat", "nosuch", cwd=elsewhere).stdout
