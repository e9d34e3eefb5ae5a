"""Agents in tmux panes: start a cluster, type tasks into panes, read their markers off the screen.

    python lib/tmux_bridge.py up --agents 3 --agent claude [--cluster main]
    python lib/tmux_bridge.py run [--cluster main] [--interval 2] [--auto-confirm [--dry-run]]
    python lib/tmux_bridge.py dispatch agent-1 TASK-7
    python lib/tmux_bridge.py scan | panes [--lines 20] | down

A cluster is the tmux session ``swarm-<cluster>`` with one window per agent (``agent-1`` ..),
each registered in heartbeat.yaml as executor ``<cluster>-agent-<n>`` with its pane's pid.
Dispatch leases the task to the pane's agent (holder: the pane's process), then types
``[TASK] <id> <task file>``; the worker answers with lines starting ``[ACK] id``, ``[DONE] id``,
``[ERROR] id why``, ``[WAIT] id why`` (or ``[HELP] id question``), each of which moves the lease
and becomes an event. The echo of the typed line is no marker, nor is a marker word mid-line.
Only markers printed after the dispatch count: copies already on screen then are skipped, and
``.swarm/tmux/<agent>.yaml`` keeps the (task, marker, lease token) already handled, so a marker
still in scrollback never acts twice, while a new attempt (a new token) of the same task does.

Auto-confirm (off unless asked) presses Enter for "press enter" prompts only: never on a
yes/no question, never while a dangerous command is on screen, at most once per cooldown per
window; every press or refusal is an event. Settings: swarm.yaml ``tmux:`` (see tmux_screen.DEFAULTS).
The tmux server is ``--socket`` or $SWARM_TMUX_SOCKET: a name (``tmux -L``) or a path (``-S``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import agent_discovery
import agents
import claims
import events
import lifecycle
import tasks
from cli import EXIT_BAD_INPUT, EXIT_OK, parser, print_json, run, table
from config import HOSTNAME, Config, format_ts, load_config, seconds_since, utc_now, validate_id
from errors import AlreadyClaimed, LeaseLost, NotClaimable, NotFoundError, SwarmError, TmuxError, ValidationError
from fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_file, locked
from liveness import process_start_time
from tmux_screen import DEFAULTS, _marker_key, _settings, assess_screen, fresh_markers, pane_status, render_pane_status

__all__ = ["DEFAULTS", "INTERACTIVE_PRESETS", "TmuxError", "Tmux", "Pane", "Handled", "Bridge", "up", "down",
           "list_panes", "assess_screen", "fresh_markers", "pane_status", "render_pane_status", "main"]

# Interactive modes of the agent CLIs (agents.PRESETS holds their one-shot modes).
INTERACTIVE_PRESETS: dict[str, str] = {
    "claude": "claude", "codex": "codex", "gemini": "gemini", "aider": "aider", "ollama": "ollama run llama3.1",
}

_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # tmux turns '.' and ':' in session names into '_'
_FORMAT = "\t".join(["#{session_name}", "#{window_name}", "#{pane_id}", "#{pane_pid}", "#{pane_dead}",
                     "#{@swarm_agent}", "#{@swarm_cluster}"])
_NO_SERVER = ("no server running", "error connecting to", "server exited")
_HANDLED_KEPT = 500  # handled-marker keys remembered per pane
_MISSING: Any = object()


class Tmux:
    """The tmux command line against one server (``socket``: a name for -L, a path for -S)."""

    def __init__(self, socket: Optional[str] = None) -> None:
        self.socket = socket if socket is not None else (os.environ.get("SWARM_TMUX_SOCKET") or None)
        exe = shutil.which("tmux")
        if exe is None:
            raise TmuxError("tmux is not installed",
                            hint="install it: apt-get install tmux, dnf install tmux or brew install tmux")
        self.base = [exe, "-u"] + ([("-S" if "/" in self.socket else "-L"), self.socket] if self.socket else [])

    def run(self, *args: str, check: bool = True) -> Optional[str]:
        """Output of ``tmux args``; TmuxError on failure, or None with ``check=False``."""
        # tmux ends a command at an argument ending in ';' and reads '\;' as a literal ';'.
        argv = [*self.base, *(a[:-1] + "\\;" if a.endswith(";") else a for a in args)]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=15)
        except subprocess.TimeoutExpired:
            raise TmuxError(f"tmux {args[0]} did not answer within 15s", hint="is the tmux server stuck?") from None
        if proc.returncode != 0:
            if not check:
                return None
            why = proc.stderr.decode("utf-8", "replace").strip().replace("\n", " ") or f"exit {proc.returncode}"
            raise TmuxError(f"tmux {args[0]} failed: {why}")
        return proc.stdout.decode("utf-8", "replace")

    def send_line(self, pane_id: str, text: str) -> None:
        """Type ``text`` literally into the pane, then Enter."""
        self.run("send-keys", "-t", pane_id, "-l", "--", text)
        self.run("send-keys", "-t", pane_id, "Enter")

    def capture(self, pane_id: str, history: Optional[int] = None) -> str:
        """The pane's screen, with ``history`` lines of scrollback (-1: all), wrapped lines joined."""
        start = [] if history is None else ["-S", "-" if history < 0 else f"-{history}"]
        return self.run("capture-pane", "-p", "-J", "-t", pane_id, *start) or ""


@dataclass(frozen=True)
class Pane:
    """One agent's pane in a cluster."""

    cluster: str
    window: str
    pane_id: str
    agent_id: str
    pid: int
    dead: bool


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


# ---------------------------------------------------------------------------- panes


def _check_cluster(cluster: str) -> str:
    if not isinstance(cluster, str) or not _CLUSTER.fullmatch(cluster):
        raise ValidationError(f"invalid cluster id {str(cluster)[:60]!r}",
                              hint="use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return cluster


def list_panes(tmux: Tmux, cluster: Optional[str] = None) -> list[Pane]:
    """The swarm agents' panes on this tmux server (of one cluster, or of all), in window order."""
    try:
        out = tmux.run("list-panes", "-a", "-F", _FORMAT) or ""
    except TmuxError as exc:
        if any(text in exc.reason for text in _NO_SERVER):
            return []  # no server running: no panes
        raise
    panes = []
    for line in out.splitlines():
        session, window, pane_id, pid, dead, agent_id, owner = (line.split("\t") + [""] * 7)[:7]
        if not (session.startswith("swarm-") and agent_id and owner) or (cluster and owner != cluster):
            continue
        panes.append(Pane(owner, window, pane_id, agent_id, int(pid or 0), dead == "1"))
    return panes


def _agent_argv(preset: Optional[str], command: Optional[str], settings: dict) -> tuple[str, list[str]]:
    if (preset is None) == (command is None):
        raise ValidationError("give exactly one of --agent PRESET or --command CMD",
                              hint=f"presets: {', '.join(sorted(INTERACTIVE_PRESETS))}")
    if command is not None:
        if not command.strip():
            raise ValidationError("agent command is empty")
        return "custom", ["/bin/sh", "-c", command]  # sh, not the user's shell: one syntax everywhere
    table_ = {**INTERACTIVE_PRESETS, **settings["presets"]}
    if preset not in table_:
        raise ValidationError(f"unknown agent preset {preset!r}", hint=f"choose one of {', '.join(sorted(table_))}")
    argv = shlex.split(str(table_[preset]))
    if not argv or shutil.which(argv[0]) is None:
        raise ValidationError(f"{argv[0] if argv else preset!r} is not on PATH",
                              hint="install that agent CLI, or use --command")
    return preset, argv


# ---------------------------------------------------------------------------- up and down


def up(agent_count: int, *, preset: Optional[str] = None, command: Optional[str] = None, cluster: str = "main",
       root: Optional[str] = None, socket: Optional[str] = None) -> list[Pane]:
    """Start the tmux session ``swarm-<cluster>`` with one window and agent per ``agent_count``.

    Each pane runs the preset's interactive CLI (or ``command`` through /bin/sh) in the workspace
    root with SWARM_ROOT and SWARM_AGENT_ID set, and is registered as an executor in
    heartbeat.yaml. Raises ValidationError when the cluster is already up, TmuxError.
    """
    cfg = load_config(root)
    settings = _settings(cfg)
    _check_cluster(cluster)
    if not isinstance(agent_count, int) or not 1 <= agent_count <= 64:
        raise ValidationError(f"--agents must be 1 to 64, got {agent_count}")
    name, argv = _agent_argv(preset, command, settings)
    for n in range(1, agent_count + 1):
        _read_state(cfg, f"{cluster}-agent-{n}")  # a corrupt state file stops us before tmux starts
    tmux = Tmux(socket)
    session = f"swarm-{cluster}"
    if tmux.run("has-session", "-t", f"={session}", check=False) is not None:
        raise ValidationError(f"cluster {cluster} is already up (tmux session {session})",
                              hint="run down first, or pick another --cluster")
    # The history limit applies to windows made after it is set: a setup window comes first.
    tmux.run("new-session", "-d", "-s", session, "-n", "swarm-setup", "-x", "220", "-y", "50", "cat")
    try:
        tmux.run("set-option", "-t", f"={session}:", "history-limit", str(int(settings["history_lines"])))
        for n in range(1, agent_count + 1):
            agent_id = f"{cluster}-agent-{n}"
            # A placeholder runs until the options are set, so an agent that exits at once
            # still leaves its pane (and last words) behind instead of closing the window.
            pane_id = (tmux.run("new-window", "-d", "-t", f"={session}:", "-n", f"agent-{n}", "-c", str(cfg.root),
                                "-P", "-F", "#{pane_id}", "cat") or "").strip()
            for option, value in (("remain-on-exit", "on"), ("@swarm_agent", agent_id), ("@swarm_cluster", cluster)):
                tmux.run("set-option", "-w", "-t", pane_id, option, value)
            tmux.run("respawn-pane", "-k", "-t", pane_id, "-c", str(cfg.root), "-e", f"SWARM_ROOT={cfg.root}",
                     "-e", f"SWARM_AGENT_ID={agent_id}", "-e", f"SWARM_CLUSTER={cluster}", *argv)
        tmux.run("kill-window", "-t", f"={session}:swarm-setup")
    except SwarmError:
        tmux.run("kill-session", "-t", f"={session}", check=False)
        raise
    panes = list_panes(tmux, cluster)
    for pane in panes:
        with _pane_state(cfg, pane.agent_id) as state:
            state.update(pane=pane.pane_id, cluster=cluster, current=None)
        agent_discovery.register_agent(pane.agent_id, role="executor", root=cfg.root, pid=pane.pid, host=HOSTNAME,
                                       current_action="idle", pane=pane.pane_id, cluster=cluster,
                                       window=pane.window, tmux_socket=tmux.socket, agent_command=name)
        events.append_event("registered", pane.agent_id, root=cfg.root, role="executor", pane=pane.pane_id,
                            cluster=cluster, command=name)
    return panes


def down(cluster: str = "main", *, root: Optional[str] = None, socket: Optional[str] = None) -> list[str]:
    """Stop a cluster: give back its tasks in hand, kill its session, deregister its agents."""
    cfg = load_config(root)
    _check_cluster(cluster)
    tmux = Tmux(socket)
    panes = list_panes(tmux, cluster)
    bridge_id = f"{cluster}-bridge"
    for pane in panes:
        with _pane_state(cfg, pane.agent_id) as state:
            cur = state.get("current")
            state["current"] = None
            lease = claims.get_lease(cur["task_id"], root=cfg.root) if cur else None
            if lease is not None and lease.token == cur["token"]:
                try:
                    claims.release(lease, reason="cluster stopped", root=cfg.root)
                    events.append_event("released", bridge_id, lease.task_id, root=cfg.root,
                                        reason="cluster stopped", previous_agent=pane.agent_id, token=lease.token)
                except LeaseLost:
                    pass  # finished or taken back meanwhile
    tmux.run("kill-session", "-t", f"=swarm-{cluster}", check=False)
    for pane in panes:
        agent_discovery.deregister_agent(pane.agent_id, root=cfg.root)
        events.append_event("stopped", pane.agent_id, root=cfg.root, pane=pane.pane_id, cluster=cluster)
    return [pane.agent_id for pane in panes]


# ---------------------------------------------------------------------------- per-pane state


def _state_file(cfg: Config, agent_id: str) -> Path:
    return cfg.runtime_dir / "tmux" / f"{validate_id(agent_id, 'agent id')}.yaml"


@contextmanager
def _pane_state(cfg: Config, agent_id: str) -> Iterator[dict]:
    """The pane's state under its lock, written back (if changed) even when the block fails."""
    path = _state_file(cfg, agent_id)
    with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        state = _read_state(cfg, agent_id)
        state.setdefault("agent_id", agent_id)
        state.setdefault("handled", [])
        before = repr(state)
        try:
            yield state
        finally:
            if repr(state) != before:
                state["handled"] = state["handled"][-_HANDLED_KEPT:]
                atomic_write(path, dump_yaml(state))


def _read_state(cfg: Config, agent_id: str) -> dict:
    path = _state_file(cfg, agent_id)
    data = load_yaml_file(path, default=_MISSING)
    state = {} if data is _MISSING else dict(expect_mapping(data, path, "a tmux pane state"))
    cur = state.get("current")
    if not isinstance(state.get("handled", []), list) or cur is not None and not (
            isinstance(cur, dict) and isinstance(cur.get("task_id"), str) and isinstance(cur.get("token"), int)
            and isinstance(cur.get("dispatched_at"), str)):
        raise ValidationError("malformed tmux pane state", path=path, hint="fix or delete the file")
    return state


# ---------------------------------------------------------------------------- the bridge


class Bridge:
    """The master side of one cluster: dispatch to panes, scan their screens, confirm prompts."""

    def __init__(self, cluster: str = "main", *, root: Optional[str] = None, socket: Optional[str] = None,
                 ack_timeout: Optional[float] = None, auto_confirm: Optional[bool] = None, dry_run: bool = False,
                 cooldown: Optional[float] = None) -> None:
        self.cluster, self.agent_id = _check_cluster(cluster), f"{cluster}-bridge"
        self.cfg = load_config(root)
        self.root, self.settings, self.tmux = self.cfg.root, _settings(self.cfg), Tmux(socket)
        self.ack_timeout = float(self.settings["ack_timeout_seconds"] if ack_timeout is None else ack_timeout)
        self.auto_confirm = bool(self.settings["auto_confirm"] if auto_confirm is None else auto_confirm)
        self.cooldown = float(self.settings["cooldown_seconds"] if cooldown is None else cooldown)
        self.dry_run = dry_run
        self.policy = lifecycle.RetryPolicy.from_config(self.cfg)  # retried and rested as the executor loop does
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

    def _event(self, kind: str, agent: str, task_id: Optional[str], **data: Any) -> None:
        events.append_event(kind, agent, task_id, root=self.root, **data)

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, target: str, task_id: str, now: Optional[datetime] = None) -> claims.Lease:
        """Lease ``task_id`` to the pane's agent and type the ``[TASK]`` line into the pane.

        Raises ValidationError when the pane is busy, dead or showing a prompt; AlreadyClaimed,
        NotClaimable, NotFoundError as claims.claim_task does.
        """
        now = now or utc_now()
        pane = self.find_pane(target)
        task = tasks.find_task(validate_id(task_id, "task id"), self.root)
        with _pane_state(self.cfg, pane.agent_id) as state:
            why = self._unready(pane, state)
            if why:
                raise ValidationError(f"{pane.agent_id} {why}", hint="wait for it, or pick another pane")
            lease = self._claim(pane, task, now)
            self._send(pane, state, lease, task.path, now)
        return lease

    def _claim(self, pane: Pane, task: tasks.Task, now: datetime) -> claims.Lease:
        # The holder is the pane's process: the lease binds while the agent lives, not this bridge.
        return claims.claim_task(task.task_id, pane.agent_id, root=self.root, now=now, pid=pane.pid, host=HOSTNAME,
                                 proc_start=process_start_time(pane.pid), task_path=task.path)

    def _unready(self, pane: Pane, state: dict) -> Optional[str]:
        """Why the pane cannot take a task now, or None."""
        if pane.dead:
            return "has exited"
        if state.get("current"):
            return f"is busy with {state['current']['task_id']}"
        verdict = assess_screen(self.tmux.capture(pane.pane_id), self.settings)
        return None if verdict is None else f"is waiting at a prompt: {verdict[1][:80]!r}"

    def _send(self, pane: Pane, state: dict, lease: claims.Lease, path: Path, now: datetime) -> None:
        before = fresh_markers(self.tmux.capture(pane.pane_id, history=-1), {"task_id": lease.task_id})
        shown = path.relative_to(self.root) if path.is_relative_to(self.root) else path
        try:
            self.tmux.send_line(pane.pane_id, f"[TASK] {lease.task_id} {shown}")
        except TmuxError:
            claims.release(lease, reason="could not type into the pane", root=self.root, now=now)
            raise
        state["current"] = {"task_id": lease.task_id, "token": lease.token, "task_file": str(shown),
                            "dispatched_at": format_ts(now), "acknowledged_at": None,
                            "before": dict(Counter(_marker_key(m) for m in before))}
        self._event("assigned", self.agent_id, lease.task_id, to=pane.agent_id, token=lease.token,
                    pane=pane.pane_id, via="tmux")
        self._beat(pane, lease.task_id, force=True)

    def dispatch_ready(self, now: Optional[datetime] = None) -> list[claims.Lease]:
        """Give each idle pane its planner assignment, else the next ready task; returns the leases sent."""
        now = now or utc_now()
        sent: list[claims.Lease] = []
        ready: Optional[Iterator[tasks.Task]] = None
        for pane in self.panes():
            with _pane_state(self.cfg, pane.agent_id) as state:
                if self._unready(pane, state):
                    continue
                lease = self._assigned(pane, now)
                if lease is None:
                    ready = ready if ready is not None else iter(claims.ready_tasks(root=self.root))
                    for task in ready:
                        try:
                            lease = self._claim(pane, task, now)
                            break
                        except (AlreadyClaimed, NotClaimable, NotFoundError):
                            continue
                if lease is not None:
                    self._send(pane, state, lease, tasks.find_task(lease.task_id, self.root).path, now)
                    sent.append(lease)
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
        now = now or utc_now()
        out: list[Handled] = []
        for pane in self.panes():
            with _pane_state(self.cfg, pane.agent_id) as state:
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
        """Press Enter where a pane waits at a "press enter" prompt (or, dry, say so); returns what was done."""
        now = now or utc_now()
        out = []
        for pane in self.panes():
            if pane.dead:
                continue
            verdict = assess_screen(self.tmux.capture(pane.pane_id), self.settings)
            if verdict is None:
                continue
            action, line, reason = verdict
            with _pane_state(self.cfg, pane.agent_id) as state:
                base = {"agent_id": pane.agent_id, "pane": pane.pane_id, "window": pane.window, "line": line}
                if action == "skip":
                    if state.get("last_skip") == f"{reason}|{line}":
                        continue  # refused and logged already; the screen has not changed
                    state["last_skip"] = f"{reason}|{line}"
                    self._event("auto_confirm_skipped", pane.agent_id, None, pane=pane.pane_id, line=line,
                                reason=reason)
                    out.append({**base, "action": "skipped", "reason": reason})
                    continue
                # A dry run keeps its cooldown in memory: it must not delay a real press later.
                last = self._dry_presses.get(pane.agent_id) if self.dry_run else state.get("last_confirm_at")
                if last and seconds_since(last, now) < self.cooldown:
                    continue
                if self.dry_run:
                    self._dry_presses[pane.agent_id] = format_ts(now)
                else:
                    self.tmux.run("send-keys", "-t", pane.pane_id, "Enter")
                    state["last_confirm_at"] = format_ts(now)
                state.pop("last_skip", None)
                self._event("auto_confirm", pane.agent_id, None, pane=pane.pane_id, line=line, dry_run=self.dry_run)
                out.append({**base, "action": "would press Enter" if self.dry_run else "pressed Enter"})
        return out

    # ------------------------------------------------------------------ the loop

    def step(self, now: Optional[datetime] = None) -> tuple[list[Handled], list[dict], list[claims.Lease]]:
        """One round: scan, auto-confirm (when on), dispatch ready work to idle panes."""
        return (self.scan_once(now), self.auto_confirm_once(now) if self.auto_confirm else [],
                self.dispatch_ready(now))

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
    import argparse

    p = parser("tmux_bridge.py", "Agents in tmux panes: start a cluster, dispatch tasks, read their markers.",
               root=False, json_flag=False)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", help="workspace root (default: $SWARM_ROOT or the current directory)")
    common.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    common.add_argument("--cluster", help="cluster id, tmux session swarm-<id> (default: main; panes: all)")
    common.add_argument("--socket", help="tmux server: a name (-L) or a socket path (-S) (default: $SWARM_TMUX_SOCKET)")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    cmd = sub.add_parser("up", parents=[common], help="start a cluster: one tmux window per agent")
    cmd.add_argument("--agents", type=int, required=True, metavar="N", help="how many agents")
    how = cmd.add_mutually_exclusive_group(required=True)
    how.add_argument("--agent", metavar="PRESET", help=f"interactive CLI: {', '.join(sorted(INTERACTIVE_PRESETS))}")
    how.add_argument("--command", metavar="CMD", help="any command, run through /bin/sh in each pane")
    sub.add_parser("down", parents=[common], help="stop a cluster and give back its tasks")
    cmd = sub.add_parser("dispatch", parents=[common], help="type one task into one pane")
    cmd.add_argument("pane", help="window (agent-1), agent id or pane id")
    cmd.add_argument("task_id")
    for name, text in (("scan", "act on new markers once"), ("run", "dispatch, scan and confirm in a loop")):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("--auto-confirm", action="store_true", default=None, help="press Enter at press-enter prompts")
        cmd.add_argument("--dry-run", action="store_true", help="with --auto-confirm: only say what it would press")
        cmd.add_argument("--ack-timeout", type=float, metavar="S", help="requeue a task not [ACK]ed in S seconds")
        cmd.add_argument("--interval", type=float, metavar="S", help="run: seconds between rounds")
    cmd = sub.add_parser("panes", parents=[common], help="each pane's state and last lines")
    cmd.add_argument("--lines", type=int, metavar="N", help="last lines per pane (default 20)")
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
            panes = up(args.agents, preset=args.agent, command=args.command, cluster=cluster, root=args.root,
                       socket=args.socket)
            print_json([asdict(x) for x in panes]) if args.json else print(
                table(["window", "agent", "pane", "pid"], [[x.window, x.agent_id, x.pane_id, x.pid] for x in panes]),
                f"watch them: {shlex.join(['tmux', *Tmux(args.socket).base[2:], 'attach', '-t', f'swarm-{cluster}'])}",
                sep="\n")
        elif args.action == "down":
            stopped = down(cluster, root=args.root, socket=args.socket)
            print_json(stopped) if args.json else print(f"stopped {len(stopped)} agent(s) of cluster {cluster}")
        elif args.action == "panes":
            lines = _settings(load_config(args.root))["lines"] if args.lines is None else args.lines
            rows = pane_status(args.cluster, lines, root=args.root, socket=args.socket)
            print_json(rows) if args.json else print(render_pane_status(rows))
        elif args.action == "dispatch":
            bridge = Bridge(cluster, root=args.root, socket=args.socket)
            _report(args, [], [], [bridge.dispatch(args.pane, args.task_id)])
        else:
            bridge = Bridge(cluster, root=args.root, socket=args.socket, ack_timeout=args.ack_timeout,
                            auto_confirm=args.auto_confirm, dry_run=args.dry_run)
            if args.action == "scan":
                _report(args, bridge.scan_once(), bridge.auto_confirm_once() if bridge.auto_confirm else [], [])
            else:
                import signal

                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                bridge.run(args.interval, stop, report=lambda *result: _report(args, *result))
        return EXIT_OK

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
