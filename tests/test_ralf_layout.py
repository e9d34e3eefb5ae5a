"""Real repositories: RALF's layout of today (epic folders, run notes), ids used by two files, deleted parents."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import claims
import events
import task_distribution as td
from swarmfile import task_graph
from swarmfile import tasks
from swarmfile import task_store
from conftest import LIB, TESTS, snapshot
from swarmfile.errors import ValidationError
from planner import Planner

pytestmark = pytest.mark.timeout(60)

RALF_HEAD = TESTS / "fixtures" / "ralf-head"
EPIC = "tasks/active/IMPROVING-V2-HOOKS"
PENDING = ["TASK-202602032359", "TASK-20260203171821", "TASK-20260203171822", "TASK-20260203171823"]
F005 = "TASK-1769952151-implement-feature-f005.md"
SIM = LIB / "sim_agent.py"


@pytest.fixture(autouse=True)
def _fresh_cache():
    task_store.clear_cache()
    yield
    task_store.clear_cache()


@pytest.fixture
def head(tmp_path, monkeypatch):
    """A copy of the RALF tree as it is today, with a swarm.yaml pointing at its communications/."""
    root = tmp_path / "head"
    shutil.copytree(RALF_HEAD, root)
    (root / "swarm.yaml").write_text(
        "paths:\n  heartbeat: communications/heartbeat.yaml\n  events: communications/events.yaml\n"
        "  state: communications/agent-state.yaml\n  chat: communications/chat-log.yaml\n")
    (root / "tasks" / "completed").mkdir()
    (root / "communications" / "events.yaml").write_text("events:\n")
    monkeypatch.setenv("SWARM_ROOT", str(root))
    return root


def documents(root: Path) -> dict[str, bytes]:
    """Every Markdown file under tasks/ that is not a task: run notes, plans, documents."""
    found = task_store.task_files(root / "tasks" / "active") + task_store.task_files(root / "tasks" / "completed")
    task_paths = {p.relative_to(root).as_posix() for p in found}
    return {k: v for k, v in snapshot(root / "tasks").items()
            if k.endswith(".md") and f"tasks/{k}" not in task_paths}


# ---------------------------------------------------------------------------- item 4: today's layout


def test_tasks_are_found_at_any_depth_and_documents_are_not_tasks(head):
    before = snapshot(head)
    found = {t.task_id: t.path.relative_to(head).as_posix() for t in task_store.list_tasks(root=head, include_completed=True)}
    assert found == {
        "MASTER-TASK-20260203172000": f"{EPIC}/MASTER-TASK.md",
        "TASK-20260203172001": f"{EPIC}/TASK-20260203172001-analyze-document-hook-patterns.md",
        "TASK-202602032359": f"{EPIC}/tasks/TASK-202602032359-pre-tool-use-security.md",
        "TASK-20260203171821": f"{EPIC}/tasks/TASK-20260203171821-enhance-session-start.md",
        "TASK-20260203171822": f"{EPIC}/tasks/TASK-20260203171822-standardize-json-logging.md",
        "TASK-20260203171823": f"{EPIC}/tasks/TASK-20260203171823-subagent-tracking-hooks.md",
    }
    notes = documents(head)
    assert len(notes) == 33 and "active/IMPROVING-V2-HOOKS/tasks/HOOKS-INTEGRATION-PLAN.md" in notes
    assert sum("/runs.migrated/" in k for k in notes) == 32
    assert snapshot(head) == before


@pytest.mark.parametrize("text, is_task", [
    ("# TASK-1: Build it\n\n**Status:** pending\n", True),
    ("# A big plan\n\n**Task ID:** TASK-1\n", True),
    ("# THOUGHTS: TASK-1\n\n## Status: PENDING\n", False),  # run notes
    ("# Architecture\n\n**Status:** draft\n", False),  # a document with a status is still no task
    ("# TASK-1: Build it\n\n## Status\n\n**Status:** pending\n", False),  # fields after the first ## do not count
    ("Some text\n# TASK-1: Build it\n**Status:** pending\n", False),
])
def test_the_rule_that_tells_tasks_from_documents(text, is_task):
    assert task_store.looks_like_task(text) is is_task


def test_a_broken_file_in_the_flat_folder_is_still_reported_a_document_in_a_subfolder_is_not(head):
    (head / "tasks" / "active" / "BROKEN.md").write_text("no title here\n")
    (head / "tasks" / "active" / "notes").mkdir()
    (head / "tasks" / "active" / "notes" / "IDEAS.md").write_text("no title here\n")
    errors: list = []
    task_store.list_tasks(root=head, errors=errors)
    assert [Path(e.path).name for e in errors] == ["BROKEN.md"]


def test_epic_children_come_from_its_sub_tasks_table(head):
    master = task_store.find_task("MASTER-TASK-20260203172000", root=head)
    assert master.sub_tasks[:2] == ("20260203172001", "202602032359")  # as the table writes them
    links = task_graph.family(task_store.list_tasks(root=head, include_completed=True))
    assert sorted(links.children["MASTER-TASK-20260203172000"]) == sorted(PENDING + ["TASK-20260203172001"])
    assert links.parent["TASK-202602032359"] == "MASTER-TASK-20260203172000"


def test_parent_field_links_a_child_to_its_epic(head):
    child = head / EPIC / "subtasks" / "TASK-9-extra.md"
    child.parent.mkdir()
    child.write_text("# TASK-9: Extra hook\n\n**Parent:** MASTER-TASK-20260203172000\n**Status:** pending\n")
    links = task_graph.family(task_store.list_tasks(root=head, include_completed=True))
    assert "TASK-9" in links.children["MASTER-TASK-20260203172000"]
    assert "TASK-9" in [t.task_id for t in claims.ready_tasks(root=head)]


def test_ready_tasks_of_todays_layout_leave_the_epic_out(head):
    ready = [t.task_id for t in claims.ready_tasks(root=head)]
    assert ready == ["TASK-202602032359", "TASK-20260203171821", "TASK-20260203171822", "TASK-20260203171823"]


def test_a_completed_task_keeps_its_place_under_completed(head):
    before = documents(head)
    lease = claims.claim_task("TASK-20260203171822", "executor-1")
    claims.complete(lease)
    moved = task_store.move_to_completed("TASK-20260203171822", root=head)
    assert moved == head / "tasks/completed/IMPROVING-V2-HOOKS/tasks/TASK-20260203171822-standardize-json-logging.md"
    assert task_store.find_task("TASK-20260203171822", root=head).path == moved
    assert documents(head) == before


# ---------------------------------------------------------------------------- items 1-3: one id, two files


@pytest.fixture
def twin(ralf, monkeypatch):
    """The RALF copy with F-005 copied under a second name (``cp``): id TASK-1769952151 twice."""
    monkeypatch.setenv("SWARM_ROOT", str(ralf))
    active = ralf / "tasks" / "active"
    shutil.copy(active / F005, active / "TASK-1769952151-copy.md")
    return ralf


def test_a_duplicate_id_is_left_out_of_ready_with_one_warning_naming_both_files(twin, caplog):
    with caplog.at_level(logging.WARNING, logger="swarmfile"):
        first = [t.task_id for t in claims.ready_tasks(root=twin)]
        task_store.set_field(twin / "tasks/active/TASK-1769952152-implement-feature-f006.md", "Priority", "high",
                        root=twin)  # the listing changes: the warning is not repeated
        again = [t.task_id for t in claims.ready_tasks(root=twin)]
    assert first == again == ["TASK-1769952152"]
    warned = [r.getMessage() for r in caplog.records if "TASK-1769952151" in r.getMessage()]
    assert len(warned) == 1 and F005 in warned[0] and "TASK-1769952151-copy.md" in warned[0]


def test_an_executor_runs_the_other_tasks_when_an_id_is_used_twice(twin):
    proc = subprocess.run([sys.executable, str(LIB / "executor.py"), "--agent-id", "executor-1", "--once",
                           "--command", f"{sys.executable} {SIM} {{task_file}}"],
                          cwd=twin, env=dict(os.environ, SWARM_ROOT=str(twin), SIM_DELAY="0"),
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "TASK-1769952151" in line]
    assert len(warned) == 1 and "TASK-1769952151-copy.md" in warned[0] and F005 in warned[0]
    done = [e["task_id"] for e in events.read_events(types=["completed"], root=twin) if e.get("agent") == "executor-1"]
    assert done == ["TASK-1769952152"]
    assert sorted(p.name for p in (twin / "tasks" / "active").iterdir()) == ["TASK-1769952151-copy.md", F005]


def _split_parent(root: Path, task_id: str, children: int = 2) -> Path:
    parent = task_store.new_task_file(task_id, f"Parent {task_id}", root=root, fields={"Sub-Tasks": ", ".join(
        f"{task_id}-SUB{n}" for n in range(1, children + 1))})
    for n in range(1, children + 1):
        task_store.new_task_file(f"{task_id}-SUB{n}", f"Part {n} of {task_id}", root=root,
                            fields={"Parent Task": task_id}, status="completed")
    return parent


def test_a_duplicate_parent_id_does_not_stop_other_parents_completing(workspace):
    copy = workspace / "tasks" / "active" / "P-1-copy.md"
    shutil.copy(_split_parent(workspace, "P-1"), copy)
    _split_parent(workspace, "P-2")
    planner = Planner(root=str(workspace))
    first = planner.round()
    assert [(d.kind, d.task_id) for d in first if d.kind in ("completed", "error")] == [
        ("error", "P-1"), ("completed", "P-2")]
    error = next(d for d in first if d.kind == "error")
    assert "P-1-copy.md" in error.detail["error"] and "P-1-parent-p-1.md" in error.detail["error"]
    assert [d.kind for d in planner.round() if d.kind in ("completed", "error")] == []  # reported once
    copy.unlink()  # the operator removes the stray copy: the parent completes on the next round
    assert [(d.kind, d.task_id) for d in planner.round() if d.kind == "completed"] == [("completed", "P-1")]


def test_a_duplicate_id_is_never_split(twin):
    path = twin / "tasks" / "active" / F005
    with pytest.raises(ValidationError, match="used by two files"):
        td.distribute_task(path, root=twin)
    assert not list((twin / "tasks" / "active").glob("*-SUB*.md"))


# ---------------------------------------------------------------------------- item 14: deleting a split parent


def test_deleting_a_split_parent_cancels_its_open_sub_tasks(workspace):
    import doctor

    parent = task_store.new_task_file("P-1", "Parent", root=workspace, fields={"Sub-Tasks": "P-1-SUB1, P-1-SUB2"})
    for n in (1, 2):
        task_store.new_task_file(f"P-1-SUB{n}", f"Part {n}", root=workspace, fields={"Parent Task": "P-1"})
    task_store.new_task_file("OTHER", "Other", root=workspace)
    assert sorted(t.task_id for t in claims.ready_tasks(root=workspace)) == ["OTHER", "P-1-SUB1", "P-1-SUB2"]
    parent.unlink()
    assert [t.task_id for t in claims.ready_tasks(root=workspace)] == ["OTHER"]
    findings, _ = doctor.check(root=workspace)
    assert sorted(f.path.name for f in findings if f.code == "missing-parent") == ["P-1-SUB1-part-1.md",
                                                                                   "P-1-SUB2-part-2.md"]


# ---------------------------------------------------------------------------- item 15: dependency cycles


def _cycle(workspace: Path) -> None:
    task_store.new_task_file("TASK-A", "Task A", root=workspace, depends_on=["TASK-B"])
    task_store.new_task_file("TASK-B", "Task B", root=workspace, depends_on=["TASK-A"])
    task_store.new_task_file("TASK-S", "Task S", root=workspace, depends_on=["TASK-S"])
    task_store.new_task_file("TASK-C", "Task C", root=workspace)


def test_doctor_names_dependency_cycles(workspace):
    import doctor

    _cycle(workspace)
    report = doctor.diagnose(root=workspace)
    cycles = sorted(f.subject for f in report.findings if f.code == "dependency-cycle")
    assert cycles == ["TASK-A -> TASK-B -> TASK-A", "TASK-S -> TASK-S"]
    assert not report.ok and "workspace is clean" not in report.summary()
    assert [t.task_id for t in claims.ready_tasks(root=workspace)] == ["TASK-C"]


def test_status_names_dependency_cycles(workspace):
    _cycle(workspace)
    out = subprocess.run([sys.executable, str(LIB / "swarm.py"), "status", "--root", str(workspace)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "dependency cycle: TASK-A -> TASK-B -> TASK-A" in out.stdout
    assert "dependency cycle: TASK-S -> TASK-S" in out.stdout


@pytest.mark.parametrize("task_id, depends_on, cycle", [
    ("TASK-N", ["TASK-N"], "TASK-N -> TASK-N"),
    ("TASK-N", ["TASK-X"], "TASK-N -> TASK-X -> TASK-Y -> TASK-N"),
])
def test_new_task_refuses_to_close_a_cycle(workspace, task_id, depends_on, cycle):
    task_store.new_task_file("TASK-X", "Task X", root=workspace, depends_on=["TASK-Y"])
    task_store.new_task_file("TASK-Y", "Task Y", root=workspace, depends_on=["TASK-N"])  # waits for a task not written yet
    before = snapshot(workspace)
    out = subprocess.run([sys.executable, str(LIB / "swarm.py"), "new-task", "Something new", "--id", task_id,
                          *[a for dep in depends_on for a in ("--depends-on", dep)], "--root", str(workspace)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"would close a dependency cycle: {cycle}" in out.stderr
    assert snapshot(workspace) == before


# ---------------------------------------------------------------------------- items 16-18: operator views


def test_duplicate_detector_skips_an_unparsable_historical_file_with_a_warning(ralf):
    stop = ralf / "tasks" / "completed" / "STOP_RALF_NOW.md"
    stop.write_text("STOP. Do not run more loops until the queue is fixed.\n")
    out = subprocess.run([sys.executable, str(LIB / "duplicate_detector.py"), "--task",
                          str(ralf / "tasks" / "active" / F005), "--root", str(ralf)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "no near-duplicates\n"
    assert out.stderr.count("\n") == 1 and "STOP_RALF_NOW.md" in out.stderr and out.stderr.startswith("warning:")


def test_status_counts_by_folder_and_flags_duplicate_ids(ralf):
    import swarm

    active = ralf / "tasks" / "active"
    shutil.copy(active / F005, active / "TASK-1769952151-copy.md")
    doc = swarm.collect_status(root=str(ralf))
    # 8 files in completed/, some still saying pending or in_progress: the folder decides.
    assert doc["task_counts"] == {"completed": 8, "pending": 3}
    flagged = [t for t in doc["tasks"]["pending"] if t.get("duplicate_id")]
    assert [t["task_id"] for t in flagged] == ["TASK-1769952151", "TASK-1769952151"]
    assert sorted(Path(p).name for p in doc["duplicate_ids"]["TASK-1769952151"]) == [
        "TASK-1769952151-copy.md", F005]
    out = subprocess.run([sys.executable, str(LIB / "swarm.py"), "status", "--root", str(ralf)],
                         capture_output=True, text=True, timeout=30)
    assert "tasks: 8 completed, 3 pending" in out.stdout
    assert out.stdout.count("[DUPLICATE ID: 2 files]") == 2
    assert "duplicate id TASK-1769952151:" in out.stdout


def test_doctor_never_asks_to_reopen_finished_work(ralf):
    import doctor

    report = doctor.diagnose(root=ralf)
    in_completed = [f for f in report.findings if f.path and "completed" in f.path.parts]
    assert not [f for f in in_completed if "pending" in f.fix]
    stale = [f for f in in_completed if f.code == "no-lease"]
    assert stale and all(f.severity is doctor.Severity.INFO for f in stale)


def test_status_and_doctor_see_todays_layout(head):
    import doctor
    import swarm

    before = snapshot(head)
    doc = swarm.collect_status(root=str(head))
    assert doc["task_counts"] == {"completed": 1, "in_progress": 1, "pending": 4}
    report = doctor.diagnose(root=head)
    assert report.files >= 6
    assert [f.render(root=head) for f in report.problems] == []
    assert snapshot(head) == before


# ---------------------------------------------------------------------------- done when: a real run on today's layout


@pytest.mark.timeout(120)
def test_planner_and_executors_complete_todays_layout_exactly_once(head):
    """A planner and two executors (real processes, the simulated agent) on a copy of ``ralf-head``."""
    env = dict(os.environ, SWARM_ROOT=str(head), SIM_DELAY="0.1")
    init = subprocess.run([sys.executable, str(LIB / "swarm.py"), "init"], cwd=head, env=env,
                          capture_output=True, text=True, timeout=30)
    assert init.returncode == 0, init.stderr
    notes = documents(head)
    sim = f"{sys.executable} {SIM} {{task_file}}"
    procs = [subprocess.Popen([sys.executable, str(LIB / "planner.py"), "--agent-id", "swarm-planner",
                               "--interval", "0.2"], cwd=head, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)]
    procs += [subprocess.Popen([sys.executable, str(LIB / "executor.py"), "--agent-id", f"executor-{n}",
                                "--poll", "0.2", "--command", sim], cwd=head, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    try:
        # The planner completes the epic once all its children are: the last thing of the run.
        for event in events.follow(root=head, types=["completed"], backlog=1000, timeout=90):
            if event.get("task_id") == "MASTER-TASK-20260203172000":
                break
        else:
            raise AssertionError("the epic was not completed within 90 s")
    finally:
        for proc in procs:
            proc.terminate()
        errors = [proc.communicate(timeout=30)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    done = [e["task_id"] for e in events.read_events(types=["completed"], root=head)]
    assert sorted(done) == sorted(PENDING + ["MASTER-TASK-20260203172000"])  # each exactly once
    assert {e["task_id"]: e["agent"] for e in events.read_events(types=["completed"], root=head)}[
        "MASTER-TASK-20260203172000"] == "swarm-planner"
    assert documents(head) == notes  # run notes and plans: byte for byte
    finished = sorted(t.path.relative_to(head).as_posix() for t in task_store.list_tasks(root=head, include_completed=True)
                      if task_store.is_finished(t, task_store.task_config(t.path, root=head)))
    assert len(finished) == 6 and "tasks/completed/IMPROVING-V2-HOOKS/MASTER-TASK.md" in finished
    assert "tasks/completed/IMPROVING-V2-HOOKS/tasks/TASK-202602032359-pre-tool-use-security.md" in finished


# ---------------------------------------------------------------------------- item 11: the rule measured on real tasks


def real_tasks() -> list[Path]:
    """Every task file of both fixture trees (the README's measurement)."""
    return sorted(task_store.task_files(TESTS / "fixtures" / "ralf" / "tasks" / "active")
                  + task_store.task_files(TESTS / "fixtures" / "ralf" / "tasks" / "completed")
                  + task_store.task_files(RALF_HEAD / "tasks" / "active"))


def test_the_split_rule_on_every_real_task(tmp_path):
    """README, "Splitting": of the 16 real task files, set pending as if new, the rule splits none."""
    root = tmp_path / "ws"
    (root / "tasks" / "active").mkdir(parents=True)
    verdicts = {}
    for path in real_tasks():
        copy = root / "tasks" / "active" / path.name
        shutil.copy(path, copy)
        task_store.set_field(copy, "Status", "pending", root=root)
        verdicts[path.name] = td.analyze_task_structure(copy, root=root).can_parallelize
        copy.unlink()
    assert len(verdicts) == 16 and sum(verdicts.values()) == 0


def test_a_task_in_an_epic_folder_belongs_to_its_workspace(head, monkeypatch):
    monkeypatch.delenv("SWARM_ROOT")
    monkeypatch.chdir(head.parent)
    deep = head / EPIC / "tasks" / "TASK-202602032359-pre-tool-use-security.md"
    assert task_store.task_config(deep).root == head


@pytest.mark.parametrize("field", ["**Parent:** Epic 1 (Foundation)", "**Parent:** [MASTER-9](../MASTER-TASK.md)"])
def test_a_task_of_your_own_naming_a_missing_parent_still_runs(workspace, field):
    path = workspace / "tasks" / "active" / "T-1.md"
    path.write_text(f"# T-1: Mine\n\n{field}\n**Status:** pending\n")
    assert [t.task_id for t in claims.ready_tasks(root=workspace)] == ["T-1"]
    assert task_store.load_task(path).parent == ("Epic" if "Epic" in field else "MASTER-9")


def test_watch_shows_the_epic_with_its_children_from_the_table(head):
    import dashboard

    rows = {r["task_id"]: r for r in dashboard.collect(root=head)["tasks"]}
    epic = rows["MASTER-TASK-20260203172000"]
    assert (epic["subtasks_done"], epic["subtasks_total"]) == (1, 5)


def test_a_copy_made_while_the_task_runs_does_not_stop_its_executor(workspace):
    first = task_store.new_task_file("T-1", "First", root=workspace, priority="high")
    task_store.new_task_file("T-2", "Second", root=workspace)
    proc = subprocess.Popen([sys.executable, str(LIB / "executor.py"), "--agent-id", "executor-1", "--once",
                             "--command", f"{sys.executable} {SIM} {{task_file}}"], cwd=workspace,
                            env=dict(os.environ, SWARM_ROOT=str(workspace), SIM_DELAY="1.5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for event in events.follow(root=workspace, types=["started"], backlog=100, timeout=30):
            assert event["task_id"] == "T-1"
            break
        shutil.copy(first, first.with_name("T-1-copy.md"))  # an operator's cp while T-1 runs
        _, err = proc.communicate(timeout=50)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    done = [e["task_id"] for e in events.read_events(types=["completed"], root=workspace)]
    assert done == ["T-1", "T-2"]
    assert task_store.load_task(first).status is tasks.Status.COMPLETED  # the file it ran on records it
