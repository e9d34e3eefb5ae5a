"""The executor loop: claim ready tasks one at a time and run an agent CLI on each.

    python lib/executor.py --agent-id executor-1 --agent claude
    python lib/executor.py --agent-id executor-2 --command 'my-agent {task_file}' --once

An executor registers in heartbeat.yaml and keeps beating from a background thread, which
also renews the lease of the task in hand. It takes work a planner assigned to it first,
else claims the next ready task itself; appends ``started``, runs the agent (output kept in
``.swarm/runs/<task>/<attempt>.log``), then ``completed`` (and moves the task to
tasks/completed/) or ``failed`` (retried with exponential backoff, then ``blocked``).
SIGINT/SIGTERM stop it cleanly: the agent is stopped, the lease released, the agent
deregistered. If its lease is lost (it was paused past the TTL and someone else took the
task) it stops the agent and touches nothing of that task.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from . import agent_discovery
from . import agents
from . import board_sync
from . import claims
from . import events
from . import lifecycle
from . import reservations
from . import worktrees
from .cli import EXIT_OK, non_negative_seconds, parser, positive_int, positive_seconds, run, show_time
from .clock import format_ts
from .config import Config, load_config, validate_id
from .errors import BackendUnavailable, LeaseLost, SwarmError, warn_once

__all__ = ["Executor", "main"]

log = logging.getLogger("swarmfile")


def _git_dirty_files(workdir: Path) -> Optional[set[str]]:
    """Paths git sees as changed or new under ``workdir``, or None outside a git repository."""
    try:
        out = worktrees.git(workdir, "status", "--porcelain", "-z", "--untracked-files=all", check=False)
    except SwarmError:  # git is not installed
        return None
    if out.returncode != 0:
        return None
    return {entry[3:] for entry in out.stdout.split("\0") if len(entry) > 3 and not entry[3:].startswith(".swarm/")}


_BACKOFF_CAP_SECONDS = 30.0  # the longest pause between looks at an unreachable lease store


class Executor:
    """One executor agent: its identity, its agent command and the loop around them."""

    def __init__(self, agent_id: str, command: agents.AgentCommand, *, root: Optional[str] = None,
                 once: bool = False, max_tasks: Optional[int] = None, poll: Optional[float] = None,
                 ttl: Optional[float] = None, run_timeout: Optional[float] = None,
                 max_attempts: Optional[int] = None, backoff: Optional[float] = None,
                 use_worktree: bool = False) -> None:
        self.agent_id = validate_id(agent_id, "agent id")
        self.cfg: Config = load_config(root=root)
        self.command = command
        self.once = once
        self.max_tasks = max_tasks
        seconds = self.cfg.seconds
        self.poll = seconds("executor", "poll_seconds") if poll is None else float(poll)
        self.ttl = self.cfg.lease_seconds if ttl is None else float(ttl)
        self.run_timeout = seconds("executor", "run_timeout_seconds") if run_timeout is None else float(run_timeout)
        self.policy = lifecycle.RetryPolicy.from_config(self.cfg, max_attempts=max_attempts, backoff=backoff)
        self.use_worktree = use_worktree
        self.kill_grace = 5.0  # seconds between SIGTERM and SIGKILL of an agent when stopping
        self.stop = threading.Event()
        self.done = 0
        self._lease: Optional[claims.Lease] = None
        self._lease_lock = threading.Lock()
        self._lost = threading.Event()
        self._agent: Optional[agents.AgentProcess] = None
        self._skipped: set[str] = set()  # tasks whose files another agent holds, this round
        self._worktree: Optional[worktrees.Worktree] = None
        self._beater: Optional[threading.Thread] = None
        self._watch = claims.RenewWatch(self.ttl, self._at_risk)  # stops the agent if renewals fail too long
        self._backoff = 0.0  # the pause after the lease store was last unreachable; 0 while it answers
        # Events an outage kept out of the log (on Redis the log is as unreachable as the leases):
        # appended, with the time they happened, once the log answers again.
        self._unlogged: list[tuple[str, Optional[str], dict]] = []

    # ------------------------------------------------------------------ life cycle

    def run(self) -> int:
        """Work until stopped, out of work (``--once``) or past ``--max-tasks``; returns an exit code."""
        root = self.cfg.root
        agent_discovery.register_agent(self.agent_id, role="executor", root=root, current_action="idle",
                                       agent_command=self.command.name)
        events.append_event("registered", self.agent_id, root=root, role="executor", command=self.command.name)
        self._beater = threading.Thread(target=self._beat, name=f"{self.agent_id}-heartbeat", daemon=True)
        self._beater.start()
        try:
            while not self.stop.is_set():
                if self.max_tasks is not None and self.done >= self.max_tasks:
                    break
                try:
                    self._log_unlogged()
                    lease = self._next_lease()
                    if lease is None:
                        if self.once:
                            break
                        self.stop.wait(self.poll)
                        continue
                    self._work(lease)
                except BackendUnavailable as exc:
                    self._pause(exc)
                    continue
                self._backoff = 0.0
        finally:
            self._shutdown()
        return EXIT_OK

    def request_stop(self, signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        """Signal handler: stop the loop and the running agent; the loop cleans up."""
        self.stop.set()
        agent = self._agent
        if agent is not None:
            agent.cancelled = True
            agent._signal(signal.SIGTERM)  # no waiting inside a signal handler
            # An agent that ignores SIGTERM must not hold the stop up until its run timeout.
            killer = threading.Timer(self.kill_grace, agent._signal, args=(signal.SIGKILL,))
            killer.daemon = True
            killer.start()

    def _shutdown(self) -> None:
        self.stop.set()
        self._watch.stop()
        with self._lease_lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            lifecycle.give_back(lease, self.agent_id, "executor stopped", root=self.cfg.root)
        if self._beater is not None:
            self._beater.join(timeout=10)
        agent_discovery.deregister_agent(self.agent_id, root=self.cfg.root)
        events.append_event("stopped", self.agent_id, root=self.cfg.root, tasks_done=self.done)

    def _pause(self, exc: BackendUnavailable) -> None:
        """The lease store is unreachable: wait (doubling, up to a cap) before the next look."""
        self._backoff = min(_BACKOFF_CAP_SECONDS, max(self._backoff * 2, min(self.poll, 1.0)))
        warn_once(log, "%s; trying again in %.1f s", exc, self._backoff)
        self.stop.wait(self._backoff)

    def _beat(self) -> None:
        """Heartbeat and lease renewal, every third of the shorter of TTL and heartbeat timeout.

        A lease that cannot be renewed in time is given up by ``self._watch`` (claims.RenewWatch).
        """
        interval = max(0.05, min(self.ttl, self.cfg.heartbeat_timeout) / 3)
        while not self.stop.wait(interval):
            with self._lease_lock:
                lease = self._lease
                if lease is not None:
                    asked = time.monotonic()
                    try:
                        self._lease = claims.renew(lease, self.ttl, root=self.cfg.root)
                        if not self._watch.fired:
                            self._watch.renewed(asked)
                    except LeaseLost as exc:
                        self._drop(lease, str(exc))
                    except SwarmError:
                        pass  # a held lock, a slow disk, Redis unreachable: the next beat retries
                    if self._watch.fired:
                        self._lease = None  # given up by the watch: its outcome is not ours to record
            try:
                agent_discovery.heartbeat(self.agent_id, current_task=lease.task_id if lease else None,
                                          current_action="executing" if lease else "idle", root=self.cfg.root)
            except SwarmError:
                pass

    def _drop(self, lease: claims.Lease, reason: str) -> None:
        """The lease in hand is lost: stop the agent; its outcome is not ours to record."""
        self._lease = None
        self._watch.stop()
        self._lost.set()
        if self._agent is not None:
            self._agent.terminate(grace=2)
        self._event("lease_lost", lease.task_id, reason=reason, token=lease.token)

    def _at_risk(self) -> None:
        """The watch's timer: no renewal succeeded in time; stop the agent before the lease can expire.

        Runs in the timer's thread without the lease lock (the beat thread may hold it, stuck in a renewal).
        """
        lease = self._lease
        self._lost.set()
        agent = self._agent
        if agent is not None:
            agent.terminate(grace=2)
        if lease is not None:
            data = {"token": lease.token, "happened_at": format_ts(),
                    "reason": "could not renew in time: stopped the agent before the lease could expire"}
            try:
                self._event("lease_lost", lease.task_id, **data)
            except SwarmError:  # the event log is as unreachable as the lease: logged once it is back
                self._unlogged.append(("lease_lost", lease.task_id, data))
            log.warning("%s: could not renew the lease of %s in time; stopped its agent", self.agent_id, lease.task_id)

    def _log_unlogged(self) -> None:
        """Append the events an outage kept out of the log; BackendUnavailable keeps the rest for later."""
        while self._unlogged:
            kind, task_id, data = self._unlogged[0]
            self._event(kind, task_id, **data)
            self._unlogged.pop(0)

    # ------------------------------------------------------------------ one task

    def _next_lease(self) -> Optional[claims.Lease]:
        found = claims.assignment_for(self.agent_id, root=self.cfg.root)
        if found is not None:
            lease, _ = found
            claims.clear_assignment(self.agent_id, lease.token, root=self.cfg.root)
            acked = lifecycle.acknowledge(lease, self.agent_id, root=self.cfg.root)
            if acked.lease is None:
                return None  # taken back before we acknowledged: look again
            return self._reserve_files(acked.lease)
        # Requeue what dead agents held before looking: without a planner, nobody else would.
        try:
            reaped = claims.reap_expired(root=self.cfg.root)
        except SwarmError as exc:  # a lock held too long, a file gone bad: claiming still works
            reaped = []
            warn_once(log, "could not reap expired leases: %s", exc)
        lifecycle.recover_completions(self.agent_id, root=self.cfg.root)
        for lease, reason in reaped:
            self._event("requeued" if lease.state is claims.LeaseState.EXPIRED else "repaired", lease.task_id,
                        reason=reason, previous_agent=lease.agent_id, token=lease.token)
        while not self.stop.is_set():
            lease = claims.claim_next(self.agent_id, self.ttl, root=self.cfg.root, skip=self._skipped)
            if lease is None:
                self._skipped.clear()  # files held elsewhere may be free by the next look
                return None
            lease = lifecycle.begin(lease, root=self.cfg.root)
            if lease is None:
                continue
            reserved = self._reserve_files(lease)
            if reserved is not None:
                return reserved
        return None

    def _reserve_files(self, lease: claims.Lease) -> Optional[claims.Lease]:
        """Reserve the task's Files to Modify; on a clash give the task back and skip it for now."""
        task = board_sync.local_task(lease.task_id, root=self.cfg.root)
        if not task.files_to_modify:
            return lease
        try:
            patterns = reservations.patterns_for_task(task.files_to_modify)
            reservations.reserve(self.agent_id, patterns, task_id=lease.task_id, ttl=self.ttl * 4,
                                 root=self.cfg.root)
            return lease
        except reservations.ReservationConflict as exc:
            claims.release(lease, reason=f"files held by {exc.holder}", root=self.cfg.root)
            self._skipped.add(lease.task_id)
            self._event("skipped", lease.task_id, reason=str(exc.reason), holder=exc.holder, token=lease.token)
            return None

    def _announce(self, task_id: Optional[str]) -> None:
        """Heartbeat now with the task in hand, so a planner never sees a busy executor as idle."""
        try:
            agent_discovery.heartbeat(self.agent_id, current_task=task_id,
                                      current_action="executing" if task_id else "idle", root=self.cfg.root)
        except SwarmError:
            pass  # the beat thread retries

    def _event(self, kind: str, task_id: Optional[str], **data: Any) -> None:
        events.append_event(kind, self.agent_id, task_id, root=self.cfg.root, **data)

    def _say(self, text: str) -> None:
        """One line on stdout per claim and per finish, so a person watching sees the work (UTC)."""
        print(f"{show_time(format_ts())} {self.agent_id} {text}", flush=True)

    def _said(self, task_id: str, outcome: Optional[lifecycle.Outcome]) -> None:
        if outcome is None:
            return
        text = "lost its lease" if outcome.lost else "blocked" if outcome.blocked else outcome.event
        if outcome.reason and outcome.event != "completed":
            text += f": {' '.join(outcome.reason.split())[:120]}"
        self._say(f"finished {task_id}: {text}")

    def _work(self, lease: claims.Lease) -> None:
        # The run number names the log: every run of the task gets a log of its own.
        runs = self.cfg.runtime_dir / "runs" / lease.task_id
        attempt = 1 + (sum(1 for name in os.listdir(runs) if name.endswith(".log")) if runs.is_dir() else 0)
        self._lost.clear()
        self._announce(lease.task_id)
        try:
            asked = time.monotonic()
            try:  # the lease is timed from a renewal of our own: a planner may have claimed it a while ago
                lease = claims.renew(lease, self.ttl, root=self.cfg.root)
            except LeaseLost as exc:
                self._event("lease_lost", lease.task_id, reason=str(exc), token=lease.token)
                return
            except BackendUnavailable:
                raise  # run() pauses; the lease expires unused
            except SwarmError:
                pass  # a held lock: the beat renews it (the claim was just made, or the planner's was recent)
            with self._lease_lock:
                self._lease = lease
                self._watch.renewed(asked)
            self._run(lease, attempt)
        finally:
            reservations.release_all(self.agent_id, lease.task_id, root=self.cfg.root)
            self._retire_worktree()
            self._announce(None)

    def _run(self, lease: claims.Lease, attempt: int) -> None:
        root = self.cfg.root
        task = board_sync.local_task(lease.task_id, root=root)
        workdir, env = root, dict(os.environ)
        if self.use_worktree:
            self._worktree = worktrees.create_for_lease(lease, root=root)
            workdir = self._worktree.path
            env.update(worktrees.run_env(self._worktree, root=root))
        log_path = self.cfg.runtime_dir / "runs" / lease.task_id / f"{attempt}.log"
        before = set() if self.use_worktree else _git_dirty_files(workdir)
        self._event("started", lease.task_id, token=lease.token, attempt=attempt, title=task.title,
                    log=str(log_path.relative_to(root)) if log_path.is_relative_to(root) else str(log_path))
        self._say(f"claimed {lease.task_id} (attempt {attempt}, token {lease.token}): {task.title}")
        try:
            self._agent = agents.start_agent(self.command, task_id=lease.task_id, task_file=task.path,
                                             agent_id=self.agent_id, root=root, workdir=workdir, log_path=log_path,
                                             env=env)
        except SwarmError as exc:
            self._finish_failed(attempt, str(exc), None, 0.0)
            return
        if self.stop.is_set():  # a signal arrived while the agent was starting
            self._agent.cancelled = True
            self._agent._signal(signal.SIGTERM)
        result = self._agent.wait(self.run_timeout)
        self._agent = None
        if self._worktree is not None:
            changed: Optional[list[str]] = worktrees.changed_files(self._worktree)
        else:
            after = _git_dirty_files(workdir)
            changed = sorted(after - before) if before is not None and after is not None else None
        if self._lost.is_set():
            return  # someone else owns the task now; its files are theirs to judge
        outcome = result.outcome
        if outcome is agents.Outcome.DONE:
            self._finish_done(attempt, result, changed)
        elif outcome is agents.Outcome.CANCELLED:
            pass  # _shutdown releases the lease
        elif outcome in (agents.Outcome.WAITING, agents.Outcome.HELP):
            self._finish_paused(attempt, result)
        else:
            self._finish_failed(attempt, result.reason, result.exit_code, result.duration, result.output_tail)

    def _take_lease(self) -> Optional[claims.Lease]:
        """The lease in hand, no longer renewed by the beat thread: the outcome is about to end it."""
        with self._lease_lock:
            lease, self._lease = self._lease, None
            self._watch.stop()
            if self._watch.fired:
                lease = None  # given up: the agent was stopped, the outcome is not ours
        return lease

    def _finish_done(self, attempt: int, result: agents.AgentResult, changed: Optional[list[str]]) -> None:
        with self._lease_lock:
            lease = self._lease
        if lease is None:
            return
        merge: dict[str, Any] = {}
        if self._worktree is not None:  # merged while the lease is still renewed: a merge may take a while
            title = board_sync.local_task(lease.task_id, root=self.cfg.root).title
            merge = lifecycle.merge_back(lease, self.agent_id, self._worktree, root=self.cfg.root, title=title)
        lease = self._take_lease()
        if lease is None:
            return
        if lifecycle.merge_failed(merge):  # the merge queue has marked the task and logged why
            self._said(lease.task_id, lifecycle.needs_attention(lease, self.agent_id, f"merge {merge['merge']}",
                                                                root=self.cfg.root))
            self.done += 1
            return
        data: dict[str, Any] = {"duration_seconds": round(result.duration, 3), "exit_code": result.exit_code,
                                "attempt": attempt, **merge}
        if changed is not None:
            data["files_modified"] = changed
        outcome = lifecycle.done(lease, self.agent_id, root=self.cfg.root, **data,
                                 result={"exit_code": result.exit_code, "duration_seconds": round(result.duration, 3)})
        self._said(lease.task_id, outcome)
        if not outcome.lost:
            self.done += 1

    def _retire_worktree(self) -> None:
        wt, self._worktree = self._worktree, None
        if wt is not None:
            try:
                worktrees.retire(wt, root=self.cfg.root)
            except SwarmError:
                pass  # cleanup_stale (or doctor --fix) gets it later; unmerged commits are never lost

    def _finish_failed(self, attempt: int, reason: str, exit_code: Optional[int], duration: float,
                       output_tail: str = "") -> None:
        lease = self._take_lease()
        if lease is None:
            return
        outcome = lifecycle.failed(lease, self.agent_id, reason, policy=self.policy, root=self.cfg.root,
                                   exit_code=exit_code, attempt=attempt, duration_seconds=round(duration, 3),
                                   **({"output_tail": output_tail[-500:]} if output_tail else {}))
        self._said(lease.task_id, outcome)
        if not outcome.lost:
            self.done += 1

    def _finish_paused(self, attempt: int, result: agents.AgentResult) -> None:
        lease = self._take_lease()
        if lease is None:
            return
        kind = "waiting" if result.outcome is agents.Outcome.WAITING else "help"
        self._said(lease.task_id, lifecycle.pause(lease, self.agent_id, kind, result.reason, policy=self.policy,
                                                  root=self.cfg.root, attempt=attempt))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser("executor.py", "Run an executor: claim ready tasks and run an agent CLI on each.", json_flag=False)
    p.add_argument("--agent-id", required=True, help="this executor's id, e.g. executor-1")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--agent", metavar="PRESET", help=f"agent preset: {', '.join(sorted(agents.PRESETS))}")
    how.add_argument("--command", metavar="CMD",
                     help="any command; {task_file} {task_id} {prompt} {workdir} {agent_id} {root} are filled in")
    p.add_argument("--once", action="store_true", help="exit when no ready task is left instead of polling")
    p.add_argument("--max-tasks", type=positive_int, metavar="N", help="exit after N tasks")
    p.add_argument("--poll", type=positive_seconds, metavar="S", help="seconds between looks for work when idle")
    p.add_argument("--ttl", type=positive_seconds, metavar="S", help="lease TTL in seconds (renewed while working)")
    p.add_argument("--timeout", type=positive_seconds, metavar="S", help="kill an agent run after S seconds")
    p.add_argument("--max-attempts", type=positive_int, metavar="N", help="failed runs before a task is blocked")
    p.add_argument("--backoff", type=non_negative_seconds, metavar="S", help="seconds before the first retry (doubles)")
    p.add_argument("--worktree", action="store_true", help="run each task in its own git worktree")
    args = p.parse_args(argv)

    def body() -> int:
        cfg = load_config(root=args.root)
        command = agents.resolve_command(args.agent, args.command, cfg.settings["agents"]["presets"])
        executor = Executor(args.agent_id, command, root=str(cfg.root), once=args.once, max_tasks=args.max_tasks,
                            poll=args.poll, ttl=args.ttl, run_timeout=args.timeout,
                            max_attempts=args.max_attempts, backoff=args.backoff, use_worktree=args.worktree)
        signal.signal(signal.SIGTERM, executor.request_stop)
        signal.signal(signal.SIGINT, executor.request_stop)
        return executor.run()

    return run(body)
