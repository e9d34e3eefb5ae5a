"""Agents in tmux panes: start a cluster, type tasks into panes, read their markers off the screen.

    python lib/tmux_bridge.py up --agents 3 --agent claude [--cluster main] [--no-bridge]
    python lib/tmux_bridge.py run [--cluster main] [--interval 2] [--auto-confirm [--dry-run]]
    python lib/tmux_bridge.py dispatch agent-1 TASK-7
    python lib/tmux_bridge.py scan | panes [--lines 20] | down

A cluster (tmux_cluster.py) is the tmux session ``swarm-<cluster>`` with one window per agent,
each registered as executor ``<cluster>-agent-<n>``; ``up`` also starts this module's ``run``
loop in a window ``bridge`` unless told not to. Dispatch leases the task to the pane's agent
(holder: the pane's process), then types ``[TASK] <id> <task file>`` into an input that is
ready for it (never into a dialog or prompt), checks that the line showed and was sent, and
presses Enter again at once while it sits in the input (tmux_pane.type_line). On a task board
(task_board.py) the task file is this host's copy of the published text (``.swarm/tasks/<id>.md``,
written at dispatch): a host other than the operator checkout has no task Markdown. The worker
answers with lines starting ``[ACK] id``, ``[DONE] id``, ``[ERROR] id why``, ``[WAIT] id why``
(or ``[HELP] id question``), after spaces or a TUI's ``●`` bullet, each of which moves the lease
and becomes an event. The echo of the typed line is no marker, nor is a marker word mid-line.
Only markers printed after the dispatch count: copies already on screen then are skipped, and
``.swarm/tmux/<agent>.yaml`` keeps the (task, marker, lease token) already handled, so a marker
still in scrollback never acts twice, while a new attempt (a new token) of the same task does.

Answers (tmux_screen.dialog_answer): Claude Code's workspace-trust and API-key dialogs only as
``tmux.trust_workspace`` and ``tmux.use_api_key`` say, by choosing the option, never by a bare
Enter. Auto-confirm (off unless asked) presses Enter for "press enter" prompts only (never on a
yes/no question, never while a dangerous command is on screen, at most once per cooldown per
window) and answers a permission prompt by its "1. Yes" only. Every answer or refusal is an
event. Settings: swarm.yaml ``tmux:`` (see tmux_screen.DEFAULTS).
The tmux server is ``--socket`` or $SWARM_TMUX_SOCKET: a name (``tmux -L``) or a path (``-S``).
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from . import agent_discovery
from . import agents
from . import board_sync
from . import claims
from . import events
from . import lifecycle
from . import tasks
from . import task_store
from .cli import EXIT_BAD_INPUT, EXIT_OK, module_argv, parser, positive_int, positive_seconds, print_json, run, table
from .clock import HOSTNAME, format_ts, seconds_since
from .config import load_config, validate_id
from .errors import AlreadyClaimed, LeaseLost, NotClaimable, NotFoundError, TmuxError, ValidationError
from .liveness import process_start_time
from .stores import lease_table
from .tmux_cluster import (INTERACTIVE_PRESETS, Pane, check_cluster, down, list_panes, pane_state, pane_status,
                           read_pane_state, up)
from .tmux_pane import Tmux, choose, press_answer, type_line
from .tmux_screen import (DEFAULTS, assess_screen, dialog_answer, fresh_markers, marker_key, read_screen,
                          render_pane_status, tmux_settings)

__all__ = ["DEFAULTS", "INTERACTIVE_PRESETS", "TmuxError", "Tmux", "Pane", "Handled", "Bridge", "up", "down",
           "list_panes", "read_pane_state", "read_screen", "assess_screen", "fresh_markers", "pane_status",
           "render_pane_status", "main"]


@dataclass(frozen=True)
class Handled:
    """One thing a scan did: a marker acted on, or a task taken back (kind NOACK, DEAD, LOST)."""

    agent_id: str
    pane_id: str
    task_id: str
    kind: str
    token: int
    event: str
    text: str = ""



# ---------------------------------------------------------------------------- the bridge


class Bridge:
    """The master side of one cluster: dispatch to panes, scan their screens, confirm prompts."""

    def __init__(self, cluster: str = "main", *, root: Optional[str] = None, socket: Optional[str] = None,
                 ack_timeout: Optional[float] = None, auto_confirm: Optional[bool] = None, dry_run: bool = False,
                 cooldown: Optional[float] = None) -> None:
        self.cluster, self.agent_id = check_cluster(cluster), f"{cluster}-bridge"
        self.cfg = load_config(root=root)
        self.root, self.settings, self.tmux = self.cfg.root, tmux_settings(self.cfg), Tmux(socket)
        self.ack_timeout = float(self.settings["ack_timeout_seconds"] if ack_timeout is None else ack_timeout)
        self.auto_confirm = bool(self.settings["auto_confirm"] if auto_confirm is None else auto_confirm)
        self.cooldown = float(self.settings["cooldown_seconds"] if cooldown is None else cooldown)
        self.dry_run = dry_run
        self.policy = lifecycle.RetryPolicy.from_config(self.cfg)  # retried and rested as the executor loop does
        self.on_board = claims.uses_board(root=self.root)  # tasks from the task board: maybe none in this checkout
        self._beats: dict[str, tuple[float, Any]] = {}
        self._dry_presses: dict[str, str] = {}

    def panes(self) -> list[Pane]:
        return list_panes(self.tmux, self.cluster)

    def find_pane(self, target: str) -> Pane:
        """The pane named by its pane id (%3), window (agent-1) or agent id (main-agent-1)."""
        for pane in self.panes():
            if target in (pane.pane_id, pane.window, pane.agent_id):
                return pane
        raise NotFoundError(f"no pane {target!r} in cluster {self.cluster}", hint="see `tmux_bridge.py panes`")

    def now(self) -> datetime:
        """The clock the leases are judged by: this host's on files, the Redis server's on Redis.

        Every round and dispatch takes its moment from it (a caller may give one): a host whose
        clock is off would otherwise stamp, renew and time out leases by the wrong time, and find
        a live lease expired (or an expired one live) when it acts on a marker.
        """
        return lease_table(self.cfg).now()

    def _event(self, kind: str, agent: str, task_id: Optional[str], **data: Any) -> None:
        events.append_event(kind, agent, task_id, root=self.root, **data)

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, target: str, task_id: str, now: Optional[datetime] = None) -> claims.Lease:
        """Lease ``task_id`` to the pane's agent and type the ``[TASK]`` line into the pane.

        Waits up to ``tmux.ready_timeout_seconds`` for an agent still starting to show its input.
        Raises ValidationError when the pane is busy, dead, shows a dialog or prompt, never gets
        ready, or the line could not be typed; AlreadyClaimed, NotClaimable, NotFoundError as
        claims.claim_task does. On a task board the line names this host's copy of the published
        text (written now, as the executor's), never a file of this checkout.
        """
        pane = self.find_pane(target)
        validate_id(task_id, "task id")
        # On a board the claim itself finds the task (or says it is not on the board).
        path = None if self.on_board else task_store.find_task(task_id, root=self.root).path
        deadline = time.monotonic() + float(self.settings["ready_timeout_seconds"])
        while True:
            with pane_state(self.cfg, pane.agent_id) as state:
                why, starting = self._unready(pane, state)
                if why is None:
                    lease = self._claim(pane, task_id, path, now or self.now())
                    if not self._send(pane, state, lease, now or self.now(), path):
                        raise ValidationError(f"{pane.agent_id}: the [TASK] line did not show in its input",
                                              hint="see `tmux_bridge.py panes`; the task was given back")
                    return lease
            if not starting or time.monotonic() >= deadline:
                raise ValidationError(f"{pane.agent_id} {why}", hint="wait for it, or pick another pane")
            time.sleep(0.1)

    def _claim(self, pane: Pane, task_id: str, path: Optional[Path], now: datetime) -> claims.Lease:
        # The holder is the pane's process: the lease binds while the agent lives, not this bridge.
        return claims.claim_task(task_id, pane.agent_id, root=self.root, now=now, pid=pane.pid, host=HOSTNAME,
                                 proc_start=process_start_time(pane.pid), task_path=path)

    def _task_file(self, pane: Pane, lease: claims.Lease, now: datetime) -> Path:
        """The file the agent is told to read: the task's Markdown, or on a task board this host's copy
        of the published text (board_sync.local_task). When there is none the lease is given back."""
        try:
            return board_sync.local_task(lease.task_id, root=self.root).path  # type: ignore[return-value]
        except (NotFoundError, ValidationError, OSError) as exc:
            lifecycle.give_back(lease, self.agent_id, f"its task file could not be read: {exc}", root=self.root,
                                now=now, pane=pane.pane_id, previous_agent=pane.agent_id)
            raise

    def _unready(self, pane: Pane, state: dict) -> tuple[Optional[str], bool]:
        """Why the pane cannot take a task now (None: it can), and whether that may pass by itself soon."""
        if pane.dead:
            return "has exited", False
        if state.get("current"):
            return f"is busy with {state['current']['task_id']}", False
        screen = self.tmux.read(pane.pane_id, self.settings)[0]
        if screen.kind == "ready":
            return None, False
        # Never type into a dialog or a prompt: the Enter would answer it and the line be lost.
        if screen.kind in ("dialog", "question", "enter"):
            return f"is waiting at a prompt ({screen.status}): {screen.line[:80]!r}", False
        return f"has no input ready ({screen.status})", screen.kind in ("unknown", "working")

    def _send(self, pane: Pane, state: dict, lease: claims.Lease, now: datetime, path: Optional[Path] = None) -> bool:
        """Type the task line and record it as the pane's task; False (the lease given back) when it never showed.

        ``path`` is the task's file when the caller has it (never on a task board); else see _task_file.
        """
        path = path or self._task_file(pane, lease, now)
        before = fresh_markers(self.tmux.capture(pane.pane_id, history=-1), {"task_id": lease.task_id})
        shown = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        try:
            presses = type_line(self.tmux, pane.pane_id, f"[TASK] {lease.task_id} {shown}")
        except TmuxError:
            claims.release(lease, reason="could not type into the pane", root=self.root, now=now)
            raise
        if presses == 0:
            lifecycle.give_back(lease, self.agent_id, "the task line did not show in the pane's input", root=self.root,
                                now=now, pane=pane.pane_id, previous_agent=pane.agent_id)
            return False
        # A line still in the input after every Enter stays the pane's task: the ack timeout takes it back.
        state["current"] = {"task_id": lease.task_id, "token": lease.token, "task_file": str(shown),
                            "dispatched_at": format_ts(now), "acknowledged_at": None,
                            "before": dict(Counter(marker_key(m) for m in before))}
        self._event("assigned", self.agent_id, lease.task_id, to=pane.agent_id, token=lease.token,
                    pane=pane.pane_id, via="tmux", **({"enter_presses": presses} if presses > 1 else {}),
                    **({"sent": False} if presses < 0 else {}))
        self._beat(pane, lease.task_id, force=True)
        return True

    def dispatch_ready(self, now: Optional[datetime] = None) -> list[claims.Lease]:
        """Give each idle pane its planner assignment, else the next ready task; returns the leases sent."""
        now = now or self.now()
        sent: list[claims.Lease] = []
        ready: Optional[Iterator[tasks.Task]] = None
        for pane in self.panes():
            with pane_state(self.cfg, pane.agent_id) as state:
                if self._unready(pane, state)[0]:
                    continue
                lease = self._assigned(pane, now)
                if lease is None:
                    ready = ready if ready is not None else iter(claims.ready_tasks(root=self.root))
                    for task in ready:
                        try:
                            lease = self._claim(pane, task.task_id, task.path, now)
                            break
                        except (AlreadyClaimed, NotClaimable, NotFoundError):
                            continue
                try:
                    if lease is not None and self._send(pane, state, lease, now):
                        sent.append(lease)
                except NotFoundError:
                    continue  # gone between the claim and the read (withdrawn, deleted): given back, next pane
        return sent

    def _assigned(self, pane: Pane, now: datetime) -> Optional[claims.Lease]:
        """A planner's assignment to this pane's agent (see claims.assign), if its lease is still live."""
        found = claims.assignment_for(pane.agent_id, root=self.root)
        if found is None:
            return None
        claims.clear_assignment(pane.agent_id, found[0].token, root=self.root)
        stored = claims.get_lease(found[0].task_id, root=self.root)
        live = stored is not None and stored.token == found[0].token and stored.free_reason(now) is None
        return stored if live else None

    # ------------------------------------------------------------------ scanning

    def scan_once(self, now: Optional[datetime] = None) -> list[Handled]:
        """Act on new markers of every pane; take back tasks not acknowledged in time or of dead panes;
        renew the leases of panes at work."""
        now = now or self.now()
        out: list[Handled] = []
        for pane in self.panes():
            with pane_state(self.cfg, pane.agent_id) as state:
                if state.get("current"):
                    out += self._scan_pane(pane, state, now)
            self._beat(pane, (state.get("current") or {}).get("task_id"))
        return out

    def _scan_pane(self, pane: Pane, state: dict, now: datetime) -> list[Handled]:
        cur = state["current"]
        task_id, token = cur["task_id"], int(cur["token"])
        out = []
        for marker in fresh_markers(self.tmux.capture(pane.pane_id, history=-1), cur):
            key = f"{task_id}:{marker.kind}:{token}"
            if key in state["handled"]:
                continue
            handled = self._on_marker(pane, cur, marker, now)
            state["handled"].append(key)
            out.append(handled)
            if marker.kind != "ACK" or handled.event == "lease_lost":
                state["current"] = None
                return out
            cur["acknowledged_at"] = format_ts(now)
        lease = claims.get_lease(task_id, root=self.root)
        waited = seconds_since(cur["dispatched_at"], now)
        try:
            if lease is None or lease.token != token or lease.state is not claims.LeaseState.HELD:
                raise LeaseLost("the lease moved on", task_id=task_id)
            if not cur.get("acknowledged_at") and waited >= self.ack_timeout:
                claims.revoke_unacknowledged(lease, root=self.root, now=now)
                kind, event, why = "NOACK", "requeued", "not acknowledged"
            elif pane.dead:
                claims.release(lease, reason="the agent's pane exited", root=self.root, now=now)
                kind, event, why = "DEAD", "released", "the agent's pane exited"
            else:
                if lease.seconds_left(now) < self.cfg.lease_seconds / 2:
                    claims.renew(lease, root=self.root, now=now)
                return out
            self._event(event, self.agent_id, task_id, token=token, pane=pane.pane_id, reason=why,
                        previous_agent=pane.agent_id, waited_seconds=round(waited, 1))
        except LeaseLost as exc:
            kind, event, why = "LOST", "lease_lost", exc.reason
            self._event(event, pane.agent_id, task_id, token=token, pane=pane.pane_id, reason=why)
        state["current"] = None
        out.append(Handled(pane.agent_id, pane.pane_id, task_id, kind, token, event, why))
        return out

    def _on_marker(self, pane: Pane, cur: dict, marker: agents.Marker, now: datetime) -> Handled:
        task_id, token, kind, text = cur["task_id"], int(cur["token"]), marker.kind, marker.text
        lease = claims.get_lease(task_id, root=self.root)
        data: dict[str, Any] = {"pane": pane.pane_id}
        if lease is None or lease.token != token:
            exc = LeaseLost(f"task {task_id} is no longer leased with token {token}", task_id=task_id)
            self._event("lease_lost", pane.agent_id, task_id, token=token, pane=pane.pane_id, reason=exc.reason,
                        marker=kind)
            return Handled(pane.agent_id, pane.pane_id, task_id, kind, token, "lease_lost", text)
        data["attempt"] = lease.attempts + 1
        where = {"root": self.root, "now": now}
        if kind == "ACK":
            outcome = lifecycle.acknowledge(lease, pane.agent_id, **where, **data)
        elif kind == "DONE":
            outcome = lifecycle.done(lease, pane.agent_id, result={"via": "tmux", "pane": pane.pane_id}, **where, **data)
        elif kind == "ERROR":
            outcome = lifecycle.failed(lease, pane.agent_id, text or "the agent reported [ERROR]", policy=self.policy,
                                       **where, **data)
        else:  # WAIT or HELP: not a failure; back to the queue after a pause
            outcome = lifecycle.pause(lease, pane.agent_id, "waiting" if kind == "WAIT" else "help", text,
                                      policy=self.policy, **where, **data)
        return Handled(pane.agent_id, pane.pane_id, task_id, kind, token, outcome.event, text)

    def _beat(self, pane: Pane, task_id: Optional[str], force: bool = False) -> None:
        """Heartbeat the pane's agent when its task changed or a quarter of the timeout passed."""
        last = self._beats.get(pane.agent_id)
        if not force and last is not None and last[1] == (task_id, pane.dead) \
                and time.monotonic() - last[0] < self.cfg.heartbeat_timeout / 4:
            return
        self._beats[pane.agent_id] = (time.monotonic(), (task_id, pane.dead))
        if pane.dead:
            agent_discovery.deregister_agent(pane.agent_id, root=self.root)
            return
        agent_discovery.heartbeat(pane.agent_id, current_task=task_id, record_process=False, root=self.root,
                                  current_action="executing" if task_id else "idle")

    # ------------------------------------------------------------------ auto-confirm

    def auto_confirm_once(self, now: Optional[datetime] = None) -> list[dict]:
        """Answer what each pane waits for, as far as the settings allow; returns what was done.

        Dialogs (see tmux_screen.dialog_answer): workspace trust and API key as ``tmux.trust_workspace``
        and ``tmux.use_api_key`` say, by choosing the option; a permission prompt by its "1. Yes",
        with auto-confirm on. With auto-confirm on, Enter at a "press enter" prompt (assess_screen).
        What is left waiting is reported once per screen; a dry run only says what it would do.
        """
        now = now or self.now()
        out = []
        for pane in self.panes():
            if pane.dead:
                continue
            screen, whole = self.tmux.read(pane.pane_id, self.settings)
            if screen.kind == "dialog":
                action, key, why = dialog_answer(screen, self.settings, self.auto_confirm, whole)
                line = screen.line or screen.status
            elif self.auto_confirm and screen.kind in ("question", "enter"):
                verdict = assess_screen(whole, self.settings)
                if verdict is None:
                    continue  # the screen changed between the two reads
                action, line, why = ("key", verdict[1], "") if verdict[0] == "press" else ("wait",) + verdict[1:]
                key = "Enter"
            else:
                continue
            with pane_state(self.cfg, pane.agent_id) as state:
                out += self._answer(pane, state, screen, action, key, line, why, now)
        return out

    def _answer(self, pane: Pane, state: dict, screen: Any, action: str, key: str, line: str, why: str,
                now: datetime) -> list[dict]:
        base: dict[str, Any] = {"agent_id": pane.agent_id, "pane": pane.pane_id, "window": pane.window, "line": line}
        dialog = {"dialog": screen.what} if screen.kind == "dialog" else {}
        by_settings = screen.what in ("workspace trust", "API key")  # not auto-confirm's: its own event names
        if action == "wait":
            if state.get("last_skip") == f"{why}|{line}":
                return []  # refused and logged already; the screen has not changed
            state["last_skip"] = f"{why}|{line}"
            self._event("dialog_waiting" if by_settings else "auto_confirm_skipped", pane.agent_id, None,
                        pane=pane.pane_id, line=line, reason=why, **dialog)
            return [{**base, **dialog, "action": "waiting" if by_settings else "skipped", "reason": why}]
        # Enter prompts cool down per window; a dialog per question (the next one is answered at once).
        # A first-run dialog is keyed by its kind, not its line: after the choice, the line under the
        # cursor changes while the dialog is still drawn, and the same dialog was answered twice.
        # Every question's last answer is kept, not only the latest: a trust dialog drawn once more
        # after the API-key answer was answered again.
        answered = f"dialog: {screen.what}" if by_settings else line
        if key == "Enter":
            last = self._dry_presses.get(pane.agent_id) if self.dry_run else state.get("last_confirm_at")
        else:
            last = (self._dry_presses.get(f"{pane.agent_id}|{answered}") if self.dry_run else
                    (state.get("answered_at") or {}).get(answered))
        if last and seconds_since(last, now) < self.cooldown:
            return []
        choice = key if action == "choose" else ("Enter" if key == "Enter" else screen.options[0])
        done, presses = True, 1
        # A dry run keeps its cooldown in memory: it must not delay a real answer later.
        if self.dry_run:
            self._dry_presses[pane.agent_id if key == "Enter" else f"{pane.agent_id}|{answered}"] = format_ts(now)
        elif action == "choose":
            done = choose(self.tmux, pane.pane_id, key, self.settings)
        elif key == "Enter":
            self.tmux.run("send-keys", "-t", pane.pane_id, key)
        else:
            presses = press_answer(self.tmux, pane.pane_id, key, self.settings, screen.line)
            done = presses > 0
        if not self.dry_run:
            if key == "Enter":
                state["last_confirm_at"] = format_ts(now)
            elif done:  # a dialog still drawn after every press is tried again next round, not after the cooldown
                # Answers older than the cooldown bind nothing any more: dropped, so the state stays small.
                kept = {q: at for q, at in (state.get("answered_at") or {}).items()
                        if seconds_since(at, now) < self.cooldown}
                state["answered_at"] = {**kept, answered: format_ts(now)}
        state.pop("last_skip", None)
        if key == "Enter":
            self._event("auto_confirm", pane.agent_id, None, pane=pane.pane_id, line=line, dry_run=self.dry_run)
            return [{**base, "action": "would press Enter" if self.dry_run else "pressed Enter"}]
        kind = ("dialog_answered" if done else "dialog_answer_failed") if by_settings else \
            ("auto_confirm" if done else "auto_confirm_failed")
        extra = {} if action == "choose" or self.dry_run else {"presses": presses}
        self._event(kind, pane.agent_id, None, pane=pane.pane_id, line=line, choice=choice, dry_run=self.dry_run,
                    **extra, **dialog)
        verb = "would choose" if self.dry_run else "chose" if done else "could not choose"
        return [{**base, **dialog, "action": f"{verb} {choice!r}"}]

    # ------------------------------------------------------------------ the loop

    def step(self, now: Optional[datetime] = None) -> tuple[list[Handled], list[dict], list[claims.Lease]]:
        """One round: scan, answer dialogs and prompts (as the settings allow), dispatch ready work to idle panes."""
        return self.scan_once(now), self.auto_confirm_once(now), self.dispatch_ready(now)

    def run(self, interval: Optional[float] = None, stop: Optional[threading.Event] = None,
            report: Any = None) -> None:
        """Rounds every ``interval`` seconds until ``stop`` is set or the cluster's session is gone."""
        stop = stop or threading.Event()
        pause = float(self.settings["interval_seconds"] if interval is None else interval)
        if self.tmux.run("has-session", "-t", f"=swarm-{self.cluster}", check=False) is None:
            raise NotFoundError(f"cluster {self.cluster} is not up", hint="start it with `tmux_bridge.py up`")
        while self.tmux.run("has-session", "-t", f"=swarm-{self.cluster}", check=False) is not None:
            result = self.step()
            if report is not None:
                report(*result)
            if stop.wait(pause):
                return


# ---------------------------------------------------------------------------- command line


def _parser() -> Any:
    p = parser("tmux_bridge.py", "Agents in tmux panes: start a cluster, dispatch tasks, read their markers.",
               needs_workspace=lambda args: args.action is not None)
    p.add_global("--cluster", help="cluster id, tmux session swarm-<id> (default: main; panes: all)")
    p.add_global("--socket", help="tmux server: a name (-L) or a socket path (-S) (default: $SWARM_TMUX_SOCKET)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    cmd = sub.add_parser("up", help="start a cluster: one tmux window per agent")
    cmd.add_argument("--agents", type=positive_int, required=True, metavar="N", help="how many agents")
    how = cmd.add_mutually_exclusive_group(required=True)
    how.add_argument("--agent", metavar="PRESET", help=f"interactive CLI: {', '.join(sorted(INTERACTIVE_PRESETS))}")
    how.add_argument("--command", metavar="CMD", help="any command, run through /bin/sh in each pane")
    cmd.add_argument("--no-bridge", dest="bridge", action="store_false", default=None,
                     help="do not start the dispatching loop in a window `bridge` (default: tmux.bridge)")
    sub.add_parser("down", help="stop a cluster and give back its tasks")
    cmd = sub.add_parser("dispatch", help="type one task into one pane")
    cmd.add_argument("pane", help="window (agent-1), agent id or pane id")
    cmd.add_argument("task_id")
    for name, text in (("scan", "act on new markers once"), ("run", "dispatch, scan and confirm in a loop")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--auto-confirm", action="store_true", default=None, help="press Enter at press-enter prompts")
        cmd.add_argument("--dry-run", action="store_true", help="with --auto-confirm: only say what it would press")
        cmd.add_argument("--ack-timeout", type=positive_seconds, metavar="S", help="requeue a task not [ACK]ed in S seconds")
        cmd.add_argument("--interval", type=positive_seconds, metavar="S", help="run: seconds between rounds")
    cmd = sub.add_parser("panes", help="each pane's state and last lines")
    cmd.add_argument("--lines", type=positive_int, metavar="N", help="last lines per pane (default 20)")
    return p


def _report(args: Any, handled: list[Handled], confirmed: list[dict], sent: list[claims.Lease]) -> None:
    if args.json:
        return print_json({"dispatched": [x.to_dict() for x in sent], "handled": [asdict(h) for h in handled],
                           "auto_confirm": confirmed})
    for item in handled:
        print(f"{item.event:<12} {item.task_id} {item.agent_id} [{item.kind}] {item.text}".rstrip(), flush=True)
    for item in confirmed:
        print(f"{item['action']}: {item['agent_id']}: {item['line']} {item.get('reason', '')}".rstrip(), flush=True)
    for lease in sent:
        print(f"dispatched {lease.task_id} to {lease.agent_id} (token {lease.token})", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.action is None:
        p.print_help()
        return EXIT_BAD_INPUT
    cluster = args.cluster or "main"

    def body() -> int:
        if args.action == "up":
            settings = tmux_settings(load_config(root=args.root))
            bridge = settings["bridge"] if args.bridge is None else args.bridge
            panes = up(args.agents, preset=args.agent, command=args.command, cluster=cluster, root=args.root,
                       socket=args.socket, bridge=bridge)
            if args.json:
                return print_json([asdict(x) for x in panes]) or EXIT_OK
            attach = shlex.join(["tmux", *Tmux(args.socket).base[2:], "attach", "-t", f"swarm-{cluster}"])
            here = shlex.join([p for p in ("--cluster", cluster, "--socket", args.socket, "--root", args.root)
                               if p is not None]) if args.socket or args.root or cluster != "main" else ""
            print(table(["window", "agent", "pane", "pid"], [[x.window, x.agent_id, x.pane_id, x.pid] for x in panes]),
                  f"watch them: {attach}", sep="\n")
            if bridge:
                print(f"dispatching: `tmux_bridge.py run` in window {cluster}:bridge hands out ready tasks; "
                      f"`swarm.py down{' ' + here if here else ''}` stops it and the agents")
            else:
                print(f"next, to hand out tasks: {shlex.join(['python', *module_argv('tmux_bridge')[1:]])} run {here}".rstrip())
            if args.agent == "claude":
                for key, dialog in (("trust_workspace", "whether it trusts the folder"),
                                    ("use_api_key", "whether to use $ANTHROPIC_API_KEY, when set")):
                    if not settings[key]:
                        print(f"Claude Code may first ask {dialog}: answer in its pane, or set tmux.{key}: true "
                              f"in swarm.yaml")
        elif args.action == "down":
            stopped = down(cluster, root=args.root, socket=args.socket)
            print_json(stopped) if args.json else print(f"stopped {len(stopped)} agent(s) of cluster {cluster}")
        elif args.action == "panes":
            lines = tmux_settings(load_config(root=args.root))["lines"] if args.lines is None else args.lines
            rows = pane_status(args.cluster, lines, root=args.root, socket=args.socket)
            print_json(rows) if args.json else print(render_pane_status(rows))
        elif args.action == "dispatch":
            bridge = Bridge(cluster, root=args.root, socket=args.socket)
            _report(args, [], [], [bridge.dispatch(args.pane, args.task_id)])
        else:
            bridge = Bridge(cluster, root=args.root, socket=args.socket, ack_timeout=args.ack_timeout,
                            auto_confirm=args.auto_confirm, dry_run=args.dry_run)
            if args.action == "scan":
                _report(args, bridge.scan_once(), bridge.auto_confirm_once(), [])
            else:

                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                bridge.run(args.interval, stop, report=lambda *result: _report(args, *result))
        return EXIT_OK

    return run(body)
