"""planner: each step of a round on real files, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import agent_discovery
import claims
import events
from swarmfile import tasks
from swarmfile import task_store
from claims import LeaseState
from swarmfile.clock import HOSTNAME, utc_now
from planner import Planner

LIB = Path(__file__).resolve().parent.parent / "lib"


def make_task(root, task_id, title=None, **parts):
    parts.setdefault("created", "2026-01-01T00:00:00Z")
    return task_store.new_task_file(task_id, title or f"Unrelated work item {task_id}", root=root, **parts)


def executor_alive(agent_id, root):
    """Register an executor whose process is this (live) test process."""
    agent_discovery.register_agent(agent_id, role="executor", root=root)


def kinds(decisions):
    return [(d.kind, d.task_id) for d in decisions]


def test_requeues_tasks_of_dead_agents(workspace):
    make_task(workspace, "T-1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claims.start(claims.claim_task("T-1", "executor-9", pid=dead.pid, host=HOSTNAME))
    decisions = Planner(root=str(workspace)).round()
    assert ("requeued", "T-1") in kinds(decisions)
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.PENDING
    event = events.read_events(types=["requeued"], root=workspace)[0]
    assert event["previous_agent"] == "executor-9" and "dead" in event["reason"]


def test_dispatch_takes_lease_for_idle_executors_in_ready_order(workspace):
    make_task(workspace, "LOW", priority="low", title="Paint the shed")
    make_task(workspace, "OLD", priority="high", created="2026-01-01T00:00:00Z", title="Fix the login bug")
    make_task(workspace, "NEW", priority="high", created="2026-01-02T00:00:00Z", title="Write release notes")
    executor_alive("executor-1", workspace)
    executor_alive("executor-2", workspace)
    decisions = Planner(root=str(workspace), min_executors=99).round()
    assigned = [(d.task_id, d.detail["to"]) for d in decisions if d.kind == "assigned"]
    assert assigned == [("OLD", "executor-1"), ("NEW", "executor-2")]
    lease = claims.get_lease("OLD")
    assert lease.agent_id == "executor-1" and lease.pid == os.getpid() and lease.state is LeaseState.HELD
    assert claims.assignment_for("executor-1")[0].token == lease.token
    again = Planner(root=str(workspace), min_executors=99).round()
    assert [d for d in again if d.kind == "assigned"] == [], "executors with an assignment are not idle"


def test_unacknowledged_assignment_is_taken_back(workspace):
    make_task(workspace, "T-1")
    executor_alive("executor-1", workspace)
    planner = Planner(root=str(workspace), ack_timeout=30, min_executors=99)
    now = utc_now()
    assert ("assigned", "T-1") in kinds(planner.round(now))
    assert ("requeued", "T-1") not in kinds(planner.round(now + timedelta(seconds=10)))
    later = planner.round(now + timedelta(seconds=31))
    assert ("requeued", "T-1") in kinds(later)
    assert events.read_events(types=["requeued"], root=workspace)[-1]["reason"] == "not acknowledged"
    # ...and, the executor still idle, the task is assigned again with a higher token.
    assert ("assigned", "T-1") in kinds(later)
    assert claims.get_lease("T-1").token == 2


def test_acknowledged_assignment_is_kept(workspace):
    make_task(workspace, "T-1")
    executor_alive("executor-1", workspace)
    planner = Planner(root=str(workspace), ack_timeout=30, min_executors=99)
    now = utc_now()
    planner.round(now)
    lease, _ = claims.assignment_for("executor-1")
    claims.clear_assignment("executor-1", lease.token)
    claims.start(lease)
    agent_discovery.heartbeat("executor-1", current_task="T-1", root=workspace)
    assert ("requeued", "T-1") not in kinds(planner.round(now + timedelta(seconds=31)))
    assert claims.get_lease("T-1").state is LeaseState.HELD


def test_parent_completed_when_all_subtasks_are(workspace):
    make_task(workspace, "P-1", title="Parent work")
    make_task(workspace, "P-1-SUB1", title="First half", fields={"Parent Task": "P-1"})
    make_task(workspace, "P-1-SUB2", title="Second half", fields={"Parent Task": "P-1"})
    planner = Planner(root=str(workspace), min_executors=99)
    claims.complete(claims.claim_task("P-1-SUB1", "e"))
    assert ("completed", "P-1") not in kinds(planner.round())
    claims.complete(claims.claim_task("P-1-SUB2", "e"))
    assert ("completed", "P-1") in kinds(planner.round())
    parent = task_store.find_task("P-1", root=workspace)
    assert parent.status is tasks.Status.COMPLETED and parent.path.parent.name == "completed"


def test_near_duplicates_are_flagged_once(workspace):
    make_task(workspace, "A-1", title="Implement automated documentation generator")
    make_task(workspace, "A-2", title="Implement the automated documentation generator", created="2026-01-02T00:00:00Z")
    make_task(workspace, "B-1", title="Migrate billing database")
    planner = Planner(root=str(workspace), min_executors=99)
    flagged = [d for d in planner.round() if d.kind == "flagged"]
    assert [d.task_id for d in flagged] == ["A-2"], "only the later copy is held; the original runs"
    assert task_store.find_task("A-2", root=workspace).field("Possible Duplicate Of").startswith("A-1")
    assert task_store.find_task("A-1", root=workspace).status is not tasks.Status.NEEDS_ATTENTION
    assert [d for d in planner.round() if d.kind == "flagged"] == []


def test_a_first_round_over_many_tasks_checks_each_against_the_few_alike(workspace, monkeypatch):
    """Each new task is checked against all the others: compared one by one, N tasks cost N² keyword
    extractions (a first round took 2 minutes at 1,000 tasks, hours at 10,000)."""
    import random

    import duplicate_detector

    rnd = random.Random(3)
    vocab = [f"word{n}" for n in range(400)]
    copies = set()
    for n in range(150):
        words = rnd.sample(vocab, 5)
        objective = " ".join(rnd.sample(vocab, 12))
        if n % 30 == 29:  # a copy of the task written just before
            copies.add(f"T-{n:03d}")
            words, objective = last
        last = (words, objective)
        make_task(workspace, f"T-{n:03d}", title=" ".join(words), objective=objective,
                  created=f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z")
    calls = []
    real = duplicate_detector.keywords
    monkeypatch.setattr(duplicate_detector, "keywords", lambda text: calls.append(text) or real(text))
    flagged = {d.task_id for d in Planner(root=str(workspace), min_executors=99).round() if d.kind == "flagged"}
    assert flagged == copies
    assert len(calls) <= 4 * 150  # two per task for the index, two per check: not two per pair


SPLITTABLE = dict(
    objective="Build three independent reports; each can be done separately and in parallel.",
    criteria=["Sales report in `reports/sales.py`", "Stock report in `reports/stock.py`",
              "Staff report in `reports/staff.py`"],
)


def test_splits_only_with_enough_executors(workspace):
    make_task(workspace, "BIG", title="Three reports", **SPLITTABLE)
    executor_alive("executor-1", workspace)
    assert "split" not in [d.kind for d in Planner(root=str(workspace)).round()]
    for lease in claims.list_leases(held_only=True):  # undo the dispatch of that round
        claims.revoke_unacknowledged(lease)
        claims.clear_assignment(lease.agent_id)
    executor_alive("executor-2", workspace)
    decisions = Planner(root=str(workspace)).round()
    split = [d for d in decisions if d.kind == "split"]
    assert split and split[0].task_id == "BIG" and len(split[0].detail["sub_tasks"]) >= 2
    assigned = {d.task_id for d in decisions if d.kind == "assigned"}
    assert assigned and assigned <= set(split[0].detail["sub_tasks"]), "the parent itself waits"


def test_cli_once_json_from_any_directory(workspace):
    make_task(workspace, "T-1")
    out = subprocess.run([sys.executable, str(LIB / "planner.py"), "--once", "--json", "--root", str(workspace)],
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("[")
    assert agent_discovery.get_agent_info("swarm-planner", root=workspace).status == "stopped"


def test_the_default_planner_id_leaves_the_host_repositorys_planner_entry_alone(workspace):
    """issue 10, item 23: RALF's own planner loop keeps the key ``planner`` in heartbeat.yaml."""
    import yaml

    ralf = next(p for p in (Path(__file__).parent / "fixtures" / "ralf-head",
                            Path("/work/shared/fixtures/ralf-head")) if p.is_dir())
    hb = workspace / "heartbeat.yaml"
    hb.write_bytes((ralf / "communications" / "heartbeat.yaml").read_bytes())
    theirs = yaml.safe_load(hb.read_text())["heartbeats"]
    make_task(workspace, "T-1")
    out = subprocess.run([sys.executable, str(LIB / "planner.py"), "--once", "--root", str(workspace)],
                         capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    after = yaml.safe_load(hb.read_text())["heartbeats"]
    assert after["planner"] == theirs["planner"] and after["executor"] == theirs["executor"]
    assert after["swarm-planner"]["role"] == "planner"


def test_items_of_a_dead_agent_come_back(workspace):
    import work_items

    make_task(workspace, "T-1", criteria=["first item", "second item"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    agent_discovery.register_agent("executor-9", role="executor", root=workspace, pid=dead.pid)
    work_items.claim_item("T-1", 1, "executor-9", root=workspace)
    assert task_store.find_task("T-1", root=workspace).checklist[1].agent == "executor-9"
    decisions = Planner(root=str(workspace), min_executors=99).round()
    assert any(d.kind == "requeued" and d.detail.get("items") == ["T-1#1"] for d in decisions)
    assert task_store.find_task("T-1", root=workspace).checklist[1].agent is None


def test_flagged_duplicate_waits_for_a_person(workspace):
    make_task(workspace, "A-1", title="Implement automated documentation generator", priority="high")
    make_task(workspace, "A-2", title="Implement the automated documentation generator")
    executor_alive("executor-1", workspace)
    decisions = Planner(root=str(workspace), min_executors=99).round()
    flagged = {d.task_id for d in decisions if d.kind == "flagged"}
    assigned = {d.task_id for d in decisions if d.kind == "assigned"}
    assert flagged and not (flagged & assigned)
    held = task_store.find_task(flagged.pop(), root=workspace)
    assert held.status is tasks.Status.NEEDS_ATTENTION


def test_corrupt_heartbeat_is_reported_once_and_the_round_goes_on(workspace):
    make_task(workspace, "P-1", title="Parent work")
    make_task(workspace, "P-1-SUB1", title="Only half", fields={"Parent Task": "P-1"})
    claims.complete(claims.claim_task("P-1-SUB1", "e"))
    planner = Planner(root=str(workspace), min_executors=99)
    agent_discovery.register_agent("planner", role="planner", root=workspace)
    (workspace / "heartbeat.yaml").write_text("heartbeats: [\n")
    first = planner.round()
    errors = [d for d in first if d.kind == "error"]
    assert errors and all("heartbeat.yaml" in d.detail["error"] for d in errors)
    assert ("completed", "P-1") in kinds(first), "the steps that need no heartbeat still ran"
    assert [d for d in planner.round() if d.kind == "error"] == [], "reported once per outage"
    assert (workspace / "heartbeat.yaml").read_text() == "heartbeats: [\n"
