"""An agent that drives itself through tool calls: its registration, the task in hand, its worktree.

The MCP server (mcp_server.py) holds one ``AgentSession`` per connected agent and turns each
tool call into one method call here. The session, not the model, holds the lease and its
fencing token: a background thread renews the lease and beats the agent's heartbeat while
the session is open. Every outcome goes through lifecycle.py, in the order the executor
uses (merge back while the lease is still renewed, then done), so a task finished here is
finished exactly as one finished by the executor.

Rules of the session:

- one task at a time: ``claim`` while holding a task is refused;
- ``close`` (the client disconnected, or SIGINT/SIGTERM) gives an unfinished task back at
  once (``released``: pending for anyone), releases the agent's reservations, retires its
  worktree (one holding uncommitted work is kept) and marks the agent stopped. A session
  killed outright (SIGKILL) holds a lease of a dead process: the next claim by anyone frees
  it, as for any holder;
- an agent id already used by another live process gets a suffix (``claude-2``, ...), so
  two sessions configured alike never share an identity (leases, reservations, inbox).

Every method returns the text the model reads; a refusal raises SwarmError (or a subclass)
whose message says which task, why and what to do. A stale lease raises LeaseLost with the
lease table's own message.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from . import agent_discovery
from . import board_sync
from . import claims
from . import events
from . import lifecycle
from . import reservations
from . import stores
from . import tasks
from . import task_store
from . import workspace
from . import worktrees
from .cli import require_workspace
from .clock import format_ts
from .config import Config, load_config, validate_id
from .errors import AlreadyClaimed, LeaseLost, NotClaimable, ReservationConflict, SwarmError, ValidationError
from .fileio import locked, read_text

__all__ = ["AgentSession"]

log = logging.getLogger("swarmfile")

_ROLE = "agent"  # not "executor": the planner dispatches only to executors; this agent claims for itself
_MAX_LISTED = 20  # tasks, messages or reservations shown in one reply
_TASK_TEXT_LIMIT = 12_000  # characters of a task file put into the claim reply


class AgentSession:
    """One self-driving agent: identity, the lease in hand (renewed in the background), worktree."""

    def __init__(self, agent_id: str, *, root: Optional[str] = None, ttl: Optional[float] = None,
                 use_worktree: bool = False, driven_task: Optional[str] = None) -> None:
        self.requested_id = validate_id(agent_id, "agent id")
        self.agent_id = self.requested_id
        self.cfg: Config = load_config(root=root)
        self.ttl = self.cfg.lease_seconds if ttl is None else float(ttl)
        self.policy = lifecycle.RetryPolicy.from_config(self.cfg)
        self.use_worktree = use_worktree
        # The agent CLI was started by an executor (or the tmux bridge) for this task, which holds
        # its lease and reads its outcome from its output: claiming or ending tasks here would
        # take a second task, or end the executor's under its feet.
        self.driven_task = driven_task
        self.calls = threading.Lock()  # one tool call at a time: a client may send several at once
        self._lease: Optional[claims.Lease] = None
        self._lease_lock = threading.Lock()  # guards _lease between tool calls and the beat thread
        self._lost: Optional[LeaseLost] = None  # why the lease in hand was lost, until the next claim
        # Events an outage kept out of the log (on Redis it is as unreachable as the leases): the beat
        # appends them, with the time they happened, once the log answers again.
        self._unlogged: list[dict] = []
        self._watch = claims.RenewWatch(self.ttl, self._at_risk)  # gives the lease up if renewals fail too long
        self._worktree: Optional[worktrees.Worktree] = None
        self._stop = threading.Event()
        self._beater: Optional[threading.Thread] = None
        self.closed = False

    @property
    def root(self) -> Path:
        return self.cfg.root

    # ------------------------------------------------------------------ open and close

    def open(self) -> str:
        """Register the agent (under a free id) and start the beat thread; returns the id taken."""
        require_workspace(root=self.root)  # not a workspace: every tool call says so (mcp_server.Opening)
        with locked(self.cfg.runtime_dir / "agent-ids", lock_dir=self.cfg.lock_dir, timeout=self.cfg.lock_timeout):
            self.agent_id = self._free_id()
            agent_discovery.register_agent(self.agent_id, role=_ROLE, root=self.root, current_action="idle",
                                           agent_command="mcp")
        events.append_event("registered", self.agent_id, root=self.root, role=_ROLE, command="mcp")
        self._beater = threading.Thread(target=self._beat, name=f"{self.agent_id}-heartbeat", daemon=True)
        self._beater.start()
        return self.agent_id

    def _free_id(self) -> str:
        now = stores.lease_table(self.cfg).now()  # heartbeats as every host judges them (the Redis server's clock)
        for n in range(1, 100):
            candidate = self.requested_id if n == 1 else f"{self.requested_id}-{n}"
            info = agent_discovery.get_agent_info(candidate, root=self.root)
            if info is None or info.inactive_reason(now, self.cfg.heartbeat_timeout) is not None:
                return candidate
        raise SwarmError(f"agent ids {self.requested_id} to {self.requested_id}-99 are all in use by live agents",
                         path=stores.agent_registry(self.cfg).where(), hint="pass another --agent-id")

    def close(self, reason: str, *, wait: float = 30.0) -> bool:
        """Give back the task in hand, release reservations, retire the worktree, deregister.

        Waits up to ``wait`` seconds for a tool call in progress (a merge may take a while);
        False if it had to give up: the lease then ends by the usual rules once this process dies.
        """
        if self.closed:
            return True
        if not self.calls.acquire(timeout=wait):
            return False
        try:
            if self.closed:
                return True
            self.closed = True
            self._stop.set()
            lease = self._take_lease()
            if lease is not None:
                self._quietly(lifecycle.give_back, lease, self.agent_id, reason, root=self.root, via="mcp")
                self._after_task(lease.task_id)
            elif self._lost is not None:
                self._after_task(self._lost.task_id)  # the worktree of a task someone else took over
            self._quietly(reservations.release_all, self.agent_id, root=self.root)
            if self._beater is not None:
                self._beater.join(timeout=5)
            self._quietly(agent_discovery.deregister_agent, self.agent_id, root=self.root)
            self._quietly(events.append_event, "stopped", self.agent_id, root=self.root, reason=reason)
            return True
        finally:
            self.calls.release()

    @staticmethod
    def _quietly(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except SwarmError as exc:  # shutting down: say it, and let the rest of the cleanup run
            log.warning("while closing: %s", exc)

    def _beat(self) -> None:
        """Renew the lease in hand and beat the heartbeat, every third of the shorter timeout."""
        interval = max(0.05, min(self.ttl, self.cfg.heartbeat_timeout) / 3)
        while not self._stop.wait(interval):
            while self._unlogged:
                try:
                    events.append_event(**self._unlogged[0])
                except SwarmError:
                    break  # still unreachable: the next beat tries again
                self._unlogged.pop(0)
            with self._lease_lock:
                lease = self._lease
                if lease is not None:
                    asked = time.monotonic()
                    try:
                        self._lease = claims.renew(lease, self.ttl, root=self.root)
                        if not self._watch.fired:
                            self._watch.renewed(asked)
                    except LeaseLost as exc:
                        self._lease, self._lost = None, exc
                        self._watch.stop()
                        self._quietly(events.append_event, "lease_lost", self.agent_id, lease.task_id,
                                      root=self.root, reason=exc.reason, token=lease.token)
                    except SwarmError:
                        pass  # a held lock, a slow disk, Redis unreachable: the next beat retries
                    if self._watch.fired:
                        self._lease = None  # given up by the watch (_at_risk)
            self._announce(lease.task_id if lease is not None and self._lease is not None else None)

    def _at_risk(self) -> None:
        """The watch's timer: no renewal succeeded in time; the agent must stop before the lease can expire.

        Runs in the timer's thread without the lease lock (the beat thread may hold it, stuck in a renewal).
        """
        lease = self._lease
        if lease is None:
            return
        self._lost = LeaseLost(f"your lease on {lease.task_id} could not be renewed in time; stop working on it: "
                               "it goes to another agent once it expires", task_id=lease.task_id)
        event = dict(type="lease_lost", agent=self.agent_id, task_id=lease.task_id, root=self.root,
                     reason=self._lost.reason, token=lease.token, happened_at=format_ts())
        try:
            events.append_event(**event)
        except SwarmError:  # the event log is as unreachable as the lease
            self._unlogged.append(event)

    def _announce(self, task_id: Optional[str]) -> None:
        try:
            agent_discovery.heartbeat(self.agent_id, current_task=task_id,
                                      current_action="working" if task_id else "idle", root=self.root)
        except SwarmError:
            pass  # the next beat tries again

    # ------------------------------------------------------------------ the lease in hand

    def _take_lease(self) -> Optional[claims.Lease]:
        """The lease in hand, no longer renewed: the outcome about to be recorded ends it."""
        with self._lease_lock:
            lease, self._lease = self._lease, None
            self._watch.stop()
        return lease

    def _held(self, action: str) -> claims.Lease:
        """The lease in hand, or the refusal that says why there is none."""
        with self._lease_lock:
            lease, lost = self._lease, self._lost
            if self._watch.fired:
                lease = None  # given up (_at_risk): refused like a lost lease
        if lease is None:
            raise self._refusal(action, lost)
        return lease

    def _take(self, action: str) -> claims.Lease:
        """The lease in hand, no longer renewed (the outcome about to be recorded ends it), or the refusal."""
        with self._lease_lock:
            lease, lost, self._lease = self._lease, self._lost, None
            self._watch.stop()
            if self._watch.fired:
                lease = None  # given up (_at_risk): refused like a lost lease
        if lease is None:
            if lost is not None:
                self._after_task(lost.task_id)  # our side of a task now someone else's
            raise self._refusal(action, lost)
        return lease

    @staticmethod
    def _refusal(action: str, lost: Optional[LeaseLost]) -> SwarmError:
        if lost is not None:
            return LeaseLost(lost.reason, task_id=lost.task_id, holder=lost.holder,
                             hint=f"your work on {lost.task_id} is not recorded: stop it and claim another task")
        return SwarmError(f"cannot {action}: you hold no task", hint="claim a task first")

    def _refuse_lost(self, lease: claims.Lease, outcome: lifecycle.Outcome) -> None:
        if outcome.lost:
            raise LeaseLost(outcome.reason, task_id=lease.task_id,
                            hint=f"your work on {lease.task_id} is not recorded: stop it and claim another task")

    def _after_task(self, task_id: str) -> None:
        """The task has ended for this agent: its reservations, its worktree, the heartbeat."""
        self._quietly(reservations.release_all, self.agent_id, task_id, root=self.root)
        wt, self._worktree = self._worktree, None
        if wt is not None:
            self._quietly(worktrees.retire, wt, root=self.root)
        self._announce(None)

    # ------------------------------------------------------------------ tools

    def ready(self, limit: int = 10) -> str:
        found = claims.ready_tasks(root=self.root)
        if not found:
            return "No task is ready. Check again later, or add one with add_task."
        shown = found[:max(1, min(limit, _MAX_LISTED))]
        lines = [f"{len(found)} task(s) ready, in the order claim takes them:"]
        lines += [f"- {task.task_id} [{task.priority_text or 'medium'}] {task.title}" for task in shown]
        if len(found) > len(shown):
            lines.append(f"... and {len(found) - len(shown)} more")
        return "\n".join(lines)

    def _not_driven(self) -> None:
        if self.driven_task:
            raise SwarmError(f"an executor runs you for task {self.driven_task}: it holds that task's lease and "
                             "records its outcome from your output, so claim, renew, done, failed and waiting are "
                             "not yours to call", task_id=self.driven_task,
                             hint=f"work on {self.driven_task} and end with the marker its prompt asks for")

    def claim(self, task_id: Optional[str] = None) -> str:
        self._not_driven()
        with self._lease_lock:
            held = self._lease
        if held is not None:
            raise SwarmError(f"cannot claim: you already hold {held.task_id}",
                             task_id=held.task_id, hint="finish it with done, failed or waiting first")
        if self._lost is not None:
            self._after_task(self._lost.task_id)
            self._lost = None
        self._requeue_dead()
        asked = time.monotonic()
        if task_id is not None:
            lease = self._claim_one(validate_id(task_id, "task id"))
        else:
            lease = self._claim_next()
            if lease is None:
                return "No task is ready to claim. Check again later (ready), or add one with add_task."
        task = board_sync.local_task(lease.task_id, root=self.root)
        workdir = self.root
        try:
            if self.use_worktree:
                self._worktree = worktrees.create_for_lease(lease, root=self.root)
                workdir = self._worktree.path
        except Exception:  # a git error, a full disk: the task goes back before the refusal
            lifecycle.give_back(lease, self.agent_id, "could not create its worktree", root=self.root, via="mcp")
            self._after_task(lease.task_id)
            raise
        with self._lease_lock:
            self._lease = lease
            self._watch.renewed(asked)
        events.append_event("started", self.agent_id, lease.task_id, root=self.root, token=lease.token,
                            title=task.title, via="mcp", workdir=str(workdir))
        self._announce(lease.task_id)
        return self._claim_text(task, workdir)

    def _requeue_dead(self) -> None:
        """What dead or expired holders left is pending again before we look (as the executor does)."""
        try:
            reaped = claims.reap_expired(root=self.root)
        except SwarmError as exc:
            reaped = []
            log.warning("could not reap expired leases: %s", exc)
        lifecycle.recover_completions(self.agent_id, root=self.root)
        for lease, reason in reaped:
            kind = "requeued" if lease.state is claims.LeaseState.EXPIRED else "repaired"
            events.append_event(kind, self.agent_id, lease.task_id, root=self.root, reason=reason,
                                previous_agent=lease.agent_id, token=lease.token)

    def _claim_one(self, task_id: str) -> claims.Lease:
        try:
            lease = claims.claim_task(task_id, self.agent_id, self.ttl, root=self.root)
        except (AlreadyClaimed, NotClaimable) as exc:
            exc.hint = exc.hint or "claim another task (ready lists them)"
            raise
        started = lifecycle.begin(lease, root=self.root)
        if started is None:
            raise NotClaimable(f"task {task_id} was taken back before work could start", task_id=task_id,
                               hint="claim it again, or another task")
        self._reserve_task_files(started)  # a clash gives the task back and says who holds the files
        return started

    def _claim_next(self) -> Optional[claims.Lease]:
        skipped: set[str] = set()
        while True:
            lease = claims.claim_next(self.agent_id, self.ttl, root=self.root, skip=skipped)
            if lease is None:
                return None
            started = lifecycle.begin(lease, root=self.root)
            if started is None:
                skipped.add(lease.task_id)
                continue
            try:
                self._reserve_task_files(started)
                return started
            except ReservationConflict:
                skipped.add(lease.task_id)

    def _reserve_task_files(self, lease: claims.Lease) -> None:
        """Reserve the task's Files to Modify; on a clash the task goes back (``skipped``) and it raises."""
        task = board_sync.local_task(lease.task_id, root=self.root)
        if not task.files_to_modify:
            return
        try:
            reservations.reserve(self.agent_id, reservations.patterns_for_task(task.files_to_modify),
                                 task_id=lease.task_id, ttl=max(self.ttl * 4, 60), root=self.root)
        except ReservationConflict as exc:
            claims.release(lease, reason=f"files held by {exc.holder}", root=self.root)
            events.append_event("skipped", self.agent_id, lease.task_id, root=self.root, reason=str(exc.reason),
                                holder=exc.holder, token=lease.token)
            raise

    def _claim_text(self, task: tasks.Task, workdir: Path) -> str:
        text = read_text(task.path)
        if len(text) > _TASK_TEXT_LIMIT:
            text = text[:_TASK_TEXT_LIMIT] + f"\n[... cut: read the rest in {task.path}]"
        where = [f"Working directory: {workdir}"]
        if self._worktree is not None:
            where.append(f"(a git worktree of your own, on branch {self._worktree.branch}: edit files there, not in "
                         "the main checkout; done commits and merges it)")
        files = ", ".join(task.files_to_modify)
        return "\n".join([
            f"You hold task {task.task_id}: {task.title}",
            f"Task file: {task.path}",
            *where,
            *([f"Reserved for you: {files}"] if files else []),
            "Your lease is renewed for you while you work. When finished call done; if it cannot be done call "
            "failed; if you are blocked or need an answer call waiting.",
            "",
            text.rstrip(),
        ])

    def renew(self) -> str:
        self._not_driven()
        with self._lease_lock:
            lease, lost = self._lease, self._lost
            if lease is None:
                raise self._refusal("renew", lost)
            try:
                asked = time.monotonic()
                renewed = self._lease = claims.renew(lease, self.ttl, root=self.root)
                if not self._watch.fired:
                    self._watch.renewed(asked)
            except LeaseLost as exc:
                self._lease, self._lost = None, exc
                raise self._refusal("renew", exc) from None
        return (f"Your lease on {renewed.task_id} runs until {renewed.expires_at} "
                f"({int(renewed.seconds_left())} s); it is renewed for you while you are connected.")

    def done(self, summary: str = "") -> str:
        self._not_driven()
        lease = self._held("finish a task")
        task = board_sync.local_task(lease.task_id, root=self.root)
        merge: dict[str, Any] = {}
        changed: Optional[list[str]] = None
        if self._worktree is not None:  # merged while the lease is still renewed, as the executor does
            changed = worktrees.changed_files(self._worktree)
            merge = lifecycle.merge_back(lease, self.agent_id, self._worktree, root=self.root,
                                         title=_one_line(summary) or task.title)
        lease = self._take("finish a task")  # lost during the merge: the lease table's refusal
        try:
            if lifecycle.merge_failed(merge):
                lifecycle.needs_attention(lease, self.agent_id, f"merge {merge['merge']}", root=self.root)
                return (f"{lease.task_id}: your work is committed on branch {merge.get('branch')}, but it could not "
                        f"be merged ({merge['merge']}); the task now needs a person's attention. Claim another task.")
            data = {**merge, "via": "mcp", **({"summary": summary} if summary else {}),
                    **({"files_modified": changed} if changed is not None else {})}
            outcome = lifecycle.done(lease, self.agent_id, root=self.root, result={"via": "mcp", "summary": summary},
                                     **data)
            self._refuse_lost(lease, outcome)
        finally:
            self._after_task(lease.task_id)
        merged = {"merged": f" and merged branch {merge.get('branch')}", "queued": " (its branch waits in the merge queue)",
                  "nothing to merge": " (there were no changes to merge)"}.get(merge.get("merge", ""), "")
        return f"{lease.task_id} is completed{merged}. Call claim for the next task."

    def failed(self, reason: str) -> str:
        self._not_driven()
        reason = _required(reason, "reason", "say why the task failed")
        lease = self._take("report a failure")
        try:
            outcome = lifecycle.failed(lease, self.agent_id, reason, policy=self.policy, root=self.root, via="mcp")
            self._refuse_lost(lease, outcome)
        finally:
            self._after_task(lease.task_id)
        if outcome.blocked:
            return (f"{lease.task_id} failed for the last time ({outcome.lease.attempts} attempts): it is blocked "
                    "until a person looks at it. Claim another task.")
        return (f"{lease.task_id} failed (attempt {outcome.lease.attempts} of {self.policy.max_attempts}); "
                f"it is retried in {outcome.data['retry_in_seconds']:g} s. Claim another task.")

    def pause(self, message: str, need_help: bool = False) -> str:
        self._not_driven()
        message = _required(message, "message", "say what you are waiting for or what you need to know")
        kind = "help" if need_help else "waiting"
        lease = self._take(f"report {kind}")
        try:
            outcome = lifecycle.pause(lease, self.agent_id, kind, message, policy=self.policy, root=self.root,
                                      via="mcp")
            self._refuse_lost(lease, outcome)
        finally:
            self._after_task(lease.task_id)
        asked = ""
        if need_help:
            from . import chat

            sent = chat.ask_for_help(self.agent_id, lease.task_id, message, root=self.root)
            asked = f" Your question went to the planner as message {sent.id}; answers arrive in your inbox."
        return (f"{lease.task_id} is back in the queue ({kind}); anyone may take it again in "
                f"{self.policy.wait_retry:g} s.{asked} Claim another task meanwhile.")

    def reserve(self, patterns: list[str], exclusive: bool = True, ttl_seconds: Optional[float] = None) -> str:
        if not patterns:
            raise ValidationError("nothing to reserve: give at least one path or glob pattern",
                                  hint='e.g. ["lib/auth.py", "tests/test_auth.py"]')
        with self._lease_lock:
            task_id = self._lease.task_id if self._lease is not None else None
        made = reservations.reserve(self.agent_id, patterns, exclusive=exclusive, ttl=ttl_seconds, task_id=task_id,
                                    root=self.root)
        mode = "exclusively" if made.exclusive else "shared"
        return (f"Reserved {', '.join(made.patterns)} ({mode}) until {made.expires_at}"
                + (f", for {task_id}" if task_id else "") + ". Release them with release when you are done.")

    def release(self, patterns: Optional[list[str]] = None) -> str:
        if not patterns:
            gone = reservations.release_all(self.agent_id, root=self.root)
            return f"Released {len(gone)} reservation(s)." if gone else "You hold no reservations."
        wanted = {reservations.normalize_pattern(p) for p in patterns}
        mine = [r for r in reservations.list_reservations(root=self.root) if r.agent_id == self.agent_id]
        hits = [r for r in mine if wanted & set(r.patterns)]
        if not hits:
            held = "; ".join(", ".join(r.patterns) for r in mine) or "none"
            raise ValidationError(f"you hold no reservation of {', '.join(sorted(wanted))} (yours: {held})",
                                  hint="call release with no patterns to release all of yours")
        released = [p for r in hits for p in reservations.release(r, root=self.root) for p in p.patterns]
        return f"Released {', '.join(released)}."

    def send(self, to: str, text: str, task_id: Optional[str] = None) -> str:
        from . import chat

        sent = chat.send(self.agent_id, to, text, task_id=task_id, type=chat.MessageType.INFO, root=self.root)
        return f"Sent message {sent.id} to {sent.to}."

    def inbox(self, mark_read: bool = True) -> str:
        from . import chat

        unread = chat.inbox(self.agent_id, root=self.root)
        if not unread:
            return "No unread messages."
        shown = unread[:_MAX_LISTED]
        lines = [f"{len(unread)} unread message(s):"]
        for m in shown:
            about = f" about {m.task_id}" if m.task_id else ""
            lines.append(f"- #{m.id} from {m.from_agent}{about} ({m.type.value}): {m.content}")
        if mark_read:
            chat.mark_read(self.agent_id, [m.id for m in shown], root=self.root)
        return "\n".join(lines)

    def add_task(self, title: str, objective: str = "", priority: str = "medium", depends_on: Iterable[str] = (),
                 files: Iterable[str] = (), criteria: Iterable[str] = ()) -> str:
        title = _required(title, "title", "give the task a one-line title")
        board_sync.check_new_tasks_publish(self.cfg)
        path = workspace.new_task(_one_line(title), root=str(self.root), priority=priority, depends_on=list(depends_on),
                              objective=objective, criteria=list(criteria), files=list(files), agent=self.agent_id)
        task = task_store.load_task(path)
        return f"Created {task.task_id} ({task.priority_text}) in {path}."

    def status(self) -> str:
        from . import chat

        now = stores.lease_table(self.cfg).now()  # as swarm.py status: the Redis server's clock on Redis
        with self._lease_lock:
            lease = self._lease
        lines = [f"You are {self.agent_id} in the workspace {self.root}."]
        if lease is not None:
            lines.append(f"You hold {lease.task_id}; lease renewed for you ({int(lease.seconds_left(now))} s left).")
        elif self._lost is not None:
            lines.append(f"Your lease on {self._lost.task_id} was lost: {self._lost.reason}")
        else:
            lines.append("You hold no task.")
        counts = self._task_counts()
        lines.append("Tasks: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none") + ".")
        agents = [a for a in agent_discovery.read_agents(root=self.root)
                  if a.inactive_reason(now, self.cfg.heartbeat_timeout) is None and a.agent_id != self.agent_id]
        lines.append("Other active agents: " + (", ".join(
            f"{a.agent_id}" + (f" ({a.current_task})" if a.current_task else "") for a in agents) or "none") + ".")
        mine = [p for r in reservations.list_reservations(root=self.root) if r.agent_id == self.agent_id for p in r.patterns]
        lines.append("Your reservations: " + (", ".join(mine) or "none") + ".")
        lines.append(f"Unread messages: {len(chat.inbox(self.agent_id, root=self.root))}.")
        return "\n".join(lines)


    def _task_counts(self) -> dict[str, int]:
        """Tasks by status, as ``swarm.py status`` counts them: on a task board the board's status (a host
        other than the operator checkout has no task files; there the Markdown may lag a planner round)."""
        view = None
        if self.cfg.settings.get("task_board") is True:
            view = board_sync.board_view(self.cfg, claims.list_leases(root=self.root, errors=[]), errors=[])
        if view is not None and not view.here:
            statuses = list(view.status.values())
        else:
            moved = view.moved if view is not None else {}
            statuses = [moved.get(task.task_id) or (task.status.value if task.status else "unknown")
                        for task in task_store.list_tasks(root=self.root, include_completed=True, errors=[])]
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return counts


def _one_line(text: str) -> str:
    return " ".join((text or "").split())[:200]


def _required(value: str, name: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} is empty", hint=what)
    return value.strip()
