"""What the agents' tmux panes show: the ``tmux:`` settings, prompts, fresh markers, pane status.

swarm.yaml ``tmux:`` overrides any of DEFAULTS, except that its ``yes_no_patterns`` and
``danger_patterns`` add to the built-in ones (a safety list is never shortened by accident); a
bad value raises ValidationError naming swarm.yaml. ``assess_screen`` decides auto-confirm: Enter only for a "press enter" prompt among
the last lines of the screen, never for a yes/no question, never while a dangerous command is
anywhere on screen. tmux_bridge builds on this module and re-exports its public names.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Optional, Sequence

import agents
from config import Config, load_config
from errors import ValidationError

__all__ = ["DEFAULTS", "assess_screen", "fresh_markers", "pane_status", "render_pane_status"]

# swarm.yaml ``tmux:`` overrides any of these.
DEFAULTS: dict[str, Any] = {
    "ack_timeout_seconds": 60,  # a dispatched task not [ACK]ed in time goes back to the queue
    "interval_seconds": 2,  # pause of the run loop between rounds
    "auto_confirm": False,  # press Enter for "press enter" prompts (never y/n, never near danger)
    "cooldown_seconds": 30,  # auto-confirm presses Enter in one window at most this often
    "lines": 20,  # last lines per pane shown by `panes`
    "history_lines": 20000,  # scrollback kept per pane: markers are read from it
    "presets": {},  # name: interactive command, adding to or overriding tmux_bridge.INTERACTIVE_PRESETS
    # regular expressions, case-insensitive, for a prompt that only wants Enter
    "confirm_patterns": [r"press\s+(enter|return)", r"hit\s+(enter|return)", r"\[enter\]", r"回车继续",
                         r"按\s*回车", r"按\s*enter", r"按下\s*回车"],
    # a question Enter would answer: never confirmed
    "yes_no_patterns": [r"\(\s*y\s*/\s*n\s*\)", r"\[\s*y\s*/\s*n\s*\]", r"\byes\s*/\s*no\b", r"是否", r"是/否"],
    # nothing is pressed while one of these is anywhere on screen
    "danger_patterns": [r"\brm\s+-[a-z]*(rf|fr)", r"\bsudo\b", r"passw(or)?d", r"passphrase", r"drop\s+table",
                        r"git\s+push\b.*(--force|\s-f\b)", r"\bmkfs", r"\bdd\s+if=", r"chmod\s+-R\s+777",
                        r"(curl|wget)\b.*\|\s*(sudo\s+)?(ba|z)?sh\b"],
}

_PROMPT_LINES = 5  # the last non-empty lines of the screen that are read for prompts and questions
# Safety lists: swarm.yaml adds to them and can never drop a built-in pattern by accident.
_ADDITIVE = ("yes_no_patterns", "danger_patterns")
_YES_NO = "a yes/no question: Enter would answer it"


# ---------------------------------------------------------------------------- settings


def _settings(cfg: Config) -> dict[str, Any]:
    """DEFAULTS overridden by swarm.yaml ``tmux:``, the pattern lists compiled."""
    raw = cfg.settings.get("tmux", {}) or {}

    def bad(what: str) -> ValidationError:
        return ValidationError(what, path=cfg.root / "swarm.yaml", hint="fix swarm.yaml")

    if not isinstance(raw, dict) or not isinstance(raw.get("presets", {}), dict):
        raise bad("'tmux' and 'tmux.presets' must be mappings")
    out = {**DEFAULTS, **raw}
    for key in ("confirm_patterns", "yes_no_patterns", "danger_patterns"):
        if not isinstance(out[key], list) or not all(isinstance(v, str) for v in out[key]):
            raise bad(f"'tmux.{key}' must be a list of regular expressions")
        if key in _ADDITIVE and key in raw:
            out[key] = DEFAULTS[key] + [v for v in raw[key] if v not in DEFAULTS[key]]
        try:
            out[key] = [re.compile(v, re.I) for v in out[key]]
        except re.error as exc:
            raise bad(f"'tmux.{key}' holds a bad regular expression: {exc}") from None
    return out


# ---------------------------------------------------------------------------- screen reading


def assess_screen(screen: str, settings: dict) -> Optional[tuple[str, str, str]]:
    """What auto-confirm may do on ``screen``: None (no prompt), ("press", line, "") or ("skip", line, why)."""
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()][-_PROMPT_LINES:]
    for line in reversed(lines):
        if any(p.search(line) for p in settings["yes_no_patterns"]):
            return "skip", line.strip(), _YES_NO
    # Only a prompt on the last line is waiting: one with output below it was answered already,
    # and pressing again would send Enter to whatever the agent shows now.
    prompt = lines[-1] if lines and any(p.search(lines[-1]) for p in settings["confirm_patterns"]) else None
    if prompt is None:
        return None
    for pattern in settings["danger_patterns"]:
        found = pattern.search(screen)
        if found:
            return "skip", prompt.strip(), f"dangerous text on screen: {found.group(0)!r}"
    return "press", prompt.strip(), ""


def fresh_markers(text: str, current: dict) -> list[agents.Marker]:
    """The marker lines of the task in ``current`` printed since its dispatch, in order.

    ``current['before']`` counts each marker line of the task already on screen at dispatch
    (an earlier attempt's ``[ACK] T`` looks the same as this one's); that many of the oldest
    copies are skipped. The counts are lowered, in place, to what the scrollback still holds,
    so old lines that fall out of the history never hide new ones.
    """
    mine = [m for m in agents.parse_markers(text) if m.task_id == current["task_id"]]
    seen = Counter(_marker_key(m) for m in mine)
    before = current.setdefault("before", {})
    before.update({key: min(count, seen[key]) for key, count in before.items()})
    skip, out = Counter(before), []
    for marker in mine:
        if skip[_marker_key(marker)] > 0:
            skip[_marker_key(marker)] -= 1
        else:
            out.append(marker)
    return out


def _marker_key(marker: agents.Marker) -> str:
    return f"{marker.kind} {marker.text}".rstrip()


# ---------------------------------------------------------------------------- pane status


def pane_status(cluster: Optional[str] = None, lines: int = 20, root: Optional[str] = None,
                socket: Optional[str] = None) -> list[dict]:
    """Each agent pane with its state (working, idle, waiting-for-enter, waiting-for-answer, dead),
    current task and last ``lines`` lines."""
    # Taken at call time: tmux_bridge imports this module at its top.
    from tmux_bridge import Tmux, _check_cluster, _read_state, list_panes

    cfg = load_config(root)
    settings = _settings(cfg)
    tmux = Tmux(socket)
    rows = []
    for pane in list_panes(tmux, _check_cluster(cluster) if cluster else None):
        text = tmux.capture(pane.pane_id, history=max(lines, 0))
        last = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:] if lines > 0 else []
        cur = _read_state(cfg, pane.agent_id).get("current") or {}
        verdict = assess_screen(text, settings)
        if pane.dead:
            state = "dead"
        elif verdict is not None:
            state = "waiting-for-answer" if verdict[2] == _YES_NO else "waiting-for-enter"
        else:
            state = "working" if cur else "idle"
        rows.append({"cluster": pane.cluster, "window": pane.window, "pane": pane.pane_id,
                     "agent_id": pane.agent_id, "pid": pane.pid, "state": state, "task": cur.get("task_id"),
                     "acknowledged": bool(cur.get("acknowledged_at")), "lines": last})
    return rows


def render_pane_status(rows: Sequence[dict]) -> str:
    """``pane_status`` rows as text: a header line per pane, then its last lines indented."""
    if not rows:
        return "no swarm agents in tmux"
    out = []
    for row in rows:
        task = f"  task {row['task']}" if row.get("task") else ""
        out.append(f"{row['agent_id']}  ({row['cluster']}:{row['window']}, pane {row['pane']})  {row['state']}{task}")
        out += [f"    | {line}" for line in row["lines"]]
    return "\n".join(out)


if __name__ == "__main__":
    import cli

    raise SystemExit(cli.no_command_line("tmux_screen.py", "use: python lib/tmux_bridge.py --help"))
