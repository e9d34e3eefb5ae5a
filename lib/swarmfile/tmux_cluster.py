"""A cluster of agents in tmux: start and stop it, list its panes, keep each pane's state.

A cluster is the tmux session ``swarm-<cluster>`` with one window per agent (``agent-1`` ..),
each registered in heartbeat.yaml as executor ``<cluster>-agent-<n>`` with its pane's pid, and,
when asked, a window ``bridge`` running the dispatching loop (tmux_bridge.py ``run``).
``.swarm/tmux/<agent>.yaml`` holds each pane's state: its task in hand and the markers handled.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from . import agent_discovery
from . import claims
from . import events
from . import lifecycle
from .cli import module_argv
from .clock import HOSTNAME
from .config import Config, load_config, validate_id
from .errors import SwarmError, TmuxError, ValidationError
from .fileio import atomic_write, dump_yaml, expect_mapping, load_yaml_file, locked
from .tmux_pane import Tmux
from .tmux_screen import input_holds, read_screen, tmux_settings

__all__ = ["INTERACTIVE_PRESETS", "Pane", "check_cluster", "list_panes", "up", "down", "pane_state", "read_pane_state"]

# Interactive modes of the agent CLIs (agents.PRESETS holds their one-shot modes).
INTERACTIVE_PRESETS: dict[str, str] = {
    "claude": "claude", "codex": "codex", "gemini": "gemini", "aider": "aider", "ollama": "ollama run llama3.1",
}

_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # tmux turns '.' and ':' in session names into '_'
_FORMAT = "\t".join(["#{session_name}", "#{window_name}", "#{pane_id}", "#{pane_pid}", "#{pane_dead}",
                     "#{@swarm_agent}", "#{@swarm_cluster}"])
_NO_SERVER = ("no server running", "error connecting to", "server exited")
_BRIDGE_WINDOW = "bridge"  # the window of the dispatching loop `up` starts
_BRIDGE_STOP_SECONDS = 10  # how long `down` waits for that loop to end its round
_HANDLED_KEPT = 500  # handled-marker keys remembered per pane
_MISSING: Any = object()


@dataclass(frozen=True)
class Pane:
    """One agent's pane in a cluster."""

    cluster: str
    window: str
    pane_id: str
    agent_id: str
    pid: int
    dead: bool


# ---------------------------------------------------------------------------- panes


def check_cluster(cluster: str) -> str:
    """``cluster``, when it can name a tmux session ``swarm-<cluster>``; else ValidationError."""
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
       root: Optional[str] = None, socket: Optional[str] = None, bridge: bool = False) -> list[Pane]:
    """Start the tmux session ``swarm-<cluster>`` with one window and agent per ``agent_count``.

    Each pane runs the preset's interactive CLI (or ``command`` through /bin/sh) in the workspace
    root with SWARM_ROOT and SWARM_AGENT_ID set, and is registered as an executor in
    heartbeat.yaml. With ``bridge``, a last window ``bridge`` runs the dispatching loop
    (``tmux_bridge.py run``), which ``down`` stops first. Raises ValidationError when the cluster
    is already up, TmuxError.
    """
    cfg = load_config(root=root)
    settings = tmux_settings(cfg)
    check_cluster(cluster)
    if not isinstance(agent_count, int) or not 1 <= agent_count <= 64:
        raise ValidationError(f"--agents must be 1 to 64, got {agent_count}")
    name, argv = _agent_argv(preset, command, settings)
    for n in range(1, agent_count + 1):
        read_pane_state(cfg, f"{cluster}-agent-{n}")  # a corrupt state file stops us before tmux starts
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
        if bridge:
            _start_bridge(tmux, session, cluster, cfg)
        tmux.run("kill-window", "-t", f"={session}:swarm-setup")
    except SwarmError:
        tmux.run("kill-session", "-t", f"={session}", check=False)
        raise
    panes = list_panes(tmux, cluster)
    for pane in panes:
        with pane_state(cfg, pane.agent_id) as state:
            state.update(pane=pane.pane_id, cluster=cluster, current=None)
        agent_discovery.register_agent(pane.agent_id, role="executor", root=cfg.root, pid=pane.pid, host=HOSTNAME,
                                       current_action="idle", pane=pane.pane_id, cluster=cluster,
                                       window=pane.window, tmux_socket=tmux.socket, agent_command=name)
        events.append_event("registered", pane.agent_id, root=cfg.root, role="executor", pane=pane.pane_id,
                            cluster=cluster, command=name)
    return panes


def _start_bridge(tmux: Tmux, session: str, cluster: str, cfg: Config) -> None:
    argv = [*module_argv("tmux_bridge"), "run", "--cluster", cluster, "--root", str(cfg.root)]
    if tmux.socket:
        argv += ["--socket", tmux.socket]
    pane_id = (tmux.run("new-window", "-d", "-t", f"={session}:", "-n", _BRIDGE_WINDOW, "-c", str(cfg.root),
                        "-P", "-F", "#{pane_id}", "cat") or "").strip()
    # Kept open when the loop ends, so that its last words (an error in swarm.yaml...) stay readable.
    for option, value in (("remain-on-exit", "on"), ("@swarm_bridge", cluster)):
        tmux.run("set-option", "-w", "-t", pane_id, option, value)
    tmux.run("respawn-pane", "-k", "-t", pane_id, "-c", str(cfg.root), *argv)


def _stop_bridge(tmux: Tmux, cluster: str) -> None:
    """SIGTERM to the cluster's dispatching loop, and wait (a while) for it to finish its round:
    a task it dispatches after ``down`` gave back the others would stay with a dying pane."""
    out = tmux.run("list-panes", "-s", "-t", f"=swarm-{cluster}", "-F", "#{pane_pid} #{pane_dead} #{@swarm_bridge}",
                   check=False) or ""
    for pid, dead, owner in (line.split(" ") for line in out.splitlines() if line.count(" ") == 2):
        if owner != cluster or dead == "1":
            continue
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + _BRIDGE_STOP_SECONDS
        while time.monotonic() < deadline and _alive(int(pid)):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Its pane keeps it as a zombie (remain-on-exit) until tmux reaps it: that is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def down(cluster: str = "main", *, root: Optional[str] = None, socket: Optional[str] = None) -> list[str]:
    """Stop a cluster: stop its dispatching loop, give back its tasks in hand, kill its session,
    deregister its agents."""
    cfg = load_config(root=root)
    check_cluster(cluster)
    tmux = Tmux(socket)
    _stop_bridge(tmux, cluster)
    panes = list_panes(tmux, cluster)
    bridge_id = f"{cluster}-bridge"
    for pane in panes:
        with pane_state(cfg, pane.agent_id) as state:
            cur = state.get("current")
            state["current"] = None
            lease = claims.get_lease(cur["task_id"], root=cfg.root) if cur else None
            if lease is not None and lease.token == cur["token"]:
                # A lease finished or taken back meanwhile is not ours to give: give_back says so and does nothing.
                lifecycle.give_back(lease, bridge_id, "cluster stopped", root=cfg.root, previous_agent=pane.agent_id)
    tmux.run("kill-session", "-t", f"=swarm-{cluster}", check=False)
    for pane in panes:
        agent_discovery.deregister_agent(pane.agent_id, root=cfg.root)
        events.append_event("stopped", pane.agent_id, root=cfg.root, pane=pane.pane_id, cluster=cluster)
    return [pane.agent_id for pane in panes]


# ---------------------------------------------------------------------------- per-pane state


def _state_file(cfg: Config, agent_id: str) -> Path:
    return cfg.runtime_dir / "tmux" / f"{validate_id(agent_id, 'agent id')}.yaml"


@contextmanager
def pane_state(cfg: Config, agent_id: str) -> Iterator[dict]:
    """The pane's state under its lock, written back (if changed) even when the block fails."""
    path = _state_file(cfg, agent_id)
    with locked(path, lock_dir=cfg.lock_dir, timeout=cfg.lock_timeout):
        state = read_pane_state(cfg, agent_id)
        state.setdefault("agent_id", agent_id)
        state.setdefault("handled", [])
        before = repr(state)
        try:
            yield state
        finally:
            if repr(state) != before:
                state["handled"] = state["handled"][-_HANDLED_KEPT:]
                atomic_write(path, dump_yaml(state))


def read_pane_state(cfg: Config, agent_id: str) -> dict:
    path = _state_file(cfg, agent_id)
    data = load_yaml_file(path, default=_MISSING)
    state = {} if data is _MISSING else dict(expect_mapping(data, path, "a tmux pane state"))
    cur = state.get("current")
    if not isinstance(state.get("handled", []), list) or cur is not None and not (
            isinstance(cur, dict) and isinstance(cur.get("task_id"), str) and isinstance(cur.get("token"), int)
            and isinstance(cur.get("dispatched_at"), str)):
        raise ValidationError("malformed tmux pane state", path=path, hint="fix or delete the file")
    return state


def pane_status(cluster: Optional[str] = None, lines: int = 20, *, root: Optional[str] = None,
                socket: Optional[str] = None) -> list[dict]:
    """Each agent pane with its state, current task and last ``lines`` lines.

    States: dead, a dialog (``dialog: workspace trust``, ``dialog: API key``,
    ``waiting-for-answer: permission``, ``waiting-for-answer: menu``), ``waiting-for-answer`` (a
    yes/no question), ``waiting-for-enter``, ``text-in-input`` (a line typed, not sent), else
    ``working`` while a task is in hand, else what the screen shows: working, idle or not-ready.
    """
    cfg = load_config(root=root)
    settings = tmux_settings(cfg)
    tmux = Tmux(socket)
    rows = []
    for pane in list_panes(tmux, check_cluster(cluster) if cluster else None):
        text = tmux.capture(pane.pane_id, history=max(lines, 0))
        last = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:] if lines > 0 else []
        cur = read_pane_state(cfg, pane.agent_id).get("current") or {}
        visible, here = ("", "") if pane.dead else tmux.look(pane.pane_id)
        screen = read_screen(visible, settings, here)
        if pane.dead:
            state = "dead"
        elif screen.kind in ("dialog", "question", "enter", "typed") or not cur:
            state = screen.status
        elif input_holds(visible, here, f"[TASK] {cur['task_id']} {cur.get('task_file', '')}".rstrip()):
            state = "text-in-input"  # its Enter was lost: the ack timeout takes the task back
        else:
            state = "working"
        rows.append({"cluster": pane.cluster, "window": pane.window, "pane": pane.pane_id,
                     "agent_id": pane.agent_id, "pid": pane.pid, "state": state, "task": cur.get("task_id"),
                     "acknowledged": bool(cur.get("acknowledged_at")), "lines": last})
    return rows
