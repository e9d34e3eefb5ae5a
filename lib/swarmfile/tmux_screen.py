"""What the agents' tmux panes show: the ``tmux:`` settings, prompts, fresh markers, pane status.

swarm.yaml ``tmux:`` overrides any of DEFAULTS, except that its ``yes_no_patterns`` and
``danger_patterns`` add to the built-in ones (a safety list is never shortened by accident); a
bad value raises ValidationError naming swarm.yaml. ``read_screen`` says what a pane shows: a dialog
(a menu under "Enter to confirm · Esc to cancel": Claude Code's workspace-trust, API-key and
permission dialogs), a yes/no question, a "press enter" prompt, an agent at work, a line typed
but not sent, or an input box ready for a task. ``assess_screen`` decides auto-confirm: Enter
only for a "press enter" prompt on the last line, never for a yes/no question, never while a
dangerous command is anywhere on screen. tmux_bridge builds on this module and re-exports it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from . import agents
from .config import Config
from .errors import ValidationError

__all__ = ["tmux_settings", "marker_key", "DEFAULTS", "Screen", "read_screen", "input_holds", "dialog_answer", "assess_screen", "fresh_markers",
           "render_pane_status"]

# swarm.yaml ``tmux:`` overrides any of these.
DEFAULTS: dict[str, Any] = {
    "ack_timeout_seconds": 60,  # a dispatched task not [ACK]ed in time goes back to the queue
    "interval_seconds": 2,  # pause of the run loop between rounds
    "auto_confirm": False,  # press Enter for "press enter" prompts (never y/n, never near danger)
    "cooldown_seconds": 30,  # auto-confirm presses Enter in one window at most this often
    "lines": 20,  # last lines per pane shown by `panes`
    "history_lines": 20000,  # scrollback kept per pane: markers are read from it
    "presets": {},  # name: interactive command, adding to or overriding tmux_bridge.INTERACTIVE_PRESETS
    "bridge": True,  # `up` also starts the dispatching loop (`run`) in a window of the cluster
    "ready_timeout_seconds": 30,  # `dispatch` waits this long for a starting agent's input to be ready
    # Claude Code's "Quick safety check" on a folder it has not seen: trusting it loads the
    # checkout's own settings, hooks and MCP servers, code that then runs with your rights. That is
    # the operator's call, made once per folder (Claude Code remembers it), so the bridge answers
    # Yes only when this says so; else the pane shows "dialog: workspace trust" until you answer.
    "trust_workspace": False,
    # Claude Code's "Detected a custom API key ... use this API key?" (Enter there means No): the
    # bridge picks Yes, by moving to it and checking the cursor, only when this says so.
    "use_api_key": False,
    # regular expressions, for the text left of the cursor of an agent with a plain prompt: typing
    # waits for one (an empty list: any screen that is no dialog or prompt counts as ready)
    "ready_patterns": [r"[>$%#❯›»]\s*$"],
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


def tmux_settings(cfg: Config) -> dict[str, Any]:
    """DEFAULTS overridden by swarm.yaml ``tmux:``, the pattern lists compiled."""
    raw = cfg.settings.get("tmux", {}) or {}

    def bad(what: str) -> ValidationError:
        return ValidationError(what, path=cfg.root / "swarm.yaml", hint="fix swarm.yaml")

    if not isinstance(raw, dict) or not isinstance(raw.get("presets", {}), dict):
        raise bad("'tmux' and 'tmux.presets' must be mappings")
    out = {**DEFAULTS, **raw}
    for key in ("confirm_patterns", "yes_no_patterns", "danger_patterns", "ready_patterns"):
        if not isinstance(out[key], list) or not all(isinstance(v, str) for v in out[key]):
            raise bad(f"'tmux.{key}' must be a list of regular expressions")
        if key in _ADDITIVE and key in raw:
            out[key] = DEFAULTS[key] + [v for v in raw[key] if v not in DEFAULTS[key]]
        try:
            out[key] = [re.compile(v, re.I) for v in out[key]]
        except re.error as exc:
            raise bad(f"'tmux.{key}' holds a bad regular expression: {exc}") from None
    for key in ("trust_workspace", "use_api_key", "bridge", "auto_confirm"):
        if not isinstance(out[key], bool):
            raise bad(f"'tmux.{key}' must be true or false")
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


_CURSOR = "❯"  # Claude Code's selection cursor in a menu and the head of its input box
_FOOTER = re.compile(r"enter to confirm|esc to cancel", re.I)  # under every menu that waits for a choice
_RULE = re.compile(r"^\s*─{10,}\s*$")  # the lines above and below Claude Code's input box
_WORKING = re.compile(r"esc to interrupt", re.I)  # Claude Code's footer while it works
_PLACEHOLDER = re.compile(r'^Try ".*"$')  # the dim suggestion in an empty Claude Code box
_TRUST = re.compile(r"trust this folder|is this a project you created or one you trust", re.I)
_API_KEY = re.compile(r"detected a custom api key|use this api key\?", re.I)
_QUESTION = re.compile(r"one you trust\?|use this api key\?", re.I)  # the line that names those two dialogs
_NUMBERED = re.compile(r"^(\d+)\.\s+(.*)$")
_MENU_LINES = 16  # a menu, its question and its footer are among the last lines of the screen
_STATUS = {"workspace trust": "dialog: workspace trust", "API key": "dialog: API key",
           "permission": "waiting-for-answer: permission", "menu": "waiting-for-answer: menu"}


@dataclass(frozen=True)
class Screen:
    """What a pane shows, as far as typing into it goes.

    ``kind``: dialog (``what`` names it: workspace trust, API key, permission, menu), question (a
    yes/no question), enter (a "press enter" prompt), working, typed (text waits in the input:
    ``line``), ready (an input waits for a line) or unknown (none of these: still starting, or busy).
    """

    kind: str
    what: str = ""
    line: str = ""
    options: tuple[str, ...] = ()
    selected: Optional[int] = None

    @property
    def status(self) -> str:
        """The pane state `panes` shows for this screen when no task is in hand."""
        if self.kind == "dialog":
            return _STATUS[self.what]
        return {"question": "waiting-for-answer", "enter": "waiting-for-enter", "working": "working",
                "typed": "text-in-input", "ready": "idle"}.get(self.kind, "not-ready")


def read_screen(screen: str, settings: dict, cursor_line: Optional[str] = None) -> Screen:
    """Read the visible ``screen``; ``cursor_line`` is the text left of the cursor (else the last line)."""
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    menu = _menu(lines)
    if menu is not None:
        return menu
    verdict = assess_screen(screen, settings)
    if verdict is not None:
        return Screen("question" if verdict[2] == _YES_NO else "enter", line=verdict[1])
    box = _box(lines)
    if box is not None:
        text, footer = box
        if any(_WORKING.search(line) for line in footer):
            return Screen("working", line=text)
        return Screen("typed", line=text) if text and not _PLACEHOLDER.match(text) else Screen("ready")
    here = (lines[-1] if lines else "") if cursor_line is None else cursor_line.rstrip()
    if not lines or settings["ready_patterns"] and not any(p.search(here) for p in settings["ready_patterns"]):
        return Screen("unknown", line=here.strip())
    return Screen("ready", line=here.strip())


def input_holds(screen: str, cursor_line: Optional[str], text: str) -> bool:
    """Whether ``text`` waits, typed and not yet sent, in the pane's input (Claude Code's box, else
    left of the cursor). Spaces are ignored: a box wraps a long line where it likes."""
    box = _box([line.rstrip() for line in screen.splitlines() if line.strip()])
    here = box[0] if box is not None else (cursor_line or "")
    return _squeeze(text) in _squeeze(here) if box is not None else _squeeze(here).endswith(_squeeze(text))


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _menu(lines: list[str]) -> Optional[Screen]:
    """A menu waiting for a choice: options under a cursor, a footer "Enter to confirm · Esc to cancel"."""
    tail = lines[-_MENU_LINES:]
    foot = next((i for i in range(len(tail) - 1, max(len(tail) - 4, -1), -1) if _FOOTER.search(tail[i])), None)
    cursor = None if foot is None else next(
        (i for i in range(foot - 1, -1, -1) if tail[i].lstrip().startswith(_CURSOR)), None)
    if cursor is None:
        return None
    col = tail[cursor].index(_CURSOR) + 2  # where the text of every option starts

    def option(line: str) -> bool:
        return len(line) > col and not line[:col].strip(_CURSOR + " ") and line[col] != " "

    def more(line: str) -> bool:  # an option's text wrapped onto the next line
        return len(line) > col and not line[:col + 1].strip()

    start = cursor
    while start > 0 and (option(tail[start - 1]) or more(tail[start - 1])):
        start -= 1
    end = cursor + 1
    while end < foot and (option(tail[end]) or more(tail[end])):
        end += 1
    options: list[str] = []
    selected = None
    for i in range(start, end):
        if option(tail[i]):
            options.append(tail[i][col:].strip())
            selected = len(options) - 1 if i == cursor else selected
        elif options:
            options[-1] += " " + tail[i].strip()
    question = tail[start - 1].strip() if start > 0 else ""
    text = "\n".join(tail)
    what = "workspace trust" if _TRUST.search(text) else "API key" if _API_KEY.search(text) else ""
    if what:
        question = next((line.strip() for line in tail if _QUESTION.search(line)), question)
    elif question.lower().startswith("do you want to") and _NUMBERED.match(options[0]):
        what = "permission"
    else:
        what = "menu"
    return Screen("dialog", what, question, tuple(options), selected)


def _box(lines: list[str]) -> Optional[tuple[str, list[str]]]:
    """Claude Code's input box: its text and the footer lines below it, or None."""
    rules = [i for i, line in enumerate(lines) if _RULE.match(line)]
    for upper, lower in reversed(list(zip(rules, rules[1:]))):
        if lower > upper + 1 and lines[upper + 1].lstrip().startswith(_CURSOR):
            text = " ".join(line.strip() for line in lines[upper + 1:lower])
            return text[len(_CURSOR):].strip(), lines[lower + 1:]
    return None


def dialog_answer(screen: Screen, settings: dict, auto_confirm: bool, whole: str) -> tuple[str, str, str]:
    """What the bridge does at a dialog: ("choose", option, ""), ("key", key, option) or ("wait", "", why).

    The workspace-trust and API-key dialogs are answered only as ``settings`` say, by choosing the
    option (never a bare Enter: Enter at the API-key dialog means No). A permission prompt is
    answered only with ``auto_confirm`` on, only by its own "1. Yes" (never an "allow all" or
    "switch mode" option), and never while a dangerous command is anywhere on the screen ``whole``.
    """
    if screen.what == "workspace trust":
        yes = next((o for o in screen.options if o.lower().startswith("yes")), None)
        if not settings["trust_workspace"]:
            return "wait", "", "set tmux.trust_workspace: true in swarm.yaml, or answer it in the pane"
        return ("choose", yes, "") if yes else ("wait", "", "no Yes option on screen")
    if screen.what == "API key":
        yes = next((o for o in screen.options if o.lower() == "yes"), None)
        if not settings["use_api_key"]:
            return "wait", "", "set tmux.use_api_key: true in swarm.yaml to use the key, or answer it in the pane"
        return ("choose", yes, "") if yes else ("wait", "", "no Yes option on screen")
    if screen.what != "permission":
        return "wait", "", "an unknown menu: answer it in the pane"
    if not auto_confirm:
        return "wait", "", "auto-confirm is off: answer it in the pane"
    first = _NUMBERED.match(screen.options[0]) if screen.options else None
    if first is None or first.group(1) != "1" or first.group(2).strip().lower() != "yes":
        return "wait", "", "its first option is not a plain Yes"
    for pattern in settings["danger_patterns"]:
        found = pattern.search(whole)
        if found:
            return "wait", "", f"dangerous text on screen: {found.group(0)!r}"
    return "key", "1", screen.options[0]


def fresh_markers(text: str, current: dict) -> list[agents.Marker]:
    """The marker lines of the task in ``current`` printed since its dispatch, in order.

    ``current['before']`` counts each marker line of the task already on screen at dispatch
    (an earlier attempt's ``[ACK] T`` looks the same as this one's); that many of the oldest
    copies are skipped. The counts are lowered, in place, to what the scrollback still holds,
    so old lines that fall out of the history never hide new ones.
    """
    mine = [m for m in agents.parse_markers(text) if m.task_id == current["task_id"]]
    seen = Counter(marker_key(m) for m in mine)
    before = current.setdefault("before", {})
    before.update({key: min(count, seen[key]) for key, count in before.items()})
    skip, out = Counter(before), []
    for marker in mine:
        if skip[marker_key(marker)] > 0:
            skip[marker_key(marker)] -= 1
        else:
            out.append(marker)
    return out


def marker_key(marker: agents.Marker) -> str:
    return f"{marker.kind} {marker.text}".rstrip()


# ---------------------------------------------------------------------------- pane status


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
