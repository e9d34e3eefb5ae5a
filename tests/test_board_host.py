"""A host that is not the operator checkout, on the task board: tmux panes there, status and dashboard.

Two clones of one bare remote share a redis-server (tests/hosts.py, as test_two_hosts.py): host A
is the operator checkout whose Markdown is published, host B holds no task file at all. Agents in
tmux panes on host B (the fake interactive agent, told to read its task file first as a real one
must) are handed published tasks by a tmux bridge on host B, and their outcomes reach host A's
Markdown through the planner's mirror. ``swarm.py status`` and the dashboard on host B list the
board's tasks; a bridge or a planner on a host whose clock is an hour off moves leases by the
Redis server's clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import claims
import tmux_bridge
from hosts import host, remote, run_until, start_loop  # noqa: F401 (remote: a fixture)
from swarmfile import board_sync, config, events, swarm, task_store, tasks
from swarmfile.clock import HOSTNAME, parse_ts
from swarmfile.errors import NotFoundError
from swarmfile.lease_store import LeaseState
from swarmfile.stores import lease_table
from test_tmux_bridge import sock, start, wait_for  # noqa: F401 (sock: a fixture)
from tmux_bridge import Bridge

LIB = Path(__file__).resolve().parent.parent / "lib"


@pytest.fixture
def hosts(tmp_path, remote, redis_server):
    """(host A, host B): the operator checkout and a clone without task files, on one board."""
    a = host(tmp_path, remote, "host-a", redis_server.url)
    b = host(tmp_path, remote, "host-b", redis_server.url)
    config._cache.clear()
    return a, b


def make(root: Path, task_id: str, second: int = 0, **parts) -> Path:
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, created=f"2026-01-01T00:00:{second:02d}Z",
                                    **parts)


def completed_in(root: Path, ids: list[str]) -> bool:
    found = {t.task_id: t for t in task_store.list_tasks(root=root, include_completed=True, errors=[])}
    return all(found.get(i) is not None and found[i].status is tasks.Status.COMPLETED
               and found[i].path.parent == root / "tasks" / "completed" for i in ids)


def no_task_files(root: Path) -> bool:
    return list((root / "tasks").rglob("*.md")) == []


@pytest.mark.timeout(60)
def test_a_task_published_by_host_a_runs_in_a_pane_on_host_b_and_completes_in_host_a_markdown(hosts, sock):
    a, b = hosts
    make(a, "T-1")
    (pane,) = start(b, "--read-task")
    wait_for(pane, "agent> ")
    planner = start_loop(a, "host-a", str(LIB / "planner.py"), "--agent-id", "planner", "--interval", "0.2")
    bridge = Bridge(root=str(b))
    run_until([planner], lambda: completed_in(a, ["T-1"]), "T-1 was not completed in host A's Markdown",
              step=bridge.step)

    shown = wait_for(pane, "[DONE] T-1")
    assert "[TASK] T-1 .swarm/tasks/T-1.md" in shown  # this host's copy of the published text
    assert "task file says: # T-1: Task T-1" in shown and "cannot read" not in shown
    assert (b / ".swarm" / "tasks" / "T-1.md").read_text().startswith("# T-1: Task T-1\n")
    assert no_task_files(b)
    lease = claims.get_lease("T-1", root=a)
    assert (lease.state, lease.agent_id) == (LeaseState.COMPLETED, "main-agent-1")
    kinds = [e["type"] for e in events.read_events(task_id="T-1", root=b)]
    assert kinds[0] == "assigned" and [k for k in kinds if k != "assigned"] == ["acknowledged", "completed"], kinds


@pytest.mark.timeout(60)
def test_every_dispatch_on_host_b_names_the_board_copy_it_wrote(hosts, sock):
    a, b = hosts
    for n in (1, 2, 3):
        make(a, f"T-{n}", second=n)
    sync = board_sync.Sync.of(root=a)  # what host A's planner does every round
    sync.publish()
    panes = start(b, "--read-task", agents=2)
    for pane in panes:
        wait_for(pane, "agent> ")
    bridge = Bridge(root=str(b))
    with pytest.raises(NotFoundError, match="not on the task board"):
        bridge.dispatch("agent-1", "T-9")
    assert not (b / ".swarm" / "tasks" / "T-9.md").exists()

    # A planner's assignment (to agent-2), and the next ready task from the board (to agent-1).
    assigned = claims.claim_task("T-3", "main-agent-2", root=b, pid=panes[1].pid, host=HOSTNAME)
    claims.assign(assigned, root=b)
    sent = bridge.dispatch_ready()
    assert [(x.task_id, x.agent_id) for x in sent] == [("T-1", "main-agent-1"), ("T-3", "main-agent-2")]
    assert [(r["agent_id"], r["task"]) for r in tmux_bridge.pane_status(root=str(b))] == [
        ("main-agent-1", "T-1"), ("main-agent-2", "T-3")]  # `swarm.py status --panes` on host B

    def finished(*ids: str) -> bool:
        bridge.scan_once()
        return all(claims.get_lease(i, root=b).state is LeaseState.COMPLETED for i in ids)

    deadline = time.monotonic() + 15
    while not finished("T-1", "T-3"):
        assert time.monotonic() < deadline, [tmux_bridge.Tmux().capture(p.pane_id, history=-1) for p in panes]
        time.sleep(0.05)
    bridge.dispatch("agent-1", "T-2")  # by hand
    while not finished("T-2"):
        assert time.monotonic() < deadline, tmux_bridge.Tmux().capture(panes[0].pane_id, history=-1)
        time.sleep(0.05)

    for n, pane in ((1, panes[0]), (2, panes[0]), (3, panes[1])):
        shown = wait_for(pane, f"[DONE] T-{n}")
        assert f"[TASK] T-{n} .swarm/tasks/T-{n}.md" in shown and f"task file says: # T-{n}: Task T-{n}" in shown
    assert "cannot read" not in "".join(tmux_bridge.Tmux().capture(p.pane_id, history=-1) for p in panes)
    assert sorted(p.name for p in (b / ".swarm" / "tasks").glob("*.md")) == ["T-1.md", "T-2.md", "T-3.md"]
    assert no_task_files(b)
    assert sorted(sync.mirror()) == [("T-1", "completed"), ("T-2", "completed"), ("T-3", "completed")]
    assert completed_in(a, ["T-1", "T-2", "T-3"])


def test_status_on_host_b_shows_the_board_and_on_host_a_the_markdown(hosts):
    a, b = hosts
    make(a, "T-1", 1, priority="high")
    make(a, "T-2", 2, depends_on=["T-1"])
    before = swarm.collect_status(root=b)
    assert before["tasks_from"] == "markdown" and before["board_publisher"] is None and before["tasks"] == {}
    sync = board_sync.Sync.of(root=a)
    sync.publish()
    lease = claims.claim_next("exec-b1", root=b)
    assert lease.task_id == "T-1"

    on_b = swarm.collect_status(root=b)
    assert (on_b["tasks_from"], on_b["board_publisher"]) == ("board", f"{HOSTNAME}:{a}")
    assert on_b["task_counts"] == {"claimed": 1, "pending": 1}
    (held,) = on_b["tasks"]["claimed"]
    assert (held["task_id"], held["title"], held["priority"], held["holder"]) == ("T-1", "Task T-1", "high", "exec-b1")
    assert held["operator_path"] == "tasks/active/T-1-task-t-1.md" and held["path"] is None  # nothing run here
    assert [t["task_id"] for t in on_b["tasks"]["pending"]] == ["T-2"]

    # Host A lists its Markdown, with the status the board knows: the file shows the claim after the next mirror.
    on_a = swarm.collect_status(root=a)
    assert (on_a["tasks_from"], on_a["board_publisher"]) == ("markdown", f"{HOSTNAME}:{a}")
    assert on_a["task_counts"] == {"claimed": 1, "pending": 1}
    (held,) = on_a["tasks"]["claimed"]
    assert (held["task_id"], held["holder"], held["markdown_status"]) == ("T-1", "exec-b1", "pending")
    assert [(x["task_id"], x["agent_id"]) for x in on_a["leases"]] == [("T-1", "exec-b1")]
    sync.mirror()
    assert "markdown_status" not in swarm.collect_status(root=a)["tasks"]["claimed"][0]  # mirrored, not yet published
    sync.publish()
    assert swarm.collect_status(root=a)["tasks"]["claimed"][0]["holder"] == "exec-b1"

    claims.start(claims.get_lease("T-1", root=b), root=b)
    assert [swarm.collect_status(root=r)["task_counts"] for r in (a, b)] == [{"in_progress": 1, "pending": 1}] * 2
    claims.complete(claims.get_lease("T-1", root=b), root=b)
    assert [swarm.collect_status(root=r)["task_counts"] for r in (a, b)] == [{"completed": 1, "pending": 1}] * 2
    sync.mirror()
    sync.publish()
    assert swarm.collect_status(root=a)["task_counts"] == {"completed": 1, "pending": 1}
    again = swarm.collect_status(root=b)
    assert again["task_counts"] == {"completed": 1, "pending": 1}
    assert again["tasks"]["completed"][0]["operator_path"] == "tasks/completed/T-1-task-t-1.md"

    proc = subprocess.run([sys.executable, str(LIB / "swarm.py"), "status", "--root", str(b)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"tasks on the task board published by {HOSTNAME}:{a}" in proc.stdout
    assert "T-2" in proc.stdout
    doc = json.loads(subprocess.run([sys.executable, str(LIB / "swarm.py"), "status", "--json", "--root", str(b)],
                                    capture_output=True, text=True, timeout=60).stdout)
    assert doc["tasks_from"] == "board" and doc["task_counts"] == {"completed": 1, "pending": 1}


# A module's command line in a process whose clock is off: swarmfile.clock patched before anything uses it.
SKEWED = r"""
import importlib, sys
from datetime import timedelta
sys.path.insert(0, sys.argv[1])
from swarmfile import clock
real = clock.utc_now
clock.utc_now = lambda: real() + timedelta(hours=float(sys.argv[2]))
raise SystemExit(importlib.import_module(f"swarmfile.{sys.argv[3]}").main(sys.argv[4:]))
"""


def skewed(tmp_path: Path, hours: int, root: Path, module: str, *args: str) -> dict:
    """``python lib/<module>.py --root ROOT --json *args`` on a host whose clock is ``hours`` off; its JSON."""
    script = tmp_path / "skewed.py"
    script.write_text(SKEWED)
    proc = subprocess.run([sys.executable, str(script), str(LIB), str(hours), module, "--root", str(root), "--json",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("hours", [1, -1])
def test_a_bridge_on_a_host_whose_clock_is_an_hour_off_moves_leases_by_the_servers_clock(hosts, sock, tmp_path,
                                                                                       hours):
    a, b = hosts
    make(a, "T-1")
    board_sync.Sync.of(root=a).publish()
    (pane,) = start(b, "--read-task")
    wait_for(pane, "agent> ")
    sent = skewed(tmp_path, hours, b, "tmux_bridge", "dispatch", "agent-1", "T-1")["dispatched"]
    assert [x["task_id"] for x in sent] == ["T-1"]
    wait_for(pane, "[DONE] T-1")
    handled = skewed(tmp_path, hours, b, "tmux_bridge", "scan")["handled"]
    assert [(h["kind"], h["event"]) for h in handled] == [("ACK", "acknowledged"), ("DONE", "completed")]
    lease = claims.get_lease("T-1", root=b)
    server_now = lease_table(config.load_config(root=b)).now()
    assert lease.state is LeaseState.COMPLETED
    for moment in (lease.acquired_at, lease.acknowledged_at, lease.ended_at):
        assert abs((parse_ts(moment) - server_now).total_seconds()) < 60, (moment, server_now)


def test_a_planner_on_a_host_whose_clock_is_an_hour_ahead_leaves_the_other_hosts_leases_alone(hosts, tmp_path):
    a, b = hosts
    make(a, "T-1")
    board_sync.Sync.of(root=a).publish()
    lease = claims.claim_next("exec-b1", root=b)  # held on host B, live for the TTL by the server's clock
    skewed(tmp_path, 1, a, "planner", "--once")
    assert claims.get_lease("T-1", root=b) == lease
    assert events.read_events(task_id="T-1", types=["requeued"], root=a) == []
    assert task_store.find_task("T-1", root=a).status is tasks.Status.CLAIMED  # and mirrored


def test_doctor_fix_on_a_host_whose_clock_is_an_hour_ahead_leaves_the_other_hosts_leases_alone(hosts, tmp_path):
    a, b = hosts
    make(a, "T-1")
    board_sync.Sync.of(root=a).publish()
    lease = claims.claim_next("exec-b1", root=b)
    board_sync.Sync.of(root=a).mirror()  # host A's Markdown shows the claim: doctor looks at its lease
    report = skewed(tmp_path, 1, a, "doctor", "--fix")
    assert [f for f in report["findings"] if f["code"] == "stale-lease"] == [], report
    assert claims.get_lease("T-1", root=b) == lease
    assert events.read_events(task_id="T-1", types=["requeued", "expired"], root=a) == []


def test_an_mcp_agent_on_host_b_is_told_the_boards_task_counts(hosts):
    from swarmfile.agent_session import AgentSession

    a, b = hosts
    make(a, "T-1")
    make(a, "T-2", 1)
    board_sync.Sync.of(root=a).publish()
    claims.claim_next("exec-b1", root=b)
    for root in (b, a):  # host A's Markdown still says pending: the board's status is what every host is told
        assert "Tasks: 1 claimed, 1 pending." in AgentSession("mcp-1", root=str(root)).status()


def test_a_task_added_on_host_b_is_refused_as_it_would_never_be_published(hosts):
    from swarmfile.agent_session import AgentSession
    from swarmfile.errors import ValidationError

    a, b = hosts
    make(a, "T-1")
    board_sync.Sync.of(root=a).publish()
    cli = subprocess.run([sys.executable, str(LIB / "swarm.py"), "new-task", "Fix the login", "--root", str(b)],
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 2 and f"published from {HOSTNAME}:{a}" in cli.stderr, cli.stderr
    with pytest.raises(ValidationError, match="would never reach the task board"):
        AgentSession("mcp-1", root=str(b)).add_task("Fix the login")
    assert no_task_files(b)
    assert "Created" in AgentSession("mcp-1", root=str(a)).add_task("Fix the login")  # on the operator checkout


def test_the_dashboard_on_host_b_shows_the_boards_open_tasks(hosts):
    from swarmfile import dashboard

    a, b = hosts
    make(a, "T-1", 1, priority="high")
    make(a, "T-2", 2)
    make(a, "T-3", 3)
    sync = board_sync.Sync.of(root=a)
    sync.publish()
    claims.claim_next("exec-b1", root=b)
    claims.complete(claims.claim_task("T-3", "exec-b2", root=b), root=b)
    for root, source in ((b, "board"), (a, "markdown")):
        snap = dashboard.collect(root=root)
        assert (snap["tasks_from"], snap["board_publisher"]) == (source, f"{HOSTNAME}:{a}")
        assert [(r["task_id"], r["status"], r["agent"]) for r in snap["tasks"]] == [
            ("T-1", "claimed", "exec-b1"), ("T-2", "pending", None)]
        assert snap["completed_count"] == 1 and snap["errors"] == {}
    frame = dashboard.build_frame(root=b, width=120, height=40)
    assert f"TASKS on the task board of {HOSTNAME}:{a}  2 open" in "\n".join(frame)
