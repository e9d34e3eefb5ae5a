"""One tmux pane's keyboard and screen: the tmux command line, typing a line and making sure it
was sent, choosing an option of a menu.

Typing into a pane is checked against its screen, because an agent's TUI may drop keys: Claude
Code, just started, draws its input box a moment after it reads keys, and an Enter that arrives
in the same read as the text is taken for part of a paste. So ``type_line`` types the text, waits
until the screen shows it in the input, presses Enter, and presses it again at once while the
text is still there. ``choose`` lets a menu just drawn settle, moves its cursor to an option,
presses Enter only once the screen has shown the cursor resting there, and answers again a menu
still drawn afterwards. ``press_answer`` presses a dialog's answer key until the dialog
is gone: a permission prompt just drawn may drop a key (CI saw Claude Code keep its prompt after
"1"), and the next try would otherwise wait out the answer's cooldown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any, Callable, Optional

from .errors import TmuxError
from .tmux_screen import Screen, input_holds, read_screen

__all__ = ["Tmux", "type_line", "choose", "press_answer"]

_ARRIVE_SECONDS = 5.0  # how long typed text may take to show in the input
_SUBMIT_SECONDS = 1.0  # after an Enter, how long the text may stay in the input before Enter is pressed again
_ENTER_PRESSES = 3  # Enter presses at most, per line typed
_SETTLE_SECONDS = 1.5  # how long a menu just seen is watched before any key (Claude Code draws it twice)
_STEADY_SECONDS = 0.3  # how long the cursor must rest on the option before the Enter
_CHOOSE_SECONDS = 3.0  # how long a menu may take to show its cursor on the option moved to
_ANSWER_SECONDS = 2.0  # after an answer key, how long its dialog may stay before the key is pressed again
_ANSWER_PRESSES = 3  # answer key presses at most, per dialog
_POLL = 0.05  # pause between two looks at the screen


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
        """Type ``text`` literally into the pane, then Enter (unchecked: see ``type_line``)."""
        self.run("send-keys", "-t", pane_id, "-l", "--", text)
        self.run("send-keys", "-t", pane_id, "Enter")

    def capture(self, pane_id: str, history: Optional[int] = None) -> str:
        """The pane's screen, with ``history`` lines of scrollback (-1: all), wrapped lines joined."""
        start = [] if history is None else ["-S", "-" if history < 0 else f"-{history}"]
        return self.run("capture-pane", "-p", "-J", "-t", pane_id, *start) or ""

    def look(self, pane_id: str) -> tuple[str, str]:
        """The visible screen and the text left of the cursor on its line."""
        where = (self.run("display-message", "-p", "-t", pane_id, "#{cursor_x} #{cursor_y}") or "0 0").split()
        x, y = (int(v) for v in where[:2])
        # Unjoined, so that row y of the capture is row y of the screen.
        row = (self.run("capture-pane", "-p", "-t", pane_id, "-S", str(y), "-E", str(y)) or "").rstrip("\n")
        return self.capture(pane_id), row[:x]

    def read(self, pane_id: str, settings: dict) -> tuple[Screen, str]:
        """``read_screen`` of the pane, and the visible screen it was read from."""
        screen, here = self.look(pane_id)
        return read_screen(screen, settings, here), screen


def _until(check: Callable[[], Any], seconds: float) -> Any:
    """The first true value of ``check()`` within ``seconds``, else False."""
    deadline = time.monotonic() + seconds
    while True:
        seen = check()
        if seen:
            return seen
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


def type_line(tmux: Tmux, pane_id: str, text: str) -> int:
    """Type ``text`` into the pane and send it: the Enter presses it took (1 when all went well),
    0 when the text never showed in the input, -1 when it still sat there after every Enter."""
    tmux.run("send-keys", "-t", pane_id, "-l", "--", text)
    if not _until(lambda: input_holds(*tmux.look(pane_id), text), _ARRIVE_SECONDS):
        return 0
    for press in range(1, _ENTER_PRESSES + 1):
        tmux.run("send-keys", "-t", pane_id, "Enter")
        if _until(lambda: not input_holds(*tmux.look(pane_id), text), _SUBMIT_SECONDS):
            return press
    return -1


def choose(tmux: Tmux, pane_id: str, option: str, settings: dict) -> bool:
    """Answer the menu on screen with ``option``: True once the menu is gone after an Enter on it.

    A menu just drawn is watched a moment before any key (``_SETTLE_SECONDS``): Claude Code
    2.1.332 draws its trust menu, takes keys, drops an Enter pressed in its first moments and
    draws the menu again with the cursor back on "No, exit" -- where an Enter means exit. So the
    cursor is moved to the option and Enter pressed only once it has rested there
    (``_STEADY_SECONDS``); a menu still drawn after the Enter is answered again, a cursor sent
    back by a redraw moved again, up to ``_ANSWER_PRESSES`` times. False (nothing confirmed) when
    the menu goes away before the Enter, lacks the option, or outlasts every try.
    """
    first = _menu(tmux, pane_id, option, settings)
    if first is None or _until(lambda: _menu(tmux, pane_id, option, settings) is None, _SETTLE_SECONDS):
        return False
    for _ in range(_ANSWER_PRESSES):
        if not _rest_cursor_on(tmux, pane_id, option, settings):
            return False
        tmux.run("send-keys", "-t", pane_id, "Enter")
        if _until(lambda: _answer_seen(tmux, pane_id, option, settings, first.what), _ANSWER_SECONDS) == "gone":
            return True
        # "moved": drawn anew, the cursor back on its first option; None: still drawn as it was (a dropped Enter).
    return False


def _menu(tmux: Tmux, pane_id: str, option: str, settings: dict) -> Optional[Screen]:
    """The menu on screen, if it offers ``option`` and shows its cursor."""
    screen = tmux.read(pane_id, settings)[0]
    ok = screen.kind == "dialog" and option in screen.options and screen.selected is not None
    return screen if ok else None


def _rest_cursor_on(tmux: Tmux, pane_id: str, option: str, settings: dict) -> bool:
    """Move the menu's cursor to ``option`` and wait until the screen has shown it there for
    ``_STEADY_SECONDS``; the keys are pressed again when a redraw sends the cursor back."""
    deadline = time.monotonic() + _CHOOSE_SECONDS
    pressed_from: Optional[int] = None  # where the cursor was when the keys were pressed
    steady_since: Optional[float] = None
    while time.monotonic() < deadline:
        menu = _menu(tmux, pane_id, option, settings)
        if menu is None:
            return False
        want = menu.options.index(option)
        if menu.selected == want:
            pressed_from = None
            steady_since = steady_since if steady_since is not None else time.monotonic()
            if time.monotonic() - steady_since >= _STEADY_SECONDS:
                return True
        else:
            steady_since = None
            # Keys once per position, never twice from the same place: a slow redraw taken for a
            # lost key would overshoot. Keys that are lost fail this try; the next round tries again.
            if pressed_from != menu.selected:
                key = "Down" if want > menu.selected else "Up"
                for _ in range(abs(want - menu.selected)):
                    tmux.run("send-keys", "-t", pane_id, key)
                pressed_from = menu.selected
        time.sleep(_POLL)
    return False


def _answer_seen(tmux: Tmux, pane_id: str, option: str, settings: dict, what: str) -> Optional[str]:
    """After an Enter: "gone" when the menu is no longer drawn, "moved" when it is drawn with the
    cursor off the option, None while it is still drawn as it was."""
    screen = tmux.read(pane_id, settings)[0]
    if screen.kind != "dialog" or screen.what != what or option not in screen.options:
        return "gone"
    return None if screen.selected == screen.options.index(option) else "moved"


def press_answer(tmux: Tmux, pane_id: str, key: str, settings: dict, asking: str) -> int:
    """Press ``key`` at the dialog asking ``asking`` until that dialog is gone: the presses it took
    (1 when all went well), or -1 when it was still drawn after every press."""
    def asked() -> bool:
        screen = tmux.read(pane_id, settings)[0]
        return screen.kind == "dialog" and screen.line == asking

    for press in range(1, _ANSWER_PRESSES + 1):
        tmux.run("send-keys", "-t", pane_id, key)
        if _until(lambda: not asked(), _ANSWER_SECONDS):
            return press
    return -1
