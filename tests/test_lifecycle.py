"""lifecycle: one order for every outcome (lease, event, move), recoverable after a crash at each step."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

import claims
import events
from swarmfile import lifecycle
from swarmfile import tasks
from swarmfile import task_store
from swarmfile.clock import utc_now
from swarmfile.config import load_config
from swarmfile.errors import NotClaimable

LIB = Path(__file__).resolve().parent.parent / "lib" / "swarmfile"


def make_task(root, task_id):
    return task_store.new_task_file(task_id, f"Task {task_id}", root=root, priority="medium", created="2026-01-01T00:00:00Z")


def policy(**kw):
    return lifecycle.RetryPolicy(**{"max_attempts": 2, "backoff": 10.0, "wait_retry": 30.0, **kw})


def kinds(root, task_id):
    return [e["type"] for e in events.read_events(task_id=task_id, root=root)]


def test_done_completes_logs_then_moves(workspace):
    make_task(workspace, "T-1")
    lease = claims.claim_task("T-1", "executor-1")
    outcome = lifecycle.done(lease, "executor-1", root=workspace, attempt=1)
    assert (outcome.event, outcome.moved, outcome.lease.state) == ("completed", True, claims.LeaseState.COMPLETED)
    assert kinds(workspace, "T-1") == ["completed"]
    assert task_store.find_task("T-1", root=workspace).path.parent == workspace / "tasks" / "completed"
    [event] = events.read_events(task_id="T-1", root=workspace)
    assert (event["token"], event["attempt"]) == (lease.token, 1)


def test_a_stale_lease_changes_nothing_and_is_logged_as_lost(workspace):
    make_task(workspace, "T-1")
    old = claims.claim_task("T-1", "executor-1")
    claims.release(old, root=workspace)
    claims.claim_task("T-1", "executor-2")
    outcome = lifecycle.done(old, "executor-1", root=workspace)
    assert outcome.lost and outcome.lease is None
    assert kinds(workspace, "T-1") == ["lease_lost"]
    assert task_store.find_task("T-1", root=workspace).path.parent == workspace / "tasks" / "active"


def test_failed_backs_off_doubling_then_blocks(workspace):
    make_task(workspace, "T-1")
    first = lifecycle.failed(claims.claim_task("T-1", "e1"), "e1", "boom", policy=policy(), root=workspace)
    assert (first.blocked, first.data["retry_in_seconds"]) == (False, 10.0)
    later = utc_now() + timedelta(seconds=11)
    second = lifecycle.failed(claims.claim_task("T-1", "e1", now=later), "e1", "boom again", policy=policy(),
                              root=workspace, now=later)
    assert second.blocked and second.data["blocked"] is True
    assert kinds(workspace, "T-1") == ["failed", "failed", "blocked"]
    assert task_store.find_task("T-1", root=workspace).status is tasks.Status.BLOCKED


@pytest.mark.parametrize("kind", ["waiting", "help"])
def test_pause_gives_the_task_back_to_rest(workspace, kind):
    make_task(workspace, "T-1")
    outcome = lifecycle.pause(claims.claim_task("T-1", "e1"), "e1", kind, "need a key", policy=policy(),
                              root=workspace)
    assert (outcome.event, outcome.lease.state) == (kind, claims.LeaseState.RELEASED)
    with pytest.raises(NotClaimable):  # resting for wait_retry seconds
        claims.claim_task("T-1", "e2")
    with pytest.raises(ValueError):
        lifecycle.pause(claims.claim_task("T-1", "e1", now=utc_now() + timedelta(seconds=31)), "e1", "sleeping", "",
                        policy=policy(), root=workspace)


def test_crash_between_completion_and_event_is_recovered_once(workspace):
    """The tmux bridge used to move the file before logging: a kill in between lost the event for good.

    Now the lease is the truth; a completion whose holder died before the event is logged and
    moved by the next recovery, exactly once however many recover.
    """
    make_task(workspace, "T-1")
    lease = claims.claim_task("T-1", "main-agent-1")
    claims.complete(lease, root=workspace)  # the holder is killed right here
    later = utc_now() + timedelta(minutes=5)
    assert lifecycle.recover_completions("planner-1", root=workspace, now=later) == ["T-1"]
    assert lifecycle.recover_completions("executor-2", root=workspace, now=later) == []
    [event] = events.read_events(task_id="T-1", root=workspace)
    assert (event["type"], event["token"], event["recovered"], event["completed_by"]) == \
        ("completed", lease.token, True, "main-agent-1")
    assert task_store.find_task("T-1", root=workspace).path.parent == workspace / "tasks" / "completed"


def test_a_failed_move_is_logged_not_raised_and_recovered_later(workspace):
    make_task(workspace, "T-1")
    source = task_store.find_task("T-1", root=workspace).path
    blocker = workspace / "tasks" / "completed" / source.name
    blocker.write_text("an operator's file with the same name\n")
    outcome = lifecycle.done(claims.claim_task("T-1", "e1"), "e1", root=workspace)
    assert (outcome.event, outcome.moved) == ("completed", False)
    assert kinds(workspace, "T-1") == ["completed"]  # the event is there although the move failed
    assert blocker.read_text() == "an operator's file with the same name\n"
    later = utc_now() + timedelta(minutes=5)
    assert lifecycle.recover_completions("e2", root=workspace, now=later) == []  # still blocked: left alone
    blocker.unlink()
    assert lifecycle.recover_completions("e2", root=workspace, now=later) == ["T-1"]
    assert kinds(workspace, "T-1") == ["completed"]  # logged once
    assert task_store.find_task("T-1", root=workspace).path.parent == workspace / "tasks" / "completed"


def test_retry_policy_reads_swarm_yaml(workspace):
    (workspace / "swarm.yaml").write_text("executor:\n  max_attempts: 5\n  backoff_seconds: 2\n")
    got = lifecycle.RetryPolicy.from_config(load_config(root=workspace))
    assert (got.max_attempts, got.retry_after(0), got.retry_after(3)) == (5, 2.0, 16.0)


def _imports(module: str) -> set[str]:
    tree = ast.parse((LIB / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and not node.module:
            found.update(alias.name for alias in node.names)  # from . import x
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("driver", ["executor", "tmux_bridge", "planner"])
def test_drivers_decide_no_outcome_themselves(driver):
    """Outcomes go through lifecycle: no driver calls the lease-ending functions, no loop imports another."""
    source = (LIB / f"{driver}.py").read_text()
    assert "lifecycle" in _imports(driver)
    for call in () if driver == "planner" else ("claims.complete(", "claims.fail(", "claims.start(", "task_store.move_to_completed("):
        assert call not in source, f"{driver}.py calls {call} itself"
    assert not {"executor", "tmux_bridge", "planner"} & (_imports(driver) - {driver})
