"""A simulated coding agent for the demo and for trying a workspace without a real agent CLI.

    python lib/executor.py --agent-id executor-1 --command 'python lib/sim_agent.py {task_file}'

It reads the task file it is given, "works" for a moment, writes one file per task under
``work/`` in its working directory (or appends to the task's Files to Modify), ticks the
task's success criteria in that output, and reports with the markers every agent uses:
``[DONE] <task>`` or ``[ERROR] <task> <reason>``.
Settings through the environment: SIM_DELAY (seconds of "work", default 0.2) and
SIM_FAIL_ONCE (comma-separated task ids whose first run fails, to show a retry).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    task_file = Path(args[0])
    text = task_file.read_text(encoding="utf-8")
    title = re.search(r"^#\s+([^:\n]+):\s*(.*)$", text, re.M)
    task_id = title.group(1).strip() if title else task_file.stem
    print(f"sim-agent {os.environ.get('SWARM_AGENT_ID', '?')} reading {task_file.name}", flush=True)
    time.sleep(float(os.environ.get("SIM_DELAY", "0.2")))
    fail_once = {t.strip() for t in os.environ.get("SIM_FAIL_ONCE", "").split(",") if t.strip()}
    # Remembered in the workspace, not the working directory: each attempt may get a fresh worktree.
    marker = Path(os.environ.get("SWARM_ROOT", ".")) / ".swarm" / "sim-failed" / task_id
    if task_id in fail_once and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("failed once\n")
        print(f"[ERROR] {task_id} simulated failure on the first attempt", flush=True)
        return 1
    out = Path("work") / f"{task_id}.txt"
    out.parent.mkdir(exist_ok=True)
    criteria = re.findall(r"^\s*[-*] \[[ xX]\] (.*)$", text, re.M)
    out.write_text(f"{task_id}: {title.group(2).strip() if title else ''}\n"
                   + "".join(f"- done: {c}\n" for c in criteria), encoding="utf-8")
    print(f"wrote {out}", flush=True)
    print(f"[DONE] {task_id}", flush=True)
    return 0
