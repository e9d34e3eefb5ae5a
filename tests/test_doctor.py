"""doctor: each check and each repair on real files, fail-closed on files that do not parse, and the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import snapshot

import claims
import doctor
import events
import reservations
from swarmfile import tasks
from swarmfile import task_store
import worktrees
from swarmfile.clock import HOSTNAME, utc_now
from doctor import Severity
from leases import BAD_RECORD, EMPTY_RECORD, corrupt_lease, lease_file

LIB = Path(__file__).resolve().parent.parent / "lib"
DOCTOR = LIB / "doctor.py"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def make_task(root, task_id, **parts):
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, **parts)


def healthy(root: Path) -> None:
    """A workspace in good order: tasks, a live lease, a live reservation, events, chat, state, queue."""
    make_task(root, "T-1", criteria=["one", "two"])
    make_task(root, "T-2", depends_on=["T-1"])
    make_task(root, "T-2-SUB1", fields={"Parent Task": "T-2"})
    make_task(root, "T-0", status="completed", directory=root / "tasks" / "completed")
    claims.start(claims.claim_task("T-1", "executor-1", ttl=600))
    reservations.reserve("executor-1", ["lib/**"], task_id="T-1", ttl=600)
    events.append_event("started", "executor-1", "T-1")
    (root / "chat-log.yaml").write_text("messages:\n- {id: 1, from: planner, to: all, content: hi, type: info}\n")
    (root / ".swarm" / "merge-queue.yaml").write_text(
        "queue:\n- {id: a1, op: enqueue, branch: swarm/T-0/x, task_id: T-0, agent_id: executor-1, base: main}\n")


def codes(findings) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.code, f.where()) for f in findings]


def only(root, code, **kw):
    found = [f for f in doctor.check(root=root, **kw)[0] if f.code == code]
    assert len(found) == 1, doctor.check(root=root, **kw)[0]
    return found[0]


# ---------------------------------------------------------------------------- a clean workspace


def test_a_healthy_workspace_is_clean(workspace):
    healthy(workspace)
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.findings == [] and report.fixed == [] and report.ok
    assert report.files >= 10  # shared files, five task files, the lease
    assert report.summary() == f"checked {report.files} files: workspace is clean"


# ---------------------------------------------------------------------------- files that do not parse


@pytest.mark.parametrize("relpath, content, line", [
    ("heartbeat.yaml", "heartbeats:\n  a: {last_seen: [\n", 3),
    ("events.yaml", "events:\n- {type: started, agent: a}\n- {type: [x\n", 3),  # the entry, not the end
    ("agent-state.yaml", "agents:\n  executor-1:\n    context: [\n", 4),
    ("chat-log.yaml", "messages:\n- {id: 1, from: a, to: b, content: x, type: info}\n- {id: 2, from: [\n", 4),
    (".swarm/leases/journal-0.jsonl", '{"task_id": "T-1", "agent_id": "executor-1", "token": 1, '
     '"acquired_at": "2026-11-30T10:00:00Z", "expires_at": "2099-11-30T10:05:00Z"}\n{"task_id": "T-1", "token": [1,\n', 2),
    (".swarm/reservations.yaml", "reservations:\n- id: r1\n  patterns: [\n", 4),
    (".swarm/merge-queue.yaml", "queue:\n- {id: a, op: [\n", 3),
    (".swarm/worktrees/T-1-executor-1-abc.yaml", "path: /x\nbranch: [\n", 3),
    ("tasks/active/T-9.md", "\n\nno title\n", 3),
    ("tasks/completed/T-8.md", "# bad id!: title\n", 1),
])
def test_a_corrupt_file_is_an_error_with_its_line_and_is_never_rewritten(workspace, relpath, content, line):
    healthy(workspace)
    target = workspace / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    report = doctor.diagnose(root=workspace)
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert [f.where(root=workspace) for f in errors] == [f"{relpath}:{line}"], report.findings
    assert errors[0].render(root=workspace).startswith(f"ERROR {relpath}:{line}: ")
    assert errors[0].action is None and not report.ok
    before = snapshot(workspace)[relpath]
    fixed = doctor.diagnose(root=workspace, fix=True)
    assert target.read_bytes() == before and not fixed.ok


def test_a_broken_swarm_yaml_stops_the_checks(workspace):
    (workspace / "swarm.yaml").write_text("paths:\n  tasks_active: [\n")
    findings, files = doctor.check(root=workspace)
    assert codes(findings) == [("ERROR", "config", f"{workspace}/swarm.yaml:3")]
    assert "nothing else was checked" in findings[0].fix and files == 1


@pytest.mark.parametrize("kind", [BAD_RECORD, EMPTY_RECORD])
def test_a_corrupt_lease_record_is_an_error_with_its_line_and_is_never_rewritten(workspace, kind):
    make_task(workspace, "T-1")
    claims.claim_task("T-1", "executor-1")
    where, line = corrupt_lease(workspace, "T-1", kind)
    before = where.read_bytes()
    finding = only(workspace, "corrupt-lease")
    assert finding.severity is Severity.ERROR and (finding.path, finding.line) == (where, line)
    assert ("does not parse" if kind == BAD_RECORD else "malformed lease") in finding.problem
    assert not doctor.diagnose(root=workspace, fix=True).ok
    assert where.read_bytes() == before


def test_an_old_lease_file_that_stops_the_migration_is_an_error_with_its_line(workspace):
    make_task(workspace, "T-1")
    old = workspace / ".swarm" / "claims" / "T-1.yaml"
    old.parent.mkdir(parents=True)
    old.write_text("task_id: T-1\nagent_id: executor-1\ntoken: [1,\n")
    finding = only(workspace, "corrupt-lease")
    assert finding.severity is Severity.ERROR and finding.where(root=workspace) == ".swarm/claims/T-1.yaml:4"
    assert not doctor.diagnose(root=workspace, fix=True).ok
    assert old.read_text() == "task_id: T-1\nagent_id: executor-1\ntoken: [1,\n"
    old.write_text("")
    assert "empty" in only(workspace, "corrupt-lease").problem


# ---------------------------------------------------------------------------- tasks


def test_duplicate_task_ids(workspace):
    make_task(workspace, "T-1")
    shutil.copy(task_store.find_task("T-1", root=workspace).path, workspace / "tasks" / "completed" / "copy.md")
    finding = only(workspace, "duplicate-id")
    assert finding.severity is Severity.ERROR and finding.where(root=workspace) == "tasks/completed/copy.md:1"
    assert "also used by tasks/active/T-1-task-t-1.md" in finding.problem


def test_field_problems_missing_parent_and_unknown_dependency(workspace):
    path = make_task(workspace, "T-1", depends_on=["T-404"], fields={"Parent Task": "T-405"})
    path.write_text(path.read_text().replace("**Status:** pending", "**Status:** sort of done-ish"))
    lines = path.read_text().splitlines()
    line_of = lambda field: next(n for n, text in enumerate(lines, 1) if text.startswith(f"**{field}:**"))
    findings = doctor.check(root=workspace)[0]
    assert sorted(codes(findings)) == sorted([
        ("WARNING", "task-field", f"{path}:{line_of('Status')}"),
        ("WARNING", "missing-parent", f"{path}:{line_of('Parent Task')}"),
        ("WARNING", "unknown-dependency", f"{path}:{line_of('Depends On')}"),
    ])
    assert any("unrecognised status 'sort of done-ish'" in f.problem for f in findings)


def test_a_claimed_task_without_a_lease_is_reported_not_fixed(workspace):
    path = make_task(workspace, "T-1", status="in_progress")
    finding = only(workspace, "no-lease")
    assert finding.action is None and "never leased" in finding.problem
    before = path.read_bytes()
    assert not doctor.diagnose(root=workspace, fix=True).ok
    assert path.read_bytes() == before


def test_completed_task_in_active_is_moved(workspace):
    make_task(workspace, "T-1", status="completed")
    finding = only(workspace, "completed-in-active")
    assert finding.action == "move-completed"
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.ok and [f.code for f, _ in report.fixed] == ["completed-in-active"]
    assert report.fixed[0][1] == "moved to tasks/completed/T-1-task-t-1.md"
    assert task_store.find_task("T-1", root=workspace).path.parent == workspace / "tasks" / "completed"


# ---------------------------------------------------------------------------- leases


def test_an_expired_lease_is_reaped_and_its_task_requeued(workspace):
    make_task(workspace, "T-1")
    claims.claim_task("T-1", "executor-1", ttl=60, now=utc_now() - timedelta(hours=1))
    finding = only(workspace, "stale-lease")
    assert finding.severity is Severity.WARNING and finding.action == "reap-leases"
    assert finding.path == lease_file(workspace, "T-1") and "lease expired at" in finding.problem
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.ok and report.fixed[0][1].startswith("reaped: lease expired at")
    assert claims.get_lease("T-1", root=workspace).state is claims.LeaseState.EXPIRED
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING


def test_a_lease_of_a_dead_holder_is_stale_now(workspace):
    make_task(workspace, "T-1")
    gone = dead_pid()
    claims.claim_task("T-1", "executor-1", ttl=600, pid=gone, host=HOSTNAME, proc_start=None)
    assert f"process {gone} is dead" in only(workspace, "stale-lease").problem
    assert doctor.diagnose(root=workspace, fix=True).ok
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING


def test_a_stale_lease_of_a_pending_task_is_only_a_note(workspace):
    path = make_task(workspace, "T-1")
    claims.claim_task("T-1", "executor-1", ttl=60, now=utc_now() - timedelta(hours=1))
    task_store.set_field(path, "Status", "pending")  # an operator put it back by hand
    finding = only(workspace, "stale-lease")
    assert finding.severity is Severity.INFO and finding.action is None
    assert doctor.diagnose(root=workspace).ok


def test_a_task_whose_lease_ended_gets_its_mirror_back_then_moves(workspace):
    path = make_task(workspace, "T-1")
    claims.complete(claims.claim_task("T-1", "executor-1"))
    task_store.set_field(path, "Status", "in_progress")  # as if the holder died between lease and task writes
    assert only(workspace, "ended-lease").action == "reap-leases"
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.ok, report.findings
    assert sorted(f.code for f, _ in report.fixed) == ["completed-in-active", "ended-lease"]
    moved = task_store.find_task("T-1", root=workspace)
    assert moved.status is tasks.Status.COMPLETED and moved.path.parent.name == "completed"


# ---------------------------------------------------------------------------- logs


TORN = b"- {timestamp: '2026-01-01T00:00:09Z', type: sta"


@pytest.mark.parametrize("relpath, whole", [
    ("events.yaml", b"events:\n- {timestamp: '2026-01-01T00:00:00Z', type: started, agent: a}\n"),
    ("chat-log.yaml", b"messages:\n- {id: 1, from: a, to: b, content: hi, type: info}\n"),
    (".swarm/merge-queue.yaml", b"queue:\n- {id: a1, op: done, status: merged}\n"),
    ("events-20260101T000000000Z.yaml", b"events:\n- {type: started, agent: a}\n"),  # an archive
])
def test_a_torn_log_is_cut_and_the_cut_bytes_are_kept(workspace, relpath, whole):
    target = workspace / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(whole + TORN)
    finding = only(workspace, "torn-log")
    assert finding.where(root=workspace) == f"{relpath}:{len(whole.splitlines()) + 1}"
    assert finding.action == "cut-tail" and "does not parse" in finding.problem
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.ok, report.findings
    assert target.read_bytes() == whole
    [kept] = (workspace / ".swarm" / "doctor").iterdir()
    assert kept.name.startswith(Path(relpath).name) and kept.read_bytes() == TORN
    assert report.fixed[0][1] == f"cut {len(TORN)} bytes, kept in .swarm/doctor/{kept.name}"


def test_a_complete_last_line_without_newline_is_fine(workspace):
    (workspace / "events.yaml").write_bytes(b"events:\n- {type: started, agent: a}")
    assert doctor.check(root=workspace)[0] == []


def test_a_torn_tail_of_a_log_that_does_not_parse_is_left_alone(workspace):
    target = workspace / "events.yaml"
    target.write_bytes(b"events:\n- {type: [broken\n" + TORN)
    found = doctor.check(root=workspace)[0]
    assert sorted(f.code for f in found) == ["parse", "torn-log"]
    assert next(f for f in found if f.code == "torn-log").action is None
    before = target.read_bytes()
    assert not doctor.diagnose(root=workspace, fix=True).ok
    assert target.read_bytes() == before and not (workspace / ".swarm" / "doctor").exists()


def test_appends_work_after_the_repair(workspace):
    (workspace / "events.yaml").write_bytes(b"events:\n" + TORN)
    doctor.diagnose(root=workspace, fix=True)
    events.append_event("completed", "executor-1", "T-1")
    assert [e["type"] for e in events.read_events(root=workspace)] == ["completed"]


# ---------------------------------------------------------------------------- temp files, reservations


def test_temp_files_of_dead_processes_are_removed(workspace):
    gone = dead_pid()
    leftovers = [workspace / f".heartbeat.yaml.tmp-{gone}-0a1b2c3d",
                 workspace / "tasks" / "active" / f".T-1.md.tmp-{gone}-ffee0011",
                 workspace / ".swarm" / "claims" / f".T-1.yaml.tmp-{gone}-12345678"]
    live = workspace / f".events.yaml.tmp-{os.getpid()}-deadbeef"  # a write in progress
    for path in leftovers + [live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    found = doctor.check(root=workspace)[0]
    assert sorted(f.path for f in found) == sorted(leftovers)
    assert {f.code for f in found} == {"temp-file"} and all(f"process {gone}" in f.problem for f in found)
    report = doctor.diagnose(root=workspace, fix=True)
    assert report.ok and len(report.fixed) == 3
    assert not any(path.exists() for path in leftovers) and live.exists()


def test_stale_reservations_are_reaped(workspace):
    reservations.reserve("executor-2", ["lib/**"], ttl=600)
    reservations.reserve("executor-1", ["docs/**"], ttl=60, now=utc_now() - timedelta(hours=1))
    finding = only(workspace, "stale-reservation")
    assert "executor-1" in finding.problem and finding.action == "reap-reservations"
    assert doctor.diagnose(root=workspace, fix=True).ok
    assert [r.agent_id for r in reservations.list_reservations(root=workspace, include_expired=True)] == ["executor-2"]


# ---------------------------------------------------------------------------- worktrees


def git(cwd, *args) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def repo(workspace, tmp_path, monkeypatch):
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "config", "user.name", "Test")
    git(workspace, "config", "user.email", "test@example.com")
    (workspace / "a.txt").write_text("a\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "initial")
    return workspace


def test_orphan_worktrees(repo):
    gone_dir = worktrees.create("T-1", "executor-1", root=repo)
    shutil.rmtree(gone_dir.path)  # the directory vanished; the record stayed
    gone_branch = worktrees.create("T-2", "executor-1", root=repo)
    git(repo, "worktree", "remove", "--force", str(gone_branch.path))
    git(repo, "branch", "-D", gone_branch.branch)
    unmerged = worktrees.create("T-3", "executor-1", root=repo)
    (unmerged.path / "b.txt").write_text("b\n")
    worktrees.commit(unmerged, "work")
    git(repo, "worktree", "remove", "--force", str(unmerged.path))
    stray = repo / ".swarm" / "worktrees" / "stray"
    stray.mkdir()
    found = {f.subject: f for f in doctor.check(root=repo)[0]}
    assert set(found) == {gone_dir.name, gone_branch.name, unmerged.name, "stray"}
    assert "is gone" in found[gone_dir.name].problem and found[gone_dir.name].action == "retire-worktree"
    assert f"branch {gone_branch.branch} is gone" in found[gone_branch.name].problem
    assert found[unmerged.name].severity is Severity.INFO and "1 unmerged commit" in found[unmerged.name].problem
    assert found["stray"].code == "unregistered-worktree" and found["stray"].action is None
    report = doctor.diagnose(root=repo, fix=True)
    assert sorted(f.subject for f, _ in report.fixed) == sorted([gone_dir.name, gone_branch.name])
    assert sorted(f.subject for f in report.findings) == sorted([unmerged.name, "stray"])
    assert [wt.name for wt in worktrees.list_worktrees(root=repo)] == [unmerged.name]
    assert stray.is_dir()


# ---------------------------------------------------------------------------- progress and CLI


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines(workspace, monkeypatch):
    for n in range(5):
        make_task(workspace, f"T-{n}")
    monkeypatch.setattr(doctor, "_PROGRESS_EVERY", 2)
    piped = io.StringIO()
    _, files = doctor.check(root=workspace, progress=piped)
    assert files == 7  # heartbeat, events and five tasks
    assert piped.getvalue() == "".join(f"checked {n}/7 files\n" for n in (2, 4, 6))
    screen = Terminal()
    doctor.check(root=workspace, progress=screen)
    assert f"\rchecked {files}/{files} files" in screen.getvalue() and screen.getvalue().endswith("\r\x1b[K")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, str(DOCTOR), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_cli_from_another_directory(workspace, tmp_path):
    healthy(workspace)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = run_cli("--root", str(workspace), cwd=elsewhere)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().endswith("workspace is clean")
    make_task(workspace, "T-9", status="completed")
    (workspace / "events.yaml").write_bytes((workspace / "events.yaml").read_bytes() + TORN)
    found = run_cli("--root", str(workspace), cwd=elsewhere)
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert any(line.startswith("WARNING tasks/active/T-9-task-t-9.md:4: task T-9 is completed") for line in lines)
    assert any(line.startswith("WARNING events.yaml:3: last line is torn") and line.endswith(")")
               for line in lines)
    assert lines[-1].endswith("0 errors, 2 warnings, 0 notes")
    doc = json.loads(run_cli("--root", str(workspace), "--json", cwd=elsewhere).stdout)
    assert doc["ok"] is False and {f["code"] for f in doc["findings"]} == {"completed-in-active", "torn-log"}
    fixed = run_cli("--root", str(workspace), "--fix", cwd=elsewhere)
    assert fixed.returncode == 0, fixed.stdout
    assert sum(line.startswith("FIXED ") for line in fixed.stdout.splitlines()) == 2
    assert fixed.stdout.splitlines()[-1].endswith("workspace is clean; fixed 2")
    assert run_cli("--root", str(workspace), cwd=elsewhere).returncode == 0
    assert run_cli("--root", str(workspace), "--bogus", cwd=elsewhere).returncode == 2
    missing = run_cli("--root", str(tmp_path / "nope"), cwd=elsewhere)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    helped = run_cli("--help", cwd=elsewhere)
    assert helped.returncode == 0 and "--fix" in helped.stdout
