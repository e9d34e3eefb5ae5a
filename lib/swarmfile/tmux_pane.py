"""One tmux pane's keyboard and screen: the tmux command line, typing a line and making sure it
was sent, choosing an option of a menu.

Typing into a pane is checked against its screen, because an agent's TUI may drop keys: Claude
Code, just started, draws its input box a moment after it reads keys, and an Enter that arrives
in the same read as the text is taken for part of a paste. So ``type_line`` types the text, waits
until the screen shows it in the input, presses Enter, and presses it again at once while the
text is still there. ``choose`` moves a menu's cursor to an option and presses Enter only when
the screen shows the cursor on it, and again while it still does. ``press_answer`` presses a dialog's answer key until the dialog
is gone: a permission prompt just drawn may drop a key (CI saw Claude Code keep its prompt after
"1"), and the next try would otherwise wait out the answer's cooldown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Callable, Optional

from .errors import TmuxError
from .tmux_screen import Screen, input_holds, read_screen

__all__ = ["Tmux", "type_line", "choose", "press_answer"]

_ARRIVE_SECONDS = 5.0  # how long typed text may take to show in the input
_SUBMIT_SECONDS = 1.0  # after an Enter, how long the text may stay in the input before Enter is pressed again
_ENTER_PRESSES = 3  # Enter presses at most, per line typed
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


def _until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if check():
            return True
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
    """Move the cursor of the menu on screen to ``option`` and press Enter once it is shown there.

    False (nothing confirmed) when the menu is gone, lacks the option, or the cursor does not get there.
    """
    def menu() -> Optional[Screen]:
        screen = tmux.read(pane_id, settings)[0]
        return screen if screen.kind == "dialog" and option in screen.options else None

    now = menu()
    if now is None or now.selected is None:
        return False
    want = now.options.index(option)
    if now.selected != want:
        key = "Down" if want > now.selected else "Up"
        for _ in range(abs(want - now.selected)):
            tmux.run("send-keys", "-t", pane_id, key)

    def there() -> bool:
        seen = menu()
        return seen is not None and seen.selected == want

    if not _until(there, _CHOOSE_SECONDS):
        return False
    # Enter again only while the same menu still shows the cursor on the option: a dropped Enter.
    # A menu that changed, or the next dialog, gets no second Enter (at the API-key dialog it means No).
    for _ in range(_ANSWER_PRESSES):
        tmux.run("send-keys", "-t", pane_id, "Enter")
        if _until(lambda: not there(), _ANSWER_SECONDS):
            break
    return True


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
