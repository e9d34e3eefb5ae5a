"""reservations: pattern checks, conflicts, expiry, liveness, the state mirror, races, the git hook, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from swarmfile import globs
import reservations as res
import state_sync
from swarmfile.errors import InvalidIdError, LeaseLost, ParseError, SwarmError, ValidationError
from swarmfile.liveness import my_identity
from procs import run_together
from conftest import BACKENDS

# The rules run the same on every reservation table: files, and Redis (redis_reservations).
ON_BOTH_BACKENDS = pytest.mark.parametrize("backend", BACKENDS, indirect=True)

SCRIPT = Path(__file__).resolve().parent.parent / "lib" / "reservations.py"
T0 = datetime(2026, 2, 1, 12, 0, 0, tzinfo=timezone.utc)

pytestmark = pytest.mark.timeout(60)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _file(root: Path) -> Path:
    return root / ".swarm" / "reservations.yaml"


def _touch(root: Path, *paths: str) -> None:
    for rel in paths:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{rel}\n")


# ---------------------------------------------------------------------------- patterns
# What a pattern matches and overlaps is tested in test_globs.py; these are the reservation side.


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "lib/../../x", "./", "", "C:\\x", "a\nb", 7])
def test_bad_patterns_are_refused_and_nothing_is_written(workspace, bad):
    with pytest.raises(ValidationError):
        res.reserve("executor-1", [bad], root=workspace, now=T0)
    assert not _file(workspace).exists()


def test_the_pattern_engine_is_reexported_from_globs():
    for name in ("normalize_pattern", "pattern_matches", "patterns_overlap", "patterns_for_task"):
        assert getattr(res, name) is getattr(globs, name) and name in res.__all__


# ---------------------------------------------------------------------------- conflicts


def test_exclusive_conflict_names_the_holder_and_leaves_the_file_alone(workspace):
    _touch(workspace, "lib/a.py", "lib/b.py")
    held = res.reserve("executor-1", ["lib/*.py"], task_id="TASK-1", root=workspace, now=T0)
    before = _file(workspace).read_bytes()
    with pytest.raises(res.ReservationConflict) as caught:
        res.reserve("executor-2", ["lib/a.py", "docs/x.md"], root=workspace, now=_at(1))
    exc = caught.value
    assert isinstance(exc, SwarmError) and exc.holder == "executor-1" and exc.holders == ["executor-1"]
    assert [(o.pattern, o.held, o.files) for o in exc.overlaps] == [("lib/a.py", "lib/*.py", ("lib/a.py",))]
    assert exc.overlaps[0].holder.id == held.id
    text = str(exc)
    assert "executor-1" in text and "'lib/*.py'" in text and "TASK-1" in text and "lib/a.py" in text
    assert _file(workspace).read_bytes() == before


@ON_BOTH_BACKENDS
def test_glob_against_glob_names_the_existing_files_both_cover(workspace, backend):
    _touch(workspace, "lib/a.py", "lib/b.py", "tests/a.py")
    res.reserve("executor-1", ["**/a.py"], root=workspace, now=T0)
    with pytest.raises(res.ReservationConflict) as caught:
        res.reserve("executor-2", ["lib/*.py"], root=workspace, now=T0)
    assert caught.value.overlaps[0].files == ("lib/a.py",)


@pytest.mark.parametrize("first, second, clash", [
    (True, True, True), (True, False, True), (False, True, True), (False, False, False),
])
@ON_BOTH_BACKENDS
def test_shared_reservations_only_clash_with_exclusive_ones(workspace, first, second, clash, backend):
    res.reserve("executor-1", ["lib/a.py"], exclusive=first, root=workspace, now=T0)
    if clash:
        with pytest.raises(res.ReservationConflict):
            res.reserve("executor-2", ["lib/*"], exclusive=second, root=workspace, now=T0)
    else:
        res.reserve("executor-2", ["lib/*"], exclusive=second, root=workspace, now=T0)
        assert [r.mode for r in res.list_reservations(root=workspace, now=T0)] == ["shared", "shared"]


@ON_BOTH_BACKENDS
def test_disjoint_patterns_and_the_same_agent_never_clash(workspace, backend):
    res.reserve("executor-1", ["lib/a.py"], root=workspace, now=T0)
    res.reserve("executor-2", ["lib/b.py", "tests/**"], root=workspace, now=T0)
    res.reserve("executor-1", ["lib/a.py", "lib/*.md"], task_id="TASK-2", root=workspace, now=T0)  # its own
    assert len(res.list_reservations(root=workspace, now=T0)) == 3


@ON_BOTH_BACKENDS
def test_two_spellings_of_one_file_clash(workspace, backend):
    _touch(workspace, "lib/a.py")
    (workspace / "vendor").symlink_to(workspace / "lib", target_is_directory=True)
    os.link(workspace / "lib" / "a.py", workspace / "hardlink.py")
    res.reserve("executor-1", ["lib/a.py"], root=workspace, now=T0)
    for spelling in ("vendor/a.py", "vendor/*.py", "hardlink.py"):
        assert not res.patterns_overlap("lib/a.py", spelling)  # only the files on disk tell
        with pytest.raises(res.ReservationConflict) as caught:
            res.reserve("executor-2", [spelling], root=workspace, now=T0)
        assert "lib/a.py" in caught.value.overlaps[0].files


# ---------------------------------------------------------------------------- expiry and liveness


@ON_BOTH_BACKENDS
def test_ttl_expiry_frees_the_paths(workspace, backend):
    res.reserve("executor-1", ["lib/a.py"], ttl=60, root=workspace, now=T0)
    with pytest.raises(res.ReservationConflict):
        res.reserve("executor-2", ["lib/a.py"], root=workspace, now=_at(59))
    assert res.list_reservations(root=workspace, now=_at(61)) == []
    assert len(res.list_reservations(root=workspace, now=_at(61), include_expired=True)) == 1
    taken = res.reserve("executor-2", ["lib/a.py"], root=workspace, now=_at(61))
    # the expired record was dropped by that write
    assert [r.id for r in res.list_reservations(root=workspace, now=_at(61), include_expired=True)] == [taken.id]


def test_default_ttl_and_the_swarm_yaml_override(workspace):
    made = res.reserve("executor-1", ["a"], root=workspace, now=T0)
    assert made.expires_at == "2026-02-01T12:30:00.000Z"
    (workspace / "swarm.yaml").write_text("reservations:\n  ttl_seconds: 90\n")
    assert res.reserve("executor-1", ["b"], root=workspace, now=T0).expires_at == "2026-02-01T12:01:30.000Z"
    (workspace / "swarm.yaml").write_text("reservations:\n  ttl_seconds: -5\n")
    with pytest.raises(ValidationError, match="swarm.yaml"):
        res.reserve("executor-1", ["c"], root=workspace, now=T0)
    with pytest.raises(ValidationError):
        res.reserve("executor-1", ["c"], ttl=0, root=workspace, now=T0)


@pytest.fixture
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@ON_BOTH_BACKENDS
def test_a_dead_holder_frees_its_paths_at_once(workspace, dead_pid, backend):
    res.reserve("executor-1", ["lib/a.py"], root=workspace, now=T0, pid=dead_pid)
    me = my_identity()
    res.reserve("executor-3", ["lib/b.py"], root=workspace, now=T0, pid=me["pid"], host=me["host"],
                proc_start=12345)  # pid reused: the recorded start time does not match
    res.reserve("executor-4", ["lib/c.py"], root=workspace, now=T0)  # this live process
    assert [r.agent_id for r in res.list_reservations(root=workspace, now=T0)] == ["executor-4"]
    res.reserve("executor-2", ["lib/a.py", "lib/b.py"], root=workspace, now=T0)
    with pytest.raises(res.ReservationConflict, match="executor-4"):
        res.reserve("executor-2", ["lib/c.py"], root=workspace, now=T0)


@ON_BOTH_BACKENDS
def test_reap_removes_expired_and_dead_and_keeps_live(workspace, dead_pid, backend):
    res.reserve("executor-2", ["b"], ttl=10, root=workspace, now=T0)
    live = res.reserve("executor-3", ["c"], root=workspace, now=T0)
    res.reserve("executor-1", ["a"], root=workspace, now=T0, pid=dead_pid)  # last: nothing prunes it
    reaped = res.reap(_at(11), root=workspace)
    assert sorted((r.agent_id, why.split()[0]) for r, why in reaped) == [
        ("executor-1", "process"), ("executor-2", "expired")]
    assert [r.id for r in res.list_reservations(root=workspace, now=_at(11), include_expired=True)] == [live.id]
    assert res.reap(_at(11), root=workspace) == []


# ---------------------------------------------------------------------------- release and renew


@ON_BOTH_BACKENDS
def test_release_forms(workspace, backend):
    one = res.reserve("executor-1", ["a"], task_id="TASK-1", root=workspace, now=T0)
    res.reserve("executor-1", ["b"], task_id="TASK-1", root=workspace, now=T0)
    res.reserve("executor-1", ["c"], task_id="TASK-2", root=workspace, now=T0)
    res.reserve("executor-2", ["d"], task_id="TASK-2", root=workspace, now=T0)
    res.reserve("executor-2", ["e"], root=workspace, now=T0)
    assert [r.patterns for r in res.release(one, root=workspace)] == [("a",)]
    assert res.release(one, root=workspace) == []  # already gone: not an error
    assert [r.patterns for r in res.release("executor-1", "TASK-1", root=workspace)] == [("b",)]
    with pytest.raises(ValidationError, match="release_all"):
        res.release("executor-1", root=workspace)
    assert [r.patterns for r in res.release_for_task("TASK-2", root=workspace)] == [("c",), ("d",)]
    assert [r.patterns for r in res.release_all("executor-2", root=workspace)] == [("e",)]
    assert res.list_reservations(root=workspace, now=T0, include_expired=True) == []
    with pytest.raises(InvalidIdError):
        res.release_for_task("../x", root=workspace)


@ON_BOTH_BACKENDS
def test_renew_extends_a_live_reservation_and_refuses_an_ended_one(workspace, backend):
    made = res.reserve("executor-1", ["a"], ttl=60, root=workspace, now=T0)
    renewed = res.renew(made, 600, root=workspace, now=_at(50))
    assert renewed.expires_at == "2026-02-01T12:10:50.000Z" and renewed.id == made.id
    with pytest.raises(res.ReservationConflict):
        res.reserve("executor-2", ["a"], root=workspace, now=_at(100))
    with pytest.raises(LeaseLost, match="expired"):
        res.renew(made, 60, root=workspace, now=_at(700))
    res.release(made, root=workspace)
    with pytest.raises(LeaseLost, match="released or reaped"):
        res.renew(made, 60, root=workspace, now=_at(10))


# ---------------------------------------------------------------------------- the state mirror


def test_files_locked_mirrors_the_reservations(workspace):
    res.reserve("executor-1", ["lib/*.py"], task_id="TASK-1", root=workspace, now=T0)
    res.reserve("executor-1", ["docs/**"], root=workspace, now=T0)
    assert state_sync.get_agent_state("executor-1", root=workspace)["context"]["files_locked"] == [
        "lib/*.py", "docs/**"]
    assert [c["agent_id"] for c in state_sync.find_file_conflicts("lib/a.py", root=workspace)] == ["executor-1"]
    res.release("executor-1", "TASK-1", root=workspace, now=T0)
    assert state_sync.find_file_conflicts("lib/a.py", root=workspace) == []
    assert state_sync.get_agent_state("executor-1", root=workspace)["context"]["files_locked"] == ["docs/**"]
    # an expired holder's mirror is narrowed when a later reservation drops its record
    res.reserve("executor-2", ["tests/x.py"], ttl=10, root=workspace, now=T0)
    assert state_sync.get_agent_state("executor-2", root=workspace)["context"]["files_locked"] == ["tests/x.py"]
    res.reserve("executor-3", ["tests/x.py"], root=workspace, now=_at(11))
    assert state_sync.get_agent_state("executor-2", root=workspace)["context"]["files_locked"] == []


def test_a_broken_state_file_refuses_the_reservation(workspace):
    state = workspace / "agent-state.yaml"
    state.write_text("agents: [oops\n")
    with pytest.raises(ParseError):
        res.reserve("executor-1", ["a"], root=workspace, now=T0)
    assert res.list_reservations(root=workspace, now=T0) == []  # never held without its mirror
    assert state.read_text() == "agents: [oops\n"


# ---------------------------------------------------------------------------- the file


@pytest.mark.parametrize("content, error", [
    ("reservations: [oops\n", ParseError),
    ("", ValidationError),
    ("- just a list\n", ValidationError),
    ("other: 1\n", ValidationError),
    ("reservations: {a: 1}\n", ValidationError),
    ("reservations:\n- id: r1\n  agent_id: executor-1\n  patterns: [/etc]\n"
     "  acquired_at: '2026-02-01T12:00:00Z'\n  expires_at: '2026-02-01T13:00:00Z'\n", ValidationError),
    ("reservations:\n- id: r1\n  agent_id: ../x\n  patterns: [a]\n"
     "  acquired_at: '2026-02-01T12:00:00Z'\n  expires_at: '2026-02-01T13:00:00Z'\n", ValidationError),
    ("reservations:\n- id: r1\n  agent_id: executor-1\n  patterns: [a]\n  acquired_at: x\n", ValidationError),
])
def test_a_bad_reservations_file_fails_closed(workspace, content, error):
    path = _file(workspace)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    for action in (lambda: res.reserve("executor-2", ["b"], root=workspace, now=T0),
                   lambda: res.reap(T0, root=workspace),
                   lambda: res.release_all("executor-1", root=workspace),
                   lambda: res.find_holders("a", root=workspace, now=T0)):
        with pytest.raises(error) as caught:
            action()
        assert str(path) in str(caught.value)
    assert path.read_text() == content


def test_a_malformed_entry_is_reported_with_its_line(workspace):
    path = _file(workspace)
    path.parent.mkdir(parents=True)
    path.write_text("reservations:\n- id: r1\n  agent_id: executor-1\n  patterns: [a]\n"
                    "  acquired_at: '2026-02-01T12:00:00Z'\n  expires_at: '2026-02-01T13:00:00Z'\n"
                    "- id: r2\n  agent_id: executor-1\n  patterns: []\n")
    with pytest.raises(ValidationError, match=r"reservations.yaml:7: malformed reservation: patterns"):
        res.list_reservations(root=workspace, now=T0)


def test_unknown_keys_are_kept(workspace):
    made = res.reserve("executor-1", ["a"], root=workspace, now=T0)
    path = _file(workspace)
    text = path.read_text().replace("reservations:\n", "note: by hand\nreservations:\n", 1)
    path.write_text(text.replace(f"- id: {made.id}\n", f"- id: {made.id}\n  why: reviewing\n"))
    res.reserve("executor-2", ["b"], root=workspace, now=T0)
    stored = res.list_reservations(root=workspace, now=T0)
    assert stored[0].extra == {"why": "reviewing"} and "note: by hand" in path.read_text()
    assert stored[0].to_dict()["why"] == "reviewing"


def test_find_holders(workspace):
    a = res.reserve("executor-1", ["lib/*.py"], exclusive=False, root=workspace, now=T0)
    b = res.reserve("executor-2", ["lib/a.py"], exclusive=False, root=workspace, now=T0, ttl=5)
    assert res.find_holders("lib/b.py", root=workspace, now=T0) == [a]
    assert [r.id for r in res.find_holders("./lib/a.py", root=workspace, now=T0)] == [a.id, b.id]
    assert res.find_holders("lib/a.py", root=workspace, now=T0, exclude_agent="executor-1") == [b]
    assert res.find_holders("lib/a.py", root=workspace, now=_at(10), exclude_agent="executor-1") == []
    assert res.find_holders("lib", root=workspace, now=T0) == [a, b]  # asking about a directory
    assert res.find_holders("docs/x.md", root=workspace, now=T0) == []


# ---------------------------------------------------------------------------- races


def _race(root: str, agent_id: str, pattern: str, holder: tuple) -> tuple[str, str]:
    try:
        res.reserve(agent_id, [pattern], root=root, pid=holder[0], host=holder[1], proc_start=holder[2])
    except res.ReservationConflict as exc:
        return "lost", exc.holder
    return "won", agent_id


def _holder() -> tuple:
    me = my_identity()
    return me["pid"], me["host"], me["proc_start"]  # this test process: alive through the check


@ON_BOTH_BACKENDS
def test_eight_processes_racing_for_one_file_exactly_one_wins(workspace, backend):
    results = run_together(_race, [(str(workspace), f"executor-{n}", "lib/a.py", _holder()) for n in range(8)])
    winners = [agent for outcome, agent in results if outcome == "won"]
    assert len(winners) == 1
    assert sorted(agent for outcome, agent in results if outcome == "lost") == winners * 7
    assert [r.agent_id for r in res.list_reservations(root=workspace)] == winners
    assert [c["agent_id"] for c in state_sync.find_file_conflicts("lib/a.py", root=workspace)] == winners
    assert _file(workspace).exists() == (backend is None)  # on Redis: the server's key


@ON_BOTH_BACKENDS
def test_eight_processes_racing_with_eight_overlapping_spellings_exactly_one_wins(workspace, backend):
    _touch(workspace, "lib/a.py")
    (workspace / "vendor").symlink_to(workspace / "lib", target_is_directory=True)
    spellings = ["lib/a.py", "lib/**", "lib", "lib/*.py", "**/a.py", "lib/a.*", "lib/", "vendor/a.py"]
    results = run_together(_race, [(str(workspace), f"executor-{n}", spelling, _holder())
                                   for n, spelling in enumerate(spellings)])
    winners = [agent for outcome, agent in results if outcome == "won"]
    assert len(winners) == 1 and sorted(agent for outcome, agent in results if outcome == "lost") == winners * 7
    assert [r.agent_id for r in res.list_reservations(root=workspace)] == winners


@ON_BOTH_BACKENDS
def test_eight_processes_racing_for_different_files_all_win(workspace, backend):
    results = run_together(_race, [(str(workspace), f"executor-{n}", f"lib/f{n}.py", _holder())
                                   for n in range(8)])
    assert sorted(results) == sorted(("won", f"executor-{n}") for n in range(8))
    assert len(res.list_reservations(root=workspace)) == 8
    for n in range(8):
        entry = state_sync.get_agent_state(f"executor-{n}", root=workspace)
        assert entry["context"]["files_locked"] == [f"lib/f{n}.py"]


# ---------------------------------------------------------------------------- CLI and git hook


def _cli(*args: str, cwd: Path, code: int = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SWARM_ROOT", "SWARM_AGENT_ID")}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


@pytest.fixture
def elsewhere(tmp_path):
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def test_cli_help_from_anywhere(elsewhere):
    out = _cli("--help", cwd=elsewhere).stdout
    for command in ("list", "reserve", "release", "check", "check-commit", "install-hook", "reap"):
        assert command in out


def test_cli_round_trip_and_conflict(workspace, elsewhere):
    root = ["--root", str(workspace)]
    made = json.loads(_cli(*root, "--json", "reserve", "executor-1", "lib/*.py", "--task", "TASK-1",
                           "--ttl", "600", cwd=elsewhere).stdout)
    assert made["patterns"] == ["lib/*.py"] and made["task_id"] == "TASK-1" and made["pid"] is None
    clash = _cli(*root, "reserve", "executor-2", "./lib/a.py", cwd=elsewhere, code=1)
    assert clash.stderr.startswith("error: ") and "executor-1" in clash.stderr and "lib/*.py" in clash.stderr
    assert clash.stderr.count("\n") == 1
    doc = json.loads(_cli(*root, "reserve", "executor-2", "lib/a.py", "--json", cwd=elsewhere, code=1).stdout)
    assert doc["holders"] == ["executor-1"]
    _cli(*root, "reserve", "executor-2", "lib/a.py", "--shared", cwd=elsewhere, code=1)
    _cli(*root, "reserve", "executor-2", "docs/**", "--shared", cwd=elsewhere)
    listed = _cli(*root, "list", cwd=elsewhere).stdout
    assert "executor-1" in listed and "docs/**" in listed and "shared" in listed
    held = _cli(*root, "check", "lib/a.py", "README.md", cwd=elsewhere, code=1).stdout
    assert "lib/a.py" in held and "executor-1" in held
    _cli(*root, "check", "README.md", cwd=elsewhere)
    _cli(*root, "check", "lib/a.py", "--agent", "executor-1", cwd=elsewhere)
    assert "released 1" in _cli(*root, "release", "executor-1", "--task", "TASK-1", cwd=elsewhere).stdout
    assert json.loads(_cli(*root, "reap", "--json", cwd=elsewhere).stdout) == []
    _cli(*root, "release", "executor-2", cwd=elsewhere)
    assert _cli(*root, "list", "--json", cwd=elsewhere).stdout.strip() == "[]"


@pytest.mark.parametrize("args", [
    ["reserve", "executor-1", "/etc/passwd"],
    ["reserve", "executor-1", "../x"],
    ["reserve", "bad id!", "a"],
    ["reserve", "executor-1", "a", "--ttl", "-1"],
    ["reserve", "executor-1", "a", "--ttl", "soon"],
    ["release", "executor-1", "--task", "../t"],
    ["frobnicate"],
])
def test_cli_bad_input_exits_2(workspace, elsewhere, args):
    done = _cli("--root", str(workspace), *args, cwd=elsewhere, code=2)
    assert "error" in done.stderr
    assert not _file(workspace).exists()


def test_cli_broken_file_exits_2_and_is_kept(workspace, elsewhere):
    path = _file(workspace)
    path.parent.mkdir(parents=True)
    path.write_text("reservations: [oops\n")
    done = _cli("--root", str(workspace), "reserve", "executor-1", "a", cwd=elsewhere, code=2)
    assert done.stderr.startswith(f"error: {path}:2: does not parse")
    assert path.read_text() == "reservations: [oops\n"


def _git(repo: Path, *args: str, env: dict | None = None, code: int = 0) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SWARM_ROOT", "SWARM_AGENT_ID")}
    base.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t",
                GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    done = subprocess.run(["git", *args], cwd=repo, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _touch(root, "lib/a.py", "lib/b.py", "README.md")
    (root / ".gitignore").write_text(".swarm/\n")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "start")
    return root


def test_pre_commit_hook_refuses_files_reserved_by_another_agent(repo, elsewhere):
    installed = _cli("install-hook", "--root", str(repo), cwd=elsewhere).stdout
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert "installed" in installed and os.access(hook, os.X_OK)
    assert "unchanged" in _cli("install-hook", "--root", str(repo), cwd=elsewhere).stdout
    (repo / "events.yaml").write_text("events:\n")  # reserving needs a workspace; the hook does not
    _cli("--root", str(repo), "reserve", "holder", "lib/*.py", "--task", "TASK-9", cwd=elsewhere)

    (repo / "lib" / "a.py").write_text("changed\n")
    _git(repo, "add", "lib/a.py")
    refused = _git(repo, "commit", "-qm", "edit a", env={"SWARM_AGENT_ID": "intruder"}, code=1)
    assert "commit refused" in refused.stderr and "lib/a.py" in refused.stderr
    assert "holder" in refused.stderr and "TASK-9" in refused.stderr
    _git(repo, "commit", "-qm", "edit a", code=1)  # no agent id: still someone else's file
    _git(repo, "commit", "-qm", "edit a", env={"SWARM_AGENT_ID": "holder"})

    (repo / "README.md").write_text("changed\n")
    _git(repo, "add", "README.md")
    _git(repo, "commit", "-qm", "readme", env={"SWARM_AGENT_ID": "intruder"})
    assert _git(repo, "log", "--oneline").stdout.count("\n") == 3

    # moving a reserved file away touches it too
    _git(repo, "mv", "lib/b.py", "moved.py")
    refused = _git(repo, "commit", "-qm", "move", env={"SWARM_AGENT_ID": "intruder"}, code=1)
    assert "lib/b.py" in refused.stderr


def test_install_hook_keeps_a_foreign_hook_unless_forced(repo, elsewhere):
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho theirs\n")
    done = _cli("install-hook", "--root", str(repo), cwd=elsewhere, code=2)
    assert "--force" in done.stderr and hook.read_text() == "#!/bin/sh\necho theirs\n"
    assert "replaced" in _cli("install-hook", "--root", str(repo), "--force", cwd=elsewhere).stdout
    assert "check-commit" in hook.read_text()
    assert (hook.parent / "pre-commit.swarm-backup").read_text() == "#!/bin/sh\necho theirs\n"


def test_check_commit_outside_a_repository_is_bad_input(workspace):
    done = _cli("--root", str(workspace), "check-commit", cwd=workspace, code=2)
    assert "git" in done.stderr


def test_check_commit_takes_staged_names_literally(repo):
    _touch(repo, "lib/x[ab].py", "lib/xa.py")
    _git(repo, "add", "lib/x[ab].py")
    res.reserve("holder", ["lib/xa.py"], root=repo)
    assert res.check_commit("intruder", root=repo, cwd=repo) == []  # not the pattern lib/x[ab].py
    res.reserve("holder", ["lib/x[[]ab].py"], root=repo)
    assert [(f, r.agent_id) for f, r in res.check_commit("intruder", root=repo, cwd=repo)] == [
        ("lib/x[ab].py", "holder")]
    assert res.check_commit("holder", root=repo, cwd=repo) == []
