"""Leases against a model: hypothesis drives claim, renew, start, release, complete, fail, reap,
operator requeues and an injected clock over agents a/b/c and tasks T1..T3.

The model predicts every outcome (which error, or the exact lease that results); after each
step the lease files and the task files must equal the model. Invariants: at most one live
holder per task, tokens only ever grow (by one per claim), a stale or expired lease raises
LeaseLost and changes no byte, and each task file's status mirrors the model's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

import claims
from swarmfile import task_store
from claims import Lease, LeaseState
from swarmfile.clock import format_ts
from swarmfile.errors import AlreadyClaimed, LeaseLost, NotClaimable
from leases import lease_file

LONG = bool(os.environ.get("SWARM_LONG_TESTS"))
AGENTS = ("a", "b", "c")
TASKS = ("T1", "T2", "T3")
TTL = 60
RETRY_AFTER = 30
BASE = datetime(2031, 1, 1, tzinfo=timezone.utc)


@dataclass
class ModelTask:
    token: int = 0
    agent: Optional[str] = None
    state: Optional[LeaseState] = None  # None: never claimed
    expires: Optional[datetime] = None
    acquired: Optional[datetime] = None
    status: str = "pending"  # what the task file's **Status:** shows
    attempts: int = 0
    not_before: Optional[datetime] = None
    blocked: bool = False  # the last lease change was a failure that blocked the task


class LeaseMachine(RuleBasedStateMachine):
    leases = Bundle("leases")  # every lease ever handed out, stale ones included

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="lease-model-")
        self.root = Path(self.tmp) / "ws"
        (self.root / "tasks" / "completed").mkdir(parents=True)
        (self.root / "tasks" / "active").mkdir(parents=True)
        for task_id in TASKS:
            self.task_file(task_id).write_text(f"# {task_id}: task {task_id}\n\n**Status:** pending\n")
        self.now = BASE
        self.model = {t: ModelTask() for t in TASKS}
        self.handed_out: list[Lease] = []
        self.highest = {t: 0 for t in TASKS}

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def task_file(self, task_id: str) -> Path:
        return self.root / "tasks" / "active" / f"{task_id}.md"

    def files(self, task_id: str) -> tuple[bytes, Optional[bytes]]:
        lease = lease_file(self.root, task_id)  # the journal: every lease, so a refusal must leave all alone
        return self.task_file(task_id).read_bytes(), lease.read_bytes() if lease.exists() else None

    def live(self, m: ModelTask) -> bool:
        # The holder is this (living) process, so only the clock and the state free a lease.
        return m.state is LeaseState.HELD and self.now < m.expires

    def refusal(self, lease: Lease) -> Optional[str]:
        """Why a holder action with ``lease`` must fail, or None when it must succeed."""
        m = self.model[lease.task_id]
        if (m.token, m.agent) != (lease.token, lease.agent_id):
            return "stale"
        if m.state is not LeaseState.HELD:
            return f"already {m.state.value}"
        if self.now >= m.expires:
            return "expired"
        return None

    # ------------------------------------------------------------------ rules

    @rule(seconds=st.sampled_from([1, 30, 59, 60, 61, 3600]))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(target=leases, agent=st.sampled_from(AGENTS), task_id=st.sampled_from(TASKS))
    def claim(self, agent: str, task_id: str):
        m = self.model[task_id]
        if self.live(m):
            expected = AlreadyClaimed
        elif m.not_before is not None and self.now < m.not_before:
            expected = NotClaimable
        elif m.status == "pending" or (m.state is LeaseState.HELD and m.status in ("claimed", "in_progress")):
            expected = None
        else:
            expected = NotClaimable
        before = self.files(task_id)
        try:
            lease = claims.claim_task(task_id, agent, TTL, root=self.root, now=self.now)
        except (AlreadyClaimed, NotClaimable) as exc:
            assert type(exc) is expected, f"claim raised {exc!r}, model expected {expected}"
            assert self.files(task_id) == before, "a refused claim changed files"
            return multiple()
        assert expected is None, f"claim succeeded, model expected {expected.__name__}"
        assert lease.token == m.token + 1
        if m.blocked:  # a person set a task we blocked back to pending: its failures count from zero
            m.attempts, m.blocked = 0, False
        m.token, m.agent, m.state = lease.token, agent, LeaseState.HELD
        m.acquired, m.expires, m.status = self.now, self.now + timedelta(seconds=TTL), "claimed"
        m.not_before = None
        self.handed_out.append(lease)
        return lease

    def act(self, lease: Lease, action: str, max_attempts: int = 1) -> None:
        """A holder action: it must succeed exactly when the model says the lease is live."""
        why = self.refusal(lease)
        before = self.files(lease.task_id)
        try:
            if action == "renew":
                claims.renew(lease, TTL, root=self.root, now=self.now)
            elif action == "fail":
                claims.fail(lease, "boom", max_attempts=max_attempts, retry_after=RETRY_AFTER, root=self.root,
                            now=self.now)
            else:
                getattr(claims, action)(lease, root=self.root, now=self.now)
        except LeaseLost as exc:
            assert why is not None, f"{action} refused but the model says the lease is live: {exc}"
            assert why in str(exc), f"{action} refused for the wrong reason: {exc} (model: {why})"
            assert self.files(lease.task_id) == before, f"a refused {action} changed files"
            return
        assert why is None, f"{action} with a lease that is {why} succeeded"
        m = self.model[lease.task_id]
        if action == "renew":
            m.expires = self.now + timedelta(seconds=TTL)
        elif action == "start":
            m.status = "in_progress"
        elif action == "release":
            m.state, m.status, m.not_before = LeaseState.RELEASED, "pending", None
        elif action == "complete":
            m.state, m.status = LeaseState.COMPLETED, "completed"
        else:
            m.attempts = lease.attempts + 1
            m.state = LeaseState.FAILED
            if m.attempts >= max_attempts:
                m.status, m.not_before, m.blocked = "blocked", None, True
            else:
                m.status, m.not_before = "pending", self.now + timedelta(seconds=RETRY_AFTER)

    @rule(lease=leases)
    def renew(self, lease: Lease) -> None:
        self.act(lease, "renew")

    @rule(lease=leases)
    def start(self, lease: Lease) -> None:
        self.act(lease, "start")

    @rule(lease=leases)
    def release(self, lease: Lease) -> None:
        self.act(lease, "release")

    @rule(lease=leases)
    def complete(self, lease: Lease) -> None:
        self.act(lease, "complete")

    @rule(lease=leases, max_attempts=st.sampled_from([1, 2, 3]))
    def fail(self, lease: Lease, max_attempts: int) -> None:
        self.act(lease, "fail", max_attempts)

    @rule()
    def reap(self) -> None:
        due = sorted(t for t, m in self.model.items()
                     if m.status in ("claimed", "in_progress") and m.state is LeaseState.HELD and not self.live(m))
        reaped = claims.reap_expired(self.now, root=self.root)
        assert sorted(lease.task_id for lease, _ in reaped) == due
        for task_id in due:
            m = self.model[task_id]
            m.state, m.status = LeaseState.EXPIRED, "pending"

    @rule(task_id=st.sampled_from(TASKS))
    def operator_requeues(self, task_id: str) -> None:
        """A person sets a finished or blocked task back to pending by hand."""
        m = self.model[task_id]
        if m.status not in ("completed", "blocked"):
            return
        task_store.set_field(self.task_file(task_id), "Status", "pending", root=self.root)
        m.status = "pending"

    # ------------------------------------------------------------------ invariants

    @invariant()
    def files_match_the_model(self) -> None:
        for task_id, m in self.model.items():
            stored = claims.get_lease(task_id, root=self.root)
            if m.state is None:
                assert stored is None
            else:
                seen = (stored.token, stored.agent_id, stored.state, stored.expires_at, stored.acquired_at)
                assert seen == (m.token, m.agent, m.state, format_ts(m.expires), format_ts(m.acquired)), task_id
                assert stored.attempts == m.attempts
                assert stored.not_before == (format_ts(m.not_before) if m.not_before else None)
            status = task_store.load_task(self.task_file(task_id), use_cache=False).status
            assert status.value == m.status, f"{task_id} shows {status.value}, model {m.status}"

    @invariant()
    def tokens_only_grow(self) -> None:
        for task_id, m in self.model.items():
            assert m.token >= self.highest[task_id]
            self.highest[task_id] = m.token
        tokens = {}
        for lease in self.handed_out:
            key = (lease.task_id, lease.token)
            assert tokens.setdefault(key, lease.agent_id) == lease.agent_id, f"token {key} handed out twice"

    @invariant()
    def at_most_one_live_holder(self) -> None:
        for task_id in TASKS:
            live = {lease.agent_id for lease in self.handed_out
                    if lease.task_id == task_id and self.refusal(lease) is None}
            assert len(live) <= 1, f"{task_id} has live holders {live}"


COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)


class TestLeaseModel(LeaseMachine.TestCase):
    settings = settings(max_examples=30, stateful_step_count=30, **COMMON)


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="long tier: set SWARM_LONG_TESTS=1")
@pytest.mark.timeout(900)  # 500 runs of 80 steps, an fsync each: minutes on a loaded machine
class TestLeaseModelLong(LeaseMachine.TestCase):
    settings = settings(max_examples=500, stateful_step_count=80, **COMMON)
