#!/usr/bin/env python3
"""A stand-in for an interactive agent CLI in a tmux pane (tests of tmux_bridge).

    interactive_agent.py [--outcomes done|error|wait|noack|hold[,...]] [--prompt TEXT [--repeat N]] [--show-env]

It prints an ``agent> `` prompt and reads lines. On ``[TASK] <id> <file>`` it first says, mid-line,
how it will report (as real CLIs echo their instructions), then prints ``[ACK] <id>`` and
``[DONE] <id>``, or as the outcome says: ``error`` ([ERROR] id why), ``wait`` ([WAIT] id why),
``noack`` (nothing at all), ``hold`` ([ACK], then [DONE] only after a line ``go``). The n-th
task line gets the n-th of --outcomes (the last one repeats), unless its task id contains
ERR, WAIT, NOACK or HOLD. With ``--prompt`` it first prints TEXT
and waits for a line, N times, printing ``got: <line>`` and ``continued`` after each.
"""

import argparse
import os
import sys


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--outcomes", default="done")
    p.add_argument("--prompt")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--show-env", action="store_true")
    args = p.parse_args()
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
        line = sys.stdin.readline()
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
