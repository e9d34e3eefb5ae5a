#!/usr/bin/env python3
"""A stand-in for an agent CLI (claude, codex, gemini, aider, ollama) in tests.

It checks that it got the arguments its real counterpart takes, records what it was given,
and behaves as FAKE_BEHAVIOUR says: done (default), error, exit3, wait, help, hang, silent.
"""

import json
import os
import re
import sys
import time

name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
EXPECTED = {
    "claude": lambda a: a[0] == "-p" and "--permission-mode" in a,
    "codex": lambda a: a[0] == "exec" and "--sandbox" in a and "--full-auto" not in a,
    "gemini": lambda a: "-p" in a and "--approval-mode" in a,
    "aider": lambda a: "--message" in a and "--yes-always" in a,
    "ollama": lambda a: a[0] == "run" and len(a) == 3,
}
if name in EXPECTED and not EXPECTED[name](args):
    print(f"{name}: unexpected arguments {args}", file=sys.stderr)
    sys.exit(64)

prompt = next((a for a in args if "[DONE]" in a), "")
task_id = os.environ.get("SWARM_TASK_ID", "")
record = os.environ.get("FAKE_RECORD")
if record:
    with open(record, "a") as handle:
        handle.write(json.dumps({
            "cli": name, "args": args, "cwd": os.getcwd(),
            "env": {k: v for k, v in os.environ.items() if k.startswith("SWARM_")},
            "prompt_names_task_file": os.environ.get("SWARM_TASK_FILE", "?") in prompt,
        }) + "\n")

behaviour = os.environ.get("FAKE_BEHAVIOUR", "done")
print(f"{name} working on {task_id}")
sys.stdout.flush()
if behaviour == "done":
    print(f"[DONE] {task_id}")
elif behaviour == "error":
    print(f"[ERROR] {task_id} tests do not pass")
elif behaviour == "exit3":
    print("crashed", file=sys.stderr)
    sys.exit(3)
elif behaviour == "wait":
    print(f"[WAIT] {task_id} waiting for the database")
elif behaviour == "help":
    print(f"[HELP] {task_id} which API version?")
elif behaviour == "hang":
    pidfile = os.environ.get("FAKE_PIDFILE")
    if pidfile:
        child = os.fork()
        if child == 0:
            time.sleep(600)
            os._exit(0)
        with open(pidfile, "w") as handle:
            handle.write(f"{os.getpid()} {child}\n")
    time.sleep(600)
elif behaviour == "silent":
    pass
