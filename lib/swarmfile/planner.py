"""The planner loop: keep the task queue healthy and hand work to idle executors.

    python lib/planner.py --agent-id planner [--interval S] [--once]

One round, every ``--interval`` seconds:

1. heartbeat;
2. reap: leases that expired or whose holder died are ended and their tasks requeued
   (event ``requeued``); task files left showing a stale status by a crash are repaired;
3. take back assignments an executor did not acknowledge in time (``requeued``);
4. mark a parent completed once all its sub-tasks are (``completed``);
5. flag near-duplicate pending tasks (``flagged``; the task gets a ``Possible Duplicate Of``
   field and status ``needs_attention``, so no one runs it until a person sets it pending);
6. split parallelizable tasks into sub-tasks when enough executors are active (``split``);
7. dispatch: assign ready tasks to idle executors, FIFO within priority. The planner takes
   the lease FOR the executor before it writes the assignment, so no one else can take the
   task meanwhile (``assigned``); the executor acknowledges it (``acknowledged``).

On a task board (a Redis backend with ``task_board: true``) this checkout is the operator's: after
reaping, the round mirrors every lease change into the Markdown (board_sync: Status lines, completed
tasks moved), and before dispatching it publishes the tasks that changed, so executors on every
host claim them from the board.

Every decision is an event in events.yaml. A step that meets a file that does not parse
logs one ``error`` event and the round goes on; the file is never rewritten.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional, Sequence

from . import agent_discovery
from . import board_sync
from . import claims
from . import duplicate_detector
from . import event_mirror
from . import events
from . import lifecycle
from . import ready_query
from . import task_distribution
from . import task_graph
from . import tasks
from . import task_store
from . import work_items
from .cli import EXIT_OK, parser, positive_seconds, print_json, run, show_time
from .clock import format_ts, parse_ts
from .config import Config, load_config, validate_id
from .errors import (AlreadyClaimed, BackendUnavailable, LeaseLost, NotClaimable, NotFoundError, SwarmError,
                     ValidationError, warn_once)
from .stores import lease_table

__all__ = ["Planner", "Decision", "main"]

log = logging.getLogger("swarmfile")

_BACKOFF_CAP_SECONDS = 30.0  # the longest pause between rounds while Redis is unreachable


@dataclass(frozen=True)
class Decision:
    """One thing a planning round did (each is also an event)."""

    kind: str
    task_id: Optional[str]
    detail: dict

    def to_dict(self) -> dict:
        return {"type": self.kind, "task_id": self.task_id, **self.detail}


class Planner:
    """The planner agent: one ``round()`` of decisions at a time."""

    def __init__(self, agent_id: Optional[str] = None, *, root: Optional[str] = None,
                 ack_timeout: Optional[float] = None, min_executors: Optional[int] = None) -> None:
        self.cfg: Config = load_config(root=root)
        self.agent_id = validate_id(self.cfg.get("planner", "agent_id") if agent_id is None else agent_id, "agent id")
        setting = self.cfg.settings["planner"]
        self.ack_timeout = self.cfg.seconds("planner", "ack_timeout_seconds") if ack_timeout is None else float(ack_timeout)
        self.min_executors = int(setting["min_executors_to_split"] if min_executors is None else min_executors)
        self._checked_for_duplicates: set[str] = set()
        self._duplicates: Optional[duplicate_detector.DuplicateIndex] = None  # keywords kept from the last round
        self._items_released: set[tuple[str, str]] = set()  # (agent, started_at) already handled
        self._reported: set[str] = set()  # steps whose error was already logged (once per outage)
        self._sync = (board_sync.Sync.of(root=self.cfg.root, agent_id=self.agent_id)
                      if claims.uses_board(root=self.cfg.root) else None)

    def _decide(self, kind: str, task_id: Optional[str], **detail: Any) -> Decision:
        events.append_event(kind, self.agent_id, task_id, root=self.cfg.root, **detail)
        return Decision(kind, task_id, detail)

    def round(self, now: Optional[datetime] = None) -> list[Decision]:
        """One planning round; returns what it decided.

        Its moment is the lease table's clock (the Redis server's on Redis), as claims' own: a
        planner on a host whose clock runs ahead reaped every other host's live leases.
        """
        now = now or lease_table(self.cfg).now()
        root = self.cfg.root
        decisions: list[Decision] = []
        decisions += self._step("heartbeat", agent_discovery.heartbeat, self.agent_id,
                                current_action="planning", root=root, role="planner")
        decisions += self._step("reap", self._reap, now)
        if self._sync is not None:
            decisions += self._step("task mirror", self._mirror)
        decisions += self._step("recover", self._recover_completions)
        try:
            executors = [a for a in agent_discovery.discover_agents(root=root, now=now) if a.role == "executor"]
        except SwarmError as exc:  # a corrupt heartbeat.yaml: no dispatching blind, the rest goes on
            executors = None
            decisions += self._report("discovery", exc)
        else:
            self._reported.discard("discovery")
        if executors is not None:
            decisions += self._step("items", self._release_items_of_gone_agents, now)
            decisions += self._step("assignments", self._take_back_unacknowledged, executors, now)
        decisions += self._step("parents", self._complete_parents)
        decisions += self._step("duplicates", self._flag_duplicates)
        if executors is not None and len(executors) >= self.min_executors:
            decisions += self._step("split", self._split, [a.agent_id for a in executors])
        if self._sync is not None:
            self._step("publish", self._sync.publish)
        if executors is not None:
            decisions += self._step("dispatch", self._dispatch, executors, now)
        # Redis backend: this host's events.yaml mirrors the stream (nothing to do on files)
        decisions += self._step("mirror", event_mirror.mirror_once, self.cfg)
        self._step("heartbeat", agent_discovery.heartbeat, self.agent_id, current_action="idle", root=root)
        return decisions

    def _step(self, name: str, step: Any, *args: Any, **kwargs: Any) -> list[Decision]:
        """Run one step; a file that does not parse is reported once, not a crash of the planner."""
        try:
            found = step(*args, **kwargs)
        except SwarmError as exc:
            return self._report(name, exc)
        self._reported.discard(name)
        return found if isinstance(found, list) else []

    def _report(self, step: str, exc: SwarmError) -> list[Decision]:
        if step in self._reported:
            return []
        self._reported.add(step)
        return [self._decide("error", exc.task_id, step=step, error=str(exc))]

    # ------------------------------------------------------------------ the steps

    def _reap(self, now: datetime) -> list[Decision]:
        out = []
        for lease, reason in claims.reap_expired(now, root=self.cfg.root):
            kind = "requeued" if lease.state is claims.LeaseState.EXPIRED else "repaired"
            out.append(self._decide(kind, lease.task_id, reason=reason, previous_agent=lease.agent_id,
                                    token=lease.token))
        return out

    def _mirror(self) -> list[Decision]:
        """Leases into the Markdown (board_sync); no event for a mirror write, whose lease change is
        logged by its holder, but one for a completion its dead holder never logged."""
        return [self._decide("repaired", task_id, reason="completed task moved after its holder died")
                for task_id, what in self._sync.mirror() if what == board_sync.RECOVERED]  # type: ignore[union-attr]

    def _recover_completions(self) -> list[Decision]:
        recovered = lifecycle.recover_completions(self.agent_id, root=self.cfg.root)
        return [self._decide("repaired", task_id, reason="completed task moved after its holder died")
                for task_id in recovered]

    def _release_items_of_gone_agents(self, now: datetime) -> list[Decision]:
        """Checklist items ``[IP:agent]`` of agents that died or went silent come back."""
        out = []
        for agent in agent_discovery.read_agents(root=self.cfg.root):
            reason = agent.inactive_reason(now, self.cfg.heartbeat_timeout)
            key = (agent.agent_id, str(agent.started_at))
            if reason is None or key in self._items_released or agent.agent_id == self.agent_id:
                continue
            self._items_released.add(key)
            released = work_items.release_items_of(agent.agent_id, root=self.cfg.root, by=self.agent_id)
            if released:
                out.append(self._decide("requeued", None, reason=f"{agent.agent_id}: {reason}",
                                        items=[f"{task_id}#{item.index}" for task_id, item in released]))
        return out

    def _take_back_unacknowledged(self, executors: Sequence[Any], now: datetime) -> list[Decision]:
        out = []
        live = {a.agent_id for a in executors}
        unreadable: list = []  # doctor names an assignment record that does not parse
        for found in claims.list_assignments(root=self.cfg.root, errors=unreadable):
            agent_id, lease, assigned_at = found.agent_id, found.lease, found.assigned_at
            waited = (now - parse_ts(assigned_at)).total_seconds() if assigned_at else float("inf")
            if waited < self.ack_timeout and agent_id in live:
                continue
            try:
                claims.revoke_unacknowledged(lease, root=self.cfg.root, now=now)
            except LeaseLost:
                pass  # acknowledged meanwhile, or already reaped: nothing to take back
            else:
                out.append(self._decide("requeued", lease.task_id, reason="not acknowledged",
                                        previous_agent=agent_id, waited_seconds=round(waited, 1)))
            claims.clear_assignment(agent_id, lease.token, root=self.cfg.root)
        return out

    def _complete_parents(self) -> list[Decision]:
        """Complete each parent (split task or epic) whose children are all finished.

        One parent that cannot be completed (its id is used by two files, its file went bad)
        is reported once, by its own ``error`` event, and the other parents go on.
        """
        out = []
        every = task_store.list_tasks(root=self.cfg.root, include_completed=True, errors=[])
        by_id = {t.task_id: t for t in every}
        twice = task_graph.duplicate_ids(every)
        links = task_graph.family(every)
        for parent_id, child_ids in links.children.items():
            task = by_id.get(parent_id)
            key = f"parent {parent_id}"
            if (task is None or task_store.is_finished(task, self.cfg) or links.unresolved.get(parent_id)
                    or not all(task_store.is_finished(by_id[c], self.cfg) for c in child_ids if c in by_id)):
                continue
            try:
                if parent_id in twice:
                    raise ValidationError(f"task id {parent_id} is used by {len(twice[parent_id])} files: "
                                          + ", ".join(map(str, twice[parent_id])), task_id=parent_id,
                                          hint="rename one of the tasks or delete the stale copy")
                task_store.move_to_completed(parent_id, root=self.cfg.root)
            except SwarmError as exc:
                out += self._report(key, exc)
                continue
            self._reported.discard(key)
            out.append(self._decide("completed", parent_id, reason="all sub-tasks completed",
                                    sub_tasks=sorted(child_ids)))
        return out

    def _flag_duplicates(self) -> list[Decision]:
        out = []
        listing = task_store.list_tasks(root=self.cfg.root, include_completed=True, errors=[])
        every = {t.task_id: t for t in listing}
        ages: dict[tasks.Task, tuple] = {}

        def age(task: tasks.Task) -> tuple:  # once per task: a check may match many
            found = ages.get(task)
            if found is None:
                moment = task.created_at
                found = ages[task] = (moment.timestamp() if moment else float("inf"), task.task_id)
            return found

        index = None
        for task in task_store.list_tasks(root=self.cfg.root, errors=[]):
            if (task.task_id in self._checked_for_duplicates or task.status is not tasks.Status.PENDING
                    or task.parent or task.field("Possible Duplicate Of")):
                continue
            self._checked_for_duplicates.add(task.task_id)
            if index is None:  # one index a round, and only in a round with a task to check
                index = self._duplicates = duplicate_detector.DuplicateIndex(
                    listing, duplicate_detector.duplicate_threshold(root=self.cfg.root), self._duplicates)
            matches = [m for m in index.find(task.title, task.objective, exclude=[task.path])
                       if m.task_id != task.task_id and m.task_id != task.parent
                       # Of two copies only the later one is held: the original runs.
                       and (m.task_id not in every or age(every[m.task_id]) < age(task))]
            if not matches:
                continue
            best = matches[0]
            # Held for a person: set Status back to pending to run it anyway (it is not flagged twice).
            task_store.set_fields(task.path, {"Possible Duplicate Of": f"{best.task_id} ({best.similarity:.0%} similar)",
                                         "Status": tasks.Status.NEEDS_ATTENTION.value}, root=self.cfg.root)
            out.append(self._decide("flagged", task.task_id, duplicate_of=best.task_id,
                                    similarity=round(best.similarity, 3)))
        return out

    def _split(self, executor_ids: list[str]) -> list[Decision]:
        out = []
        # On a board, this checkout's own Markdown: a task is split before it is ever published whole.
        ready = ready_query.markdown_ready if self._sync is not None else claims.ready_tasks
        for task in ready(root=self.cfg.root):
            if task.parent or task.sub_tasks or task.field("Possible Duplicate Of"):
                continue
            try:
                if self._sync is not None:
                    subs = self._split_published(task.task_id, executor_ids)
                elif not task_distribution.can_parallelize(task.path, root=self.cfg.root):
                    continue
                else:
                    subs = task_distribution.distribute_task(task.path, executor_ids, root=self.cfg.root)
            except SwarmError as exc:
                out.append(self._decide("skipped", task.task_id, reason=f"could not split: {exc}"))
                continue
            if subs:
                out.append(self._decide("split", task.task_id, sub_tasks=[s.task_id for s in subs]))
        return out

    def _split_published(self, task_id: str, executor_ids: list[str]) -> list:
        """Split a task on the board: under its lease lock, which the board's claims respect, and
        published before the lock is let go, so no executor takes a task being split."""
        task = task_store.find_task(task_id, root=self.cfg.root)  # the operator's file, not a copy
        if not task_distribution.can_parallelize(task.path, root=self.cfg.root):
            return []
        with claims.lease_lock(task_id, root=self.cfg.root):
            lease = claims.get_lease(task_id, root=self.cfg.root)
            if lease is not None and lease.state is claims.LeaseState.HELD and lease.free_reason() is None:
                return []  # claimed meanwhile: it runs whole
            subs = task_distribution.distribute_task(task.path, executor_ids, root=self.cfg.root)
            if subs:
                self._sync.publish()  # type: ignore[union-attr]
        return subs

    def _dispatch(self, executors: Sequence[Any], now: datetime) -> list[Decision]:
        idle = [a for a in executors if not a.current_task and a.pid is not None
                and claims.assignment_for(a.agent_id, root=self.cfg.root) is None]
        if not idle:
            return []
        out = []
        if self._sync is not None:  # the board picks the next ready task and leases it in one script
            for agent in idle:
                lease = claims.claim_next(agent.agent_id, root=self.cfg.root, pid=agent.pid, host=agent.host,
                                          proc_start=agent.proc_start)
                if lease is None:
                    break
                claims.assign(lease, root=self.cfg.root, now=now)
                out.append(self._decide("assigned", lease.task_id, to=agent.agent_id, token=lease.token))
            return out
        ready = iter(claims.ready_tasks(root=self.cfg.root))
        for agent in idle:
            for task in ready:
                try:
                    lease = claims.claim_task(task.task_id, agent.agent_id, root=self.cfg.root, now=now,
                                              pid=agent.pid, host=agent.host, proc_start=agent.proc_start,
                                              task_path=task.path)
                except (AlreadyClaimed, NotClaimable, NotFoundError):
                    continue
                claims.assign(lease, root=self.cfg.root, now=now)
                out.append(self._decide("assigned", task.task_id, to=agent.agent_id, token=lease.token))
                break
            else:
                break  # no ready task left
        return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser("planner.py", "Run the planner: requeue dead agents' work, split, flag duplicates, dispatch.")
    p.add_argument("--agent-id", help="this planner's id (default: planner.agent_id, swarm-planner)")
    p.add_argument("--interval", type=positive_seconds, metavar="S", help="seconds between planning rounds")
    p.add_argument("--once", action="store_true", help="run one round and exit")
    p.add_argument("--ack-timeout", type=positive_seconds, metavar="S", help="take an assignment back after S seconds")
    args = p.parse_args(argv)

    def body() -> int:
        planner = Planner(args.agent_id, root=args.root, ack_timeout=args.ack_timeout)
        interval = planner.cfg.seconds("planner", "interval_seconds") if args.interval is None else args.interval
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        agent_discovery.register_agent(planner.agent_id, role="planner", root=planner.cfg.root)
        backoff = 0.0
        try:
            while True:
                try:
                    decisions = planner.round()
                except BackendUnavailable as exc:  # Redis unreachable: pause (doubling) and try again
                    backoff = min(_BACKOFF_CAP_SECONDS, max(backoff * 2, min(interval, 1.0)))
                    warn_once(log, "%s; trying again in %.1f s", exc, backoff)
                    if args.once or stop.wait(backoff):
                        break
                    continue
                backoff = 0.0
                if args.json:
                    print_json([d.to_dict() for d in decisions])
                else:
                    for d in decisions:  # one line per decision, in UTC like the executors' lines
                        print(f"{show_time(format_ts())} {planner.agent_id} {d.kind:<10} {d.task_id or '-':<24} "
                              + " ".join(f"{k}={v}" for k, v in d.detail.items()), flush=True)
                if args.once or stop.wait(interval):
                    break
        finally:
            agent_discovery.deregister_agent(planner.agent_id, root=planner.cfg.root)
        return EXIT_OK

    return run(body)
