#!/usr/bin/env python3
"""A stand-in for an interactive agent CLI in a tmux pane (tests of tmux_bridge).

    interactive_agent.py [--outcomes done|error|wait|noack|hold[,...]] [--prompt TEXT [--repeat N]] [--show-env]
                         [--read-task] [--slow-start S] [--trust-dialog] [--drop-enter N]
                         [--trust-drops N] [--trust-redraw S]

It prints an ``agent> `` prompt and reads lines. On ``[TASK] <id> <file>`` it first says, mid-line,
how it will report (as real CLIs echo their instructions), then prints ``[ACK] <id>`` and
``[DONE] <id>``, or as the outcome says: ``error`` ([ERROR] id why), ``wait`` ([WAIT] id why),
``noack`` (nothing at all), ``hold`` ([ACK], then [DONE] only after a line ``go``). The n-th
task line gets the n-th of --outcomes (the last one repeats), unless its task id contains
ERR, WAIT, NOACK or HOLD. With ``--prompt`` it first prints TEXT
and waits for a line, N times, printing ``got: <line>`` and ``continued`` after each.
With ``--read-task`` it reads the task file first, as a real agent must: it prints
``task file says: <its first line>``, or ``[ERROR] <id> cannot read <file>`` and nothing more.

Like a TUI (Claude Code), it can misbehave at the keyboard: ``--slow-start S`` prints
``starting...`` and throws away whatever is typed in the first S seconds; ``--trust-dialog``
first shows a copy of Claude Code's workspace-trust menu (cursor on "No, exit"; Up/Down move,
Enter confirms, other keys are ignored; No exits; ``--trust-drops N`` ignores its first N Enter
presses, as a dialog just drawn may; ``--trust-redraw S`` takes no Enter for its first S seconds,
then draws the menu anew with the cursor back on "No, exit", as Claude Code 2.1.332 does while it
starts); ``--drop-enter N`` reads keys one by one and ignores the first N Enter presses after
text, leaving the line in its input.
"""

import argparse
import os
import select
import sys
import termios
import time
import tty

RAW = False  # the terminal is in raw mode: a newline needs its carriage return


def say(text: str) -> None:
    sys.stdout.write(text + ("\r\n" if RAW else "\n"))
    sys.stdout.flush()


def trust_dialog(drops: int = 0, redraw: float = 0) -> bool:
    """Claude Code's "Quick safety check" (2.1.332 layout): True for Yes, False for No."""
    options, at, keys = ["No, exit", "Yes, I trust this folder"], 0, b""
    redraw_at = time.monotonic() + redraw if redraw else None
    while True:
        if redraw_at is not None and time.monotonic() >= redraw_at:
            at, keys, redraw_at = 0, b"", None  # drawn anew: the cursor back on its first option
        sys.stdout.write("\x1b[2J\x1b[H")
        say(" Quick safety check: Is this a project you created or one you trust?")
        say("")
        for i, option in enumerate(options):
            say((" \u276f " if i == at else "   ") + option)
        say("")
        say(" Enter to confirm \u00b7 Esc to cancel")
        if redraw_at is None or select.select([0], [], [], max(0.0, redraw_at - time.monotonic()))[0]:
            keys += os.read(0, 64)
        while keys:
            if keys[:1] == b"\r" and redraw_at is not None:
                keys = keys[1:]  # not taking answers yet
            elif keys[:1] == b"\r" and drops:
                drops, keys = drops - 1, keys[1:]
            elif keys[:1] == b"\r":
                sys.stdout.write("\x1b[2J\x1b[H")
                return at == 1
            elif keys[:1] == b"\x1b" and keys[2:3] in (b"A", b"B"):
                at = max(0, at - 1) if keys[2:3] == b"A" else min(len(options) - 1, at + 1)
                keys = keys[3:]
            else:
                keys = keys[1:]  # anything else is ignored, as a menu does


def read_line(drops: list) -> str:
    """A line read key by key (raw mode), echoed; an Enter is ignored while ``drops[0]`` > 0."""
    line = ""
    while True:
        data = os.read(0, 1024).decode("utf-8", "replace")
        if not data:
            return ""
        for ch in data:
            if ch == "\r":
                if line and drops[0] > 0:
                    drops[0] -= 1
                    continue
                sys.stdout.write("\r\n")
                return line + "\n"
            if ch == "\x7f":
                if line:
                    line = line[:-1]
                    sys.stdout.write("\b \b")
            elif ch.isprintable():
                line += ch
                sys.stdout.write(ch)
        sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--outcomes", default="done")
    p.add_argument("--prompt")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--show-env", action="store_true")
    p.add_argument("--read-task", action="store_true")
    p.add_argument("--slow-start", type=float, default=0)
    p.add_argument("--trust-dialog", action="store_true")
    p.add_argument("--drop-enter", type=int, default=0)
    p.add_argument("--trust-drops", type=int, default=0)
    p.add_argument("--trust-redraw", type=float, default=0)
    args = p.parse_args()
    global RAW
    if args.slow_start:
        say("starting...")
        time.sleep(args.slow_start)
        termios.tcflush(0, termios.TCIFLUSH)  # what was typed while starting is lost
    if args.trust_dialog or args.drop_enter:
        tty.setraw(0)
        RAW = True
    if args.trust_dialog and not trust_dialog(args.trust_drops, args.trust_redraw):
        say("exiting: the folder is not trusted")
        return 1
    drops = [args.drop_enter]
    if args.show_env:
        say(f"id={os.environ.get('SWARM_AGENT_ID')} root={os.environ.get('SWARM_ROOT')}")
    for _ in range(args.repeat if args.prompt else 0):
        say(args.prompt)
        line = sys.stdin.readline()
        say(f"got: {line.strip()!r}")
        say("continued")
    holding, outcomes = None, args.outcomes.split(",")
    while True:
        sys.stdout.write("agent> ")
        sys.stdout.flush()
        line = read_line(drops) if RAW else sys.stdin.readline()
        if not line:
            return 0
        words = line.split()
        if holding and words == ["go"]:
            say(f"[DONE] {holding}")
            holding = None
            continue
        if len(words) < 2 or words[0] != "[TASK]":
            say(f"got: {line.strip()!r}")
            continue
        task = words[1]
        planned = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        outcome = next((o for o in ("error", "wait", "noack", "hold") if o.replace("error", "err") in task.lower()),
                       planned)
        say(f"Understood: I will print [DONE] {task} when finished, or [ERROR] {task} if I cannot.")
        if args.read_task:
            try:
                with open(words[2] if len(words) > 2 else "", encoding="utf-8") as f:
                    say(f"task file says: {f.readline().strip()}")
            except OSError:
                say(f"[ERROR] {task} cannot read {words[2] if len(words) > 2 else 'a task file'}")
                continue
        if outcome == "noack":
            continue
        say(f"[ACK] {task}")
        say(f"working on {task} from {words[2] if len(words) > 2 else '?'}")
        if outcome == "error":
            say(f"[ERROR] {task} tests fail")
        elif outcome == "wait":
            say(f"[WAIT] {task} need the database")
        elif outcome == "hold":
            holding = task
        else:
            say(f"[DONE] {task}")


if __name__ == "__main__":
    raise SystemExit(main())
